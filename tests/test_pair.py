"""Plain and residual side by side: one click makes a pair of twins (same data, recipe, seed),
the two trainers share one training slot and the CPU's cores, and the Train page overlays them."""

from __future__ import annotations

import pytest

from resnet_core import runs, theory
from tests.conftest import tiny_config
from tests.test_pages_every_run import render, widget
from ui.i18n import catalogue


@pytest.fixture
def spawned(lab, monkeypatch):
    """runs.spawn recorded instead of run: (run folder name, pair) per start."""
    calls = []

    def spawn(run_dir, resume=False, nproc=1, pair=False, gpus=None):
        calls.append((run_dir.name, pair))
        runs.update_status(run_dir, state="starting", pid=None)
        return 0

    monkeypatch.setattr(runs, "spawn", spawn)
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "1")
    return calls


def test_the_twins_differ_only_in_their_shortcuts():
    plain, residual = theory.pair_configs("fashion-sample", 56, epochs=3)
    assert (plain.model, residual.model) == ("plain56", "resnet56")
    a, b = plain.to_dict(), residual.to_dict()
    assert {k for k in a if a[k] != b[k]} == {"model"}  # data, recipe, seed and group alike
    assert a["extra"]["kind"] == runs.PAIR and a["seed"] == 0
    with pytest.raises(ValueError, match="20, 32, 44, 56, 110"):
        theory.pair_configs("fashion-sample", 18)


def test_a_pair_starts_together_in_one_slot_and_a_later_run_waits(spawned):
    made = runs.launch_group(theory.pair_configs("mnist-sample", 20, epochs=1))
    assert spawned == [(made[0].name, True), (made[1].name, True)]  # both at once, one slot
    assert runs.slots_taken(runs.list_runs()) == 1
    later = runs.launch(tiny_config())
    assert runs.read_status(later)["state"] == "queued" and len(spawned) == 2


def test_a_queued_pair_starts_whole_when_the_slot_frees(spawned):
    first = runs.launch(tiny_config())
    made = runs.launch_group(theory.pair_configs("mnist-sample", 20, epochs=1))
    assert [name for name, _ in spawned] == [first.name]
    runs.update_status(first, state="finished")
    runs.dispatch()
    assert [name for name, _ in spawned] == [first.name, made[0].name, made[1].name]


def test_each_trainer_of_a_pair_takes_half_the_cores(lab, monkeypatch):
    envs = []

    class Proc:
        pid = 4242

    def popen(cmd, env, **kwargs):
        envs.append(env)
        return Proc()

    monkeypatch.setattr(runs.subprocess, "Popen", popen)
    monkeypatch.setattr(runs, "server_gpus", lambda: [])
    plain, residual = theory.pair_configs("mnist-sample", 20, epochs=1)
    runs.spawn(runs.create(plain), pair=True)
    runs.spawn(runs.create(tiny_config()))
    assert envs[0]["OMP_NUM_THREADS"] == str(max(1, runs.os.cpu_count() // 2))
    assert envs[1].get("OMP_NUM_THREADS") == runs.os.environ.get("OMP_NUM_THREADS")


def test_one_click_on_the_train_page_trains_the_pair_and_overlays_it(spawned):
    at = render("train", "en")
    en = catalogue("en")
    widget(at, "button", "pair.start").click().run()  # a form's submit button
    assert not at.exception, [e.value for e in at.exception]
    pair = [r for r in runs.list_runs() if r["kind"] == runs.PAIR]
    assert sorted(r["model"] for r in pair) == ["plain20", "resnet20"]
    assert {r["dataset"] for r in pair} == {"fashion-sample"}
    chosen = widget(at, "multiselect", "overlay.runs")
    assert sorted(chosen.value) == sorted(r["path"] for r in pair)
    titles = {c.proto.spec for c in at.get("plotly_chart")}
    assert any(en["overlay.acc"] in spec for spec in titles)


def test_two_pairs_queued_in_the_same_second_each_start_whole(spawned, monkeypatch):
    # Names made in one second sort by name, not by creation: A's and B's twins interleave in the
    # queue (plain20, plain20-2, resnet20, resnet20-2); each pair must still start whole.
    import datetime

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 2, 9, 0, 0)

    monkeypatch.setattr(runs, "datetime", Frozen)
    busy = runs.launch(tiny_config())
    a = runs.launch_group(theory.pair_configs("mnist-sample", 20, epochs=1))
    b = runs.launch_group(theory.pair_configs("mnist-sample", 20, epochs=1))
    runs.update_status(busy, state="finished")
    runs.dispatch()
    started = {name for name, _ in spawned[1:]}
    assert started in ({d.name for d in a}, {d.name for d in b}), (started, a, b)
    assert all(pair for _, pair in spawned[1:])  # each twin on half the cores


def test_a_stopped_twin_resumes_within_its_pairs_job(lab, monkeypatch, spawned):
    from resnet_core.classroom import Actor

    monkeypatch.setenv("RESNET_LAB_TEACHER_TOKEN", "s3cret")
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "2")
    me = Actor(owner="me")
    plain, residual = runs.launch_group(theory.pair_configs("mnist-sample", 20, epochs=1), actor=me)
    runs.launch(tiny_config(), actor=me)  # my second job: the cap is reached
    runs.update_status(plain, state="stopped")
    (plain / "last.pt").write_bytes(b"")
    runs.resume(plain, actor=me)  # its twin still trains: the same job, not a third one
    assert runs.read_status(plain)["state"] in ("queued", "starting")
