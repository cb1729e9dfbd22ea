"""The Train page's charts of a run, built once per run version for every browser.

Here, not in the page: a page file runs again on every visit and click, and decorating a function
with ``st.cache_resource`` there reads its source anew each time (``inspect.getsource``), 2-3 ms
of every run of the Train page; a module is imported once.
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from resnet_core import runs
from ui.common import monitor
from ui.i18n import t


@st.cache_resource(max_entries=32, show_spinner=False)
def curves(run: str, version: tuple, lang: str, weight: float) -> list[go.Figure]:
    """The run's charts at one version, built once for every browser that shows them.

    The loss chart compares like with like: plain cross-entropy on the training batches
    (``train_ce``) and on the test split. The training objective adds label smoothing, whose floor
    (about 0.5 at 0.1 over 10 classes) drew 0.55 against a test loss of 0.14 at 99 % accuracy
    (issue 17); it is the batch chart's, and its legend says so. Runs from before ``train_ce``
    was logged show their objective, named as such.
    """
    return build(monitor().progress(run), weight)


def build(p: dict, weight: float) -> list[go.Figure]:
    """Loss, accuracy and batch-loss charts of a progress view (``monitor.progress``'s keys
    ``epochs``, ``batch_step``, ``batch_loss``, ``config``): a live run's or a replay's."""
    figs = []
    epochs = p["epochs"]
    x = [e["epoch"] for e in epochs]
    smoothing = p["config"].get("label_smoothing") or 0
    comparable = all("train_ce" in e for e in epochs)
    train_key = "train_ce" if comparable else "train_loss"
    objective = t("train.curve.objective", smoothing=smoothing) if smoothing else t("train.curve.ce")
    loss_lines = [
        (train_key, t("train.curve.train_ce") if comparable or not smoothing else t("train.curve.train_objective")),
        ("test_loss", t("train.curve.test_ce")),
    ]
    acc_lines = [("train_acc", t("train.curve.train_acc")), ("test_acc", t("train.curve.test_acc"))]
    for lines, title in ((loss_lines, "train.loss"), (acc_lines, "train.accuracy")):
        traces = [go.Scatter(x=x, y=[e[k] for e in epochs], name=name, mode="lines+markers") for k, name in lines]
        figs.append(go.Figure(traces))
        figs[-1].update_layout(title=t(title), xaxis_title=t("train.curve.epoch"), height=300, margin={"t": 40})
    fig = go.Figure(
        [
            go.Scatter(x=p["batch_step"], y=p["batch_loss"], name=t("train.curve.raw"), opacity=0.3),
            go.Scatter(x=p["batch_step"], y=runs.ema(p["batch_loss"], weight), name=t("train.curve.smoothed")),
        ]
    )
    fig.update_layout(
        title=objective, xaxis_title=t("train.step"), yaxis_title=t("train.loss"), height=300, margin={"t": 40}
    )
    return [*figs, fig]
