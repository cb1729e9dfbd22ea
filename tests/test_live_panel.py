"""The Train page's live panel tells the truth (issue 17): a resumed run shows as resumed at
once; the time left counts training, not start-up; the loss chart compares like with like; the
batch chart gets a point per batch."""

from __future__ import annotations

import shutil

import pytest

from resnet_core import engine, monitor, runs
from tests.conftest import tiny_config
from tests.test_pages_every_run import render, widget
from ui.i18n import catalogue


def events_of(config) -> list[dict]:
    seen: list[dict] = []
    engine.fit(config, callback=seen.append)
    return seen


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_every_batch_loss_is_logged_and_the_train_loss_is_comparable_with_the_test_loss(lab, smoothing):
    config = tiny_config(max_train_batches=12, label_smoothing=smoothing)
    events = events_of(config)
    batches = [e for e in events if e["type"] == "batch"]
    points = [xy for e in batches for xy in runs.batch_points(e)]
    assert [x for x, _ in points] == list(range(1, 13))  # one point per batch, none twice
    for e in batches:
        assert e["loss"] == pytest.approx(sum(e["losses"]) / len(e["losses"]), abs=1e-4)
    (epoch,) = [e for e in events if e["type"] == "epoch"]
    if smoothing:  # the objective adds smoothing; train_ce is the plain cross-entropy, as test_loss
        assert epoch["train_ce"] != epoch["train_loss"]
    else:
        assert epoch["train_ce"] == epoch["train_loss"]


def test_the_monitor_draws_a_point_per_batch(lab):
    run_dir = runs.create(tiny_config(max_train_batches=12))
    runs.train_run(run_dir)
    view = monitor.Monitor(max_age=0).progress(run_dir)
    assert view["batch_step"] == list(range(1, 13)) == runs.progress(run_dir)["batch_step"]


def test_time_left_is_measured_from_the_first_batch_not_the_start_up(lab, monkeypatch):
    run_dir = runs.create(tiny_config())
    clock = [1000.0]
    monkeypatch.setattr(runs.time, "time", lambda: clock[0])
    recorder = runs.RunRecorder(run_dir)
    start = {"type": "start", "epochs": 1, "steps": 100, "start_epoch": 0, "start_step": 0, "device": "cpu"}
    recorder(start)
    clock[0] += 60  # imports, data, the first batch's kernel selection: a minute on a busy server
    recorder({"type": "batch", "epoch": 0, "step": 1, "steps": 100, "loss": 2.3, "images_per_s": 1.0})
    assert runs.read_status(run_dir)["eta_s"] is None  # nothing measured yet: the panel says so
    clock[0] += 2  # then 10 batches in 2 s: 89 batches left at 5 per second
    recorder({"type": "batch", "epoch": 0, "step": 11, "steps": 100, "loss": 2.0, "images_per_s": 80.0})
    assert runs.read_status(run_dir)["eta_s"] == pytest.approx(17.8)
    recorder.close()


def test_a_resumed_run_shows_resumed_at_once(lab, monkeypatch):
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # it stays queued: no trainer in a page test
    run_dir = runs.create(tiny_config(max_train_batches=2, max_test_images=50))
    runs.train_run(run_dir)
    runs.update_status(run_dir, state="stopped")
    shutil.copy(run_dir / "best.pt", run_dir / "last.pt")
    at = render("train", "en")
    en = catalogue("en")
    widget(at, "button", "train.resume").click().run()
    assert not at.exception
    states = [m.value for m in at.metric if m.label == en["train.state"]]
    assert states == [en["state.queued"]]  # not "stopped", as a second ago
    labels = {b.label for b in at.button}
    assert en["train.stop"] in labels and en["train.resume"] not in labels


def test_a_replay_shows_the_events_up_to_its_moving_time_with_pauses_cut():
    from ui import replay

    events = [{"type": "start", "time": 100.0}, {"type": "batch", "time": 101.0}, {"type": "start", "time": 5000.0}]
    assert replay.timeline(events) == [0.0, 1.0, 1.0 + replay.GAP_S]  # stopped, resumed hours later


def test_an_ended_run_replays_on_the_page_then_stops(lab, monkeypatch):
    from ui import replay

    run_dir = runs.create(tiny_config(max_train_batches=12, max_test_images=50, epochs=2))
    runs.train_run(run_dir)
    p, length = replay.view(run_dir, 0.0)
    assert p["epochs"] == [] and length > 0  # at its start a replay has drawn nothing yet
    assert len(replay.view(run_dir, length)[0]["epochs"]) == 2
    at = render("train", "en")
    en = catalogue("en")
    widget(at, "button", "replay.start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(b.proto.text.startswith("Replay:") for b in at.get("progress"))
    clock = replay.time.time() + 10 * length / min(replay.SPEEDS)
    monkeypatch.setattr(replay.time, "time", lambda: clock)  # long after: the replay has shown everything
    at.run()
    assert replay.KEY not in at.session_state and en["replay.start"] in {b.label for b in at.button}


def test_a_linear_probe_says_what_it_computes_before_its_batches(lab, trained_run):
    config = tiny_config(
        dataset="fashion-sample",
        model="resnet20",
        pretrained=str(trained_run / "best.pt"),
        trainable="head",
        augment="none",
        labels_per_class=5,
        max_train_batches=None,
        max_test_images=50,
        amp=False,
    )
    run_dir = runs.create(config)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(
        '{"type": "start", "epochs": 1, "steps": 3}\n{"type": "features", "state": "computing", "images": 100}\n'
    )
    view = monitor.Monitor(max_age=0).progress(run_dir)
    assert view["features"] == {"type": "features", "state": "computing", "images": 100} and not view["last_batch"]
    metrics.unlink()
    runs.train_run(run_dir)
    view = monitor.Monitor(max_age=0).progress(run_dir)
    assert view["features"]["state"] == "done" and view["features"]["images"] == 100
    at = render("train", "en")
    said = catalogue("en")["train.features_done"].split("{")[0]
    assert any(c.value.startswith(said) for c in at.caption), [c.value for c in at.caption]
