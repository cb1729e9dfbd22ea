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
    """The run's charts at one version, built once for every browser that shows them."""
    p, figs = monitor().progress(run), []
    for columns, title in ((["train_loss", "test_loss"], "train.loss"), (["train_acc", "test_acc"], "train.accuracy")):
        x = [e["epoch"] for e in p["epochs"]]
        figs.append(
            go.Figure([go.Scatter(x=x, y=[e[c] for e in p["epochs"]], name=c, mode="lines+markers") for c in columns])
        )
        figs[-1].update_layout(title=t(title), xaxis_title="epoch", height=300)
    fig = go.Figure(
        [
            go.Scatter(x=p["batch_step"], y=p["batch_loss"], name="raw", opacity=0.3),
            go.Scatter(x=p["batch_step"], y=runs.ema(p["batch_loss"], weight), name="smoothed"),
        ]
    )
    fig.update_layout(xaxis_title=t("train.step"), yaxis_title=t("train.loss"), height=300)
    return [*figs, fig]
