"""Runs under stress: rushes of launches from many processes, SIGKILL mid-write, a full disk, stops at start-up."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resnet_core import checkpoints, runs
from resnet_core.checkpoints import CheckpointError, load_checkpoint
from tests.conftest import tiny_config
from tests.test_runs import wait_for

ROOT = Path(__file__).resolve().parent.parent

RUSH = """
import sys, time
from resnet_core import runs
from tests.conftest import tiny_config
action, at, count = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
while time.time() < at:  # every process starts at the same instant
    time.sleep(0.001)
for _ in range(count):
    if action == "launch":
        runs.launch(tiny_config(max_train_batches=3, max_test_images=50))
    elif action == "resume":
        for row in runs.list_runs():
            try:
                runs.resume(row["path"])
            except RuntimeError:
                pass  # "still running" or "finished": someone else resumed it first
    else:
        runs.dispatch()
"""


def rush(action: str, processes: int, count: int) -> None:
    at = time.time() + 4.0  # enough for every interpreter to import torch
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", RUSH, action, str(at), str(count)], cwd=ROOT, env=env)
        for _ in range(processes)
    ]
    # Pages polling at the same moment: dispatchers racing the launchers.
    procs += [subprocess.Popen([sys.executable, "-c", RUSH, "dispatch", str(at), "20"], cwd=ROOT, env=env)]
    assert all(p.wait(timeout=120) == 0 for p in procs)


def starts(run_dir: Path) -> int:
    return sum(1 for e in runs.read_metrics(run_dir) if e["type"] == "start")


def test_a_rush_of_launches_and_resumes_gives_each_run_exactly_one_trainer(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "2")
    rush("launch", processes=2, count=2)
    rows = runs.list_runs()
    assert len(rows) == 4
    ended = lambda: all(r["state"] not in runs.ACTIVE for r in runs.list_runs())  # noqa: E731
    assert wait_for(ended, timeout=240), runs.list_runs()
    for row in runs.list_runs():
        run_dir = Path(row["path"])
        log = (run_dir / "train.log").read_text()
        assert row["state"] == "finished", log
        assert starts(run_dir) == 1
        # Spawned once: a second spawn would be turned away by the run's claim, which saves the
        # metrics but still means the lock let two dispatchers start the same run.
        assert "being trained by another process" not in log, log
        batches = [(e["epoch"], e["step"]) for e in runs.read_metrics(run_dir, ("batch",))]
        # No line written twice by two trainers: each epoch's first and last batch, at most one
        # more in between (events come every engine.LOG_EVERY_S), in order.
        assert batches[0] == (0, 1) and batches[-1] == (0, 3) and batches == sorted(set(batches))

    for row in runs.list_runs():  # as if each had been stopped: two processes now race to resume it
        runs.update_status(Path(row["path"]), state="stopped")
    rush("resume", processes=2, count=1)
    assert wait_for(ended, timeout=240), runs.list_runs()
    assert [starts(Path(r["path"])) for r in runs.list_runs()] == [2] * 4


def test_a_stop_during_start_up_ends_as_stopped(lab):
    run_dir = runs.launch(tiny_config(max_train_batches=50))
    assert runs.read_status(run_dir)["state"] == "starting"
    runs.stop(run_dir)  # the child is still importing torch
    assert wait_for(lambda: runs.read_status(run_dir)["state"] not in runs.ACTIVE, timeout=90)
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped", (run_dir / "train.log").read_text()
    assert load_checkpoint(run_dir / "last.pt")["next_step"] < 50  # the partial epoch is kept


def test_sigkill_at_random_moments_never_leaves_an_unreadable_checkpoint(lab):
    # Tiny epochs, so checkpoints are written several times a second and kills land mid-write.
    config = tiny_config(epochs=5000, max_train_batches=2, max_test_images=32, batch_size=8)
    run_dir = runs.launch(config)
    rng = random.Random(0)
    for kill in range(4):
        assert wait_for(lambda: runs.read_status(run_dir)["state"] == "running", timeout=90)
        assert wait_for(lambda: (run_dir / "last.pt").is_file(), timeout=60)
        time.sleep(rng.uniform(0.1, 1.5))
        pid = runs.read_status(run_dir)["pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda pid=pid: not runs._alive(pid), timeout=30)
        status = runs.read_status(run_dir)
        assert status["state"] == "interrupted", status
        for name in ("best.pt", "last.pt"):
            if (run_dir / name).exists():
                load_checkpoint(run_dir / name)  # raises if half-written
        epoch_before = load_checkpoint(run_dir / "last.pt")["epoch"]
        runs.resume(run_dir)
        assert wait_for(lambda n=kill + 2: starts(run_dir) == n, timeout=60)
        assert json.loads((run_dir / "status.json").read_text())["state"] != "interrupted"
        assert load_checkpoint(run_dir / "last.pt")["epoch"] >= epoch_before
    runs.stop(run_dir)
    assert wait_for(lambda: runs.read_status(run_dir)["state"] == "stopped", timeout=60)
    assert not list(run_dir.glob(".*.tmp"))  # what the kills left half-written was cleared on resume


def test_a_save_killed_mid_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "best.pt"
    checkpoints.save_checkpoint({"v": 1}, target)
    script = (
        "import os, signal, sys\n"
        "from resnet_core import checkpoints\n"
        "def half(obj, f):\n"
        "    f.write(b'PK' + b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "checkpoints.torch.save = half\n"
        "checkpoints.save_checkpoint({'v': 2}, sys.argv[1])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(target)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert proc.returncode == -signal.SIGKILL
    assert checkpoints.torch.load(target, weights_only=True) == {"v": 1}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_disk_or_read_only_folder_fails_the_run_with_a_sentence(lab, monkeypatch, code):
    run_dir = runs.create(tiny_config(epochs=3, max_train_batches=2, max_test_images=32))
    real_save, calls = checkpoints.torch.save, []

    def save(obj, f):
        calls.append(1)
        if len(calls) > 2:  # best.pt and last.pt of epoch 1 are written; then the disk fills
            raise OSError(code, os.strerror(code))
        real_save(obj, f)

    monkeypatch.setattr(checkpoints.torch, "save", save)
    with pytest.raises(CheckpointError, match=r"previous (best|last)\.pt is intact"):
        runs.train_run(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and os.strerror(code) in status["error"]
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 0
    assert not list(run_dir.glob(".*.tmp"))
