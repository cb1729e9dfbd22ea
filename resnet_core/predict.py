"""Turn any image a user brings into what a trained model expects, and ask the model.

A photo of a digit on paper is not an MNIST digit: MNIST digits are white on black, fitted
into a 20x20 box and centred by their centre of mass in 28x28 (LeCun et al. 1998). Fashion-MNIST
items are inverted product photos trimmed and fitted to 28 px. ``prepare`` reproduces those
steps ("digit" and "item" styles); other datasets get the usual resize and centre-crop
("natural"). Everything uploaded is checked first: size, decodability, pixel count, mode.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torchvision.transforms.v2 import functional as TF

from resnet_core import data as data_mod
from resnet_core import engine, models
from resnet_core.checkpoints import load_checkpoint

MAX_BYTES = 25 * 1024 * 1024  # a phone photo is 2-8 MB
MAX_PIXELS = 50_000_000  # beyond this PIL's decompression-bomb guard would warn anyway


class ImageError(ValueError):
    """An uploaded file that is not a usable image; the message is one sentence for the user."""


def open_image(source: bytes | str | Path, name: str | None = None) -> Image.Image:
    """Decode and sanitise: size limits, EXIF rotation, palette/alpha/16-bit/CMYK to RGB."""
    name = name or (Path(source).name if not isinstance(source, bytes) else "the upload")
    if isinstance(source, bytes):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such file.")
        if path.stat().st_size > MAX_BYTES:
            raise ImageError(f"{name} is larger than {MAX_BYTES // 2**20} MB; use a smaller photo.")
        raw = path.read_bytes()
    if len(raw) > MAX_BYTES:
        raise ImageError(f"{name} is larger than {MAX_BYTES // 2**20} MB; use a smaller photo.")
    if not raw:
        raise ImageError(f"{name} is empty; choose a PNG, JPEG, BMP, GIF, TIFF or WebP image.")
    try:
        with Image.open(io.BytesIO(raw)) as probe:
            if probe.width * probe.height > MAX_PIXELS:
                raise ImageError(f"{name} has {probe.width}x{probe.height} pixels, too many; resize it first.")
            probe.verify()
        image = Image.open(io.BytesIO(raw))
        image.load()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(
            f"{name} is not a readable image ({err.__class__.__name__}); use a PNG, JPEG, BMP, GIF, TIFF or WebP file."
        ) from err
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit and float scans: stretch to 8 bits
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = arr.min(), arr.max()
        image = Image.fromarray(((arr - lo) / max(hi - lo, 1e-9) * 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):  # transparent drawings: put them on white paper
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def _fit_and_centre(gray: np.ndarray, box: int, side: int, by_mass: bool) -> np.ndarray:
    """Crop to the ink, scale its longer side to ``box``, place it in ``side`` x ``side``."""
    mask = gray > 0.1 * gray.max() if gray.max() > 0 else np.zeros_like(gray, dtype=bool)
    if not mask.any():
        return np.zeros((side, side), dtype=np.uint8)
    rows, cols = np.where(mask.any(1))[0], np.where(mask.any(0))[0]
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = box / max(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(new, Image.Resampling.LANCZOS), dtype=np.float64)
    canvas = np.zeros((side, side))
    top, left = (side - new[1]) // 2, (side - new[0]) // 2
    if by_mass and small.sum() > 0:
        ys, xs = np.indices(small.shape)
        cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
        top = int(np.clip(round(side / 2 - cy), 0, side - new[1]))
        left = int(np.clip(round(side / 2 - cx), 0, side - new[0]))
    canvas[top : top + new[1], left : left + new[0]] = small
    return np.clip(canvas, 0, 255).astype(np.uint8)


def prepare(image: Image.Image, style: str, size: int, channels: int) -> torch.Tensor:
    """uint8 (C, size, size) as the network sees it, before normalisation."""
    if style in ("digit", "item"):
        gray = np.asarray(image.convert("L"), dtype=np.float64)
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        if np.median(border) > 127:  # dark ink on light paper: make it light on dark, like MNIST
            gray = 255 - gray
            border = 255 - border
        background = np.median(border)
        span = max(gray.max() - background, 1.0)
        gray = np.clip((gray - background) / span * 255, 0, 255)
        box = round(size * 20 / 28) if style == "digit" else size
        out = torch.from_numpy(_fit_and_centre(gray.astype(np.uint8), box, size, style == "digit"))[None]
        return out.expand(channels, -1, -1).clone() if channels > 1 else out
    t = TF.pil_to_tensor(image.convert("L" if channels == 1 else "RGB"))
    t = TF.resize(t, size, antialias=True)
    return TF.center_crop(t, [size, size])


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The checkpoint's architecture with its weights, in eval mode."""
    model = models.get_model(
        ckpt["arch"], num_classes=len(ckpt["classes"]), in_channels=ckpt["in_channels"], image_size=ckpt["image_size"]
    )
    model.load_state_dict(ckpt["model"])
    return model.eval()


def cam_layer(model: nn.Module) -> nn.Module:
    """The deepest convolutional stage: ``layer4`` (torchvision), ``layer3`` (CIFAR), ``rblock2``."""
    from resnet_core.transfer import last_stage

    try:
        return getattr(model, last_stage(model))
    except ValueError:
        return model.rblock2


def grad_cam(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of class ``target`` for one normalised image (1, C, H, W).

    The deepest stage's activations, weighted by the spatial mean of the gradient of the
    class score, summed over channels, rectified, upsampled to the input, scaled to [0, 1].
    """
    saved = {}
    handle = cam_layer(model).register_forward_hook(lambda m, i, out: saved.update(a=out))
    try:
        with torch.enable_grad():
            score = model(x)[0, target]
            grads = torch.autograd.grad(score, saved["a"])[0]
    finally:
        handle.remove()
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).detach() if cam.max() > 0 else cam.detach()


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3): the image in gray with the heat map in red and yellow on top."""
    gray = image.float().mean(0) / 255
    heat = torch.stack([cam.clamp(0, 1), (cam - 0.5).clamp(0, 1) * 2, torch.zeros_like(cam)], -1)
    out = (1 - alpha) * gray[..., None] + alpha * heat
    return (out.clamp(0, 1) * 255).byte().numpy()


@dataclass
class Predictor:
    """A loaded checkpoint, ready to classify images. Treat as read-only: it is shared."""

    model: nn.Module
    classes: list[str]
    mean: list[float]
    std: list[float]
    size: int
    channels: int
    style: str
    dataset: str
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Predictor:
        ckpt = load_checkpoint(path)
        spec = data_mod.BUILTIN.get(ckpt["dataset"])
        return cls(
            build_from_checkpoint(ckpt),
            ckpt["classes"],
            ckpt["mean"],
            ckpt["std"],
            ckpt["image_size"],
            ckpt["in_channels"],
            spec.style if spec else "natural",
            ckpt["dataset"],
        )

    def prepare(self, source: bytes | str | Path | Image.Image, name: str | None = None) -> torch.Tensor:
        image = source if isinstance(source, Image.Image) else open_image(source, name)
        return prepare(image, self.style, self.size, self.channels)

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax over classes for uint8 (N, C, H, W) images."""
        stats = torch.tensor([self.mean, self.std]).view(2, 1, -1, 1, 1)
        return torch.softmax(self.model(engine.normalize(batch, stats[0], stats[1])), dim=1)

    def explain(self, prepared: torch.Tensor, target: int | None = None) -> tuple[torch.Tensor, int]:
        """Grad-CAM heat map (H, W) in [0, 1] for ``target`` (default: the top class)."""
        stats = torch.tensor([self.mean, self.std]).view(2, 1, -1, 1, 1)
        x = engine.normalize(prepared[None], stats[0], stats[1])
        with self._lock:  # the model is shared between sessions; hooks must not interleave
            if target is None:
                with torch.no_grad():
                    target = int(self.model(x).argmax(1))
            return grad_cam(self.model, x, target), target

    def top_k(self, prepared: torch.Tensor, k: int = 5) -> list[dict]:
        probs = self.probabilities(prepared[None])[0]
        values, idx = probs.topk(min(k, len(self.classes)))
        return [{"label": self.classes[i], "index": int(i), "prob": round(float(p), 6)} for p, i in zip(values, idx)]

    def predict_files(self, files: list[str | Path], k: int = 5) -> list[dict]:
        """One result per file: ``{"file", "top"}`` or ``{"file", "error"}``; one bad file never stops the rest."""
        out = []
        for f in files:
            try:
                out.append({"file": str(f), "top": self.top_k(self.prepare(f), k)})
            except ImageError as err:
                out.append({"file": str(f), "error": str(err)})
        return out


def evaluate_checkpoint(path: str | Path, dataset: str | None = None, limit: int | None = None) -> dict:
    """Accuracy, per-class accuracy and confusion matrix of a checkpoint on a test split."""
    ckpt = load_checkpoint(path)
    dataset = dataset or ckpt["dataset"]
    test = data_mod.load_dataset(dataset, "test").subset(limit)
    if len(test.classes) != len(ckpt["classes"]):
        raise ValueError(
            f"{dataset} has {len(test.classes)} classes but the checkpoint was trained on "
            f"{len(ckpt['classes'])} ({ckpt['dataset']}); evaluate it on {ckpt['dataset']}."
        )
    if test.size != ckpt["image_size"]:
        test = engine.resize_split(test, ckpt["image_size"])
    stats = torch.tensor([ckpt["mean"], ckpt["std"]]).view(2, 1, -1, 1, 1)
    result = engine.evaluate(build_from_checkpoint(ckpt), test, torch.device("cpu"), stats, return_predictions=True)
    result.update(classes=ckpt["classes"], dataset=dataset, targets=test.targets.tolist())
    return result


def gallery(predictor: Predictor, n: int = 32) -> dict:
    """The first ``n`` test images of the checkpoint's dataset, predicted vs actual."""
    test = data_mod.load_dataset(predictor.dataset, "test").subset(n)
    if test.size != predictor.size:
        test = engine.resize_split(test, predictor.size)
    ds = test.dataset()
    images = torch.stack([ds[i][0] for i in range(len(test))])
    probs = predictor.probabilities(images)
    confidence, preds = probs.max(1)
    k = len(predictor.classes)
    confusion = torch.bincount(test.targets * k + preds, minlength=k * k).view(k, k)
    return {
        "images": images,
        "targets": test.targets.tolist(),
        "preds": preds.tolist(),
        "confidence": confidence.tolist(),
        "classes": predictor.classes,
        "accuracy": float((preds == test.targets).float().mean()),
        "per_class": (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist(),
        "confusion": confusion.tolist(),
    }
