"""The Train page's lesson in one click, and any runs on one chart.

- ``pair_form``: a plain net and its residual twin, trained at the same time on the same data,
  recipe and seed (``theory.pair_configs``), so a class watches the residual one pull ahead
  (He et al. 2016, Fig. 6).
- ``overlay``: the curves of the runs chosen, one colour and name per run, as TensorBoard
  overlays them; refreshed while any of them trains.
"""

from __future__ import annotations

from pathlib import Path

import plotly.colors
import plotly.graph_objects as go
import streamlit as st

from resnet_core import classroom, data, runs, theory
from resnet_core import config as cfg
from ui.common import actor, dataset_label, devices, error_text, monitor
from ui.i18n import language, t

KEY = "overlay_runs"  # the multiselect's key: a pair launched here fills it
POLL_S = 3.0
PALETTE = plotly.colors.qualitative.Plotly


DATASET = "fashion-sample"  # bundled, and hard enough that the shortcuts' head start shows


def pair_form() -> None:
    """Dataset, depth and epochs, then one button; the pair is one job against a class's limits."""
    cuda = any(d["kind"] == "cuda" for d in devices())
    st.caption(t("pair.what"))
    with st.form("pair_form"):
        names = data.list_datasets()
        dataset = st.selectbox(
            t("train.dataset"), names, index=names.index(DATASET) if DATASET in names else 0, format_func=dataset_label
        )
        a, b = st.columns(2)
        depths = list(theory.PAIR_DEPTHS)
        depth = a.selectbox(t("pair.depth"), depths, index=depths.index(theory.pair_depth(cuda)))
        epochs = b.number_input(t("train.epochs"), 1, 200, 6, key="pair_epochs")
        go_ = st.form_submit_button(t("pair.start"), type="primary")
    if not go_:
        return
    try:
        made = runs.launch_group(theory.pair_configs(dataset, int(depth), int(epochs)), actor=actor())
    except (cfg.ConfigError, classroom.ClassroomError, ValueError, OSError) as err:
        st.error(error_text(err))
        return
    st.session_state["watch"] = str(made[1])  # the residual twin in the live panel
    st.session_state[KEY] = [str(d) for d in made]
    monitor().runs(include=made[-1])  # listed at once, not up to a second later
    st.success(t("pair.started", depth=depth))


def name(row: dict) -> str:
    """A run as a legend names it: its model and when it was made (runs are named STAMP-...)."""
    stamp = row["run"][9:15]
    return f"{row['model']} · {stamp[:2]}:{stamp[2:4]}:{stamp[4:6]}" if stamp.isdigit() else row["run"]


@st.cache_resource(max_entries=16, show_spinner=False)
def figures(paths: tuple[str, ...], names: tuple[str, ...], versions: tuple, lang: str, weight: float):
    """Accuracy, cross-entropy and batch-loss charts of ``paths``, built once per version for
    every browser. A run has one colour: training solid, test dotted (He et al. 2016, Fig. 6: the
    shortcuts' gain is first in fitting the training set)."""
    acc, loss, batch = go.Figure(), go.Figure(), go.Figure()
    for i, (path, label) in enumerate(zip(paths, names)):
        p, colour = monitor().progress(path), PALETTE[i % len(PALETTE)]
        epochs = p["epochs"]
        x = [e["epoch"] for e in epochs]
        line, dotted = {"color": colour}, {"color": colour, "dash": "dot"}
        for fig, train_key, test_key in ((acc, "train_acc", "test_acc"), (loss, "train_ce", "test_loss")):
            train = [e.get(train_key) for e in epochs]  # an epoch without train_ce: a gap, not the objective
            test = [e[test_key] for e in epochs]
            fig.add_trace(go.Scatter(x=x, y=train, name=t("overlay.train", run=label), line=line, legendgroup=label))
            fig.add_trace(go.Scatter(x=x, y=test, name=t("overlay.test", run=label), line=dotted, legendgroup=label))
        batch.add_trace(go.Scatter(x=p["batch_step"], y=runs.ema(p["batch_loss"], weight), name=label, line=line))
    acc.update_layout(title=t("overlay.acc"), xaxis_title=t("train.curve.epoch"), yaxis_tickformat=".0%")
    loss.update_layout(title=t("overlay.loss"), xaxis_title=t("train.curve.epoch"))
    batch.update_layout(title=t("overlay.batch"), xaxis_title=t("train.step"))
    for fig in (acc, loss, batch):
        fig.update_layout(height=320, margin={"t": 40, "b": 10})
    return acc, loss, batch


def overlay(rows: list[dict], watched: str | None = None) -> None:
    """Choose runs; their curves on one chart, refreshed while any of them is queued or training.
    Until this browser chooses, the runs of the watched run's group (a pair: both twins)."""
    by_path = {r["path"]: r for r in rows}
    if KEY in st.session_state:  # a deleted run leaves the selection
        st.session_state[KEY] = [p for p in st.session_state[KEY] if p in by_path]
    elif watched in by_path and by_path[watched].get("group"):  # alone, the live panel's charts show it
        group = by_path[watched]["group"]
        st.session_state[KEY] = [p for p, r in by_path.items() if r.get("group") == group]
    chosen = st.multiselect(
        t("overlay.runs"),
        list(by_path),
        format_func=lambda p: name(by_path[p]),
        key=KEY,
        placeholder=t("overlay.placeholder"),
    )
    if not chosen:
        return
    active = any(by_path[p]["state"] in runs.ACTIVE for p in chosen)
    names = tuple(name(by_path[p]) for p in chosen)
    st.fragment(run_every=POLL_S if active else None)(draw)(tuple(chosen), names, active)


def draw(paths: tuple[str, ...], names: tuple[str, ...], was_active: bool) -> None:
    if not all(Path(p).is_dir() for p in paths):
        st.rerun()  # deleted from another browser: the page runs again without it
    views = [monitor().progress(p) for p in paths]
    if was_active and not any(v["status"]["state"] in runs.ACTIVE for v in views):
        st.rerun()  # all ended: the page runs again and stops polling
    versions = tuple(v["version"] for v in views)
    acc, loss, batch = figures(paths, names, versions, language(), st.session_state.get("smooth", 0.8))
    left, right = st.columns(2)
    left.plotly_chart(acc, key="overlay_acc")
    right.plotly_chart(loss, key="overlay_loss")
    st.plotly_chart(batch, key="overlay_batch")
