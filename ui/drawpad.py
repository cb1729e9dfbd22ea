"""A drawing pad for the Predict page: a digit drawn with the mouse or a finger, sent as a PNG.

streamlit-drawable-canvas 0.13 (Fabric.js on Streamlit's Components v2): its JavaScript is in
the wheel and this server serves it, so the pad works without internet. Its toolbar's tooltips
(undo, redo, clear) are the component's own, in English; the caption above the pad says what the
icons do in the visitor's language. Without the package (an older install), the page offers no pad.

Imported when the pad is drawn, not with this module: the package registers its component on
import, which needs a running Streamlit (its manifest is read at start-up; an import outside a
page, in a test's collection, raises StreamlitAPIException).
"""

from __future__ import annotations

import hashlib
import importlib.util

import streamlit as st

from ui.i18n import t

SIDE = 280  # px on screen: ten per pixel of a 28 px digit
# The pen, in screen px. Any width reads: the preparation fits the digit in 20 px and thins or
# thickens the stroke to MNIST's (resnet_core.imaging); 18 px looks like a marker on the pad.
PEN = 18


def available() -> bool:
    """requirements.txt pins the package; a venv made before it was added has none."""
    return importlib.util.find_spec("streamlit_drawable_canvas") is not None


def drawing(key: str = "drawpad") -> tuple[str, bytes] | None:
    """The pad, dark ink on white as on paper (the preparation treats it as a photo of a page);
    returns (an id of the drawing, its PNG bytes), or None while nothing is drawn."""
    from streamlit_drawable_canvas import st_canvas

    result = st_canvas(
        stroke_width=PEN,
        stroke_color="#000000",
        background_color="#ffffff",
        height=SIDE,
        width=SIDE,
        drawing_mode="freedraw",
        return_image_data=True,
        key=key,
    )
    st.caption(t("predict.draw_help"))  # below the pad: its toolbar floats over what is above it
    png = result.image_bytes
    if not (result.json_data or {}).get("objects") or not png:
        return None  # an empty or cleared pad: no "no digit found" sentence for a blank page
    return "drawing-" + hashlib.sha1(png).hexdigest()[:16], png
