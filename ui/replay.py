"""A finished run replayed at a chosen speed, its curves drawn as they went.

The MNIST preset trains in about ten seconds and its panel jumps two epochs at a time: too fast
for a class to watch it learn (issue 17). A replay reads the run's own events (metrics.jsonl)
and shows those up to a moving time, on this browser only; pauses longer than GAP_S (a stop,
then a resume the next day) are cut to GAP_S.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from resnet_core import monitor, runs
from ui.curves import build
from ui.i18n import t

KEY = "replay"
SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0)  # fractions of real time and faster: a 10 s run lasts 40 s at 0.25
GAP_S = 5.0
EVERY_S = 1.0
MAX_S = 300.0  # a replay lasts at most this: a long run is replayed faster than asked
MAX_POINTS = 600  # batch points drawn, as the live chart (monitor.Curve averages neighbours)


def timeline(events: list[dict]) -> list[float]:
    """Each event's seconds since the run's first, with long pauses cut to GAP_S."""
    out, clock, last = [], 0.0, None
    for e in events:
        now = e.get("time", last or 0.0)
        clock += 0.0 if last is None else min(max(now - last, 0.0), GAP_S)
        out.append(clock)
        last = now
    return out


@st.cache_resource(max_entries=8, show_spinner=False)
def _events(run: str, size: int) -> tuple[list[dict], list[float]]:
    """A run's events and timeline, read once per file version for every browser replaying it."""
    events = runs.read_metrics(Path(run))
    return events, timeline(events)


def view(run_dir: Path, upto_s: float) -> tuple[dict, float]:
    """(a progress view of the events up to ``upto_s`` on the timeline, the timeline's length)."""
    try:
        events, times = _events(str(run_dir), (run_dir / "metrics.jsonl").stat().st_size)
        config = runs._config(run_dir)
    except OSError:  # deleted meanwhile: nothing left to replay
        return {"epochs": [], "batch_step": [], "batch_loss": [], "config": {}}, 0.0
    curve = monitor.Curve(MAX_POINTS)
    epochs = []
    for e, s in zip(events, times):
        if s > upto_s:
            break
        if e["type"] == "batch":
            for x, y in runs.batch_points(e):
                curve.add(x, y)
        elif e["type"] == "epoch":
            epochs.append(e)
    xs, ys = curve.points()
    return {"epochs": epochs, "batch_step": xs, "batch_loss": ys, "config": config}, (times[-1] if times else 0.0)


def controls(run_dir: Path) -> None:
    """Speed and a button, under an ended run's live panel."""
    a, b = st.columns([3, 1], vertical_alignment="bottom")
    speed = a.select_slider(t("replay.speed"), SPEEDS, value=0.5, format_func=lambda v: f"{v:g}×")
    if b.button(t("replay.start"), key=f"replay-{run_dir.name}"):
        st.session_state[KEY] = {"run": str(run_dir), "start": time.time(), "speed": speed}
        st.rerun()


def stop() -> None:
    st.session_state.pop(KEY, None)


def follow(run_dir: Path | None) -> bool:
    """Whether this browser replays ``run_dir`` (the watched run); a replay of another is dropped."""
    if st.session_state.get(KEY) and not (run_dir and active(run_dir)):
        stop()  # another run is watched now
    return run_dir is not None and active(run_dir)


def active(run_dir: Path) -> bool:
    r = st.session_state.get(KEY)
    return bool(r) and r["run"] == str(run_dir)


def draw(run_dir: Path, weight: float) -> None:
    """The replay's charts now; ends the replay once its last event is shown."""
    r = st.session_state[KEY]
    p, length = view(run_dir, float("inf"))
    speed = max(r["speed"], length / MAX_S)  # never longer than MAX_S
    upto = (time.time() - r["start"]) * speed
    p, length = view(run_dir, upto)
    a, b = st.columns([4, 1], vertical_alignment="bottom")
    a.progress(min(upto / max(length, 1e-9), 1.0), text=t("replay.at", at=min(upto, length), total=length))
    if b.button(t("replay.stop"), key="replay-stop"):
        stop()
        st.rerun()
    loss, acc, batch = build(p, weight)
    if p["epochs"]:
        left, right = st.columns(2)
        left.plotly_chart(loss, key="replay_loss")
        right.plotly_chart(acc, key="replay_acc")
    st.plotly_chart(batch, key="replay_batch")
    if upto >= length:
        stop()
        st.rerun()  # the page stops polling
