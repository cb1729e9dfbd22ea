"""Theory: residual learning, measured on real networks and real images, live."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from resnet_core import config as cfg
from resnet_core import data, runs, theory
from ui.common import require_frame
from ui.i18n import t

require_frame("pages/theory.py")
cached = st.cache_data(show_spinner=False, max_entries=64)
blocks, shortcuts, cardinality, one_by_one = (
    cached(theory.block_costs),
    cached(theory.shortcut_costs),
    cached(theory.cardinality_costs),
    cached(theory.one_by_one_costs),
)
flow, shattered, deletion = (
    cached(theory.gradient_flow),
    cached(theory.shattered_gradients),
    cached(theory.block_deletion),
)
BASIC = (
    'digraph{rankdir=TB;node[shape=box];x[label="x (64)"];a[label="3×3 conv, 64"];b[label="3×3 conv, 64"];'
    'p[label="+",shape=circle];x->a->b->p;x->p[label="identity"];}'
)
BOTTLENECK = (
    'digraph{rankdir=TB;node[shape=box];x[label="x (256)"];a[label="1×1 conv, 64"];b[label="3×3 conv, 64"];'
    'c[label="1×1 conv, 256"];p[label="+",shape=circle];x->a->b->c->p;x->p[label="identity"];}'
)


def costs_table(rows: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "": t(f"theory.row.{k}"),
                t("theory.params"): f"{v['params']:,}",
                t("theory.macs"): f"{v['macs'] / 1e6:,.1f} M",
            }
            for k, v in rows.items()
        ]
    )


st.title(t("theory.title"))
st.markdown(t("theory.intro"))
st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x")

st.header(t("theory.blocks"))
left, mid, right = st.columns([1, 1, 2])
left.graphviz_chart(BASIC)
mid.graphviz_chart(BOTTLENECK)
costs = blocks()
right.dataframe(costs_table(costs), hide_index=True)
right.caption(t("theory.blocks.note", ratio=costs["basic_on_256"]["macs"] / costs["bottleneck"]["macs"]))
for tab, table in zip(
    st.tabs([t("theory.shortcuts"), t("theory.cardinality"), t("theory.one_by_one")]),
    (shortcuts(), cardinality(), one_by_one()),
):
    tab.dataframe(costs_table(table), hide_index=True)

st.header(t("theory.flow"))
a, b = st.columns(2)
depth = a.select_slider(t("theory.depth"), options=[20, 32, 44, 56, 110], value=56)
batch_norm = b.toggle(t("theory.bn"), value=True)
with st.spinner(t("theory.measuring")):
    f = flow(depth, batch_norm)
fig = go.Figure([go.Scatter(y=f[k]["grad_norm"], name=t(f"theory.{k}"), mode="lines+markers") for k in f])
fig.update_layout(yaxis_type="log", xaxis_title=t("theory.layer"), yaxis_title=t("theory.grad_norm"), height=320)
left, right = st.columns(2)
left.plotly_chart(fig, key="flow")
fig = go.Figure([go.Scatter(y=f[k]["act_std"], name=t(f"theory.{k}"), mode="lines+markers") for k in f])
fig.update_layout(yaxis_type="log", xaxis_title=t("theory.block"), yaxis_title=t("theory.act_std"), height=320)
right.plotly_chart(fig, key="acts")
ratio = {k: max(v["grad_norm"]) / min(v["grad_norm"]) for k, v in f.items()}
st.caption(t("theory.flow.note", plain=ratio["plain"], res=ratio["residual"], depth=depth))

st.header(t("theory.shattered"))
s = {k: shattered(depth, k == "residual", batch_norm) for k in ("plain", "residual")}
fig = go.Figure([go.Scatter(y=s[k]["trace"], name=f"{t(f'theory.{k}')} (r = {s[k]['correlation']:.2f})") for k in s])
fig.update_layout(xaxis_title=t("theory.along_line"), yaxis_title=t("theory.input_grad"), height=300)
st.plotly_chart(fig, key="shattered")
st.caption(t("theory.shattered.note"))

st.header(t("theory.degradation"))
notes, rows = theory.read_degradation_csv(theory.shipped_twin("plain20").parent / "degradation.csv")
frame = pd.DataFrame(rows)
left, right = st.columns(2)
for col, metric in ((left, "train_error"), (right, "test_error")):
    fig = go.Figure(
        [
            go.Scatter(
                x=g["epoch"],
                y=g[metric],
                name=m,
                mode="lines+markers",
                line={"dash": "dash" if m.startswith("plain") else "solid"},
            )
            for m, g in frame.groupby("model")
        ]
    )
    fig.update_layout(title=t(f"theory.{metric}"), xaxis_title="epoch", yaxis_title="%", height=320)
    col.plotly_chart(fig, key=metric)
final = frame.sort_values("epoch").groupby("model").last()
st.markdown(
    t(
        "theory.degradation.compare",
        epochs=int(final["epoch"].max()),
        t20=final.loc["plain20", "train_error"],
        t56=final.loc["plain56", "train_error"],
        rt20=final.loc["resnet20", "train_error"],
        rt56=final.loc["resnet56", "train_error"],
        p20=final.loc["plain20", "test_error"],
        p56=final.loc["plain56", "test_error"],
        r20=final.loc["resnet20", "test_error"],
        r56=final.loc["resnet56", "test_error"],
        paper20=theory.PAPER_TEST_ERROR["resnet20"],
        paper56=theory.PAPER_TEST_ERROR["resnet56"],
    )
)
st.caption(" · ".join(notes))
if st.button(t("theory.rerun")):
    spec = data.get_spec("fashion-sample")
    for name in theory.DEGRADATION_MODELS:
        runs.launch(
            cfg.TrainConfig(
                **{
                    **spec.preset,
                    "dataset": "fashion-sample",
                    "model": name,
                    "epochs": 1,
                    "label_smoothing": 0.0,
                    "augment": "none",
                }
            )
        )
    st.success(t("theory.rerun.started"))
    st.page_link("pages/train.py", label=t("transfer.follow"), icon=":material/arrow_forward:")

st.header(t("theory.ensembles"))
with st.spinner(t("theory.measuring")):
    d = {k: deletion(str(theory.shipped_twin(k)), limit=500) for k in ("plain20", "resnet20")}
fig = go.Figure(
    [go.Bar(x=list(range(1, len(v["drop"]) + 1)), y=[100 * x for x in v["drop"]], name=k) for k, v in d.items()]
)
fig.update_layout(xaxis_title=t("theory.deleted_block"), yaxis_title=t("theory.drop"), barmode="group", height=320)
st.plotly_chart(fig, key="deletion")
st.caption(
    t(
        "theory.ensembles.note",
        plain=100 * sum(d["plain20"]["drop"]) / len(d["plain20"]["drop"]),
        res=100 * sum(d["resnet20"]["drop"]) / len(d["resnet20"]["drop"]),
    )
)
