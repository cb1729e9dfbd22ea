"""The shared run monitor against the full reader it replaces (runs.progress), on real run directories."""

import json
import time

from resnet_core import monitor, runs
from tests.conftest import tiny_config


def append(run_dir, *events, partial: str = "") -> None:
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
        f.write(partial)


def batch(epoch: int, step: int, loss: float, steps: int = 10) -> dict:
    return {"type": "batch", "epoch": epoch, "step": step, "steps": steps, "loss": loss, "images_per_s": 100.0}


def test_curve_keeps_under_max_points_and_the_mean_and_span_of_what_it_saw():
    curve = monitor.Curve(max_points=50)
    values = [(i, float(i % 7)) for i in range(1, 10_001)]
    for x, y in values:
        curve.add(x, y)
    xs, ys = curve.points()
    assert 25 <= len(xs) <= 51
    assert xs == sorted(xs) and xs[-1] == 10_000  # the newest batch is always shown
    # Each kept point averages the same number of raw points, so the means agree.
    assert abs(sum(ys) / len(ys) - sum(y for _, y in values) / len(values)) < 0.05
    short = monitor.Curve(max_points=50)
    for x, y in values[:30]:
        short.add(x, y)
    assert short.points() == ([x for x, _ in values[:30]], [y for _, y in values[:30]])  # untouched when small


def test_tail_reads_only_complete_lines_and_restarts_when_the_file_is_replaced(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = monitor.MetricsTail(path)
    assert tail.read_new() == ([], False)  # no file yet
    path.write_text(json.dumps({"a": 1}) + "\n" + '{"b": ')  # mid-append
    assert tail.read_new() == ([{"a": 1}], False)
    with open(path, "a") as f:
        f.write("2}\n")
    assert tail.read_new() == ([{"b": 2}], False)
    assert tail.read_new() == ([], False)
    path.write_text(json.dumps({"c": 3}) + "\n")  # a run directory reused: shorter than our offset
    assert tail.read_new() == ([{"c": 3}], True)


def test_monitor_progress_matches_runs_progress_and_counts_trainers(lab):
    run_dir = runs.create(tiny_config())
    start = {"type": "start", "epochs": 2, "steps": 10, "start_epoch": 0, "start_step": 0}
    epoch = {"type": "epoch", "epoch": 0, "train_loss": 1.0, "test_loss": 1.1, "train_acc": 0.5, "test_acc": 0.4}
    append(run_dir, start, *[batch(0, s, 2.0 - s / 10) for s in range(10)], epoch)
    watcher = monitor.Monitor(max_age=0.0)
    view, full = watcher.progress(run_dir), runs.progress(run_dir)
    for key in ("run", "config", "epochs", "batch_step", "batch_loss", "last_batch", "steps", "queue_position"):
        assert view[key] == full[key], key
    assert view["starts"] == 1
    append(run_dir, start, batch(1, 0, 0.5))  # a second trainer wrote into the same run
    again = watcher.progress(run_dir)
    assert again["starts"] == 2 and again["batch_loss"][-1] == 0.5 and again["version"] != view["version"]


def test_monitor_polls_a_run_once_per_max_age_for_every_caller_and_places_new_runs_in_the_queue(lab):
    first = runs.create(tiny_config())
    runs.update_status(first, state="running", pid=None)
    watcher = monitor.Monitor(max_age=60.0)
    view = watcher.progress(first)
    append(first, batch(0, 0, 1.0))
    assert watcher.progress(first) is view  # within max_age: the same shared view, no new read
    queued = [runs.create(tiny_config()) for _ in range(2)]
    # Not yet in the cached list of runs: the monitor reads it again rather than lose the position.
    assert [watcher.progress(q)["queue_position"] for q in queued] == [1, 2]
    assert len(watcher.runs()) == 3


def test_dispatch_if_due_runs_at_most_once_per_interval(lab, monkeypatch):
    calls = []
    monkeypatch.setattr(runs, "dispatch", lambda: calls.append(time.monotonic()))
    runs.create(tiny_config())  # queued
    watcher = monitor.Monitor(max_age=0.0, dispatch_every=60.0)
    for _ in range(5):
        watcher.dispatch_if_due()
    assert len(calls) == 1
