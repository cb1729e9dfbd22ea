"""One run per GPU (issue 11): each trainer is started on a GPU no other live run holds.

No GPU is needed: ``torch.cuda`` is told there are 2 or 4, and the trainers are ``sleep``s that
record the environment they were given. The child's ``CUDA_VISIBLE_DEVICES`` is the placement.
"""

import os
import signal
import subprocess
import threading

import pytest

from resnet_core import runs
from tests.conftest import tiny_config
from tests.test_runs import wait_for

REAL_POPEN = subprocess.Popen


@pytest.fixture
def fake_popen(monkeypatch):
    """Popen that records what a trainer would be started with, and starts a sleep that lives on
    until the test ends it (test_break_classroom's fixture sleeps 1 s: a run's GPU would free itself)."""
    calls, procs = [], []

    def popen(cmd, **kwargs):
        calls.append({"cmd": cmd, **kwargs})
        procs.append(REAL_POPEN(["sleep", "60"], stdout=kwargs.get("stdout"), start_new_session=True))
        return procs[-1]

    monkeypatch.setattr(runs.subprocess, "Popen", popen)
    yield calls
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def gpus(monkeypatch, n: int) -> None:
    monkeypatch.setattr(runs.torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(runs.torch.cuda, "device_count", lambda: n)
    for name in ("CUDA_VISIBLE_DEVICES", "RESNET_LAB_GPUS", "RESNET_LAB_MAX_RUNS"):
        monkeypatch.delenv(name, raising=False)


def visible(call) -> str | None:
    return call["env"].get("CUDA_VISIBLE_DEVICES")


def finish(run_dir) -> None:
    """What the trainer's RunRecorder and train_run's finally do as it ends."""
    runs.update_status(run_dir, state="finished")
    runs.dispatch()


def test_two_runs_at_once_get_different_gpus_and_a_third_takes_the_freed_one(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 2)
    first, second, third = (runs.launch(tiny_config()) for _ in range(3))
    assert [visible(c) for c in fake_popen] == ["0", "1"]
    assert runs.read_status(first)["gpus"] == ["0"] and runs.read_status(second)["gpus"] == ["1"]
    assert runs.read_status(third)["state"] == "queued"  # max_concurrent() == 2: one per GPU

    finish(second)
    assert runs.read_status(third)["state"] == "starting"
    assert visible(fake_popen[2]) == "1" and runs.read_status(third)["gpus"] == ["1"]


def test_launches_racing_from_many_threads_never_share_a_gpu(lab, monkeypatch, fake_popen):
    # Browsers of one server are threads; each takes the transitions() lock on its own descriptor.
    gpus(monkeypatch, 4)
    barrier = threading.Barrier(6)

    def launch():
        barrier.wait()
        runs.launch(tiny_config())

    threads = [threading.Thread(target=launch) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(visible(c) for c in fake_popen) == ["0", "1", "2", "3"]
    assert sorted(r["state"] for r in runs.list_runs()) == ["queued"] * 2 + ["starting"] * 4


def test_a_dead_trainers_gpu_is_free(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 2)
    first, second = runs.launch(tiny_config()), runs.launch(tiny_config())
    runs.update_status(first, state="running")  # its status still says so: SIGKILL leaves no word
    pid = runs.read_status(first)["pid"]
    os.kill(pid, signal.SIGKILL)  # not subprocess.run: Popen is the fake here
    assert wait_for(lambda: not runs._alive(pid), timeout=10)
    third = runs.launch(tiny_config())
    assert runs.read_status(first)["state"] == "interrupted"
    assert runs.read_status(third)["gpus"] == ["0"] and visible(fake_popen[2]) == "0"
    assert runs.read_status(second)["gpus"] == ["1"]


def test_a_torchrun_run_takes_one_free_gpu_per_process(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 4)
    single = runs.launch(tiny_config())
    pair = runs.launch(tiny_config(), nproc=2)
    assert [visible(c) for c in fake_popen] == ["0", "1,2"]
    assert runs.read_status(pair)["gpus"] == ["1", "2"]
    # Two GPUs left by the slot count (4 runs), one by the GPUs: the next pair waits for two.
    runs.launch(tiny_config())
    waiting = runs.launch(tiny_config(), nproc=2)
    behind = runs.launch(tiny_config())
    assert [visible(c) for c in fake_popen] == ["0", "1,2", "3"]
    assert runs.queue_position(waiting) == 1 and runs.queue_position(behind) == 2  # no overtaking
    finish(single)
    assert runs.read_status(waiting)["state"] == "queued"  # one GPU free is not two
    finish(pair)
    assert [visible(c) for c in fake_popen[3:]] == ["0,1", "2"]  # in queue order, 4 processes on 4 GPUs


def test_the_servers_own_cuda_visible_devices_is_mapped_through(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the server was given two of the machine's GPUs
    first = runs.launch(tiny_config())
    runs.launch(tiny_config())
    assert [visible(c) for c in fake_popen] == ["5", "7"]
    # A trainer sees only its own GPU, yet places the next run on the server's: it is told them.
    assert fake_popen[0]["env"]["RESNET_LAB_GPUS"] == "5,7"
    third = runs.launch(tiny_config())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")  # now as the first run's trainer, ending
    monkeypatch.setenv("RESNET_LAB_GPUS", "5,7")
    monkeypatch.setattr(runs.torch.cuda, "device_count", lambda: 1)
    assert runs.max_concurrent() == 2
    finish(first)
    assert runs.read_status(third)["gpus"] == ["5"] and visible(fake_popen[2]) == "5"


def test_a_teachers_higher_limit_shares_the_least_held_gpu(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 2)
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "3")  # small runs share a GPU on purpose
    for _ in range(3):
        runs.launch(tiny_config())
    assert [visible(c) for c in fake_popen] == ["0", "1", "0"]


def test_without_cuda_the_environment_is_left_as_it_is(lab, monkeypatch, fake_popen):
    gpus(monkeypatch, 0)
    run_dir = runs.launch(tiny_config())
    (call,) = fake_popen
    assert "CUDA_VISIBLE_DEVICES" not in call["env"] and "RESNET_LAB_GPUS" not in call["env"]
    assert runs.read_status(run_dir)["gpus"] is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a server hidden from its GPUs: its children too
    runs.update_status(run_dir, state="finished")
    runs.launch(tiny_config())
    assert fake_popen[1]["env"]["CUDA_VISIBLE_DEVICES"] == ""
