"""Predicting on what users bring: photos of digits on paper, odd modes, hostile files."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, predict


@pytest.fixture(scope="module")
def predictor(trained_run):
    return predict.Predictor.from_checkpoint(trained_run / "best.pt")


def test_a_bundled_test_digit_passes_through_nearly_unchanged(lab):
    digit = data.load_dataset("mnist-sample", "test").images[3, 0]
    out = predict.prepare(Image.fromarray(digit.numpy()).convert("RGB"), "digit", 28, 1)
    assert out.shape == (1, 28, 28) and out.dtype == torch.uint8
    # Already fitted and centred: re-fitting moves mass by at most a pixel or two.
    diff = (out[0].float() - digit.float()).abs().mean() / 255
    assert diff < 0.08


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
    assert hits >= original - 4, (hits, original)


@pytest.mark.parametrize("mode", ["RGBA", "P", "I;16", "CMYK", "LA", "1"])
def test_unusual_image_modes_are_accepted(mode):
    base = Image.new("RGB", (60, 40), "white")
    base.paste((0, 0, 0), (20, 10, 30, 30))
    buf = io.BytesIO()
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257)
    else:
        image = base.convert(mode)
    image.save(buf, format="TIFF" if mode in ("I;16", "CMYK") else "PNG")
    out = predict.prepare(predict.open_image(buf.getvalue()), "digit", 28, 1)
    assert out.max() > 200 and out[0, 0, 0] == 0


def test_exif_rotation_is_undone():
    image = Image.new("RGB", (60, 20), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif)
    assert predict.open_image(buf.getvalue()).size == (20, 60)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "empty"),
        (b"hello, I am a text file", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not a readable image"),
        (b"x" * (predict.MAX_BYTES + 1), "larger than"),
    ],
)
def test_hostile_uploads_get_one_sentence(payload, match):
    with pytest.raises(predict.ImageError, match=match) as info:
        predict.open_image(payload, "upload.png")
    assert "\n" not in str(info.value)


def test_decompression_bomb_is_refused():
    buf = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buf, format="PNG")  # 64 Mpx of zeros compresses to kilobytes
    assert len(buf.getvalue()) < 200_000
    with pytest.raises(predict.ImageError, match="too many"):
        predict.open_image(buf.getvalue())


def test_natural_style_resizes_and_crops():
    out = predict.prepare(Image.new("RGB", (300, 200), (10, 200, 30)), "natural", 64, 3)
    assert out.shape == (3, 64, 64) and out[1].float().mean() == pytest.approx(200, abs=1)


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
    # the 98.75 % preset model; this briefly trained fixture must still clear 1.3.
    assert np.mean(inside) > 1.3 * np.mean(outside), (np.mean(inside), np.mean(outside))
    rgb = predict.overlay(test.images[0], cam)
    assert rgb.shape == (28, 28, 3) and rgb.dtype == np.uint8
