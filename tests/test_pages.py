"""One AppTest per page, in both languages: renders without exception, main widgets exist."""

import functools
import shutil
import string
import time

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from resnet_core import data, runs
from resnet_core.config import TrainConfig
from tests.conftest import digit_png, shown, tiny_config
from ui.i18n import catalogue

PAGES = ["home", "theory", "data", "train", "transfer", "predict", "teach"]


def app(page: str, lang: str = "en") -> AppTest:
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = lang
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def finished_run(lab, trained_run) -> str:
    """Place the session's trained checkpoint in the lab as a finished run."""
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    run_dir = runs.create(TrainConfig.from_dict({**ckpt["config"], "run_dir": None}))
    shutil.copy(trained_run / "best.pt", run_dir / "best.pt")
    runs.update_status(run_dir, state="finished", best_acc=ckpt["metrics"]["best_acc"], started=1, ended=2)
    return str(run_dir)


def test_catalogues_hold_the_same_keys_and_placeholders():
    en, zh = catalogue("en"), catalogue("zh")
    assert set(en) == set(zh)

    def fields(s):
        return {name for _, name, _, _ in string.Formatter().parse(s) if name}

    assert {k for k in en if fields(en[k]) != fields(zh[k])} == set()
    assert {f"dataset.{name}" for name in data.BUILTIN} <= set(en)  # the registry drives the titles


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_in_both_languages(lab, page, lang):
    at = app(page, lang)
    if page == "home":  # AppTest drops the frame's sidebar after switch_page, so check it here
        assert at.sidebar.selectbox(key="lang").value == lang
        assert at.title[0].value == "ResNet Lab"
    else:
        assert at.title[0].value == catalogue(lang)[f"{page}.title"]


def test_data_page_shows_counts_samples_and_pca(lab):
    at = app("data")
    assert at.selectbox(key="data_name").value == "mnist-sample"
    assert [m.value for m in at.metric][:3] == ["10", "8,000", "2,000"]
    assert len(at.tabs) == 5 and len(at.get("plotly_chart")) == 3
    assert len(at.get("image")) == 11  # a row of samples per class, and the mean images


def test_predict_page_labels_an_uploaded_digit(lab, trained_run, tmp_path):
    finished_run(lab, trained_run)
    at = app("predict")
    path, label = digit_png(tmp_path, 0)
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    assert not at.exception
    answer = [m.value for m in at.markdown if m.value.startswith("**")]
    classes = torch.load(trained_run / "best.pt", weights_only=True)["classes"]
    assert len(answer) == 1 and shown(answer[0]).split("**")[1] == classes[label]  # the digit it really is
    assert not at.metric  # the gallery's tab is closed: nothing of it runs
    at.session_state["predict_tab"] = catalogue("en")["predict.tab.gallery"]
    at.run()
    assert at.metric[0].label == catalogue("en")["predict.accuracy"]


def test_predict_page_says_one_sentence_for_a_bad_upload(lab, trained_run):
    finished_run(lab, trained_run)
    at = app("predict")
    at.file_uploader[0].set_value(("notes.png", b"not an image at all", "image/png")).run()
    assert not at.exception
    assert "not a readable image" in shown(at.error[0].value)


def test_predict_page_survives_every_hostile_upload_and_duplicate_names(lab, trained_run, tmp_path):
    from tests.test_imaging import animated_gif, drawing, encode, sixteen_bit

    finished_run(lab, trained_run)
    at = app("predict")
    digit, label = digit_png(tmp_path, 0)
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)), "JPEG")
    unreadable = [
        ("empty.png", b"", "empty"),
        ("notes.png", b"a text file renamed", "not a readable image"),
        ("cut.jpg", jpeg[: len(jpeg) // 2], "not a readable image"),
        ("bomb.png", encode(Image.new("L", (8000, 8000)), "PNG"), "too many"),
        ("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
    ]
    fine = [("cmyk.tif", drawing("CMYK", "TIFF")), ("deep.png", sixteen_bit()), ("anim.gif", animated_gif())]
    fine += [("clear.png", drawing("RGBA", "PNG")), ("palette.png", drawing("P", "PNG"))]
    fine += [("photo.webp", drawing("RGB", "WEBP")), ("scan.tiff", drawing("RGB", "TIFF"))]
    same = [("digit.png", digit.read_bytes()), ("digit.png", digit.read_bytes())]  # two files, one name
    dot = ("dot.png", encode(Image.new("RGB", (1, 1), "white"), "PNG"))
    uploads = [(n, b, "image/png") for n, b, _ in unreadable] + [(n, b, "image/png") for n, b in fine + same + [dot]]
    at.file_uploader[0].set_value(uploads).run()
    assert not at.exception
    errors = [shown(e.value) for e in at.error]  # escaped: a file name is the uploader's text
    assert len(errors) == len(unreadable)
    for (name, _, words), text in zip(unreadable, errors):
        assert name in text and words in text and "\n" not in text, text
    assert len(at.warning) == 1 and shown(at.warning[0].value).startswith("No digit found")  # the 1x1 image: no label
    classes = torch.load(trained_run / "best.pt", weights_only=True)["classes"]
    answers = [shown(m.value).split("**")[1] for m in at.markdown if m.value.startswith("**")]
    assert len(answers) == len(fine) + len(same)
    assert answers[-2:] == [classes[label]] * 2  # both files called digit.png answered, no duplicate key
    assert len(at.get("plotly_chart")) >= len(answers)


def test_predict_page_evaluates_the_gallery_once_per_checkpoint(lab, trained_run, tmp_path, monkeypatch):
    from resnet_core import predict

    finished_run(lab, trained_run)
    calls = []
    real = predict.evaluate_gallery
    monkeypatch.setattr(predict, "evaluate_gallery", lambda *a, **k: calls.append(a[1:]) or real(*a, **k))
    at = app("predict")
    path, _ = digit_png(tmp_path, 0)
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    assert not at.exception and calls == []  # the gallery's tab is closed: an upload evaluates nothing
    at.session_state["predict_tab"] = catalogue("en")["predict.tab.gallery"]
    at.run()
    at.run()
    assert not at.exception and calls == [()]  # two runs with the gallery open, one evaluation of the whole split
    assert any(m.value.startswith("**") for m in at.markdown)  # the upload's answer is still there


def test_an_upload_is_answered_once_however_often_the_page_reruns(lab, trained_run, tmp_path, monkeypatch):
    from resnet_core import predict

    finished_run(lab, trained_run)
    calls = []
    real = predict.Predictor.answer
    monkeypatch.setattr(predict.Predictor, "answer", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    at = app("predict")
    path, _ = digit_png(tmp_path, 0)
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    at.run()
    at.session_state["predict_tab"] = catalogue("en")["predict.tab.gallery"]  # a look at the gallery
    at.run()
    assert not at.exception and len(calls) == 1
    assert len([m for m in at.markdown if m.value.startswith("**")]) == 1  # the answer is still shown
    at.slider(key="cam_alpha").set_value(0.8).run()  # another Grad-CAM opacity: a new answer
    assert len(calls) == 2 and len(at.session_state["answers"]) == 1  # the old one let go


def test_train_page_shows_a_run_that_a_test_launched(lab):
    run_dir = runs.launch(tiny_config(max_train_batches=3, max_test_images=50))
    at = app("train")
    assert any(run_dir.name in h.value for h in at.subheader)
    assert run_dir.name in at.dataframe[0].value["run"].tolist()
    assert catalogue("en")["train.start"] in [b.label for b in at.button]
    assert len(at.get("progress")) >= 1


def test_transfer_page_shows_the_head_before_and_after(lab, trained_run):
    finished_run(lab, trained_run)
    at = app("transfer")
    at.selectbox(key="transfer_target").set_value("fashion-sample").run()
    codes = [c.value for c in at.code]
    assert codes == ["fc: Linear(64, 10)", "fc: Linear(64, 10)"]  # MNIST's 10 classes -> Fashion's 10
    assert len(at.radio) == 2


def test_data_page_offline_download_is_one_sentence(lab, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    at = app("data")
    at.selectbox(key="data_name").set_value("cifar10").run()
    assert "cifar10" in shown(at.info[0].value)
    at.button[0].click().run()
    assert not at.exception
    assert "unreachable" in shown(at.error[0].value) and "mnist-sample" in shown(at.error[0].value)


def measured(at: AppTest, charts: int = 6, timeout: float = 300) -> AppTest:
    """Rerun until the background measurement is drawn (a browser polls for it; AppTest does not)."""
    deadline = time.monotonic() + timeout
    while len(at.get("plotly_chart")) < charts and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()
    return at


def test_theory_page_draws_at_once_and_measures_each_setting_once_for_everyone(lab, monkeypatch):
    from resnet_core import theory

    calls, real = [], theory.gradient_flow

    @functools.wraps(real)  # the same name, so the page's background job is keyed the same
    def counted(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(theory, "gradient_flow", counted)
    at = app("theory")
    assert len(at.get("graphviz_chart")) == 2 and len(at.dataframe) == 4 and len(at.tabs) == 3
    at.select_slider[0].set_value(32).run()
    at.toggle[0].set_value(False).run()
    assert not at.exception
    # Drawn at once: the shipped degradation curves and block deletion; flow and shattered are measuring.
    assert len(at.get("plotly_chart")) == 3 and len(at.info) == 2
    measured(at)
    assert len(at.get("plotly_chart")) == 6 and not at.info and not at.exception
    assert any("Across the 31 convolutions" in c.value for c in at.caption)  # the caption of this setting
    other = app("theory")  # a second visitor asks for the same setting: drawn from the first one's result
    other.select_slider[0].set_value(32).run()
    other.toggle[0].set_value(False).run()
    assert len(other.get("plotly_chart")) == 6
    assert calls.count((32, False)) == 1
