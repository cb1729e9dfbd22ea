"""Theory: residual learning, measured on real networks and real images.

What no control changes (cost tables, the degradation curves, block deletion) ships in
resnet_core/theory_data/. What the depth and batch-norm controls change is measured once per
server, in the background, the first time anyone asks for it; every figure is built once per
setting and language and shared by every visitor (st.cache_resource: plotly figures are read,
never changed, by st.plotly_chart).
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from resnet_core import classroom, findings, runs, theory
from resnet_core import config as cfg
from ui.common import actor, error_text, in_background, require_frame, tight
from ui.i18n import language, t

require_frame("pages/theory.py")
figures = st.cache_resource(show_spinner=False, max_entries=64)
BASIC = (
    'digraph{rankdir=TB;node[shape=box];x[label="x (64)"];a[label="3×3 conv, 64"];b[label="3×3 conv, 64"];'
    'p[label="+",shape=circle];x->a->b->p;x->p[label="identity"];}'
)
BOTTLENECK = (
    'digraph{rankdir=TB;node[shape=box];x[label="x (256)"];a[label="1×1 conv, 64"];b[label="3×3 conv, 64"];'
    'c[label="1×1 conv, 256"];p[label="+",shape=circle];x->a->b->c->p;x->p[label="identity"];}'
)


@figures
def cost_tables(lang: str) -> dict:
    def table(rows: dict) -> pd.DataFrame:
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

    costs = theory.shipped("costs")
    tables = {name: table(costs[name]) for name in ("blocks", "shortcuts", "cardinality", "one_by_one")}
    return tables | {"ratio": theory.bottleneck_saving(costs)}


def lines(series: dict, x_title: str, y_title: str, height: int, **layout) -> go.Figure:
    mode = "lines+markers" if layout.get("yaxis_type") == "log" else None
    fig = go.Figure([go.Scatter(y=v, name=k, mode=mode) for k, v in series.items()])
    fig.update_layout(xaxis_title=x_title, yaxis_title=y_title, height=height, margin={"t": 30, "b": 40})
    fig.update_layout(**layout)  # a caller's own title or margin wins
    return fig


@figures
def flow_figures(depth: int, batch_norm: bool, lang: str) -> tuple[go.Figure, go.Figure, str]:
    f = in_background(theory.gradient_flow, depth, batch_norm)
    names = {k: t(f"theory.{k}") for k in f}
    grads = lines(
        {names[k]: v["grad_norm"] for k, v in f.items()},
        t("theory.layer"),
        t("theory.grad_norm"),
        320,
        yaxis_type="log",
    )
    acts = lines(
        {names[k]: v["act_std"] for k, v in f.items()}, t("theory.block"), t("theory.act_std"), 320, yaxis_type="log"
    )
    return grads, acts, say(findings.flow(f, depth, batch_norm))


@figures
def shattered_figure(depth: int, batch_norm: bool, lang: str) -> tuple[go.Figure, str]:
    s = in_background(theory.shattered_pair, depth, batch_norm)
    traces = {f"{t(f'theory.{k}')} (r = {s[k]['correlation']:.2f})": s[k]["trace"] for k in s}
    deepest = depth == max(theory.PAIR_DEPTHS)
    return lines(traces, t("theory.along_line"), t("theory.input_grad"), 300), say(
        findings.shattered(s, deepest, batch_norm)
    )


def say(found: list[tuple[str, dict]]) -> str:
    """The findings of a figure (resnet_core.findings) as sentences in the visitor's language."""
    return " ".join(
        t(key, **{k: t(f"theory.{v}") if k.startswith("net") else v for k, v in args.items()}) for key, args in found
    )


@figures
def degradation_figures(lang: str) -> tuple[go.Figure, go.Figure, str, str]:
    notes, rows = theory.read_degradation_csv(theory.DATA / "degradation.csv")
    frame = pd.DataFrame(rows)
    figs = []
    for metric in ("train_error", "test_error"):
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
        fig.update_layout(title=t(f"theory.{metric}"), xaxis_title=t("train.curve.epoch"), yaxis_title="%", height=320)
        figs.append(fig)
    compare = say(findings.degradation(theory.final_rows(rows)))
    paper = t("theory.find.paper", r20=theory.PAPER_TEST_ERROR["resnet20"], r56=theory.PAPER_TEST_ERROR["resnet56"])
    return figs[0], figs[1], f"{compare} {paper}", made_line(theory.csv_made(notes))


@figures
def deletion_figure(lang: str) -> tuple[go.Figure, str]:
    d = theory.shipped("deletion")
    made = d.pop("made")
    fig = go.Figure(
        [go.Bar(x=list(range(1, len(v["drop"]) + 1)), y=[100 * x for x in v["drop"]], name=k) for k, v in d.items()]
    )
    fig.update_layout(xaxis_title=t("theory.deleted_block"), yaxis_title=t("theory.drop"), barmode="group", height=320)
    tight(fig)
    note = say(findings.deletion({k: v["drop"] for k, v in d.items()}))
    return fig, f"{t('theory.ensembles.what')} {note} {made_line(made)}"


def made_line(made: dict) -> str:
    """How a shipped result was made (theory._made's record), in the visitor's language."""
    parts = theory.hardware_parts(made["hardware"])
    parts["gpu"] = parts["gpu"] or t("theory.no_gpu")
    return t("theory.made", **parts, **{k: made.get(k) for k in ("command", "versions", "seconds")})


def rerun_results() -> None:
    """This browser's newest re-run, beside the shipped run (refreshed while it trains)."""
    owner = actor().owner
    rows = theory.latest_rerun(owner)
    if not rows:
        return
    active = any(r["state"] in runs.ACTIVE for r in rows)
    st.fragment(run_every=3.0 if active else None)(rerun_table)(owner, active)


def rerun_table(owner: str, was_active: bool) -> None:
    rows = theory.latest_rerun(owner)
    if was_active and not any(r["state"] in runs.ACTIVE for r in rows):
        st.rerun()
    cols = {k: t(f"theory.rerun.col.{k}") for k in ("model", "state", "epoch", "train", "test")}
    shipped_col = t("theory.rerun.col.shipped", epochs=max(r["shipped_epochs"] or 0 for r in rows))
    table = pd.DataFrame(
        {
            cols["model"]: [r["model"] for r in rows],
            cols["state"]: [t(f"state.{r['state']}") for r in rows],
            cols["epoch"]: [r["epoch"] for r in rows],
            cols["train"]: [r["train_error"] for r in rows],
            cols["test"]: [r["test_error"] for r in rows],
            shipped_col: [r["shipped_test_error"] for r in rows],
        }
    )
    st.markdown(t("theory.rerun.title"))
    st.dataframe(table, hide_index=True)


@st.fragment(run_every=1.0)
def wait_for(pending: dict) -> None:
    """Shown only while a measurement runs: once one finishes, redraw the page (which stops this)."""
    if any(in_background(fn, *args) is not None for fn, args in pending.items()):
        st.rerun()
    st.caption(t("theory.measuring.once"))


lang = language()
st.title(t("theory.title"))
st.markdown(t("theory.intro"))
st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x")

st.header(t("theory.blocks"))
tables = cost_tables(lang)
left, mid, right = st.columns([1, 1, 2])
identity = f'label="{t("theory.identity")}"'  # the diagrams' one word, in the visitor's language
left.graphviz_chart(BASIC.replace('label="identity"', identity))
mid.graphviz_chart(BOTTLENECK.replace('label="identity"', identity))
right.dataframe(tables["blocks"], hide_index=True)
right.caption(t("theory.blocks.note", ratio=tables["ratio"]))
for tab, name in zip(
    st.tabs([t("theory.shortcuts"), t("theory.cardinality"), t("theory.one_by_one")]),
    ("shortcuts", "cardinality", "one_by_one"),
):
    tab.dataframe(tables[name], hide_index=True)

st.header(t("theory.flow"))
a, b = st.columns(2)
depth = a.select_slider(t("theory.depth"), options=[20, 32, 44, 56, 110], value=56)
batch_norm = b.toggle(t("theory.bn"), value=True)
pending = {}
if in_background(theory.gradient_flow, depth, batch_norm) is None:
    pending[theory.gradient_flow] = (depth, batch_norm)
    st.info(t("theory.measuring"), icon=":material/hourglass_top:")
else:
    grads, acts, note = flow_figures(depth, batch_norm, lang)
    left, right = st.columns(2)
    left.plotly_chart(grads, key="flow")
    right.plotly_chart(acts, key="acts")
    st.caption(note)

st.header(t("theory.shattered"))
if in_background(theory.shattered_pair, depth, batch_norm) is None:
    pending[theory.shattered_pair] = (depth, batch_norm)
    st.info(t("theory.measuring"), icon=":material/hourglass_top:")
else:
    shattered, shattered_note = shattered_figure(depth, batch_norm, lang)
    st.plotly_chart(shattered, key="shattered")
    st.caption(f"{t('theory.shattered.what')} {shattered_note}")
if pending:
    wait_for(pending)

st.header(t("theory.degradation"))
train_fig, test_fig, compare, notes = degradation_figures(lang)
left, right = st.columns(2)
left.plotly_chart(train_fig, key="train_error")
right.plotly_chart(test_fig, key="test_error")
st.markdown(compare)
st.caption(notes)
rerun_results()
if st.button(t("theory.rerun")):
    try:  # one job, owned by this session and checked against the class's limits like any run
        runs.launch_group(theory.degradation_configs(epochs=1), actor=actor())
    except (cfg.ConfigError, classroom.ClassroomError, OSError) as err:
        st.error(error_text(err))
    else:
        st.success(t("theory.rerun.started"))
        st.page_link("pages/train.py", label=t("transfer.follow"), icon=":material/arrow_forward:")

st.header(t("theory.ensembles"))
deletion, note = deletion_figure(lang)
st.plotly_chart(deletion, key="deletion")
st.caption(note)
