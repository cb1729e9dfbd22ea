"""No run one student makes breaks a page for everyone: every page, in both languages, over a lab
holding every kind of run in every state (tests/zoo.py), and each run picked where a page lets
a visitor pick it. Also: which checkpoint a browser opens first."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core import catalog, runs, strategies
from tests import zoo
from tests.conftest import shown
from tests.test_pages import PAGES
from ui.i18n import catalogue


def widget(at: AppTest, kind: str, key: str, lang: str = "en"):
    """The widget of ``kind`` whose label is the catalogue's ``key``."""
    label = catalogue(lang)[key]
    return next(w for w in getattr(at, kind) if w.label == label)


@pytest.fixture
def zoo_lab(lab, monkeypatch):
    built = zoo.build()
    gone = zoo.vanished_row(lab)
    listing = runs.list_runs
    monkeypatch.setattr(runs, "list_runs", lambda: [*listing(), gone])  # deleted while a page reads
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # the zoo's queued runs stay queued
    return built


def render(page: str, lang: str) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = lang
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def assert_clean(at: AppTest, what: str) -> None:
    assert not at.exception, (what, [e.value for e in at.exception])
    said = [m.value for m in [*at.error, *at.warning, *at.info]]
    assert not any("/tmp/" in s for s in said), (what, said)  # no server path in a sentence to a student
    texts = said + [m.value for m in [*at.markdown, *at.caption]]
    assert not any("Traceback" in s or "KeyError" in s for s in texts), (what, texts)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_over_every_kind_of_run(zoo_lab, page, lang):
    assert_clean(render(page, lang), page)


def test_the_train_page_shows_each_run_of_the_zoo(zoo_lab):
    at = render("train", "en")  # AppTest formats a widget's value outside the page: in English
    options = widget(at, "selectbox", "train.pick").options
    assert len(options) == len(runs.list_runs())
    for option in options:
        widget(at, "selectbox", "train.pick").set_value(option)
        widget(at, "button", "train.watch").click().run()  # the live panel draws the run
        assert_clean(at, option)


def test_the_transfer_page_lists_only_comparisons_and_shows_each(zoo_lab):
    groups = strategies.groups()
    assert sorted(groups) == sorted({"compare-0ld", runs._config(zoo_lab["compare-head"])["extra"]["group"]})
    at = render("transfer", "en")
    for group in groups:
        widget(at, "selectbox", "compare.group").set_value(group).run()
        assert_clean(at, group)
    table = strategies.table(runs._config(zoo_lab["compare-head"])["extra"]["group"])
    assert [r["strategy"] for r in table] == list(strategies.STRATEGIES)


def test_predict_opens_each_checkpoint_or_says_why_not(zoo_lab):
    at = render("predict", "en")
    labels = widget(at, "selectbox", "predict.checkpoint").options  # AppTest knows the shown labels only
    for label in labels:
        widget(at, "selectbox", "predict.checkpoint").set_value(label).run()
        assert_clean(at, label)
    torn = next(label for label in labels if label.startswith(zoo_lab["torn-best"].name + " "))
    widget(at, "selectbox", "predict.checkpoint").set_value(torn).run()
    assert len(at.error) == 1 and "not a readable PyTorch checkpoint" in shown(at.error[0].value)


def test_a_fresh_browser_never_opens_another_students_run(zoo_lab):
    box = widget(render("predict", "en"), "selectbox", "predict.checkpoint")
    # The newest on the server, listed first, is not the one opened: the shell's (the teacher's) run is.
    assert box.options[0].startswith(zoo_lab["newest-other"].name + " ")
    assert f"{zoo_lab['finished-cli'].name}/" in box.value  # untouched, AppTest gives the value itself


def test_own_run_then_the_pin_then_the_shipped_preset():
    own = {"run": "a", "owner": "me", "state": "finished", "kind": None, "checkpoint": "a/best.pt"}
    other = {"run": "b", "owner": "you", "state": "finished", "kind": None, "checkpoint": "b/best.pt"}
    mine_failed = {"run": "c", "owner": "me", "state": "failed", "kind": None, "checkpoint": "c/best.pt"}
    mine_theory = {"run": "d", "owner": "me", "state": "finished", "kind": "degradation", "checkpoint": "d/best.pt"}
    shipped = catalog.shipped()
    rows = [other, mine_failed, mine_theory, own, *shipped]
    assert rows[catalog.default(rows, "me")] is own
    assert rows[catalog.default(rows, "someone", "b/best.pt")] is other  # the teacher pinned it
    first = rows[catalog.default(rows, "someone")]
    assert first["kind"] == "shipped" and first["run"] == catalog.PRESET
    backwards = shipped[::-1]
    assert backwards[catalog.default(backwards, None)]["run"] == catalog.PRESET


def test_only_the_teacher_pins_and_every_browser_then_opens_the_pin(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_TEACHER_TOKEN", "s3cret")
    fashion = next(r["checkpoint"] for r in catalog.shipped() if r["run"] == "fashion-sample")
    from resnet_core.classroom import Actor, ClassroomError

    with pytest.raises(ClassroomError):
        catalog.pin(fashion, Actor(owner="student"))
    catalog.pin(fashion, Actor(owner="t", teacher=True))
    assert catalog.pinned() == fashion
    at = render("predict", "zh")
    assert widget(at, "selectbox", "predict.checkpoint", "zh").value == fashion
