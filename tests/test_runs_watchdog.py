"""Runs with no browser watching: the watchdog after a killed trainer, a full disk, Ctrl-C.

Real trainers, as the page server starts them; nothing here lists runs or dispatches after the
fault, since an open Train page would do that and hide the gap these tests are about.
"""

import builtins
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from resnet_core import runs
from resnet_core.checkpoints import load_checkpoint
from tests.conftest import tiny_config
from tests.test_runs import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def watchdog():
    """This process's watchdog at a fast pace, stopped afterwards so it starts no later test's runs."""
    dog = runs.watch(interval_s=0.5)
    yield dog
    dog.stop()


def test_the_queue_moves_on_when_a_trainer_is_killed_and_no_page_is_open(lab, monkeypatch, watchdog):
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "1")
    first = runs.launch(tiny_config(epochs=5, max_train_batches=400))
    second = runs.launch(tiny_config())
    assert runs.read_status(second)["state"] == "queued"
    assert wait_for(lambda: runs.read_status(first)["state"] == "running"), (first / "train.log").read_text()

    os.kill(runs.read_status(first)["pid"], signal.SIGKILL)  # the OOM killer: no finally, no dispatch
    killed = time.monotonic()
    assert wait_for(lambda: runs.read_status(second)["state"] != "queued", timeout=30, every=0.05)
    # One tick (0.5 s) plus the spawn; 10 s leaves room for a busy 2-core machine.
    assert time.monotonic() - killed < 10
    assert json.loads((first / "status.json").read_text())["state"] == "interrupted"  # written down, not inferred
    assert runs.read_status(first)["error"] == runs.KILLED
    assert wait_for(lambda: runs.read_status(second)["state"] == "finished", timeout=120), (
        second / "train.log"
    ).read_text()


def test_the_watchdog_starts_once_however_many_sessions_ask(lab):
    dogs = []
    askers = [threading.Thread(target=lambda: dogs.append(runs.watch(interval_s=60))) for _ in range(30)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    try:
        assert len(dogs) == 30 and all(dog is dogs[0] for dog in dogs)
        assert [t.name for t in threading.enumerate()].count("resnet-lab-watchdog") == 1
        assert dogs[0].daemon  # never holds the server open at shutdown
    finally:
        dogs[0].stop()
    again = runs.watch(interval_s=60)  # one that was stopped is replaced, not returned dead
    try:
        assert again is not dogs[0] and again.is_alive()
    finally:
        again.stop()


def test_an_idle_tick_takes_no_lock_and_parses_no_status_twice(lab, monkeypatch):
    ended = [runs.create(tiny_config()) for _ in range(3)]
    for run_dir in ended:
        runs.update_status(run_dir, state="finished")
        an_hour_ago = time.time() - 3600  # runs that ended long ago: their status.json has settled
        os.utime(run_dir / "status.json", (an_hour_ago, an_hour_ago))
    assert runs.sweep() == []  # the first tick parses each status once
    parsed = []
    with monkeypatch.context() as patch:
        patch.setattr(runs, "_raw_status", lambda run_dir: parsed.append(run_dir) or {"state": "finished"})
        patch.setattr(runs, "transitions", lambda: pytest.fail("an idle tick took the lock"))
        assert runs.sweep() == [] and parsed == []
    # Resumed from another browser, twice within the file system's clock tick: the state read
    # the first time must not be kept, though the file may get the same inode, size and mtime.
    runs.update_status(ended[1], state="stopped")
    assert runs._unended() == []
    runs.update_status(ended[1], state="queued")
    assert runs._unended() == [ended[1]]


# ---------------------------------------------------------------------------------------------
# A full disk


def fill_disk_at_third_checkpoint(run_dir: str) -> None:
    """In this process, the disk under ``run_dir`` fills as the third checkpoint is written
    (epoch 1's best.pt and last.pt are saved): from then on every write there that needs new
    disk blocks fails with ENOSPC, as on a real full disk. Files can still be created empty,
    and bytes a file already has can be overwritten in place, which needs no new blocks."""
    run_dir = os.path.realpath(run_dir)
    state = {"checkpoints": 0, "full": False}

    def ours(fd: int) -> bool:
        return os.path.realpath(os.readlink(f"/proc/self/fd/{fd}")).startswith(run_dir + os.sep)

    def no_space():
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    class FullDiskFile:
        def __init__(self, f) -> None:
            self._f = f

        def write(self, data):
            if state["full"]:
                raise no_space()
            return self._f.write(data)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._f.close()

    def guarded(f):
        return FullDiskFile(f) if f.writable() and ours(f.fileno()) else f

    real_fdopen, real_open, real_pwrite, real_write = os.fdopen, builtins.open, os.pwrite, os.write

    def fdopen(fd, *args, **kwargs):
        if ours(fd) and ".pt." in os.readlink(f"/proc/self/fd/{fd}"):  # a checkpoint's temp file
            state["checkpoints"] += 1
            state["full"] = state["full"] or state["checkpoints"] >= 3
        return guarded(real_fdopen(fd, *args, **kwargs))

    def grows(fd: int, offset: int, size: int) -> bool:
        return state["full"] and ours(fd) and offset + size > os.fstat(fd).st_size

    def pwrite(fd, data, offset):
        if grows(fd, offset, len(data)):
            raise no_space()
        return real_pwrite(fd, data, offset)

    def write(fd, data):
        if grows(fd, os.lseek(fd, 0, os.SEEK_CUR), len(data)):
            raise no_space()
        return real_write(fd, data)

    os.fdopen, os.pwrite, os.write = fdopen, pwrite, write
    builtins.open = lambda *args, **kwargs: guarded(real_open(*args, **kwargs))


TRAIN_ON_A_FILLING_DISK = """
import sys
from resnet_core import runs
from tests.test_runs_watchdog import fill_disk_at_third_checkpoint
fill_disk_at_third_checkpoint(sys.argv[1])
runs.train_run(sys.argv[1])
"""


def test_a_full_disk_reaches_the_user_though_status_json_cannot_be_written(lab):
    run_dir = runs.create(tiny_config(epochs=3, max_train_batches=2, max_test_images=32))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    trainer = subprocess.run(
        [sys.executable, "-c", TRAIN_ON_A_FILLING_DISK, str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert trainer.returncode == 1 and "No space left on device" in trainer.stderr, trainer.stderr
    # The trainer's "failed" could not be written: on disk the run still claims to be running.
    assert json.loads((run_dir / "status.json").read_text())["state"] == "running"

    status = runs.read_status(run_dir)
    assert status["state"] == "failed", status
    assert f"The disk holding {run_dir} is full (No space left on device)" in status["error"]
    assert "free space there, then resume" in status["error"]
    for name in ("best.pt", "last.pt"):  # saved in epoch 1, before the disk filled
        assert torch.load(run_dir / name, weights_only=True)["epoch"] == 0
    assert not list(run_dir.glob(".*.tmp"))

    assert runs.reconcile() == [run_dir]  # space again (this process writes freely): written down
    assert json.loads((run_dir / "status.json").read_text())["error"] == status["error"]


def test_a_dead_trainer_on_a_nearly_full_disk_is_told_as_a_full_disk(lab, monkeypatch):
    run_dir = runs.create(tiny_config())
    runs.update_status(run_dir, state="running", pid=2**22 + 12345)  # no such process
    runs._leave_note(run_dir, "an earlier trainer's failure")  # another pid's note does not count
    assert runs.read_status(run_dir)["error"] == runs.KILLED
    # A disk too full even for the note: the free space says it.
    nearly_full = shutil._ntuple_diskusage(total=10 * 2**30, used=10 * 2**30 - 2**20, free=2**20)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: nearly_full)
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted"
    assert status["error"].startswith(f"The disk holding {run_dir} is full (1 MB free): free space there")


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def children(pid: int) -> dict[int, str | None]:
    """The processes whose parent is ``pid``, with their start times (``runs._alive`` checks both)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # ended while we looked
            if int(fields[1]) == pid:
                found[int(entry.name)] = fields[19]
    return found


@pytest.mark.parametrize("target", ["trainer", "process group"])
def test_ctrl_c_stops_a_trainer_and_its_loader_workers(lab, tmp_path, monkeypatch, target):
    from resnet_core import data
    from tests.test_folder_cache import digit_folder

    monkeypatch.setenv("RESNET_LAB_CACHE_MB", "0")  # too large to cache: batches stream through workers
    data.add_folder("digits", digit_folder(tmp_path / "digits", n=200))
    config = tiny_config(dataset="digits", epochs=50, batch_size=8, workers=2, max_train_batches=None)
    run_dir = runs.launch(config)
    assert wait_for(lambda: runs.read_status(run_dir)["state"] == "running"), (run_dir / "train.log").read_text()
    pid = runs.read_status(run_dir)["pid"]
    assert wait_for(lambda: len(children(pid)) == 2, every=0.05), "the DataLoader workers never started"
    workers = children(pid)

    # kill(1) reaches the trainer alone; a terminal's Ctrl-C reaches its whole group, workers too.
    if target == "trainer":
        os.kill(pid, signal.SIGINT)
    else:
        os.killpg(pid, signal.SIGINT)  # the trainer leads its own session and group (runs.spawn)
    assert wait_for(lambda: not runs._alive(pid), timeout=60), "the trainer did not end"
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped", (status, (run_dir / "train.log").read_text())
    assert load_checkpoint(run_dir / "last.pt")["next_step"] > 0
    # The trainer joins its workers as it leaves its epoch; a few seconds allow for their exit.
    assert wait_for(lambda: not any(runs._alive(w, start) for w, start in workers.items()), timeout=5)


def test_a_run_the_command_line_trains_itself_is_never_started_again(lab, monkeypatch, watchdog):
    """`python -m resnet_core train` trains in the foreground; a server's watchdog sweeping the same
    lab meanwhile must not take its run for a queued one and start a second trainer on it."""
    from tests.conftest import TINY_ARGS

    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "2")  # a free slot: only the run's own status keeps it off
    args = [*TINY_ARGS, "--max-train-batches", "40"]
    cli = subprocess.run(
        [sys.executable, "-m", "resnet_core", "train", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 0, cli.stderr
    (row,) = runs.list_runs()
    run_dir = Path(row["path"])
    assert row["state"] == "finished"
    assert not (run_dir / "train.log").exists()  # what a spawned trainer writes: none was spawned
    assert sum(e["type"] == "start" for e in runs.read_metrics(run_dir)) == 1


def test_a_looping_exception_chain_still_gets_its_sentence(tmp_path):
    err = ValueError("bad")
    err.__context__ = RuntimeError("while handling")
    err.__context__.__context__ = err  # what `raise e` inside `except` around `e` can build
    assert runs.failure_message(err, tmp_path) == "ValueError: bad"
