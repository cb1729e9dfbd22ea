"""A checkpoint's model on prepared images: top-k, Grad-CAM, galleries and test-split evaluation.

Every image a user brings goes through :mod:`resnet_core.imaging` first (decoding with limits,
then the "digit", "item" or "natural" preparation of the checkpoint's dataset), the same code
that prepares folder images for training, so the network sees an upload as it saw its data.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from resnet_core import data as data_mod
from resnet_core import engine, imaging, models
from resnet_core.checkpoints import load_checkpoint, load_weights
from resnet_core.imaging import ImageError, Prepared

__all__ = ["ImageError", "Predictor", "Prepared", "evaluate_checkpoint", "gallery", "grad_cam", "overlay"]

# What the confidence check calls the object, per preparation style.
WHAT = {"digit": "digit", "item": "piece of clothing"}


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The checkpoint's architecture with its weights, in eval mode."""
    model = models.get_model(
        ckpt["arch"], num_classes=len(ckpt["classes"]), in_channels=ckpt["in_channels"], image_size=ckpt["image_size"]
    )
    return load_weights(model, ckpt["model"], f"The checkpoint of {ckpt['arch']}").eval()


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

    def read(self, source: bytes | str | Path | Image.Image, name: str | None = None) -> Prepared:
        """Decode (untrusted) and prepare as the training data was; ``problem`` says when not to answer."""
        if not isinstance(source, Image.Image):
            source = imaging.decode(source, name, imaging.decode_side(self.style, self.size))
        else:
            source = imaging.to_rgb(source)
        return imaging.prepare(source, self.style, self.size, self.channels, WHAT.get(self.style))

    def prepare(self, source: bytes | str | Path | Image.Image, name: str | None = None) -> torch.Tensor:
        """uint8 (C, H, W) as the network sees it (the steps and the confidence check: :meth:`read`)."""
        return self.read(source, name).tensor

    def answer(self, source: bytes | str | Path, name: str | None = None, k: int = 5) -> dict:
        """One upload, everything the page shows: ``prepared`` (steps), then either ``problem`` (one
        sentence, no label) or ``top`` (k labels) and ``cam`` (Grad-CAM over what the network saw)."""
        prepared = self.read(source, name)
        if prepared.problem:
            return {"prepared": prepared, "problem": prepared.problem, "top": [], "cam": None}
        top = self.top_k(prepared.tensor, k)
        cam, _ = self.explain(prepared.tensor, top[0]["index"])
        return {"prepared": prepared, "problem": None, "top": top, "cam": overlay(prepared.tensor, cam)}

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
                prepared = self.read(f)
            except ImageError as err:
                out.append({"file": str(f), "error": str(err)})
                continue
            if prepared.problem:
                out.append({"file": str(f), "error": prepared.problem})
            else:
                out.append({"file": str(f), "top": self.top_k(prepared.tensor, k)})
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
