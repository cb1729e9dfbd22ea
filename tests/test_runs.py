"""Runs as directories and processes: launch, list, stop for real, resume, and crash detection."""

import json
import os
import shutil
import time

import pytest

from resnet_core import runs
from resnet_core.checkpoints import load_checkpoint
from resnet_core.config import TrainConfig
from tests.conftest import tiny_config


def wait_for(predicate, timeout=90.0, every=0.2):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(every)
    return False


def test_launch_stop_resume_a_real_process(lab):
    run_dir = runs.launch(tiny_config(epochs=3, max_train_batches=400, max_test_images=200))
    assert json.loads((run_dir / "config.json").read_text())["run_dir"] == str(run_dir)
    assert wait_for(lambda: len(runs.read_metrics(run_dir, ("batch",))) >= 3), (run_dir / "train.log").read_text()
    assert runs.read_status(run_dir)["state"] == "running"
    assert [r["state"] for r in runs.list_runs()] == ["running"]

    runs.stop(run_dir)
    pid = runs.read_status(run_dir)["pid"]
    assert wait_for(lambda: not runs._alive(pid), timeout=60), "the training process did not end"
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped", status
    last = load_checkpoint(run_dir / "last.pt")
    assert last["epoch"] == 0 and 0 < last["next_step"] < 400

    runs.resume(run_dir)
    with pytest.raises(RuntimeError, match="still running"):
        runs.delete(run_dir)
    starts = lambda: [e for e in runs.read_metrics(run_dir, ("start",))]  # noqa: E731
    assert wait_for(lambda: len(starts()) == 2)
    assert starts()[1]["start_step"] == last["next_step"]
    runs.stop(run_dir)
    assert wait_for(lambda: runs.read_status(run_dir)["state"] in ("stopped", "finished", "failed"), timeout=60)
    assert runs.read_status(run_dir)["state"] == "stopped"
    runs.delete(run_dir)
    assert not run_dir.exists()


def test_a_process_that_died_silently_is_reported_interrupted(lab):
    run_dir = runs.create(TrainConfig())
    runs.update_status(run_dir, state="running", pid=2**22 + 12345)  # no such process
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and "resume" in status["error"]


def test_resume_without_last_pt_is_a_sentence(lab):
    run_dir = runs.create(TrainConfig())
    with pytest.raises(RuntimeError, match="no last.pt"):
        runs.resume(run_dir)


def test_metrics_reader_ignores_a_half_written_line(lab):
    run_dir = runs.create(TrainConfig())
    (run_dir / "metrics.jsonl").write_text('{"type": "start"}\n{"type": "batch", "lo')
    assert runs.read_metrics(run_dir) == [{"type": "start"}]


def test_a_server_wide_limit_queues_runs_and_starts_them_when_a_slot_frees(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "1")
    first = runs.launch(tiny_config(epochs=5, max_train_batches=400))
    second = runs.launch(tiny_config())
    third = runs.launch(tiny_config())
    assert runs.read_status(second)["state"] == "queued" and runs.queue_position(second) == 1
    assert runs.queue_position(third) == 2
    runs.stop(third)  # a queued run can be cancelled before it ever starts
    assert runs.read_status(third)["state"] == "stopped"
    assert wait_for(lambda: runs.read_status(first)["state"] == "running")
    runs.stop(first)
    # The stopping process hands its slot on: the second run starts and finishes with no poller.
    assert wait_for(lambda: runs.read_status(second)["state"] == "finished", timeout=120), (
        (second / "train.log").read_text() if (second / "train.log").exists() else runs.read_status(second)
    )
    assert runs.read_status(first)["state"] == "stopped"


def test_ema_matches_tensorboard_smoothing():
    assert runs.ema([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no warm-up dip
    smoothed = runs.ema([0.0, 10.0], 0.5)
    assert smoothed == pytest.approx([0.0, 10.0 * 0.5 / 0.75])
    assert runs.ema([3.0, 1.0], 0.0) == [3.0, 1.0]


def test_progress_reads_a_run_in_one_pass(lab):
    run_dir = runs.create(TrainConfig(epochs=2))
    (run_dir / "metrics.jsonl").write_text(
        '{"type": "batch", "epoch": 0, "step": 1, "steps": 4, "loss": 2.0}\n'
        '{"type": "batch", "epoch": 1, "step": 2, "steps": 4, "loss": 1.0}\n'
        '{"type": "epoch", "epoch": 1, "test_acc": 0.5}\n'
    )
    p = runs.progress(run_dir)
    assert p["batch_step"] == [1, 6] and p["batch_loss"] == [2.0, 1.0]
    assert p["epochs"] == [{"type": "epoch", "epoch": 1, "test_acc": 0.5}] and p["config"]["epochs"] == 2
    assert p["queue_position"] == 1 and p["status"]["state"] == "queued"


def test_the_listing_reads_a_run_again_only_when_its_files_change(lab, monkeypatch):
    """A classroom lists every run several times a second; rows are kept until status.json,
    config.json or best.pt change, and a run that may have a live trainer is read every time."""
    ended, queued, running = (runs.create(TrainConfig()) for _ in range(3))
    runs.update_status(ended, state="finished", best_acc=0.5, started=1, ended=3)
    runs.update_status(running, state="running", pid=os.getpid(), pid_start=runs._start_time(os.getpid()))
    assert {r["run"]: r["state"] for r in runs.list_runs()} == {
        ended.name: "finished",
        queued.name: "queued",
        running.name: "running",
    }
    reads = []
    real = runs._row
    monkeypatch.setattr(runs, "_row", lambda run_dir: reads.append(run_dir.name) or real(run_dir))
    rows = runs.list_runs()
    assert reads == [running.name]  # the ended and the queued rows come from the cache
    rows[0]["state"] = "changed by a caller"  # a copy: the next listing is not affected
    assert "changed by a caller" not in {r["state"] for r in runs.list_runs()}

    reads.clear()
    runs.update_status(ended, best_acc=0.75)  # status.json replaced
    (queued / "best.pt").write_bytes(b"")  # a best.pt appeared
    rows = {r["run"]: r for r in runs.list_runs()}
    assert sorted(reads) == sorted([ended.name, queued.name, running.name])
    assert rows[ended.name]["best_acc"] == 0.75 and rows[queued.name]["has_best"]
    shutil.rmtree(queued)
    assert queued.name not in {r["run"] for r in runs.list_runs()}


def test_a_launch_with_every_slot_taken_queues_without_a_dispatch(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "1")
    busy = runs.create(TrainConfig())
    runs.update_status(busy, state="running", pid=os.getpid(), pid_start=runs._start_time(os.getpid()))
    calls = []
    monkeypatch.setattr(runs, "dispatch", lambda: calls.append(1) or [])
    queued = runs.launch(tiny_config())
    assert calls == [] and runs.read_status(queued)["state"] == "queued" and runs.queue_position(queued) == 1
    runs.update_status(busy, state="finished", ended=time.time())  # the slot is free again
    runs.launch(tiny_config())
    assert calls == [1]
