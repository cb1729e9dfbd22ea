"""Predict: photos or the camera through a trained model (each preparation step, top-5, Grad-CAM),
and the whole test split as a gallery for understanding its mistakes (ui/gallery.py)."""

import os

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, predict
from resnet_core.checkpoints import CheckpointError
from resnet_core.data import DatasetUnavailable
from ui import gallery
from ui.common import (
    chart_text,
    checkpoint_index,
    checkpoint_label,
    checkpoints,
    enlarge,
    load_predictor,
    plain,
    require_frame,
)
from ui.i18n import class_name, t

require_frame("pages/predict.py")

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]


def answer(predictor: predict.Predictor, key: str, name: str, raw: bytes, layer: str, alpha: float) -> dict:
    """An upload's answer, kept for this session while the file stays uploaded: a tab switch or a
    widget elsewhere reruns the page, and must not rerun the network and Grad-CAM on every photo."""
    memo = st.session_state.setdefault("answers", {})
    token = (predictor_key, key, layer, alpha)
    if token not in memo:
        memo[token] = predictor.answer(raw, name, layer=layer, alpha=alpha)
    return memo[token]


def show(predictor: predict.Predictor, key: str, name: str, raw: bytes, layer: str, alpha: float) -> None:
    """One upload: its preparation step by step, then the answer or the sentence saying why not."""
    try:
        out = answer(predictor, key, name, raw, layer, alpha)
    except predict.ImageError as err:
        st.error(plain(err))  # it quotes the file's name: the uploader's text
        return
    st.text(name, help=t("predict.steps_help"))  # a file name is text, never Markdown
    cols = st.columns(5)
    for col, (step, image) in zip(cols, out["prepared"].steps.items()):
        col.image(enlarge(image) if max(image.shape[:2]) < 140 else image, caption=t(f"predict.step.{step}"))
    if out["problem"]:
        st.warning(out["problem"])
        return
    top = out["top"]
    a, c = st.columns([1, 4])
    a.image(enlarge(out["cam"]), caption=t("predict.cam"))
    # Class names are a folder's names, the user's text: Plotly renders <b> and <br> in labels.
    label, prob = t("predict.col.label"), t("predict.col.probability")
    frame = pd.DataFrame({label: [chart_text(class_name(r["label"])) for r in top], prob: [r["prob"] for r in top]})
    fig = px.bar(frame, x=prob, y=label, orientation="h", range_x=[0, 1], height=220)
    fig.update_layout(yaxis={"autorange": "reversed"}, margin={"t": 10, "b": 10})
    c.markdown(
        t("predict.answer", label=plain(class_name(top[0]["label"])), prob=top[0]["prob"])
    )  # bold, the name inert
    c.plotly_chart(fig, key=f"top-{key}")  # the upload's own id: two files may share a name


st.title(t("predict.title"))
rows = checkpoints()  # the shipped ones at least
paths = [r["checkpoint"] for r in rows]
path = st.selectbox(
    t("predict.checkpoint"),
    paths,
    index=checkpoint_index(rows),
    format_func=lambda p: checkpoint_label(rows[paths.index(p)]),
)
if rows[paths.index(path)].get("kind") == "shipped":
    st.caption(t("predict.shipped_hint"))
    st.page_link("pages/train.py", label=t("predict.go_train"), icon=":material/arrow_forward:")
try:
    predictor = load_predictor(path)
    predictor_key = (path, os.path.getmtime(path))  # a checkpoint rewritten in place is another model
except (CheckpointError, OSError) as err:
    st.error(plain(err))  # it may quote a path under the lab's home
    st.stop()


# Lazy tabs: the gallery (the whole test split evaluated, then charts and 80 images drawn) runs
# only while its tab is open, not on every upload; the upload tab always runs, so its files
# survive a look at the gallery (a widget left out of a run loses its state).
tab_upload, tab_gallery = st.tabs(
    [t("predict.tab.upload"), t("predict.tab.gallery")], key="predict_tab", on_change="rerun"
)
with tab_upload:
    st.caption(t("predict.hint", style=t(f"predict.style.{predictor.style}")))
    layers = predictor.cam_layers()
    if st.session_state.get("cam_layer") not in layers:  # default: the deepest stage of this model
        st.session_state["cam_layer"] = layers[-1]
    c1, c2 = st.columns(2)
    layer = c1.selectbox(t("predict.cam_layer"), layers, key="cam_layer", help=t("predict.cam_layer_help"))
    alpha = c2.slider(t("predict.cam_alpha"), 0.0, 1.0, 0.5, step=0.05, key="cam_alpha")
    # The browser refuses a larger file; imaging refuses it again for a client that skips the browser.
    # st.camera_input has no size option (Streamlit 1.67): its shots meet imaging's check alone.
    files = st.file_uploader(
        t("predict.upload"), type=IMAGE_TYPES, accept_multiple_files=True, max_upload_size=classroom.limit("photo_mb")
    )
    for f in files or []:
        show(predictor, f.file_id, f.name, f.getvalue(), layer, alpha)
    shot = st.camera_input(t("predict.camera")) if st.toggle(t("predict.camera")) else None
    if shot is not None:
        show(predictor, shot.file_id, "camera.jpg", shot.getvalue(), layer, alpha)
    # Answers no longer shown (a file removed, another checkpoint, layer or opacity) are let go.
    kept = {(predictor_key, f.file_id, layer, alpha) for f in [*(files or []), *([shot] if shot else [])]}
    memo = st.session_state.get("answers", {})
    for token in [k for k in memo if k not in kept]:
        del memo[token]


def show_gallery() -> None:
    try:
        with st.spinner(t("predict.evaluating")):
            result = gallery.evaluate(path, os.path.getmtime(path))
    except (OSError, ValueError, DatasetUnavailable) as err:  # a folder checkpoint's dataset may be gone
        st.error(plain(err))  # it may name the folder: the user's text
        return
    gallery.render(result)


with tab_gallery:
    if tab_gallery.open:  # not st.stop(): a stopped run would leave stale widget state unpruned
        show_gallery()
