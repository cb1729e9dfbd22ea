"""imaging: hostile files decode or get one sentence; crafted photos come out as the dataset's images look.

The oracle for the preparations is the dataset itself: a real test digit (or garment) is drawn
onto a crafted page, lit badly, and the prepared 28x28 must match the original image.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, imaging


@pytest.fixture(scope="module")
def digits():
    test = data.load_dataset("mnist-sample", "test")
    return test.images[:, 0].numpy(), test.targets.numpy()


@pytest.fixture(scope="module")
def clothes():
    test = data.load_dataset("fashion-sample", "test")
    return test.images[:, 0].numpy(), test.targets.numpy()


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Decoding: every hostile case works or gets one sentence naming what to use instead


def one_sentence(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and text.endswith(".") and text.count(". ") == 0, text
    return text


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"", "empty"),
        (b"hello, I am a text file renamed .png", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not a readable image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "SVG"),
        (b"<svg width='10' height='10'></svg>", "SVG"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not a readable image"),  # never Ghostscript
        (b"x" * (imaging.max_bytes() + 1), "larger than"),
    ],
)
def test_files_that_are_not_images_get_one_sentence_naming_the_formats(payload, words):
    with pytest.raises(imaging.ImageError) as info:
        imaging.decode(payload, "upload.png")
    text = one_sentence(info.value)
    assert words in text and "upload.png" in text
    if words != "larger than":
        assert "PNG, JPEG" in text


def test_a_truncated_jpeg_is_caught_although_verify_passes_it():
    rng = np.random.default_rng(0)
    jpeg = encode(Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)), "JPEG", quality=90)
    cut = jpeg[: len(jpeg) // 2]
    Image.open(io.BytesIO(cut)).verify()  # the old check: passes
    with pytest.raises(imaging.ImageError, match="not a readable image"):
        imaging.decode(cut, "photo.jpg")
    with pytest.raises(imaging.ImageError):
        imaging.decode(cut, "photo.jpg", max_side=64)  # the quick scan decodes all the data too


def test_a_decompression_bomb_is_refused_before_its_pixels_are_held():
    png = encode(Image.new("L", (8000, 8000)), "PNG")  # 64 Mpx of zeros: a few kilobytes
    assert len(png) < 200_000
    with pytest.raises(imaging.ImageError, match="too many"):
        imaging.decode(png)


def test_exif_rotation_is_undone():
    image = Image.new("RGB", (60, 20), "white")
    image.paste((0, 0, 0), (0, 0, 10, 20))  # a black bar on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": the left edge goes on top
    out = np.asarray(imaging.decode(encode(image, "JPEG", exif=exif, quality=95)))
    assert out.shape == (60, 20, 3)
    assert out[:8].mean() < 60 and out[20:].mean() > 200


def sixteen_bit() -> bytes:
    arr = np.full((40, 60), 65535, dtype=np.uint16)
    arr[10:30, 20:30] = 0
    return encode(Image.fromarray(arr), "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("L", (40, 40), 255), Image.new("L", (40, 40), 0)]
    frames[0].paste(0, (15, 5, 25, 35))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def drawing(mode: str, fmt: str) -> bytes:
    """A black bar on white; transparent modes draw it on a transparent canvas instead."""
    base = Image.new("RGB", (60, 40), "white")
    base.paste((0, 0, 0), (20, 10, 30, 30))
    if mode in ("RGBA", "LA", "PA"):
        clear = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
        clear.paste((0, 0, 0, 255), (20, 10, 30, 30))
        return encode(clear.convert(mode) if mode != "PA" else clear, fmt)
    if mode == "P-transparent":
        p = base.convert("P")
        return encode(p, fmt, transparency=p.getpixel((0, 0)))
    return encode(base.convert(mode), fmt)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(drawing("RGBA", "PNG"), id="rgba-png"),
        pytest.param(drawing("LA", "PNG"), id="la-png"),
        pytest.param(drawing("P", "PNG"), id="palette-png"),
        pytest.param(drawing("P-transparent", "PNG"), id="palette-transparent"),
        pytest.param(drawing("1", "PNG"), id="1-bit"),
        pytest.param(drawing("CMYK", "JPEG"), id="cmyk-jpeg"),
        pytest.param(drawing("CMYK", "TIFF"), id="cmyk-tiff"),
        pytest.param(drawing("RGB", "TIFF"), id="tiff"),
        pytest.param(drawing("RGB", "WEBP"), id="webp"),
        pytest.param(drawing("RGB", "BMP"), id="bmp"),
        pytest.param(drawing("L", "GIF"), id="gif"),
        pytest.param(sixteen_bit(), id="16-bit-png"),
        pytest.param(animated_gif(), id="animated-gif"),
    ],
)
def test_every_mode_becomes_rgb_with_a_dark_bar_on_white(payload):
    image = imaging.decode(payload)
    assert image.mode == "RGB"
    arr = np.asarray(image.convert("L"), dtype=float)
    bar = arr[10:30, 20:30] if arr.shape == (40, 60) else arr[5:35, 15:25]  # the GIF's bar is upright
    assert bar.mean() < 60, "the bar must stay dark"
    assert arr[0, 0] > 200, "the background (transparent or white) must be white"
    out = imaging.prepare(image, "digit", 28, 1)
    assert out.problem is None and out.tensor.max() == 255 and out.tensor[0, 0, 0] == 0


def test_sixteen_bit_keeps_its_brightness():
    arr = np.full((20, 20), 32768, dtype=np.uint16)  # mid grey in 16 bits: mid grey in 8, not stretched
    assert abs(np.asarray(imaging.decode(encode(Image.fromarray(arr), "PNG")))[..., 0].mean() - 128) < 2


def test_a_one_pixel_image_gets_a_sentence_not_a_label():
    out = imaging.prepare(imaging.decode(encode(Image.new("RGB", (1, 1), "white"), "PNG")), "digit", 28, 1)
    assert out.problem and "No digit found" in out.problem
    assert out.tensor.shape == (1, 28, 28) and out.tensor.max() == 0


def test_check_names_the_problem_and_passes_good_files(tmp_path):
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    rng = np.random.default_rng(1)
    jpeg = encode(Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)), "JPEG")
    good.write_bytes(jpeg)
    bad.write_bytes(jpeg[: len(jpeg) * 2 // 3])
    assert imaging.check(good) is None
    assert "bad.jpg" in imaging.check(bad)


# ---------------------------------------------------------------------------------------------
# Preparation: crafted photos, with the dataset image they were drawn from as the oracle


def otsu_oracle(values: np.ndarray) -> float:
    """Brute force: the cut maximising between-class variance, over every candidate."""
    best, cut = -1.0, 0.0
    for t in np.linspace(0, 1, 257)[1:-1]:
        a, b = values[values < t], values[values >= t]
        if len(a) and len(b):
            v = len(a) * len(b) * (a.mean() - b.mean()) ** 2
            if v > best:
                best, cut = v, t
    return cut


def test_otsu_matches_brute_force_and_splits_two_modes():
    rng = np.random.default_rng(0)
    values = np.clip(np.concatenate([rng.normal(0.1, 0.03, 900), rng.normal(0.7, 0.1, 100)]), 0, 1)
    t = imaging.otsu(values)
    assert 0.15 < t < 0.55
    assert abs(t - otsu_oracle(values)) <= 1 / 128


def page(
    ink: np.ndarray,
    size: tuple[int, int] = (400, 300),
    paper: tuple[int, int, int] = (244, 244, 238),
    scale: float = 9.0,
    centre: tuple[int, int] = (150, 200),
    colour: tuple[int, int, int] = (20, 20, 25),
) -> np.ndarray:
    """A dataset image (light on black, 28x28) drawn as ink on paper: float RGB (H, W, 3) in [0, 1]."""
    w, h = size
    out = np.ones((h, w, 3), dtype=np.float32) * np.array(paper, dtype=np.float32) / 255
    side = round(28 * scale)
    alpha = np.asarray(Image.fromarray(ink).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    alpha = np.clip(alpha, 0, 1)[..., None]
    top, left = centre[0] - side // 2, centre[1] - side // 2
    region = out[top : top + side, left : left + side]
    region[:] = region * (1 - alpha) + alpha * np.array(colour, dtype=np.float32) / 255
    return out


def gradient(shape: tuple[int, int], drop: float = 0.25) -> np.ndarray:
    """Light falling by ``drop`` from the top-left corner to the bottom-right one."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return (1 - drop * (xx / w + yy / h) / 2)[..., None]


def photo(arr: np.ndarray, noise: float = 3.0, seed: int = 0, quality: int = 85) -> Image.Image:
    """Sensor noise and a JPEG round trip."""
    rng = np.random.default_rng(seed)
    noisy = np.clip(arr * 255 + rng.normal(0, noise, arr.shape), 0, 255).astype(np.uint8)
    return imaging.decode(encode(Image.fromarray(noisy), "JPEG", quality=quality))


def agreement(prepared: torch.Tensor, original: np.ndarray) -> float:
    """Pearson correlation of the prepared 28x28 with the dataset image it came from."""
    return float(np.corrcoef(prepared[0].numpy().ravel().astype(float), original.ravel().astype(float))[0, 1])


def test_dataset_images_pass_through_unchanged(digits, clothes):
    for images, style in ((digits[0], "digit"), (clothes[0], "item")):
        for i in range(50):
            rgb = Image.fromarray(images[i]).convert("RGB")
            out = imaging.prepare(rgb, style, 28, 1)
            assert out.problem is None
            diff = np.abs(out.tensor[0].numpy().astype(int) - images[i].astype(int))
            assert diff.mean() < 3, (style, i, diff.mean())  # re-fitting an already fitted image: a no-op


CRAFTED = {
    "gradient-lit page": lambda a: a * gradient(a.shape[:2], 0.25),
    # a hand's shadow, 40 % darker, its penumbra 4 px (at 400 px) wide, right through the digit
    "shadow across the digit": lambda a: a * (1 - 0.4 / (1 + np.exp((np.arange(a.shape[1]) - 210) / 4)))[None, :, None],
    "coloured paper": None,  # drawn on yellow paper below
    "vignetting and dim exposure": lambda a: a * (0.8 - 0.2 * gradient(a.shape[:2], 1.0) ** 2),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_badly_lit_page_comes_out_as_the_mnist_digit(digits, case):
    images, _ = digits
    scores = []
    for i in range(8):
        arr = page(images[i], paper=(250, 236, 150) if case == "coloured paper" else (244, 244, 238))
        if CRAFTED[case] is not None:
            arr = CRAFTED[case](arr)
        out = imaging.prepare(photo(arr, seed=i), "digit", 28, 1)
        assert out.problem is None, out.problem
        assert out.tensor[0, 0, 0] == 0 and out.tensor[0, -1, -1] == 0  # black background, as MNIST
        scores.append(agreement(out.tensor, images[i]))
    assert min(scores) > 0.8 and np.mean(scores) > 0.9, scores  # a "1" is 2 px wide: a pixel's shift costs


def test_the_flattened_page_is_even_where_the_light_was_not(digits):
    arr = page(digits[0][0]) * gradient((300, 400), 0.25)
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    flat = out.steps["flattened"].astype(float).mean(-1)
    paper = flat[:40].ravel()  # the top band: paper only, lit 0-12 % less from left to right
    assert paper.mean() > 235 and np.percentile(paper, 5) > 220
    raw = np.asarray(photo(arr), dtype=float).mean(-1)
    assert raw[-20:, -20:].mean() < 0.82 * raw[:20, :20].mean()  # the photo itself was uneven


def test_specks_and_a_pen_mark_are_dropped(digits):
    images, _ = digits
    arr = page(images[1])
    rng = np.random.default_rng(2)
    for y, x in rng.integers(10, 290, (40, 2)):  # dust and pen dots, 2-4 px, on the paper around the digit
        if not (10 < y < 290 and 60 < x < 340):
            arr[y : y + rng.integers(2, 5), x : x + rng.integers(2, 5)] = 0.1
    arr[20:26, 20:60] = 0.15  # a short pen mark far from the digit
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    clean = imaging.prepare(photo(page(images[1])), "digit", 28, 1)
    assert agreement(out.tensor, clean.tensor[0].numpy()) > 0.97  # as if the page had been clean
    assert agreement(out.tensor, images[1]) > 0.85
    assert (out.steps["thresholded"] == 90).any()  # shown as dropped on the page


def test_ruled_lines_are_removed_even_across_the_digit(digits):
    images, _ = digits
    arr = page(images[2])
    for y in range(15, 300, 34):
        arr[y : y + 2] *= np.array([0.7, 0.78, 0.92], dtype=np.float32)  # faint blue lines
    arr[:, 60:62] *= np.array([1.0, 0.75, 0.75], dtype=np.float32)  # a red margin
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    assert out.problem is None
    assert agreement(out.tensor, images[2]) > 0.85


def test_chalk_on_a_dark_board_is_read_too(digits):
    images, _ = digits
    arr = 1 - page(images[3], paper=(240, 240, 240), colour=(40, 40, 40))  # light strokes on a dark board
    arr = arr * gradient(arr.shape[:2], 0.2) + 0.08
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    assert agreement(out.tensor, images[3]) > 0.85


def test_an_empty_page_says_so_instead_of_guessing():
    arr = np.ones((300, 400, 3), dtype=np.float32) * 0.93 * gradient((300, 400), 0.25)
    out = imaging.prepare(photo(arr, noise=6), "digit", 28, 1, "digit")
    assert out.problem and out.problem.startswith("No digit found")
    assert out.tensor.max() == 0


def test_an_object_touching_every_edge_is_refused():
    arr = np.ones((300, 400, 3), dtype=np.float32) * 0.95
    arr[140:160, :] = 0.1  # a dark cross right across the picture
    arr[:, 190:210] = 0.1
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    assert out.problem and "every edge" in out.problem


def test_a_tiny_digit_is_refused(digits):
    arr = page(digits[0][4], size=(900, 700), scale=0.9, centre=(350, 450))  # 25 px high in a 900 px photo
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    assert out.problem and "too small" in out.problem


@pytest.mark.parametrize("pen", ["hairline", "marker"])
def test_a_pen_far_from_mnist_is_brought_to_mnist_stroke_width(digits, pen):
    images, _ = digits
    from scipy import ndimage

    ink = images[5] > 100
    ink = ndimage.binary_erosion(ink) if pen == "hairline" else ndimage.binary_dilation(ink, iterations=2)
    arr = page((ink * 255).astype(np.uint8))
    out = imaging.prepare(photo(arr), "digit", 28, 1)
    width = imaging.stroke_width(out.tensor[0].numpy() > 127)
    lo, _, hi = imaging.MNIST_STROKE
    assert lo - 0.3 <= width <= hi + 0.3, width


def test_a_coloured_garment_on_a_lit_backdrop_comes_out_as_fashion_mnist(clothes):
    images, _ = clothes
    scores = []
    for i in range(8):
        x = images[i].astype(np.float32) / 255
        arr = page((x * 255).astype(np.uint8), paper=(250, 250, 250), colour=(40, 30, 120), scale=8)
        out = imaging.prepare(photo(arr * gradient(arr.shape[:2], 0.2), seed=i), "item", 28, 1)
        assert out.problem is None
        scores.append(agreement(out.tensor, images[i]))
    assert np.median(scores) > 0.8, scores


def test_steps_are_images_in_the_order_the_page_shows_them(digits):
    out = imaging.prepare(photo(page(digits[0][0])), "digit", 28, 1)
    assert list(out.steps) == ["original", "flattened", "thresholded", "cropped", "seen"]
    assert all(a.dtype == np.uint8 for a in out.steps.values())
    assert out.steps["seen"].shape == (28, 28)


def test_natural_style_resizes_and_crops():
    out = imaging.prepare(Image.new("RGB", (300, 200), (10, 200, 30)), "natural", 64, 3)
    assert out.tensor.shape == (3, 64, 64) and out.tensor[1].float().mean() == pytest.approx(200, abs=1)
    with pytest.raises(ValueError, match="digit, item, natural"):
        imaging.prepare(Image.new("RGB", (4, 4)), "sketch", 28, 1)


# ---------------------------------------------------------------------------------------------
# Folders train on what prediction sees


def test_a_truncated_jpeg_in_a_folder_is_caught_by_the_scan(tmp_path):
    from resnet_core import folders

    rng = np.random.default_rng(3)
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.jpg")
    whole = (tmp_path / "dogs" / "0.jpg").read_bytes()
    (tmp_path / "dogs" / "0.jpg").write_bytes(whole[: len(whole) // 2])
    index = folders.scan(tmp_path)
    assert index["skipped"] == {"unreadable or corrupt image": 1}
    assert "dogs/0.jpg" not in index["files"] and len(index["files"]) == 5


def test_a_folder_image_that_breaks_after_the_scan_stops_training_with_its_name(tmp_path):
    from resnet_core import folders

    path = tmp_path / "cats" / "whiskers.jpg"
    path.parent.mkdir()
    Image.new("RGB", (40, 40), "gray").save(path)
    images = folders.FolderImages([path], torch.tensor([0]), 32, 3)
    assert images[0][0].shape == (3, 32, 32)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(imaging.ImageError, match="whiskers.jpg") as info:
        images[0]
    assert "not a readable image" in str(info.value)  # never a silent black image


def test_a_transparent_png_trains_as_it_is_predicted_on_white(tmp_path):
    from resnet_core import folders

    path = tmp_path / "logo.png"
    clear = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    clear.paste((200, 0, 0, 255), (16, 16, 32, 32))
    clear.save(path)
    trained = folders.load_image(path, 32, 3)
    predicted = imaging.prepare(imaging.decode(path.read_bytes()), "natural", 32, 3).tensor
    assert torch.equal(trained, predicted)
    assert trained[:, 0, 0].tolist() == [255, 255, 255]  # not black: the alpha was not just dropped


def test_affine_augmentation_matches_exact_rotations_and_is_identity_at_zero(monkeypatch):
    """The digit/item presets' warp (engine.affine) against torch.rot90 as the oracle."""
    from resnet_core import engine

    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(engine.affine(x, 0, 0.0, 0.0, g), x)
    real = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(*a) if a[:1] == (4,) else real(*a, **k))
    assert torch.equal(engine.affine(x, 0, 90.0, 0.0, g), torch.rot90(x, 1, (2, 3)))  # the largest angle: +90
    shifted = engine.affine(x, 2, 0.0, 0.0, g)  # the largest shift: 2 px left and up, black fill
    assert torch.equal(shifted[..., :-2, :-2], x[..., 2:, 2:]) and shifted[..., -2:, :].sum() == 0
    monkeypatch.setattr(torch, "rand", real)
    a = engine.augment(x, "affine", 2, torch.Generator().manual_seed(5), 10.0, 0.1)
    b = engine.augment(x, "affine", 2, torch.Generator().manual_seed(5), 10.0, 0.1)
    assert torch.equal(a, b) and not torch.equal(a, x)  # seeded, so a resumed run sees the same batches


def test_a_sliver_is_cut_before_it_is_resized_and_a_long_photo_is_prepared_as_before():
    """A 126-byte 1x12000 PNG resized whole to a short side of 256 would take GBs (256 x 3 million
    pixels); only its centre can reach the crop. For a 5:1 photo the cut changes no pixel."""

    import torchvision.transforms.v2.functional as TF

    sliver = io.BytesIO()
    Image.new("RGB", (1, 12000), (200, 30, 30)).save(sliver, "PNG")
    out = imaging.natural(Image.open(io.BytesIO(sliver.getvalue())), 256, 3)
    assert out.shape == (3, 256, 256) and int(out[0].float().mean()) == 200
    rng = np.random.default_rng(0)
    long = Image.fromarray(rng.integers(0, 255, (300, 1500, 3), dtype=np.uint8))
    whole = TF.center_crop(TF.resize(TF.pil_to_tensor(long), 256, antialias=True), [256, 256])
    assert torch.equal(imaging.natural(long, 256, 3), whole)
