"""Your classes in a real browser with a camera: Chromium's fake camera plays a video made from real
photos (ants, then bees, from ../shared/data/hymenoptera.zip), the page's camera takes shots into
two classes, the head trains, and a held-out ant, shown to the camera, is called an ant; another
browser sees none of it, and the saved run opens on Predict.

Chromium reads one video file per launch (``--use-file-for-fake-video-capture``), so each class is
shot from its own browser, carrying the first one's cookies: the same student, as after a reload.
Screenshots go to /tmp/shots/browser-teach-*.png, to look at.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)
from tests.test_browser import CHROMIUM, ROOT, open_page
from tests.test_browser_imagenet import server  # noqa: F401 (a fixture: serve.py, a lab holding the weights)
from ui.i18n import catalogue

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="pip install -r requirements-dev.txt"),
]

HYMENOPTERA = ROOT.parent / "shared" / "data" / "hymenoptera.zip"
SHOTS = Path("/tmp/shots")
PER_CLASS = 4  # shots per class
SECONDS_EACH = 1.0  # each photo's time in the video
# Held out from training: an ant and a bee of the validation split that a head trained on the first
# four training photos of each class calls right with p > 0.99 (measured), far from any rounding.
HELD_ANT, HELD_BEE = "val/ants/1124525276_816a07c17f.jpg", "val/bees/1032546534_06907fe3b3.jpg"


def photos(folder: str, n: int | None = None) -> list[Image.Image]:
    with zipfile.ZipFile(HYMENOPTERA) as zf:
        names = sorted(m for m in zf.namelist() if f"/{folder}" in m and m.lower().endswith(".jpg"))
        return [Image.open(io.BytesIO(zf.read(m))).convert("RGB") for m in names[:n]]


def y4m(images: list[Image.Image], path: Path, seconds_each: float = SECONDS_EACH, fps: int = 10) -> Path:
    """A YUV4MPEG2 video (what Chromium's fake camera reads) showing each image for a while, 640x480."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for im in images:
            ycc = np.asarray(im.resize((640, 480)).convert("YCbCr"))
            planes = [ycc[..., 0], *(np.asarray(Image.fromarray(ycc[..., i]).resize((320, 240))) for i in (1, 2))]
            frame = b"FRAME\n" + b"".join(p.astype(np.uint8).tobytes() for p in planes)
            f.write(frame * max(1, round(seconds_each * fps)))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    if not HYMENOPTERA.is_file():
        pytest.skip(f"{HYMENOPTERA} is absent (the team's shared data): no real photos to film")
    tmp = tmp_path_factory.mktemp("videos")
    with zipfile.ZipFile(HYMENOPTERA) as zf:
        held = {
            k: Image.open(io.BytesIO(zf.read(f"hymenoptera_data/{v}"))).convert("RGB")
            for k, v in (("ant", HELD_ANT), ("bee", HELD_BEE))
        }
    return {
        "ants": y4m(photos("train/ants/", PER_CLASS), tmp / "ants.y4m"),
        "bees": y4m(photos("train/bees/", PER_CLASS), tmp / "bees.y4m"),
        "held_ant": y4m([held["ant"]], tmp / "held_ant.y4m"),
        "held_bee": y4m([held["bee"]], tmp / "held_bee.y4m"),
    }


class Camera:
    """A Chromium whose camera plays ``video``, with a page in a context that has ``cookies``."""

    def __init__(self, playwright, video: Path, state: dict | None = None) -> None:
        args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--use-fake-ui-for-media-stream"]
        args += ["--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={video}"]
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        self.context = self.browser.new_context(viewport={"width": 1400, "height": 1000}, storage_state=state)
        self.context.grant_permissions(["camera"])
        self.page = self.context.new_page()

    def close(self) -> dict:
        state = self.context.storage_state()
        self.browser.close()
        return state


# True once the camera's video shows a picture: drawn on a canvas, its mean brightness is not black.
LIT = """(video) => {
  if (!video || video.readyState < 2 || !video.videoWidth) return false;
  const c = document.createElement('canvas'); c.width = 32; c.height = 24;
  const g = c.getContext('2d'); g.drawImage(video, 0, 0, 32, 24);
  const d = g.getImageData(0, 0, 32, 24).data; let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2];
  return s / (d.length / 4 * 3) > 20;
}"""


def idle(page) -> None:
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=120_000)


def take(page, label: str, name: str | None = None, wait_s: float = 0) -> None:
    """Press the camera widget's own button under the caption ``label``, once the video plays; with
    ``name``, wait until that class has one photo more (the camera is a new widget after a shot: a
    press on the old one while the page reruns would go to a widget that is gone)."""
    before = count(page, name) if name else 0
    widget = page.locator("[data-testid=stCameraInput]").filter(has_text=label)
    widget.locator("video").wait_for(timeout=60_000)
    # The camera starts again with each new widget (its video from the first frame), black at first.
    page.wait_for_function(LIT, arg=widget.locator("video").element_handle(), timeout=60_000)
    page.wait_for_timeout(wait_s * 1000)
    widget.get_by_role("button").filter(has_text="Take Photo").click()
    idle(page)
    if name:
        page.wait_for_function(
            "([name, n]) => [...document.querySelectorAll('[data-testid=stMarkdownContainer] p')]"
            ".some(p => p.innerText.startsWith(name + ' · ' + n + ' '))",
            arg=[name, before + 1],
            timeout=60_000,
        )


def count(page, name: str) -> int:
    text = page.locator("[data-testid=stMarkdownContainer] strong", has_text=name).first
    line = text.locator("xpath=ancestor::p").inner_text()
    return int(line.split("·")[1].strip().split()[0])


def shot(page, name: str, width: int = 1400) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(300)
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": width, "height": height + 40})
    page.wait_for_timeout(500)
    page.screenshot(path=str(SHOTS / f"browser-teach-{name}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_the_camera_teaches_ants_and_bees_and_a_held_out_ant_is_an_ant(server, videos):  # noqa: F811 (fixture)
    from playwright.sync_api import sync_playwright

    words = catalogue("en")
    with sync_playwright() as p:
        cam = Camera(p, videos["ants"])
        page = cam.page
        open_page(page, server, "teach")
        for name in ("ants", "bees"):
            page.get_by_label(words["teach.class.name"]).fill(name)
            page.get_by_role("button", name=words["teach.class.add"]).click()
            idle(page)
        for i in range(PER_CLASS):  # "ants" is chosen: the first class; shot i shows photo i of the video
            take(page, words["teach.add.camera"], "ants", wait_s=i * SECONDS_EACH + 0.3)
        assert count(page, "ants") == PER_CLASS
        state = cam.close()

        cam = Camera(p, videos["bees"], state)  # the same student (cookies), another camera
        page = cam.page
        open_page(page, server, "teach")
        page.locator("[data-testid=stRadio]").get_by_text("bees", exact=True).click()
        idle(page)
        for i in range(PER_CLASS):
            take(page, words["teach.add.camera"], "bees", wait_s=i * SECONDS_EACH + 0.3)
        shot(page, "bees-added")
        assert (count(page, "ants"), count(page, "bees")) == (PER_CLASS, PER_CLASS)
        page.get_by_role("button", name=words["teach.train.button"]).click()
        page.get_by_text(words["teach.held_out"]).wait_for(timeout=60_000)
        idle(page)
        state = cam.close()

        for video, want, lang in (("held_ant", "ants", "en"), ("held_bee", "bees", "zh")):
            cam = Camera(p, videos[video], state)
            page, words = cam.page, catalogue(lang)
            open_page(page, server, "teach", lang)
            page.get_by_role("button", name=words["teach.camera.here"]).click()  # a new tab: the camera to Try it
            idle(page)
            assert page.locator("[data-testid=stCameraInput]").count() == 1  # one camera on the page
            take(page, words["teach.try.camera"])
            page.get_by_text(words["teach.nearest"].split("**")[1]).wait_for(timeout=60_000)
            page.locator("[data-testid=stImage] img").nth(2 * PER_CLASS + 3).wait_for(timeout=60_000)
            idle(page)
            shot(page, f"try-{want}-{lang}")
            shot(page, f"try-{want}-{lang}-phone", width=390)  # a phone's width: the columns stack
            said = [s.strip() for s in page.locator("[data-testid=stMarkdownContainer] p > strong").all_inner_texts()]
            assert said.count(want) == 2, said  # its class's header, and the answer over the bars
            state = cam.close()

        words = catalogue("en")
        cam = Camera(p, videos["held_ant"])  # another student: a new browser, no cookies
        page = cam.page
        open_page(page, server, "teach")
        page.get_by_text(words["teach.none_yet"]).wait_for(timeout=30_000)
        cam.close()
