"""The Predict page's test gallery: the whole test split once per checkpoint, its confusion
matrix (click a cell), the most confused pairs, the images filtered to mistakes or to one cell,
and the highest losses. The numbers come from ``resnet_core.predict``; this draws them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from resnet_core import predict
from ui.common import chart_text, enlarge, load_predictor, plain
from ui.i18n import class_name, t

ALL = -1  # the cell selectbox's "all cells"; a cell is actual * classes + predicted


@st.cache_resource(max_entries=8, show_spinner=False)
def evaluate(path: str, mtime: float) -> dict:
    """Once per checkpoint file (path and modification time), for every session: a rerun, a filter
    or an upload reuses it instead of evaluating the test split again. A resource, not data:
    cache_data would copy the split's pixels on every rerun (220 MB for STL-10); the page only
    reads it."""
    return predict.evaluate_gallery(load_predictor(path))


def per_class_chart(classes: list[str], accuracy) -> go.Figure:
    """Each class's test accuracy, its value written on its bar. On a 0-1 axis a good model's bars
    (97 % to 99.6 %) all looked the same height, so the axis starts just below the worst class and
    the colour ranks the classes too (the worst is the darkest)."""
    acc = np.asarray(accuracy, dtype=float)
    low = max(0.0, float(np.nanmin(acc)) - 0.05) if len(acc) else 0.0
    fig = go.Figure(
        go.Bar(
            x=[chart_text(class_name(c)) for c in classes],
            y=acc,
            text=[f"{a:.1%}" for a in acc],
            textposition="outside",
            marker={"color": acc, "colorscale": "Blues", "cmin": low, "cmax": 1.0},
            hovertemplate="%{x}: %{y:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        yaxis={"range": [low, 1.02], "tickformat": ".0%", "title": t("predict.per_class")},
        height=300,
        margin={"t": 10, "b": 40},
    )
    return fig


def images(g: dict, idx: np.ndarray, caption, key: str, cols: int = 8) -> None:
    """The gallery's images at ``idx`` in a grid, in a container the browser test can find."""
    with st.container(key=key):
        columns = st.columns(cols)
        for j, (i, image) in enumerate(zip(idx, predict.gallery_images(g, idx))):
            seen = image.permute(1, 2, 0).numpy()
            columns[j % cols].image(enlarge(seen[..., 0] if seen.shape[-1] == 1 else seen, 84), caption=caption(i))


def confusion_chart(g: dict, cell: tuple[int, int] | None, on_select) -> None:
    """A heatmap (colour: share of the actual class, text: count) under invisible squares, one per
    non-empty cell: in Streamlit 1.67 a click on a heatmap selects nothing, a click on a marker does."""
    conf, classes = g["confusion"], [chart_text(class_name(c)) for c in g["classes"]]
    k = len(classes)
    share = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=classes,
            y=classes,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            text=np.where(conf > 0, conf.astype(str), ""),
            texttemplate="%{text}" if k <= 15 else None,
            colorbar={"title": {"text": t("predict.share"), "side": "right"}, "thickness": 12},
            hoverinfo="skip",
        )
    )
    a, p = np.nonzero(conf)
    fig.add_trace(
        go.Scatter(
            x=[classes[i] for i in p],
            y=[classes[i] for i in a],
            mode="markers",
            marker={"symbol": "square", "size": max(8, 320 // k), "opacity": 0},
            customdata=conf[a, p],
            hovertemplate=f"{t('predict.actual')}: %{{y}}<br>{t('predict.predicted')}: %{{x}}<br>"
            f"{t('predict.count')}: %{{customdata}}<extra></extra>",
            showlegend=False,
        )
    )
    if cell is not None:  # the chosen cell, whether clicked or picked in the selectbox
        y, x = cell
        fig.add_shape(type="rect", x0=x - 0.5, x1=x + 0.5, y0=y - 0.5, y1=y + 0.5, line={"color": "red", "width": 3})
    fig.update_xaxes(title=t("predict.predicted"), tickangle=-45)
    fig.update_yaxes(title=t("predict.actual"), autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(height=480, margin={"t": 10}, plot_bgcolor="rgba(0,0,0,0)")
    st.plotly_chart(fig, key="confusion", on_select=on_select, selection_mode="points")


def render(g: dict) -> None:
    """Everything the gallery tab shows for one evaluation (:func:`evaluate`)."""
    classes, k, conf = g["classes"], len(g["classes"]), g["confusion"]
    wrong = g["preds"] != g["targets"]
    pairs = predict.confused_pairs(conf, top=None)
    options = [ALL] + [r["actual"] * k + r["predicted"] for r in pairs] + [i * k + i for i in range(k) if conf[i, i]]
    if st.session_state.get("gallery_cell") not in options:  # another checkpoint's cell
        st.session_state["gallery_cell"] = ALL

    cells = list(zip(*np.nonzero(conf)))  # the chart's squares, in its order

    def pick_cell() -> None:
        points = st.session_state["confusion"].selection.points
        if points:
            actual, predicted = (int(i) for i in cells[points[0]["point_index"]])
            st.session_state["gallery_cell"] = actual * k + predicted
            if actual == predicted:  # a click on correct answers asks to see them
                st.session_state["gallery_wrong"] = False

    m1, m2 = st.columns(2)
    m1.metric(t("predict.accuracy"), f"{g['accuracy']:.1%}", help=t("predict.accuracy_help", n=len(wrong)))
    m2.metric(t("predict.mistakes"), f"{int(wrong.sum()):,}")
    left, right = st.columns([3, 2])
    with left:
        st.subheader(t("predict.confusion_title"))
        code = st.session_state["gallery_cell"]
        confusion_chart(g, None if code == ALL else divmod(code, k), pick_cell)
        st.caption(t("predict.confusion_click"))
    with right:
        st.subheader(t("predict.per_class_title"))
        st.plotly_chart(per_class_chart(classes, g["per_class"]), key="per_class")
        st.subheader(t("predict.pairs"))
        if pairs:
            table = pd.DataFrame(pairs[:10]).assign(
                actual=lambda d: [classes[i] for i in d["actual"]],
                predicted=lambda d: [classes[i] for i in d["predicted"]],
            )
            names = {c: t(f"predict.{c}") for c in ("actual", "predicted", "count", "share")}
            st.dataframe(
                table.rename(columns=names),
                hide_index=True,
                column_config={names["share"]: st.column_config.NumberColumn(format="percent")},
            )
        else:
            st.info(t("predict.pairs_none"))

    st.subheader(t("predict.images"))
    c1, c2, c3 = st.columns([1, 2, 2])
    only_wrong = c1.toggle(t("predict.only_mistakes"), key="gallery_wrong")
    totals = {ALL: len(wrong), **{a * k + p: int(conf[a, p]) for a in range(k) for p in range(k)}}
    code = c2.selectbox(
        t("predict.cell"),
        options,
        format_func=lambda c: (
            t("predict.cell_all")
            if c == ALL
            else t("predict.cell_option", actual=classes[c // k], predicted=classes[c % k], count=totals[c])
        ),
        key="gallery_cell",
        help=t("predict.cell_help"),
    )
    n = c3.slider(t("predict.gallery_n"), 8, 200, 40, step=8, key="gallery_n")
    cell = None if code == ALL else divmod(code, k)
    idx = predict.mistakes(g, cell, only_wrong, order="index")
    if not len(idx):
        st.info(t("predict.cell_correct") if cell and cell[0] == cell[1] else t("predict.none_shown"))
    else:
        st.caption(t("predict.shown", shown=min(n, len(idx)), total=len(idx)))

        def caption(i):  # captions are Markdown: a class name is a folder's, the user's text
            pred, actual = plain(classes[g["preds"][i]]), plain(classes[g["targets"][i]])
            return t("predict.mistake", pred=pred, actual=actual) if wrong[i] else pred

        images(g, idx[:n], caption, "gallery_grid")

    st.subheader(t("predict.hardest"), help=t("predict.hardest_help"))
    hard = predict.mistakes(g, only_wrong=False, order="loss", limit=n)

    def hard_caption(i):
        pred, actual = plain(classes[g["preds"][i]]), plain(classes[g["targets"][i]])
        prob = float(g["prob_actual"][i])
        return (
            t("predict.hard_caption", pred=pred, actual=actual, prob=prob)
            if wrong[i]
            else t("predict.hard_right", pred=pred, prob=prob)
        )

    images(g, hard, hard_caption, "gallery_hardest", cols=6)
