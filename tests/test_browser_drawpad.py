"""The Predict page's drawing pad in a real browser: a digit drawn with the mouse is answered.

AppTest cannot render a custom component (tests/test_occlusion.py checks the page around it);
here Debian's chromium loads streamlit-drawable-canvas's bundled JavaScript from the server,
Playwright draws with mouse moves, and the page must show the preparation and the answer.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, browser, open_page, page, server  # noqa: F401 (fixtures)

# Not imported here: the package registers its component on import, which needs a running Streamlit.
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium"),
    pytest.mark.skipif(
        importlib.util.find_spec("streamlit_drawable_canvas") is None, reason="pip install -r requirements.txt"
    ),
]

# Strokes of a seven on the 280 px pad, in pad pixels: the bar, then the long diagonal. One pen
# stroke each, as a hand draws it.
SEVEN = [[(70, 60), (210, 60)], [(210, 60), (120, 240)]]


def draw(page, canvas, strokes, steps: int = 12) -> None:  # noqa: F811 (page is the fixture's)
    box = canvas.bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=steps)
        page.mouse.up()


def test_a_digit_drawn_on_the_pad_is_answered(server, page):  # noqa: F811 (fixtures)
    open_page(page, server, "predict")  # a fresh lab: the shipped digits preset
    page.get_by_text("Draw a digit", exact=True).click()
    canvas = page.locator("canvas.upper-canvas")  # Fabric.js draws its pointer events on the upper canvas
    canvas.wait_for(timeout=60_000)
    canvas.scroll_into_view_if_needed()
    draw(page, canvas, SEVEN)
    # Each stroke sends the drawing (on mouse up); the page answers the last one.
    answer = page.locator("[data-testid=stMarkdownContainer] strong").filter(has_text="7 - seven")
    answer.first.wait_for(timeout=60_000)
    page.get_by_text("what the answer needs (occlusion)", exact=True).wait_for(timeout=30_000)
    page.get_by_text("as the network sees it", exact=True).wait_for(timeout=30_000)
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.get_by_text("No digit found").count() == 0
