"""The leaf every image passes through: decode it safely, then prepare it as a dataset's images look.

``decode`` treats every file as hostile: byte and pixel limits before a pixel is read, a short
list of formats (Pillow alone would also open EPS through Ghostscript), a real decode of the
data (``verify()`` skips JPEG scan data, so a truncated JPEG passes it), EXIF rotation, the
first frame of an animation, and every mode (palette, alpha, 16-bit, CMYK, 1-bit) to RGB with
transparent pixels on white paper. Training on folders (``folders``) and prediction
(``predict``) both decode here, so both see the same pixels.

``prepare`` turns a decoded image into what a network was trained on:

* ``natural``: short side resized, centre-cropped (torchvision's evaluation transform);
* ``digit``: MNIST's recipe (LeCun et al. 1998): light strokes on black, the longer side
  fitted in a 20x20 box, the centre of mass moved to the centre of 28x28;
* ``item``: Fashion-MNIST's (Xiao et al. 2017): trimmed to the item, the longer side fitted
  to 28, centred, negated, stretched so its darkest part is 255.

A phone photo is not a scan, so "digit" and "item" first flatten it: the background's
brightness is estimated (for paper a grey closing, which removes strokes but keeps the edges of
shadows; for product photos a smooth surface fitted to the background) and each pixel is
measured against it, which cancels light gradients, vignetting, shadows and coloured paper. A
threshold that adapts to the image (Otsu's, with hysteresis) finds the object; specks and ruling
lines are dropped and the largest plausible object kept. When nothing plausible is left,
``Prepared.problem`` says so in one sentence instead of letting the network guess.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from resnet_core import classroom
from resnet_core.messages import LabError, Message

MAX_PIXELS = 50_000_000  # below Pillow's own bomb warning (89 Mpx); a 48 Mpx phone photo still opens
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")  # JPEG includes MPO (phone JPEGs with a second image)
VALID = "a PNG, JPEG, BMP, GIF, TIFF or WebP image"
STYLES = ("digit", "item", "natural")
WORK_SIDE = 320  # px, long side at which photos are flattened: a digit filling 1/10 of it is still 32 px
SMALL_SIDE = 64  # px: an image this small is a scan or a dataset image, its background is flat
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class ImageError(LabError, ValueError):
    """A file that is not a usable image; the message is one sentence for the user."""


# ---------------------------------------------------------------------------------------------
# Decoding


# Files on the server's own disk (folder datasets, the command line) are the teacher's and the
# shell's, not uploads: a fixed cap, with MAX_PIXELS guarding memory; a DSLR TIFF may be 60 MB.
MAX_FILE_BYTES = 100 * 1024**2


def max_bytes() -> int:
    """The largest upload decoded: the classroom's photo limit (``RESNET_LAB_MAX_PHOTO_MB``), read
    on each call like every limit, so the Predict page's uploader and this check never disagree."""
    return classroom.limit("photo_mb") * 1024**2


def _check_upload_size(size: int, name: str) -> None:
    if size > max_bytes():
        most = classroom.limit("photo_mb")  # the number the uploader and the home page show
        raise ImageError("image.too_large_upload", name=name, most=most)


def _read(source: bytes | str | Path, name: str) -> bytes:
    """The bytes of an upload (``bytes``: the photo limit applies) or of a file on disk."""
    if isinstance(source, bytes):
        raw = source
        _check_upload_size(len(raw), name)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError("image.no_file", name=name, valid=VALID)
        if path.stat().st_size > MAX_FILE_BYTES:  # before reading: a huge file is never held
            raise ImageError("image.too_large_file", name=name, most=MAX_FILE_BYTES // 2**20, valid=VALID)
        raw = path.read_bytes()
    if not raw:
        raise ImageError("image.empty", name=name, valid=VALID)
    head = raw[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in raw[:4096].lower()):
        raise ImageError("image.svg", name=name, valid=VALID)
    return raw


def _sixteen_bit_to_8(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8 bits by the type's range; floats by their own range."""
    arr = np.asarray(image, dtype=np.float64)
    if image.mode != "F" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr / 257
    else:
        lo, hi = (arr.min(), arr.max()) if arr.size else (0.0, 1.0)
        arr = (arr - lo) / max(hi - lo, 1e-12) * 255
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB: EXIF rotation undone, high bit depths scaled, transparent pixels on white."""
    with contextlib.suppress(*DECODE_ERRORS):  # a broken EXIF block: keep the pixels as stored
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _sixteen_bit_to_8(image)
    if image.mode in ("P", "PA", "LA", "La", "RGBa") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA":  # a drawing on a transparent canvas is a drawing on white paper
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    return image.convert("RGB")


def decode(source: bytes | str | Path, name: str | Path | None = None, max_side: int | None = None) -> Image.Image:
    """RGB from untrusted bytes or a file, or :class:`ImageError` with one sentence.

    ``max_side``: the caller needs no more than about this many pixels per side, so a JPEG is
    decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), many times faster for a phone photo.
    The data is always decoded in full, which is what finds a truncated or corrupt file.
    """
    name = name or (Path(source).name if not isinstance(source, bytes) else "the upload")
    raw = _read(source, name)
    try:
        image = Image.open(io.BytesIO(raw), formats=FORMATS)
        if image.width * image.height > MAX_PIXELS:
            raise ImageError("image.too_many_pixels", name=name, width=image.width, height=image.height)
        if max_side and image.format in ("JPEG", "MPO"):
            image.draft("RGB", (max_side, max_side))
        image.load()  # the first frame of an animation
        return to_rgb(image)
    except ImageError:
        raise
    except DECODE_ERRORS as err:
        raise ImageError("image.unreadable", name=name, kind=err.__class__.__name__, valid=VALID) from err


def decode_side(style: str, size: int) -> int:
    """How many pixels per side a preparation needs from the decoder (see ``decode``'s ``max_side``)."""
    return WORK_SIDE if style in ("digit", "item") else 2 * size


def check(path: Path) -> str | None:
    """None for a file that decodes, else the sentence saying why not (for folder scans)."""
    try:
        decode(path, max_side=64)
        return None
    except ImageError as err:
        return str(err)


# ---------------------------------------------------------------------------------------------
# Preparation


@dataclass
class Prepared:
    """An image as the network sees it, the steps that made it, and any reason not to trust it."""

    tensor: torch.Tensor  # uint8 (C, size, size), before normalisation
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # uint8 images, in the order made
    problem: Message | None = None  # one sentence (a str) when nothing plausible was found


MAX_RATIO = 4  # long side over short side that natural() resizes whole


def natural(image: Image.Image, size: int, channels: int) -> torch.Tensor:
    """Short side to ``size`` and a centre crop (torchvision's evaluation transform): uint8 (C, size, size)."""
    # Imported here: a trainer on a bundled sample never imports torchvision (data._MNIST_CLASSES).
    from torchvision.transforms.v2 import functional as TF

    w, h = image.size
    short, long = min(w, h), max(w, h)
    if long > MAX_RATIO * short:
        # A sliver (a 126-byte 1x12000 PNG) would be resized whole to 256x3 million pixels, GBs on
        # a shared server: only its centre, MAX_RATIO times as long as it is wide, can reach the
        # crop, with room to spare for the resize's filter. Photos up to 4:1 take the path below.
        keep = MAX_RATIO * short
        box = (
            ((w - keep) // 2, 0, (w - keep) // 2 + keep, h)
            if w > h
            else (0, (h - keep) // 2, w, (h - keep) // 2 + keep)
        )
        image = image.crop(box)
    t = TF.pil_to_tensor(image.convert("L" if channels == 1 else "RGB"))
    t = TF.resize(t, size, antialias=True)
    return TF.center_crop(t, [size, size])


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold (1979) of values in [0, 1]: the cut that maximises between-class variance."""
    hist, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    p = hist / max(hist.sum(), 1)
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - m0) ** 2 / (w0 * (1 - w0))
    return float(edges[1:][np.nanargmax(np.nan_to_num(between, nan=-1.0))])


def _working_copy(image: Image.Image) -> np.ndarray:
    """uint8 (H, W, 3), long side at most ``WORK_SIDE`` (box-averaged, which also averages noise)."""
    scale = WORK_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return np.array(image)  # a copy: steps are handed out to pages


def _max3(a: np.ndarray) -> np.ndarray:
    """The largest of the last axis's three values: ``a.max(-1)`` without numpy's slow reduction
    over an axis of three (4.8 ms against 0.3 ms for two elementwise maxima, 320 x 240 x 3)."""
    return np.maximum(np.maximum(a[..., 0], a[..., 1]), a[..., 2])


def _border(a: np.ndarray, width: int) -> np.ndarray:
    """The pixels of the outer band ``width`` px wide."""
    mask = np.ones(a.shape[:2], dtype=bool)
    mask[width:-width, width:-width] = False
    return a[mask]


def _closing_background(rgb: np.ndarray, k: int) -> np.ndarray:
    """Paper brightness under strokes: a grey closing (max, then min filter) ``k`` px wide.

    A closing removes dark features narrower than ``k`` (strokes) and keeps step edges, so the
    edge of a shadow stays where it is. It runs on a block-averaged copy where ``k`` is about
    10 px: cheap, and the photo's noise is averaged away there.
    """
    h, w = rgb.shape[:2]
    f = max(1, min(k // 10, h // 8, w // 8))
    small = rgb[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f, 3).mean((1, 3))
    ks = max(3, round(k / f))
    closed = ndimage.grey_closing(small, size=(ks, ks, 1), mode="nearest")
    # Back to full size by linear interpolation between pixel centres, edges held. Pillow's bilinear,
    # when enlarging, is exactly that: scipy's ndimage.zoom(order=1, grid_mode=True, mode="nearest")
    # within 2e-7 and a tenth of its time (1.5 ms against 15 CPU-ms for 320 x 240).
    return np.stack([_resize(closed[..., c], w, h, Image.Resampling.BILINEAR) for c in range(3)], -1)


def _quadratic_basis(h: int, w: int) -> np.ndarray:
    """(H, W, 6): 1, u, v, u², v², uv at each pixel, u and v from -0.5 to 0.5 across the image."""
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = u / w - 0.5, v / h - 0.5
    return np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], -1)


def _surface(rgb: np.ndarray, use: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Least-squares quadratic surface per channel through the pixels in ``use`` (gradient and vignetting)."""
    rows = np.flatnonzero(use.ravel())
    rows = rows[:: max(1, len(rows) // 4000)]  # 4000 pixels pin six coefficients down
    coef, *_ = np.linalg.lstsq(basis.reshape(-1, 6)[rows], rgb.reshape(-1, 3)[rows], rcond=None)
    return basis @ coef


def _surface_background(rgb: np.ndarray) -> np.ndarray:
    """Backdrop of a product photo: a smooth surface fitted to the border, then to all that looks like backdrop."""
    band = np.zeros(rgb.shape[:2], dtype=bool)
    width = max(2, round(0.05 * min(rgb.shape[:2])))
    band[:width], band[-width:], band[:, :width], band[:, -width:] = True, True, True, True
    use = band
    basis = _quadratic_basis(*rgb.shape[:2])
    for _ in range(3):
        bg = _surface(rgb, use, basis)
        darker = _max3(bg - rgb)
        noise = 1.4826 * np.median(np.abs(darker[use] - np.median(darker[use]))) + 1e-3
        use = ndimage.binary_erosion(np.abs(darker) < max(4 * noise, 0.03), iterations=2)
        if use.sum() < 0.05 * use.size:  # the item fills the frame: trust the border band only
            use = band & (np.abs(darker) < max(4 * noise, 0.03))
        if not use.any():
            use = band
    return _surface(rgb, use, basis)


def _light_on_dark(lum: np.ndarray, band: int, page: bool) -> bool:
    """Whether the object is lighter than its background: most of the border is darker than
    halfway between the image's darkest and lightest pixels. On a photographed page, nearly all
    of it (90 %): a shadow often covers half a page's border, never all of it. Elsewhere half:
    a garment or a dataset image may fill the frame and cover much of the border."""
    lo, hi = np.percentile(lum, [1, 99])
    return bool(np.percentile(_border(lum, band), 90 if page else 50) < (lo + hi) / 2)


@dataclass
class _Flat:
    dark: np.ndarray  # (H, W) darkness against the background in [0, 1], darkest channel
    tone: np.ndarray  # (H, W) the same in luminance: what a greyscale dataset records
    flat: np.ndarray  # (H, W, 3) the photo divided by its background, for display
    noise: float  # robust standard deviation of ``dark`` over the background


def flatten(rgb: np.ndarray, style: str, stroke: float | None = None) -> _Flat:
    """Each pixel's darkness against the estimated background; light-on-dark images are turned over first.

    ``stroke``: the pen's width in pixels when known; the closing is then three strokes wide, so
    it follows a shadow's shape more closely than the default fifth of the picture does.
    """
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h, w = lum.shape
    band = max(1, round(0.03 * min(h, w)))
    if _light_on_dark(lum, band, page=style == "digit" and min(h, w) > SMALL_SIDE):  # an MNIST image, chalk
        rgb, lum = 1 - rgb, 1 - lum
    if min(h, w) <= SMALL_SIDE:  # a scan or a dataset image: one flat background
        bg = np.broadcast_to(np.median(_border(rgb, band), 0), rgb.shape)
    elif style == "digit":
        k = 0.2 * min(h, w) if stroke is None else float(np.clip(3 * stroke, 5, 0.2 * min(h, w)))
        bg = _closing_background(rgb, round(k))
    else:
        bg = _surface_background(rgb)
    bg = np.maximum(bg, 0.02)
    paper = _max3(bg)
    # Relative to the paper's own brightness: a shadow or gradient scales ink and paper alike.
    raw = _max3(bg - rgb) / paper
    bg_lum = bg @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    tone = (bg_lum - lum) / np.maximum(bg_lum, 0.02)
    edge = _border(raw, band)
    noise = float(1.4826 * np.median(np.abs(edge - np.median(edge))))
    flat = np.clip(rgb / bg, 0, 1)
    return _Flat(np.clip(raw, 0, 1), np.clip(tone, 0, 1), flat, noise)


@dataclass
class _Found:
    keep: np.ndarray  # (H, W) bool, the object's pixels
    dropped: np.ndarray  # (H, W) bool, what was found and dropped (specks, lines, other things)
    problem: Message | None = None


def _gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> int:
    """Pixels between two bounding boxes (0 when they overlap)."""
    gy = max(0, b[0].start - a[0].stop, a[0].start - b[0].stop)
    gx = max(0, b[1].start - a[1].stop, a[1].start - b[1].stop)
    return max(gy, gx)


def _touches(box: tuple[slice, slice], shape: tuple[int, int]) -> int:
    """How many of the image's four edges the box reaches."""
    return (box[0].start == 0) + (box[1].start == 0) + (box[0].stop == shape[0]) + (box[1].stop == shape[1])


def _is_line(box: tuple[slice, slice], area: int, shape: tuple[int, int]) -> bool:
    """A ruling line: spans most of the page one way and is thin (its area / its length is small)."""
    h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
    long, across = (w, shape[1]) if w >= h else (h, shape[0])
    return long >= 0.6 * across and area / long < 0.02 * min(shape) + 1


def _run_lengths(mask: np.ndarray, axis: int) -> np.ndarray:
    """For each pixel of ``mask``, the length of the straight run it belongs to along ``axis``."""
    structure = np.zeros((3, 3), dtype=bool)
    structure[1, :] = axis == 1
    structure[:, 1] = axis == 0
    labels, n = ndimage.label(mask, structure=structure)
    sizes = np.concatenate([[0], ndimage.sum(mask, labels, np.arange(1, n + 1))])
    return sizes[labels]


def _rotate(mask: np.ndarray, degrees: float) -> np.ndarray:
    img = Image.fromarray(mask.astype(np.uint8) * 255).rotate(degrees, Image.Resampling.NEAREST)
    return np.asarray(img) > 127


def _skew(thin: np.ndarray) -> float:
    """The tilt, -15 to 15 degrees in steps of 1, whose row profile of ``thin`` is sharpest
    (largest sum of squared row counts): the angle by which ``_rotate`` levels the page's lines.

    Each pixel's centre is rotated as ``_rotate`` (Pillow) rotates the image, about the image's
    centre, and counted in the row it lands in: 0.8 ms, where resampling the image at each of the
    31 angles took 10 ms. On the 1080 masks of 540 digit photos (the 240 of tests/fixtures and 300
    more, each way round; 234 with lines) both chose the same angle on 94 %, the rest near-ties,
    and found the same lines on all: the same prepared images (tests/test_predict_fast.py).
    """
    h, w = thin.shape
    angles = np.arange(-15, 15.5, 1.0)
    ys, xs = np.nonzero(thin)
    x, y = xs + 0.5 - w / 2, ys + 0.5 - h / 2
    t = np.deg2rad(angles)[:, None]
    across, down = x * np.cos(t) + y * np.sin(t) + w / 2, y * np.cos(t) - x * np.sin(t) + h / 2
    inside = (across >= 0) & (across < w) & (down >= 0) & (down < h)  # Pillow keeps the frame
    rows = np.floor(down).astype(np.intp) + np.arange(len(angles))[:, None] * h
    counts = np.bincount(rows[inside], minlength=len(angles) * h).reshape(len(angles), h)
    return float(angles[int(np.argmax((counts.astype(np.float64) ** 2).sum(1)))])


def _horizontal_lines(mask: np.ndarray) -> np.ndarray:
    """Pixels of long, thin, straight lines within 15 degrees of horizontal (ruled paper).

    Only thin pixels count. The page's tilt is the angle at which their row profile is
    sharpest (the classic skew estimate); along it, a row holding thin pixels across nearly
    half the page is a line, even where noise broke it. Its rows are cleared of what is as
    thin as the line, so a pen stroke crossing it keeps its pixels (its run across is longer).
    """
    h, w = mask.shape
    angle = _skew(mask & (_run_lengths(mask, 0) <= max(3, 0.03 * min(h, w))))
    level = _rotate(mask, angle)
    across = _run_lengths(level, 0)
    thin = level & (across <= max(3, 0.03 * min(h, w)))
    rows = thin.sum(1) >= 0.45 * w
    if not rows.any():
        return np.zeros_like(mask)
    thick = float(np.median(across[thin & rows[:, None]]))  # this page's line width, in pixels
    rows = ndimage.binary_dilation(rows, iterations=1)
    line = rows[:, None] & level & (across <= thick + 2)
    return ndimage.binary_dilation(_rotate(line, -angle), iterations=1) & mask


def _remove_lines(mask: np.ndarray) -> np.ndarray:
    """The mask without ruling lines (horizontal ones, and a margin line across them)."""
    lines = _horizontal_lines(mask)
    lines |= _horizontal_lines(mask.T).T
    return mask & ~lines


def find_object(f: _Flat, style: str, what: str) -> _Found:
    """Threshold with hysteresis, drop specks and lines, keep the largest plausible object."""
    shape = f.dark.shape
    small = min(shape) <= SMALL_SIDE  # a dataset image or a scan: every faint pixel is part of it
    low = max(3.5 * f.noise, 0.5 / 255 if small else 0.06)
    found = f.dark > low
    candidates = _remove_lines(found) if style == "digit" and not small else found
    labels, n = ndimage.label(candidates, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(labels)
    nothing = _Found(np.zeros(shape, bool), found, _problem("image.nothing_found", style, what))
    if n == 0:
        return nothing
    if small:  # a dataset image or a scan has no specks or clutter: all of it is the object
        return _Found(candidates, np.zeros(shape, bool))
    ids = np.arange(1, n + 1)
    high = max(otsu(f.dark[candidates]), 2 * low, 0.15)  # seeds: what stands out, wherever the light fell
    # Whether each holds a pixel that dark (its maximum >= high, without ndimage.maximum's sort of the image).
    seeded = np.bincount(labels[f.dark >= high], minlength=n + 1)[1:] > 0
    area = ndimage.sum(candidates, labels, ids)
    mass = ndimage.sum(f.dark, labels, ids)
    plausible = seeded & (area >= max(4, 2e-4 * f.dark.size))  # smaller is a speck of dust or noise
    if not small:
        plausible &= ~np.array([_is_line(b, a, shape) for b, a in zip(boxes, area)])
    if not plausible.any():
        return nothing
    # The largest by mass; something that reaches an edge (the table, a finger) only if nothing inside is close.
    inner = plausible & np.array([_touches(b, shape) == 0 for b in boxes])
    main = int(np.argmax(np.where(plausible, mass, -1)))
    if inner.any() and mass[inner].max() >= 0.2 * mass[main]:
        main = int(np.argmax(np.where(inner, mass, -1)))
    size = max(boxes[main][0].stop - boxes[main][0].start, boxes[main][1].stop - boxes[main][1].start)
    # Pieces of the same object (a digit written in two strokes, a sandal's straps) are close to
    # it, and reach the edge of the picture only if the object does (else: clutter, a cut-off line).
    edge = _touches(boxes[main], shape) > 0
    close = np.array([_gap(boxes[main], b) <= 0.3 * size and (edge or not _touches(b, shape)) for b in boxes])
    close |= small
    near = plausible & close & (mass >= (0.02 if small else 0.1) * mass[main])
    near[main] = True
    keep = np.isin(labels, ids[near])
    problem = None
    if not small and size < 0.08 * max(shape):
        problem = _problem("image.too_small", style, what, share=f"{size / max(shape):.0%}")
    elif not small and _touches(boxes[main], shape) == 4:
        problem = _problem("image.every_edge", style, what)
    return _Found(keep, found & ~keep, problem)


def _problem(key: str, style: str, what: str, **values) -> Message:
    """Why a photo is not answered, with the advice for its style ("digit" or "item"); ``what``
    names the object in English (the caller's noun), a page names it in the visitor's language."""
    noun, advice = Message(f"image.what.{style}", what=what), Message(f"image.advice.{style}")
    return Message(key, what=noun, advice=advice, **values)


def stroke_width(mask: np.ndarray) -> float:
    """Typical width of the strokes in a mask: twice the median distance to the background
    along the strokes' middle lines (the ridge of the distance transform)."""
    if not mask.any():
        return 0.0
    dt = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    ridge = mask & (dt >= ndimage.maximum_filter(dt, size=3))
    return 2 * float(np.median(dt[ridge]))


# MNIST's strokes, measured with stroke_width on the 2000 test digits (binarised at 128): median
# 2.8 px in the 20 px box, 1st-99th percentile 2.0-5.7 px (the ridge of a w px stroke lies
# about (w + 1) / 2 from its edge, hence "- 1 ... + 1" when a photo's width is rescaled). Only a
# pen outside that band is changed, to the band's edge: a marker's blobs and a fine pen's
# hairlines are not what the net learnt, but MNIST's own bold and thin digits are.
MNIST_STROKE = (1.9, 2.8, 5.7)


def _normalise_stroke(crop: np.ndarray) -> np.ndarray:
    """Erode a bold digit or dilate a thin one (grey morphology on the crop) to MNIST's stroke width.

    Measured at half intensity, as MNIST's was at 128, so a blurred photo's soft rim does not count.
    """
    width = stroke_width(crop > 0.5)
    to_box = 20 / max(crop.shape)
    boxed = (width - 1) * to_box + 1
    lo, _, hi = MNIST_STROKE
    if lo <= boxed <= hi:
        return crop
    radius = abs(boxed - (hi if boxed > hi else lo)) / to_box / 2  # each edge moves this far, in crop px
    if radius < 1:
        return crop
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = yy**2 + xx**2 <= radius**2
    out = (ndimage.grey_erosion if boxed > hi else ndimage.grey_dilation)(crop, footprint=disk, mode="constant")
    rows, cols = np.flatnonzero((out > 0.05).any(1)), np.flatnonzero((out > 0.05).any(0))
    return out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] if len(rows) else crop


def _resize(a: np.ndarray, w: int, h: int, resample: int = Image.Resampling.LANCZOS) -> np.ndarray:
    """Float image resize with Pillow, by default its antialiased Lanczos (mode "F" keeps the values exact)."""
    if a.shape == (h, w):
        return a.astype(np.float32)
    image = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.asarray(image.resize((w, h), resample))


def _fit(obj: np.ndarray, style: str, side: int) -> np.ndarray:
    """MNIST: longer side to 20/28 of ``side``, centre of mass to the centre. Fashion-MNIST: longer side to ``side``."""
    box = round(side * 20 / 28) if style == "digit" else side
    h, w = obj.shape
    # A pixel or two short is how some dataset images are (Fashion-MNIST has items 26-27 px long):
    # resampling them by 28/27 would blur every pixel, so such an image keeps its own.
    scale = 1.0 if box - 2 <= max(h, w) <= box else box / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.clip(_resize(obj, nw, nh), 0, None)
    canvas = np.zeros((side, side), dtype=np.float32)
    # Fashion-MNIST's odd pixel: before the item across its short side, after it along its long side.
    top, left = (side + (nh < nw) - nh) // 2, (side + (nw <= nh) - nw) // 2
    if style == "digit" and small.sum() > 0:
        ys, xs = np.indices(small.shape)
        cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
        top = int(np.clip(round(side / 2 - cy), 0, side - nh))
        left = int(np.clip(round(side / 2 - cx), 0, side - nw))
    canvas[top : top + nh, left : left + nw] = small
    peak = canvas.max()
    return canvas / peak if peak > 0 else canvas  # both datasets reach 255 in every image


def _show(t: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) as an image array: (H, W) for one channel, (H, W, 3) for three."""
    return t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.round(a * 255), 0, 255).astype(np.uint8)


def prepare(image: Image.Image, style: str, size: int, channels: int, what: str | None = None) -> Prepared:
    """The image as the network sees it (see the module docstring), with each step for display."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of: {', '.join(STYLES)}.")
    original = _working_copy(image)
    if style == "natural":
        t = natural(image, size, channels)
        return Prepared(t, {"original": original, "seen": _show(t)})
    rgb = original.astype(np.float32) / 255
    f = flatten(rgb, style)
    found = find_object(f, style, what or style)
    thresholded = np.where(found.keep, 255, np.where(found.dropped, 90, 0)).astype(np.uint8)
    steps = {"original": original, "flattened": _u8(f.flat), "thresholded": thresholded}
    if not found.keep.any():
        empty = torch.zeros(channels, size, size, dtype=torch.uint8)
        return Prepared(empty, {**steps, "seen": _show(empty)}, found.problem)
    keep = ndimage.binary_fill_holes(found.keep) if style == "item" else found.keep
    region = ndimage.binary_dilation(keep)  # the anti-aliased rim below the low threshold
    tone = f.tone if style == "item" else f.dark
    obj = np.where(region, tone, 0)
    small = min(rgb.shape[:2]) <= SMALL_SIDE
    # Both datasets reach 255 in every image: the item's darkest part, most of a digit's stroke core.
    peak = np.percentile(tone[keep], 100 if small else 99.5 if style == "item" else 95)
    obj = np.clip(obj / max(peak, 1e-3), 0, 1)
    inked = obj > 0.5 / 255  # what would round to a nonzero pixel: float noise does not widen the box
    rows, cols = np.flatnonzero(inked.any(1)), np.flatnonzero(inked.any(0))
    crop = obj[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    if style == "digit" and not small:
        crop = _normalise_stroke(crop)
    out = torch.from_numpy(_u8(_fit(crop, style, size)))[None]
    out = out.expand(channels, -1, -1).clone() if channels > 1 else out
    steps.update(cropped=_u8(crop), seen=_show(out))
    return Prepared(out, steps, found.problem)
