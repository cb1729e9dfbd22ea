"""The Predict page's ImageNet ResNet-50 in a real browser: a server whose lab holds the real
converted weights (tests/imagenet_real.py), a foolbox photo uploaded through the page's file input,
and the answer, its top-5 chart and its Grad-CAM map, in English and in Chinese.

Debian's chromium driven by Playwright, as tests/test_browser.py; the server is started by
scripts/serve.py (torch imported before it listens, so the first page does not wait for it). A
full-page screenshot of each language goes to /tmp/shots/browser-imagenet-<lang>.png, to look at.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)
from tests.test_browser import CHROMIUM, ROOT, browser, free_port, open_page, page  # noqa: F401 (fixtures)
from ui.i18n import LOCALES, catalogue

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="pip install -r requirements-dev.txt"),
]

SHOTS = Path("/tmp/shots")
PHOTO = "imagenet_00_243.jpg"  # a bull mastiff: ImageNet class 243
INDEX = 243


@pytest.fixture(scope="module")
def server(tmp_path_factory, real):  # noqa: F811 (the fixture)
    """scripts/serve.py on a free localhost port; its fresh lab's weights folder holds the real
    converted ResNet-50, as `weights get` leaves it, and torch's hub folder is empty, so the page
    uses these weights whatever this machine has cached for torchvision."""
    tmp = tmp_path_factory.mktemp("browser-imagenet")
    home = tmp / "lab"
    (home / "weights").mkdir(parents=True)
    (home / "weights" / real["pth"].name).symlink_to(real["pth"])
    port = free_port()
    env = {**os.environ, "RESNET_LAB_HOME": str(home), "TORCH_HOME": str(tmp / "torch")}
    command = [sys.executable, "scripts/serve.py", "--server.port", str(port), "--server.address", "127.0.0.1"]
    command += ["--server.headless", "true"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("the server did not answer /_stcore/health in 60 s")
        yield {"url": url, "home": home}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def readable_name(real, lang: str) -> str | None:  # noqa: F811 (the fixture's value)
    """What the page should call class INDEX: the weights' own name with spaces in English; in
    Chinese ui/locales/imagenet.zh.json's, or None while that file or its entry is not written."""
    if lang == "en":
        import torch

        return torch.load(real["pth"], weights_only=True, mmap=True)["classes"][INDEX].replace("_", " ")
    path = LOCALES / "imagenet.zh.json"
    names = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    return names[INDEX] if len(names) > INDEX and names[INDEX] else None


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_photo_is_answered_by_the_imagenet_resnet50(server, page, real, lang):  # noqa: F811 (fixtures)
    words = catalogue(lang)
    name = readable_name(real, lang)
    if name is None:
        pytest.skip(f"ui/locales/imagenet.zh.json has no name for class {INDEX} yet: nothing to check in Chinese")
    if lang == "en":
        assert name == "bull mastiff"
    main = page.locator("[data-testid=stMain]")
    open_page(page, server, "predict", lang)
    # The main area's model box: the sidebar's language box comes first in the page.
    main.locator("[data-testid=stSelectbox]").first.click()
    page.get_by_role("option", name=words["predict.imagenet"], exact=True).click()
    # The weights are on this server: where they came from, no button to get them.
    main.get_by_text(words["predict.imagenet_hint"].format(resize=256, size=224)).wait_for(timeout=60_000)
    cfg = real["cfg"]
    here = words["pretrained.here"].format(
        name=cfg.name, source=cfg.source, licence=words["pretrained.licence.npm"], top1=f"{cfg.top1:.1f}"
    )
    main.get_by_text(here).wait_for(timeout=30_000)
    assert main.locator("[data-testid=stAlert]").count() == 0  # neither the sentence nor an error
    main.locator("input[type=file]").first.set_input_files(real["photos"][0].parent / PHOTO)

    answer = main.locator("[data-testid=stMarkdownContainer] strong")
    chart = main.locator("[data-testid=stPlotlyChart]")
    chart.first.wait_for(timeout=60_000)
    answer.first.wait_for(timeout=30_000)
    # Plotly draws the bars' names as SVG text once it has laid the chart out.
    bars = chart.first.locator("g.ytick text")
    bars.nth(4).wait_for(timeout=30_000)
    top5 = [t.strip() for t in bars.all_text_contents()]
    assert len(top5) == 5 and name in top5, top5
    assert answer.first.inner_text() in top5  # the answer in words is the first bar
    main.get_by_text(words["predict.cam"], exact=True).wait_for(timeout=30_000)  # the heat map's title
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
    # Taken before the checks: a failure's page is the one to see. Streamlit scrolls its main area, not
    # the document, so a full-page shot is the window: the window is made as tall as the page first.
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": height + 40})
    page.wait_for_timeout(500)  # Plotly redraws on a resize
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"browser-imagenet-{lang}.png"), full_page=True)
    assert page.locator("[data-testid=stException]").count() == 0
    for step in ("original", "seen"):  # a photo's two steps: as sent, and the centre crop the network sees
        assert main.get_by_text(words[f"predict.step.{step}"], exact=True).count() == 1
    assert main.locator("[data-testid=stImage] img").count() == 4  # the two steps, the map and its colour scale
