"""Predict: photos or the camera through a trained model, each preparation step, top-5, and a gallery."""

import os

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import predict
from resnet_core.checkpoints import CheckpointError
from ui.common import checkpoint_label, checkpoints, current_checkpoint, load_predictor, require_frame
from ui.i18n import t

require_frame("pages/predict.py")

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]


@st.cache_data(max_entries=16, show_spinner=False)
def gallery(path: str, mtime: float, n: int) -> dict:
    """Once per checkpoint file (path and modification time) and size, for every session: a rerun
    or an upload reuses it instead of evaluating the test images again."""
    return predict.gallery(load_predictor(path), n)


def enlarge(image: np.ndarray, side: int = 140) -> np.ndarray:
    """Nearest-neighbour upscaling, so a 28 px input is seen pixel by pixel."""
    k = max(1, side // max(image.shape[:2]))
    return image.repeat(k, 0).repeat(k, 1)


def show(predictor: predict.Predictor, key: str, name: str, raw: bytes) -> None:
    """One upload: its preparation step by step, then the answer or the sentence saying why not."""
    try:
        out = predictor.answer(raw, name)
    except predict.ImageError as err:
        st.error(str(err))
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
    frame = pd.DataFrame({"label": [r["label"] for r in top], "probability": [r["prob"] for r in top]})
    fig = px.bar(frame, x="probability", y="label", orientation="h", range_x=[0, 1], height=220)
    fig.update_layout(yaxis={"autorange": "reversed"}, margin={"t": 10, "b": 10})
    c.markdown(t("predict.answer", label=top[0]["label"], prob=top[0]["prob"]))
    c.plotly_chart(fig, key=f"top-{key}")  # the upload's own id: two files may share a name


st.title(t("predict.title"))
rows = checkpoints()
if not rows:
    st.info(t("predict.no_checkpoint"))
    st.page_link("pages/train.py", label=t("predict.go_train"), icon=":material/arrow_forward:")
    st.stop()
paths = [f"{r['path']}/best.pt" for r in rows]
current = current_checkpoint()
path = st.selectbox(
    t("predict.checkpoint"),
    paths,
    index=paths.index(current) if current in paths else 0,
    format_func=lambda p: checkpoint_label(rows[paths.index(p)]),
)
try:
    predictor = load_predictor(path)
except (CheckpointError, OSError) as err:
    st.error(str(err))
    st.stop()


tab_upload, tab_gallery = st.tabs([t("predict.tab.upload"), t("predict.tab.gallery")])
with tab_upload:
    st.caption(t("predict.hint", style=t(f"predict.style.{predictor.style}")))
    files = st.file_uploader(t("predict.upload"), type=IMAGE_TYPES, accept_multiple_files=True)
    for f in files or []:
        show(predictor, f.file_id, f.name, f.getvalue())
    if st.toggle(t("predict.camera")):
        shot = st.camera_input(t("predict.camera"))
        if shot is not None:
            show(predictor, "camera", "camera.jpg", shot.getvalue())

with tab_gallery:
    n = st.slider(t("predict.gallery_n"), 8, 200, 40, step=8)
    try:
        g = gallery(path, os.path.getmtime(path), n)
    except (OSError, ValueError) as err:  # the dataset of a folder checkpoint may be gone
        st.error(str(err))
        st.stop()
    correct = [p == y for p, y in zip(g["preds"], g["targets"])]
    st.metric(t("predict.accuracy"), f"{g['accuracy']:.1%}", help=t("predict.accuracy_help", n=n))
    cols = st.columns(8)
    for i, image in enumerate(g["images"]):
        pred, actual = g["classes"][g["preds"][i]], g["classes"][g["targets"][i]]
        caption = pred if correct[i] else t("predict.mistake", pred=pred, actual=actual)
        seen = image.permute(1, 2, 0).numpy()
        cols[i % 8].image(enlarge(seen[..., 0] if seen.shape[-1] == 1 else seen, 84), caption=caption)
    left, right = st.columns(2)
    left.plotly_chart(
        px.bar(x=g["classes"], y=g["per_class"], labels={"x": "", "y": t("predict.per_class")}, range_y=[0, 1]),
        key="per_class",
    )
    right.plotly_chart(
        px.imshow(
            g["confusion"],
            x=g["classes"],
            y=g["classes"],
            text_auto=True,
            labels={"x": t("predict.predicted"), "y": t("predict.actual")},
        ),
        key="confusion",
    )
