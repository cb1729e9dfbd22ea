"""Predicting on what users bring: photos of digits on paper, empty pages, hostile files, Grad-CAM.

Decoding and preparation are tested on their own in test_imaging.py; here they meet a model.
"""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, predict
from tests.conftest import CHECKPOINTS

# The default presets' checkpoints and a fixed set of photo-like test images, built by
# `python scripts/build_photo_fixtures.py` (the preset trainings as a user runs them, then
# scripts/make_photos.py on held-out test images): the tests do not train for minutes.
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def predictor(trained_run):
    return predict.Predictor.from_checkpoint(trained_run / "best.pt")


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_a_bundled_test_digit_as_a_png_is_its_tensor(lab, predictor):
    test = data.load_dataset("mnist-sample", "test")
    for i in range(20):
        prepared = predictor.prepare(png(test.images[i, 0].numpy()), "digit.png")
        assert prepared.shape == (1, 28, 28)
        assert (prepared.float() - test.images[i].float()).abs().mean() < 1  # within a grey level on average


def test_photo_of_dark_ink_on_white_paper_reads_like_mnist(lab, predictor):
    test = data.load_dataset("mnist-sample", "test")
    hits = 0
    for i in range(40):
        ink = 255 - test.images[i, 0].numpy()  # black digit on white paper
        big = Image.fromarray(ink).resize((280, 280), Image.Resampling.BILINEAR)
        canvas = Image.new("L", (400, 320), 235)  # off-white page, digit off-centre
        canvas.paste(big, (90, 10))
        prepared = predictor.prepare(canvas.convert("RGB"))
        assert prepared[0, 0, 0] == 0, "background must become black, as in MNIST"
        hits += predictor.top_k(prepared, 1)[0]["index"] == int(test.targets[i])
    original = sum(predictor.top_k(test.images[i], 1)[0]["index"] == int(test.targets[i]) for i in range(40))
    assert hits >= original - 2, (hits, original)


def test_an_answer_has_steps_a_label_and_grad_cam(lab, predictor):
    test = data.load_dataset("mnist-sample", "test")
    page = Image.new("L", (300, 240), 230)
    page.paste(Image.fromarray(255 - test.images[0, 0].numpy()).resize((168, 168)), (60, 30))
    buf = io.BytesIO()
    page.save(buf, format="JPEG", quality=80)
    out = predictor.answer(buf.getvalue(), "page.jpg")
    assert out["problem"] is None and len(out["top"]) == 5
    assert out["top"][0]["label"] == predictor.classes[int(test.targets[0])]
    assert out["cam"].shape == (28, 28, 3) and out["cam"].dtype == np.uint8
    assert list(out["prepared"].steps) == ["original", "flattened", "thresholded", "cropped", "seen"]


def test_an_empty_page_gets_a_sentence_not_a_label(predictor):
    rng = np.random.default_rng(0)
    blank = np.clip(235 + rng.normal(0, 4, (300, 400)), 0, 255).astype(np.uint8)
    out = predictor.answer(png(blank), "blank.png")
    assert out["top"] == [] and out["cam"] is None
    assert out["problem"].startswith("No digit found") and "\n" not in out["problem"]


def test_predict_files_reports_each_file_and_never_stops(tmp_path, predictor):
    good = tmp_path / "digit.png"
    Image.fromarray(data.load_dataset("mnist-sample", "test").images[0, 0].numpy()).save(good)
    broken, blank = tmp_path / "broken.png", tmp_path / "blank.png"
    broken.write_bytes(b"not a png")
    Image.new("L", (200, 200), 240).save(blank)
    rows = predictor.predict_files([broken, good, blank, tmp_path / "missing.png"], k=3)
    assert [("top" in r, "error" in r) for r in rows] == [(False, True), (True, False), (False, True), (False, True)]
    assert "not a readable image" in rows[0]["error"] and "No digit found" in rows[2]["error"]
    assert "no such file" in rows[3]["error"] and len(rows[1]["top"]) == 3


def test_grad_cam_looks_at_the_ink_not_the_background(lab, predictor):
    test = data.load_dataset("mnist-sample", "test")
    inside, outside = [], []
    for i in range(20):
        image = test.images[i]
        cam, target = predictor.explain(image)
        assert cam.shape == (28, 28) and float(cam.min()) >= 0 and float(cam.max()) <= 1
        assert target == predictor.top_k(image, 1)[0]["index"]
        ink = image[0] > 0
        inside.append(float(cam[ink].mean()))
        outside.append(float(cam[~ink].mean()))
    # Heat sits on and around the strokes. Measured ink/background ratio: 1.87 over 50 test digits for
    # the shipped 98.75 % ResNet-20 (this fixture); 1.3 leaves room for another CPU's rounding.
    assert np.mean(inside) > 1.3 * np.mean(outside), (np.mean(inside), np.mean(outside))
    rgb = predict.overlay(test.images[0], cam)
    assert rgb.shape == (28, 28, 3) and rgb.dtype == np.uint8


def preset_predictor(dataset: str) -> predict.Predictor:
    return predict.Predictor.from_checkpoint(CHECKPOINTS / f"{dataset}.pt")


@pytest.mark.parametrize(
    ("dataset", "folder", "goal"),
    [
        ("mnist-sample", "digits", 0.97),
        # Measured with the shipped preset checkpoints on the 240 + 240 fixed photos (2-core box):
        # digits 237/240 = 98.75 % (the tutorial net, 8 epochs), clothes 196/240 = 81.7 %.
        ("fashion-sample", "clothes", 0.80),
    ],
)
def test_the_default_presets_read_photo_like_images(lab, dataset, folder, goal):
    """Issue 8's goals on the fixed set (lit unevenly, shadowed, tilted, noisy, blurred, JPEG'd)."""
    p = preset_predictor(dataset)
    files = sorted((FIXTURES / "photos" / folder).glob("*.jpg"))
    assert len(files) >= 200
    hits = 0
    for f in files:
        out = p.answer(f.read_bytes(), f.name, k=1, method="gradcam")  # the labels are judged: the cheaper map
        hits += bool(out["top"]) and out["top"][0]["index"] == int(f.stem.split("-")[1])
    assert hits / len(files) >= goal, f"{hits}/{len(files)}"


@pytest.mark.parametrize("dataset", ["mnist-sample", "fashion-sample"])
def test_test_images_uploaded_as_png_score_as_their_tensors(lab, dataset):
    """The upload path costs a clean dataset image nothing: within 1 point over the whole test split."""
    p = preset_predictor(dataset)
    test = data.load_dataset(dataset, "test")
    uploads = torch.stack([p.prepare(png(image), "test.png") for image in test.images[:, 0].numpy()])
    as_png = (p.probabilities(uploads).argmax(1) == test.targets).float().mean()
    as_tensor = (p.probabilities(test.images).argmax(1) == test.targets).float().mean()
    assert abs(float(as_png - as_tensor)) <= 0.01, (float(as_png), float(as_tensor))
