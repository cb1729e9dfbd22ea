"""Predict: photos, the camera or a drawn digit through a trained model (each preparation step,
top-5, an occlusion or Grad-CAM map with its scale), and the whole test split as a gallery for
understanding its mistakes (ui/gallery.py)."""

import os

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, predict, teach
from resnet_core.checkpoints import CheckpointError
from resnet_core.data import DatasetUnavailable
from ui import drawpad, gallery, pretrained
from ui.common import (
    chart_text,
    checkpoint_index,
    checkpoint_label,
    checkpoints,
    enlarge,
    error_text,
    load_predictor,
    load_weights_predictor,
    plain,
    require_frame,
)
from ui.i18n import class_name, imagenet_class, t

require_frame("pages/predict.py")

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]
SCALE = predict.colour_bar(140, 10)  # the heat map's legend, as wide as the enlarged 28 px map
IMAGENET = "imagenet:resnet50"  # a model beside the checkpoints: whichever ResNet-50 weights are here


def name_of(row: dict) -> str:
    """A top-k row's class in the visitor's language; ImageNet's by index (its names repeat)."""
    if predictor.dataset == "imagenet":
        return imagenet_class(row["index"], row["label"])
    return class_name(row["label"])


def token(key: str, view: tuple) -> tuple:
    """What an answer depends on: the model, the upload, and how it is explained (``view``)."""
    return (predictor_key, key, *view)


def answer(predictor: predict.Predictor, key: str, name: str, raw: bytes, view: tuple) -> dict:
    """An upload's answer, kept for this session while the file stays uploaded: a tab switch or a
    widget elsewhere reruns the page, and must not rerun the network and its explanation (occlusion
    is a few hundred forward passes) on every photo."""
    memo = st.session_state.setdefault("answers", {})
    method, layer, alpha = view
    if token(key, view) not in memo:
        memo[token(key, view)] = predictor.answer(raw, name, layer=layer, alpha=alpha, method=method)
    return memo[token(key, view)]


def explain(col, out: dict) -> None:
    """The heat map, its colour scale and what one cell of it is (the layer's resolution or the patch)."""
    why, label = out["explanation"], plain(name_of(out["top"][0]))
    (h, w), (gh, gw) = why.size, why.grid
    col.image(enlarge(out["cam"]), caption=t("predict.cam" if why.method == "gradcam" else "predict.cam_occlusion"))
    col.image(SCALE)
    if why.method == "occlusion":
        col.caption(t("predict.scale.occlusion", label=label, points=100 * why.peak))
        col.caption(t("predict.res.occlusion", patch=why.patch, stride=why.stride, h=h, w=w, gh=gh, gw=gw))
    else:
        col.caption(t("predict.scale.gradcam", label=label))
        col.caption(t("predict.res.gradcam", layer=why.layer, gh=gh, gw=gw, h=h, w=w, cell=round(h / gh)))


def show(predictor: predict.Predictor, key: str, name: str, raw: bytes, view: tuple) -> None:
    """One upload: its preparation step by step, then the answer or the sentence saying why not."""
    try:
        out = answer(predictor, key, name, raw, view)
    except predict.ImageError as err:
        st.error(error_text(err))  # it quotes the file's name: the uploader's text
        return
    st.text(name, help=t("predict.steps_help"))  # a file name is text, never Markdown
    cols = st.columns(5)
    # One width for every step: a 12-megapixel photo and its 28 px input side by side. A small step is
    # enlarged pixel by pixel first, so the browser's scaling does not blur it.
    for col, (step, image) in zip(cols, out["prepared"].steps.items()):
        col.image(enlarge(image, 280), caption=t(f"predict.step.{step}"), width="stretch")
    if out["problem"]:
        st.warning(error_text(out["problem"]))
        return
    top = out["top"]
    a, c = st.columns([1, 4])
    explain(a, out)
    # Class names are a folder's names, the user's text: Plotly renders <b> and <br> in labels.
    label, prob = t("predict.col.label"), t("predict.col.probability")
    frame = pd.DataFrame({label: [chart_text(name_of(r)) for r in top], prob: [r["prob"] for r in top]})
    fig = px.bar(frame, x=prob, y=label, orientation="h", range_x=[0, 1], height=220)
    fig.update_layout(yaxis={"autorange": "reversed"}, margin={"t": 10, "b": 10})
    c.markdown(t("predict.answer", label=plain(name_of(top[0])), prob=top[0]["prob"]))  # bold, the name inert
    c.plotly_chart(fig, key=f"top-{key}")  # the upload's own id: two files may share a name


st.title(t("predict.title"))
rows = checkpoints()  # the shipped ones at least
paths = [r["checkpoint"] for r in rows]


def chose_model() -> None:
    """A checkpoint chosen here becomes the sidebar's too (every page opens it); ImageNet is
    remembered apart, since the sidebar lists checkpoints only."""
    choice = st.session_state["predict_model"]
    st.session_state["predict_imagenet"] = choice == IMAGENET
    if choice != IMAGENET:
        st.session_state["checkpoint"], st.session_state["checkpoint_auto"] = choice, None


# Keyed, its value set on every run: an unkeyed box whose options change (a classmate's run
# finishing, the language switched) is a new widget, and the choice would fall back to the default.
st.session_state["predict_model"] = (
    IMAGENET if st.session_state.get("predict_imagenet") else paths[checkpoint_index(rows)]
)
path = st.selectbox(
    t("predict.checkpoint"),
    [*paths, IMAGENET],
    key="predict_model",
    on_change=chose_model,
    format_func=lambda p: t("predict.imagenet") if p == IMAGENET else checkpoint_label(rows[paths.index(p)]),
)
try:
    if path == IMAGENET:
        cfg = pretrained.box("resnet50", key="predict_get_weights")
        if cfg is None:
            st.stop()
        predictor = load_weights_predictor(cfg)
        predictor_key = (cfg.name, cfg.file)
        st.caption(t("predict.imagenet_hint", resize=predictor.resize, size=predictor.size))
    else:
        if rows[paths.index(path)].get("kind") == "shipped":
            st.caption(t("predict.shipped_hint"))
            st.page_link("pages/train.py", label=t("predict.go_train"), icon=":material/arrow_forward:")
        predictor = load_predictor(path)
        predictor_key = (path, os.path.getmtime(path))  # a checkpoint rewritten in place is another model
except (CheckpointError, OSError, ValueError) as err:  # ValueError: weights damaged or not cached (deleted)
    st.error(error_text(err))  # it may quote a path under the lab's home
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
    # Each model starts at its own default (occlusion for small inputs): occlusion chosen for a 28 px
    # digit would cost a ResNet-50 at 224 px some 200 forward passes per photo.
    if st.session_state.get("cam_for") != predictor_key[0] or st.session_state.get("cam_method") not in predict.METHODS:
        st.session_state["cam_method"] = predictor.default_method()
        st.session_state["cam_for"] = predictor_key[0]
    c0, c1, c2 = st.columns(3)
    method = c0.selectbox(
        t("predict.method"),
        predict.METHODS,
        key="cam_method",
        format_func=lambda m: t(f"predict.method.{m}"),
        help=t("predict.method_help"),
    )
    gradcam = method == "gradcam"
    layer = c1.selectbox(
        t("predict.cam_layer"), layers, key="cam_layer", help=t("predict.cam_layer_help"), disabled=not gradcam
    )
    alpha = c2.slider(t("predict.cam_alpha"), 0.0, 1.0, 0.5, step=0.05, key="cam_alpha")
    view = (method, layer if gradcam else None, alpha)  # occlusion has no layer: another keeps its answer
    # The browser refuses a larger file; imaging refuses it again for a client that skips the browser.
    # st.camera_input has no size option (Streamlit 1.67): its shots meet imaging's check alone.
    files = st.file_uploader(
        t("predict.upload"), type=IMAGE_TYPES, accept_multiple_files=True, max_upload_size=classroom.limit("photo_mb")
    )
    for f in files or []:
        show(predictor, f.file_id, f.name, f.getvalue(), view)
    shot = st.camera_input(t("predict.camera")) if st.toggle(t("predict.camera")) else None
    if shot is not None:
        show(predictor, shot.file_id, "camera.jpg", shot.getvalue(), view)
    drawn = None
    # A pad for the digits datasets; drawn dark on white, prepared as a photo of a page.
    if predictor.style == "digit" and drawpad.available() and st.toggle(t("predict.draw"), key="draw"):
        drawn = drawpad.drawing()
        if drawn is not None:
            show(predictor, drawn[0], t("predict.drawing"), drawn[1], view)
    # Answers no longer shown (a file removed, another checkpoint, method, layer or opacity) are let go.
    shown_ids = [f.file_id for f in [*(files or []), *([shot] if shot else [])]] + ([drawn[0]] if drawn else [])
    kept = {token(key, view) for key in shown_ids}
    memo = st.session_state.get("answers", {})
    for stale in [k for k in memo if k not in kept]:
        del memo[stale]


def show_gallery() -> None:
    try:
        with st.spinner(t("predict.evaluating")):
            result = gallery.evaluate(path, os.path.getmtime(path))
    except (OSError, ValueError, DatasetUnavailable) as err:  # a folder checkpoint's dataset may be gone
        st.error(error_text(err))  # it may name the folder: the user's text
        return
    gallery.render(result)


with tab_gallery:
    if tab_gallery.open and predictor.dataset == "imagenet":
        st.info(t("predict.no_gallery"))
    elif tab_gallery.open and predictor.dataset == teach.DATASET:  # a student's own classes: no test split
        st.info(t("predict.no_gallery_teach"))
    elif tab_gallery.open:  # not st.stop(): a stopped run would leave stale widget state unpruned
        show_gallery()
