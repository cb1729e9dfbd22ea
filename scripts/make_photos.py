"""Photo-like test images, rendered from held-out TEST images only: what a phone sees, reproducibly.

    python scripts/make_photos.py --kind digit --n 500 --out lab/photos/digits [--seed 0] [--start 0]
    python scripts/make_photos.py --kind item --n 300 --out lab/photos/clothes

Each file is ``NNNN-LABEL.jpg``; image ``i`` comes from test image ``start + i`` and its own
generator ``(seed, i)``, so any subset can be re-rendered alone. What varies, per image:

* both: frame 300-900 px, aspect 3:4 to 4:3; object size and position (off-centre, inside a
  margin); a light gradient falling 20-25 % from one corner to the opposite one; vignetting up
  to 20 %; exposure 0.8-1.05; Gaussian blur up to 1.5 px at 600 px; sensor noise sigma 2-8
  levels; JPEG quality 40-95.
* digits (MNIST test set): paper colour (white, cream, yellow, blue, pink, green, grey), ruled
  lines on 30 % of pages (a red margin on some), ink (black, blue ballpoint, pencil), pen width
  0.7-1.3x, tilt +-12 degrees, a soft-edged shadow across half the pages (15-40 % darker),
  digit height 30-70 % of the short side.
* clothing (Fashion-MNIST test set), product style: a white, grey, beige or blue-grey backdrop,
  the garment in a random colour (a third neutral: white to black), its shading kept from the
  original at 40-100 % contrast, a soft drop shadow on half of them, tilt +-6 degrees (product photos are upright),
  item 50-85 % of the short side.
"""

from __future__ import annotations

import argparse
import colorsys
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PAPERS = [(246, 246, 242), (242, 234, 208), (250, 238, 165), (208, 225, 245), (247, 215, 222), (215, 238, 205)]
PAPERS += [(205, 205, 200)]
INKS = [(25, 25, 30), (30, 45, 140), (85, 85, 92)]  # black, blue ballpoint, pencil
BACKDROPS = [(252, 252, 252), (250, 250, 247), (230, 230, 230), (240, 232, 220), (226, 233, 242)]


def _frame(rng: np.random.Generator, longest: int) -> tuple[int, int]:
    long = int(rng.integers(300, longest + 1))
    short = int(long * rng.uniform(0.75, 1.0))
    return (long, short) if rng.random() < 0.5 else (short, long)


def _upscale(a: np.ndarray, scale: float) -> np.ndarray:
    """A 28 px float image in [0, 1] scaled up with bicubic interpolation."""
    side = max(1, round(a.shape[0] * scale))
    img = Image.fromarray(a.astype(np.float32), mode="F").resize((side, side), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0, 1)


def _paste(page: np.ndarray, layer: np.ndarray, alpha: np.ndarray, cy: int, cx: int, blend: str) -> None:
    """Put ``layer`` (h, w, 3) with ``alpha`` (h, w) centred at (cy, cx) on ``page``, in place."""
    h, w = alpha.shape
    top, left = cy - h // 2, cx - w // 2
    region = page[top : top + h, left : left + w]
    a = alpha[..., None]
    if blend == "multiply":  # ink absorbs light: it darkens the paper's own colour
        region *= 1 - a + a * layer
    else:
        region[:] = region * (1 - a) + layer * a


def _light(shape: tuple[int, int], rng: np.random.Generator, shadow: tuple[float, float] | None) -> np.ndarray:
    """Illumination: a 20-25 % corner-to-corner gradient, vignetting, exposure, optional soft shadow."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi)
    proj = np.cos(theta) * xx + np.sin(theta) * yy
    proj = (proj - proj.min()) / max(proj.max() - proj.min(), 1)
    light = 1 - rng.uniform(0.20, 0.25) * proj
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    light *= 1 - rng.uniform(0, 0.2) * r2
    light *= rng.uniform(0.8, 1.05)
    if shadow is not None:  # a half-plane (hand, phone) with a soft edge
        phi = rng.uniform(0, 2 * np.pi)
        px, py = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        dist = np.cos(phi) * (xx - px) + np.sin(phi) * (yy - py)
        soft = rng.uniform(0.01, 0.08) * max(h, w)
        light *= 1 - rng.uniform(*shadow) / (1 + np.exp(-dist / soft))
    return light


def _camera(page: np.ndarray, rng: np.random.Generator) -> bytes:
    """Blur, sensor noise and JPEG: what the phone adds after the light."""
    img = Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8))
    radius = rng.uniform(0, 1.5) * max(img.size) / 600
    if radius > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(radius))
    arr = np.asarray(img, dtype=np.float32)
    arr = arr + rng.normal(0, rng.uniform(2, 8), arr.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(40, 96)))
    return buf.getvalue()


def _tilt_and_frame(page: np.ndarray, degrees: float, w: int, h: int, fill: tuple) -> np.ndarray:
    """Rotate the page about its centre and cut the camera's frame from its middle."""
    img = Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8))
    img = img.rotate(degrees, Image.Resampling.BICUBIC, fillcolor=fill)
    side = img.size[0]
    left, top = (side - w) // 2, (side - h) // 2
    return np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.float32) / 255


def _position(rng: np.random.Generator, w: int, h: int, obj_w: float, obj_h: float, side: int) -> tuple[int, int]:
    """Centre of the object on the page: anywhere that leaves a 6 % margin in the frame."""
    margin = 0.06 * min(w, h)
    mx, my = max(0.0, w / 2 - obj_w / 2 - margin), max(0.0, h / 2 - obj_h / 2 - margin)
    return side // 2 + int(rng.uniform(-my, my)), side // 2 + int(rng.uniform(-mx, mx))


def render_digit(digit: np.ndarray, rng: np.random.Generator, longest: int = 900) -> bytes:
    """A JPEG of this 28x28 MNIST digit written on paper and photographed (frame: 300-``longest`` px)."""
    w, h = _frame(rng, longest)
    side = int(1.5 * max(w, h))
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], dtype=np.float32) + rng.normal(0, 4, 3)
    page = np.ones((side, side, 3), dtype=np.float32) * np.clip(paper, 0, 255) / 255
    height = rng.uniform(0.3, 0.7) * min(w, h)  # the 20 px box of MNIST, in photo pixels
    scale = height / 20
    if rng.random() < 0.3:  # ruled paper: faint lines, sometimes a red margin
        spacing = max(8, int(height * rng.uniform(0.45, 0.8)))
        thick = max(1, round(height / 80))
        tint = np.array([160, 185, 225] if rng.random() < 0.7 else [175, 175, 175], dtype=np.float32) / 255
        for y in range(int(rng.integers(0, spacing)), side, spacing):
            page[y : y + thick] *= tint / tint.max() * rng.uniform(0.85, 0.95)
        if rng.random() < 0.4:
            x = side // 2 + int(rng.uniform(-0.45, -0.3) * w)
            page[:, x : x + thick + 1] *= np.array([1.0, 0.75, 0.75], dtype=np.float32)
    alpha = _upscale(digit / 255, scale)
    pen = rng.uniform(0.7, 1.3)  # the pen's width against MNIST's strokes
    if abs(pen - 1) > 0.1:
        size = max(1, round(abs(pen - 1) * 2.5 * scale))
        alpha = (ndimage.grey_dilation if pen > 1 else ndimage.grey_erosion)(alpha, size=(size, size))
    alpha = np.clip((alpha - 0.25) / 0.5, 0, 1)  # crisp ink edges, not a blurred upscale
    ink_id = int(rng.integers(len(INKS)))
    ink = np.array(INKS[ink_id], dtype=np.float32) / 255
    alpha *= rng.uniform(0.65, 0.9) if ink_id == 2 else rng.uniform(0.92, 1.0)
    layer = np.broadcast_to(ink, (*alpha.shape, 3))
    cy, cx = _position(rng, w, h, height * 0.8, height, side)
    _paste(page, layer, alpha, cy, cx, "multiply")
    fill = tuple(int(v) for v in np.clip(paper, 0, 255))
    frame = _tilt_and_frame(page, rng.uniform(-12, 12), w, h, fill)
    frame *= _light((h, w), rng, (0.15, 0.4) if rng.random() < 0.5 else None)[..., None]
    return _camera(frame, rng)


def _garment_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 1 / 3:
        return np.full(3, rng.uniform(0.1, 1.0), dtype=np.float32)
    return np.array(colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.35, 1.0)), np.float32)


def render_item(item: np.ndarray, rng: np.random.Generator, longest: int = 900) -> bytes:
    """A JPEG of this Fashion-MNIST item as a product photo of a coloured garment (frame: 300-``longest`` px)."""
    w, h = _frame(rng, longest)
    side = int(1.5 * max(w, h))
    backdrop = np.array(BACKDROPS[rng.integers(len(BACKDROPS))], dtype=np.float32) / 255
    page = np.ones((side, side, 3), dtype=np.float32) * backdrop
    size = rng.uniform(0.5, 0.85) * min(w, h)  # Fashion-MNIST items fill 28 px on their longer side
    scale = size / 28
    x = item.astype(np.float32) / 255
    # Fashion-MNIST stretched every item so its darkest part is black; a dyed garment is lighter:
    # keep the shading, at a contrast between 40 % and 100 % of the original.
    shade = _upscale(1 - rng.uniform(0.4, 1.0) * x, scale)
    body = x > 0.03
    holes = ndimage.binary_fill_holes(body) & ~body
    labels, n = ndimage.label(holes)
    small = np.isin(labels, 1 + np.flatnonzero(ndimage.sum(holes, labels, np.arange(1, n + 1)) < 12))
    # White patches inside the garment are garment; a bag's handle or the gap between legs is backdrop.
    outline = ndimage.gaussian_filter((body | small).astype(np.float32), 0.7)
    alpha = np.clip((_upscale(outline, scale) - 0.3) / 0.4, 0, 1)  # a smooth outline, not 28 px steps
    colour = _garment_colour(rng)
    layer = shade[..., None] * colour
    cy, cx = _position(rng, w, h, size, size, side)
    if rng.random() < 0.5:  # a soft drop shadow on the backdrop
        shift = int(rng.uniform(0.01, 0.04) * size)
        shadow = ndimage.gaussian_filter(alpha, sigma=max(1.0, 0.03 * size))
        dark = np.ones((side, side), dtype=np.float32)
        top, left = cy - alpha.shape[0] // 2 + shift, cx - alpha.shape[1] // 2 + shift
        dark[top : top + alpha.shape[0], left : left + alpha.shape[1]] -= rng.uniform(0.05, 0.15) * shadow
        page *= dark[..., None]
    _paste(page, layer, alpha, cy, cx, "over")
    fill = tuple(int(v * 255) for v in backdrop)
    frame = _tilt_and_frame(page, rng.uniform(-6, 6), w, h, fill)
    frame *= _light((h, w), rng, None)[..., None]
    return _camera(frame, rng)


RENDER = {"digit": ("mnist-sample", render_digit), "item": ("fashion-sample", render_item)}


def make(kind: str, n: int, seed: int = 0, start: int = 0, longest: int = 900) -> Iterator[tuple[int, bytes, int]]:
    """Photos of test images ``start .. start + n - 1``, one at a time, as (index, JPEG bytes, label)."""
    from resnet_core import data

    dataset, render = RENDER[kind]
    test = data.load_dataset(dataset, "test")
    for i in range(start, start + n):
        rng = np.random.default_rng([seed, i])
        yield i, render(test.images[i, 0].numpy(), rng, longest), int(test.targets[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=list(RENDER), required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first test image to use")
    parser.add_argument("--longest", type=int, default=900, help="largest frame side in px (300 or more)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i, jpeg, label in make(args.kind, args.n, args.seed, args.start, args.longest):
        (args.out / f"{i:04d}-{label}.jpg").write_bytes(jpeg)
    print(f"wrote {args.n} photos to {args.out}")


if __name__ == "__main__":
    main()
