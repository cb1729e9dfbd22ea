"""Real-browser journey on the Transfer page: a strategy comparison launched from the page runs
as background runs and lands as a table and a chart (issue 10). Same server and chromium set-up
as tests/test_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, browser, open_page, page, serve_trained_run, server  # noqa: F401

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install chromium")


def test_comparing_strategies_from_the_page_fills_the_table_and_the_chart(server, page, trained_run):  # noqa: F811
    serve_trained_run(server, trained_run, "20000101-000000-mnist-sample-resnet20")
    open_page(page, server, "transfer")
    page.get_by_role("tab", name="Compare strategies").click()
    k = page.get_by_role("spinbutton", name="Labelled images per class (K; 0: all)")
    k.fill("5")  # no Enter: inside a form, Enter submits it
    page.locator("[data-testid=stForm]").get_by_role("spinbutton", name="Epochs").fill("1")
    page.get_by_role("button", name="Compare the four strategies").click()

    runs_root = Path(server["home"]) / "runs"
    cells = page.locator("[data-testid=stDataFrame] td")
    cells.filter(has_text="from scratch").first.wait_for(state="attached", timeout=60_000)
    assert len(list(runs_root.glob("*fashion-sample-resnet20*/config.json"))) == 4  # one click, four runs
    # Four runs of one step each, queued one after another: the table and chart follow them.
    chart = page.locator("[data-testid=stPlotlyChart]")
    for _ in range(600):
        texts = cells.all_text_contents()
        if texts.count("finished") == 4 and chart.count():
            break
        page.wait_for_timeout(500)
    texts = cells.all_text_contents()
    assert texts.count("finished") == 4, texts
    for name in ("head only", "last stage + head", "everything (backbone lr ÷ 10)", "from scratch"):
        assert name in texts
    assert chart.count() == 1 and page.locator("[data-testid=stException]").count() == 0
