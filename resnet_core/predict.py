"""A checkpoint's model on prepared images: top-k, Grad-CAM and occlusion maps, galleries and
test-split evaluation.

Every image a user brings goes through :mod:`resnet_core.imaging` first (decoding with limits,
then the "digit", "item" or "natural" preparation of the checkpoint's dataset), the same code
that prepares folder images for training, so the network sees an upload as it saw its data.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from resnet_core import data as data_mod
from resnet_core import engine, imaging, models, precision
from resnet_core.checkpoints import load_checkpoint, load_weights
from resnet_core.imaging import ImageError, Prepared

__all__ = [
    "METHODS",
    "Explanation",
    "ImageError",
    "Predictor",
    "Prepared",
    "cam_layers",
    "colour_bar",
    "confused_pairs",
    "evaluate_checkpoint",
    "evaluate_gallery",
    "gallery_images",
    "grad_cam",
    "mistakes",
    "occlusion",
    "occlusion_grid",
    "overlay",
]

# What the confidence check calls the object, per preparation style.
WHAT = {"digit": "digit", "item": "piece of clothing"}
# The residual stages of torchvision (layer1-4) and CIFAR ResNets (layer1-3), the tutorial net's blocks.
STAGE = re.compile(r"(layer|rblock)\d+")
# How the page explains an answer: occlusion (hide a patch, see the class's probability fall) or
# Grad-CAM (a layer's activations weighted by their gradients).
METHODS = ("occlusion", "gradcam")
# At or under this input side, occlusion is the default. Measured on 50 bundled test digits, the
# share of the map's mass on ink pixels (19 % of the pixels: a random map's share). Shipped tutorial
# net: Grad-CAM 0.09 at rblock1 (12x12: on the paper, corners 1.3x the mean) and 0.22 at rblock2
# (4x4, the default); occlusion 0.90. Shipped ResNet-20: Grad-CAM 0.47, 0.28, 0.30 at layer1-3
# (28, 14, 7 px); occlusion 0.90. Blanking the 40 pixels each map ranks hottest leaves the class
# 0.63-0.89 of probability after Grad-CAM (0.90 after a random map), 0.21 after occlusion. Its cost
# at 28 px on 2 EPYC cores: 9 ms (tutorial net), 40 ms (ResNet-20), 75 ms (Fashion's ResNet-20).
SMALL_INPUT = 64


def build_from_checkpoint(ckpt: dict) -> nn.Module:
    """The checkpoint's architecture with its weights, in eval mode."""
    model = models.get_model(
        ckpt["arch"], num_classes=len(ckpt["classes"]), in_channels=ckpt["in_channels"], image_size=ckpt["image_size"]
    )
    return load_weights(model, ckpt["model"], ckpt["arch"]).eval()  # a name, in any language


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` for forward passes only: in eval mode, each BatchNorm folded into the
    convolution before it (:func:`fold_batch_norms`), weights channels-last, no gradients.

    Why: oneDNN's convolutions are fastest on channels-last (NHWC) tensors, and a folded BatchNorm
    is one pass less over every activation. Median of a single image's forward on 2 AVX2 cores
    (EPYC, 2.45 GHz), plain model under no_grad against this copy: resnet18 at 224 px 45 -> 41 ms
    on both cores, 69 -> 60 ms on one; resnet20 at 28 px 5.0 -> 3.2 ms and 3.7 -> 2.8 ms.
    Same logits within 3e-6 relative for every model of the registry (tests/test_predict_fast.py).
    The price is a second copy of the weights (45 MB for resnet18). Not used for Grad-CAM, which
    needs the residual stages unfused and their gradients.
    """
    fast = copy.deepcopy(model).eval()
    fold_batch_norms(fast)
    return fast.to(memory_format=torch.channels_last).requires_grad_(False)


def fold_batch_norms(model: nn.Module) -> None:
    """Fold each eval-mode BatchNorm into the convolution that feeds it, in place, found by the
    model's structure: a conv then a BatchNorm in a Sequential (VGG, downsample shortcuts), and
    ``convN``/``bnN`` siblings (torchvision's and our ResNets, where ``bnN`` normalises ``convN``).

    Not torch.fx's ``fuse``: its symbolic trace patches ``nn.Module.__call__`` for the whole
    process while it runs, so a forward in another thread of the page server (another browser's
    prediction, a Theory page job) entered the tracer and failed.
    """
    fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
    for parent in list(model.modules()):
        if isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                    parent[i], parent[i + 1] = fuse(parent[i], parent[i + 1]), nn.Identity()
            continue
        for name, bn in list(parent.named_children()):
            conv = getattr(parent, "conv" + name[2:], None) if name.startswith("bn") else None
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                setattr(parent, "conv" + name[2:], fuse(conv, bn))
                setattr(parent, name, nn.Identity())


def cam_layers(model: nn.Module) -> list[str]:
    """The layers Grad-CAM can look at, shallow to deep; the last is the default: the residual
    stages (``layer1``-``layer4`` torchvision, ``layer1``-``layer3`` CIFAR ResNets, ``rblock1``-2
    the tutorial net), or for VGG the end of each conv block before its pooling."""
    names = [name for name, _ in model.named_children() if STAGE.fullmatch(name)]  # in forward order
    features = getattr(model, "features", None)
    if not names and isinstance(features, nn.Sequential):
        ends = [i - 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d) and i > 0]
        if not isinstance(features[-1], nn.MaxPool2d):
            ends.append(len(features) - 1)
        names = [f"features.{i}" for i in ends]
    if not names:
        raise ValueError(f"{type(model).__name__} has no residual stages or VGG blocks for Grad-CAM.")
    return names


def grad_cam(model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of class ``target`` at ``layer`` for one normalised image (1, C, H, W).

    The layer's activations weighted by the spatial mean of the gradient of the class score
    (the logit), summed over channels and rectified; then, as pytorch-grad-cam's ``GradCAM``
    does, upsampled bilinearly to the input (``align_corners=False``, which is OpenCV's
    ``INTER_LINEAR``) and min-max scaled to [0, 1]. pytorch-grad-cam scales before and after
    resizing (with an eps of 1e-7 in the divisor); scaling is affine and bilinear weights sum to
    1, so it is the same map (tests/test_gradcam.py checks it against the package). A flat map is 0.
    """
    return grad_cam_grid(model, x, target, layer)[0]


def grad_cam_grid(
    model: nn.Module, x: torch.Tensor, target: int, layer: str | None = None
) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`grad_cam` and the layer's own (height, width), which the map was upsampled from: the
    page states it, since a 7x7 map over a 28 px digit cannot follow a 2 px stroke."""
    names = cam_layers(model)
    layer = layer or names[-1]
    if layer not in names:
        raise ValueError(f"Grad-CAM layer {layer!r} is not one of: {', '.join(names)}.")
    saved, me = {}, threading.get_ident()

    def keep(module, inputs, out):
        # Another session's forward pass (a gallery evaluation) may run through the shared model
        # meanwhile: keep only this thread's activations.
        if threading.get_ident() == me:
            saved["a"] = out

    handle = model.get_submodule(layer).register_forward_hook(keep)
    try:
        with torch.enable_grad():
            score = model(x)[0, target]
            grads = torch.autograd.grad(score, saved["a"])[0]
    finally:
        handle.remove()
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * saved["a"]).sum(1, keepdim=True)).detach()
    grid = (cam.shape[-2], cam.shape[-1])
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max() if cam.max() > 0 else cam), grid


def occlusion_grid(side: int) -> tuple[int, int]:
    """(patch, stride) in px for occluding an image of ``side`` px: a patch of a ninth of the side
    (3 px at 28, about a stroke's width), moved by two thirds of a patch, so about 14 x 14 positions,
    one batch of forward passes, whatever the size (at 224 px: 25 px patches, stride 17).
    Measured at 28 px on the shipped ResNet-20 (50 test digits, 2-core EPYC, every patch computed):
    3 px at stride 1 puts 0.89 of the map on ink in 430 ms; at stride 2, 0.90 in 80 ms; 4 px at
    stride 2, 0.79 in 70 ms; 8 px, 0.45 (a random map: 0.19)."""
    patch = max(3, round(side / 9))
    return patch, max(1, min(patch, round(patch * 2 / 3)))


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Where patches start along one side, the last flush with the edge, so every pixel is covered."""
    starts = list(range(0, max(length - patch, 0) + 1, stride))
    if starts[-1] != max(length - patch, 0):
        starts.append(length - patch)
    return starts


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    patch: int = 3,
    stride: int = 2,
    fill: torch.Tensor | float = 0.0,
    max_batch: int = 1 << 21,
) -> tuple[torch.Tensor, float]:
    """Occlusion sensitivity (Zeiler and Fergus 2014) of class ``target`` for one normalised image
    (1, C, H, W): each ``patch`` x ``patch`` square, every ``stride`` px, is replaced by ``fill``
    (normalised; a number or one per channel) and the softmax probability of ``target`` taken
    again. Each pixel gets the mean drop over the patches covering it. Returns the map (H, W) in
    [0, 1], divided by its maximum, and that maximum (a drop in probability: what 1 means).

    Clipped at 0, not signed: a patch whose hiding raises the probability is evidence against the
    class, which the page's black-red-yellow scale has no colour for, and the question the map
    answers is what made the network say this class. A patch already equal to ``fill`` everywhere
    changes nothing: its drop is 0 without a forward pass (on a digit, most of the black paper).
    Forward passes run batched, at most ``max_batch`` input values at a time, without gradients;
    ``model`` should be :func:`inference_copy`'s copy (no hooks, so no lock is needed).
    """
    image = x[0]
    c, h, w = image.shape
    fill = torch.as_tensor(fill, dtype=image.dtype).reshape(-1, 1, 1).expand(c, 1, 1)
    differs = (image != fill).any(0)  # (H, W): where hiding changes the input at all
    boxes = [(y, z) for y in _starts(h, patch, stride) for z in _starts(w, patch, stride)]
    todo = [i for i, (y, z) in enumerate(boxes) if differs[y : y + patch, z : z + patch].any()]
    drops = torch.zeros(len(boxes))
    per = max(1, max_batch // image.numel())
    with torch.inference_mode():
        base = torch.softmax(model(x).float(), 1)[0, target]
        for start in range(0, len(todo), per):
            chunk = todo[start : start + per]
            batch = image.repeat(len(chunk), 1, 1, 1)
            for j, i in enumerate(chunk):
                y, z = boxes[i]
                batch[j, :, y : y + patch, z : z + patch] = fill
            batch = batch.contiguous(memory_format=torch.channels_last)  # as inference_copy's weights
            drops[chunk] = base - torch.softmax(model(batch).float(), 1)[:, target]
    total, count = torch.zeros(h, w), torch.zeros(h, w)
    for (y, z), drop in zip(boxes, drops.tolist()):
        total[y : y + patch, z : z + patch] += drop
        count[y : y + patch, z : z + patch] += 1
    heat = (total / count).clamp_(min=0)
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat), peak


def heat_colours(cam: torch.Tensor) -> torch.Tensor:
    """(..., 3) floats in [0, 1]: 0 black, 0.5 dark red, 1 yellow (red rises first, then green)."""
    return torch.stack([cam.clamp(0, 1), (cam - 0.5).clamp(0, 1) * 2, torch.zeros_like(cam)], -1)


def colour_bar(width: int = 256, height: int = 14) -> np.ndarray:
    """uint8 (height, width, 3): :func:`overlay`'s colours from 0 (left) to 1 (right), the map's legend."""
    ramp = torch.linspace(0, 1, width).expand(height, width)
    return (heat_colours(ramp) * 255).byte().numpy()  # truncated, as overlay's colours are


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3): the image in gray with the heat map in red and yellow on top, ``alpha`` opaque."""
    gray = image.float().mean(0) / 255
    out = (1 - alpha) * gray[..., None] + alpha * heat_colours(cam)
    return (out.clamp(0, 1) * 255).byte().numpy()


@dataclass(frozen=True)
class Explanation:
    """Why the network gave a class: a heat map over the image it saw, and what the map is made of."""

    heat: torch.Tensor  # (H, W) in [0, 1], at the input's resolution
    target: int  # the class explained
    method: str  # one of METHODS
    grid: tuple[int, int]  # the map's own resolution: the layer's (Grad-CAM), the patch positions (occlusion)
    size: tuple[int, int]  # the input's (H, W), which the map was upsampled (Grad-CAM) or spread (occlusion) to
    layer: str | None = None  # Grad-CAM's layer
    patch: int | None = None  # occlusion's square patch, in px
    stride: int | None = None  # occlusion's step, in px
    peak: float | None = None  # occlusion: the drop in the class's probability that 1 on the map stands for


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
    data_size: int = 0  # the dataset's own side: uploads are prepared at it, then resized to ``size``
    amp: bool = True  # the run's own choice: False (--no-amp) keeps its answers in fp32 everywhere
    resize: int = 0  # "natural": short side to this, then the centre ``size`` x ``size`` (ImageNet's 256 -> 224)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _fast: nn.Module | None = field(default=None, init=False, repr=False, compare=False)

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
            ckpt.get("data_size", ckpt["image_size"]),
            (ckpt.get("config") or {}).get("amp", True),
            ckpt.get("resize", 0),
        )

    @classmethod
    def from_weights(cls, name: str, fetch: bool = True, amp: bool = True) -> Predictor:
        """Pretrained weights as they are (:mod:`resnet_core.weights`, e.g. "resnet50_v1.keras"):
        their own classes, input and preparation (short side to ``resize``, the centre crop),
        all read from their entry. ``fetch`` False: only from the cache, else WeightsUnavailable."""
        from resnet_core import weights

        model, loaded = weights.build(name, fetch)
        cfg = loaded.cfg
        return cls(
            model,
            list(loaded.classes),
            list(cfg.mean),
            list(cfg.std),
            cfg.input_size,
            3,
            "natural",
            "imagenet",
            amp=amp,
            resize=cfg.resize,
        )

    def read(self, source: bytes | str | Path | Image.Image, name: str | None = None) -> Prepared:
        """Decode (untrusted) and prepare as the training data was; ``problem`` says when not to answer."""
        side = self.resize or self.data_size or self.size
        if not isinstance(source, Image.Image):
            source = imaging.decode(source, name, imaging.decode_side(self.style, side))
        else:
            source = imaging.to_rgb(source)
        prepared = imaging.prepare(source, self.style, side, self.channels, WHAT.get(self.style))
        if self.resize and side != self.size:
            # "natural" made the short side ``resize`` and cut the centre square; its centre ``size``
            # square is then the centre crop of torchvision's Resize(resize) + CenterCrop(size).
            from torchvision.transforms.v2 import functional as TF

            t = TF.center_crop(prepared.tensor, [self.size, self.size])
            seen = t[0].numpy() if t.shape[0] == 1 else t.permute(1, 2, 0).numpy()
            prepared = dataclasses.replace(prepared, tensor=t, steps={**prepared.steps, "seen": seen})
        elif side != self.size:  # e.g. a 28 px digit for an ImageNet backbone: resized as in training
            prepared = dataclasses.replace(prepared, tensor=engine.resize(prepared.tensor[None], self.size)[0])
        return prepared

    def prepare(self, source: bytes | str | Path | Image.Image, name: str | None = None) -> torch.Tensor:
        """uint8 (C, H, W) as the network sees it (the steps and the confidence check: :meth:`read`)."""
        return self.read(source, name).tensor

    def cam_layers(self) -> list[str]:
        """Grad-CAM's choice of layers, shallow to deep; the last is the default."""
        return cam_layers(self.model)

    def default_method(self) -> str:
        """Occlusion for small inputs (at most ``SMALL_INPUT`` px), where Grad-CAM's last maps are
        7x7 or smaller and measured less faithful; Grad-CAM above, where occlusion's hundreds of
        forward passes take seconds."""
        return "occlusion" if self.size <= SMALL_INPUT else "gradcam"

    def answer(
        self,
        source: bytes | str | Path | Image.Image,
        name: str | None = None,
        k: int = 5,
        layer: str | None = None,
        alpha: float = 0.5,
        method: str | None = None,
    ) -> dict:
        """One upload, everything the page shows: ``prepared`` (steps), then either ``problem`` (one
        sentence, no label) or ``top`` (k labels), ``explanation`` (:class:`Explanation` of the top
        class by ``method``, default :meth:`default_method`; Grad-CAM at ``layer``) and ``cam`` (its
        map over what the network saw, ``alpha`` opaque)."""
        prepared = self.read(source, name)
        if prepared.problem:
            return {"prepared": prepared, "problem": prepared.problem, "top": [], "cam": None, "explanation": None}
        top = self.top_k(prepared.tensor, k)
        why = self.explanation(prepared.tensor, top[0]["index"], method, layer)
        cam = overlay(prepared.tensor, why.heat, alpha)
        return {"prepared": prepared, "problem": None, "top": top, "cam": cam, "explanation": why}

    def normalized(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) as the network's input: scaled to [0, 1], less the mean, over the std."""
        stats = torch.tensor([self.mean, self.std]).view(2, 1, -1, 1, 1)
        return engine.normalize(batch, stats[0], stats[1])

    def inference_model(self) -> nn.Module:
        """The model for forward passes without gradients (:func:`inference_copy`), made on first use."""
        if self._fast is None:
            with self._lock:  # not while Grad-CAM has a hook on the model: the copy would keep it
                if self._fast is None:
                    self._fast = inference_copy(self.model)
        return self._fast

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """The network's fp32 outputs for uint8 (N, C, H, W) images, under ``torch.inference_mode``,
        computed in this server's precision unless the run chose fp32 (:func:`precision.resolve`:
        bf16 on a CPU with bf16 units, where top-1 on the bundled test splits stays within 0.1 point
        of fp32)."""
        with torch.inference_mode(), precision.resolve("cpu", self.amp).autocast("cpu"):
            x = self.normalized(batch).contiguous(memory_format=torch.channels_last)
            return self.inference_model()(x).float()

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Softmax over classes for uint8 (N, C, H, W) images."""
        with torch.inference_mode():
            return torch.softmax(self.logits(batch), dim=1)

    def explain(
        self, prepared: torch.Tensor, target: int | None = None, layer: str | None = None, method: str = "gradcam"
    ) -> tuple[torch.Tensor, int]:
        """Heat map (H, W) in [0, 1] for ``target`` (default: the top class) and that class: Grad-CAM
        at ``layer`` (default: the deepest stage) unless ``method`` says otherwise (:meth:`explanation`)."""
        why = self.explanation(prepared, target, method, layer)
        return why.heat, why.target

    def explanation(
        self, prepared: torch.Tensor, target: int | None = None, method: str | None = None, layer: str | None = None
    ) -> Explanation:
        """Why one uint8 (C, H, W) image got ``target`` (default: the top class), by ``method``
        (one of :data:`METHODS`, default :meth:`default_method`).

        Both in fp32 whatever the server's precision: Grad-CAM is a product of activations and
        gradients, occlusion a difference of probabilities, which bf16's 8-bit mantissa would
        coarsen. Occlusion hides patches with the background the preparation gives digits and
        clothes (black: 0), so it asks which strokes the answer needs; natural images get the
        dataset's mean colour (0 once normalised), the grey of Zeiler and Fergus."""
        method = method or self.default_method()
        if method not in METHODS:
            raise ValueError(f"Explanation method {method!r} is not one of: {', '.join(METHODS)}.")
        x = self.normalized(prepared[None])
        size = (x.shape[-2], x.shape[-1])
        if method == "occlusion":
            if target is None:
                target = self.top_k(prepared, 1)[0]["index"]
            patch, stride = occlusion_grid(max(size))
            fill = self.normalized(torch.zeros(1, self.channels, 1, 1, dtype=torch.uint8)).flatten()
            model = self.inference_model()  # no hooks on it: no lock
            heat, peak = occlusion(model, x, target, patch, stride, fill if self.style in WHAT else 0.0)
            grid = (len(_starts(size[0], patch, stride)), len(_starts(size[1], patch, stride)))
            return Explanation(heat, target, method, grid, size, patch=patch, stride=stride, peak=peak)
        with self._lock:  # the model is shared between sessions; hooks must not interleave
            if target is None:
                with torch.no_grad():
                    target = int(self.model(x).argmax(1))
            layer = layer or self.cam_layers()[-1]
            heat, grid = grad_cam_grid(self.model, x, target, layer)
        return Explanation(heat, target, method, grid, size, layer=layer)

    def top_k(self, prepared: torch.Tensor, k: int = 5) -> list[dict]:
        """The ``k`` likeliest classes of one uint8 (C, H, W) image: ``{"label", "index", "prob"}``."""
        with torch.inference_mode():
            values, idx = self.probabilities(prepared[None])[0].topk(min(k, len(self.classes)))
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
    stats = torch.tensor([ckpt["mean"], ckpt["std"]]).view(2, 1, -1, 1, 1)
    model = build_from_checkpoint(ckpt)
    cpu = torch.device("cpu")
    # This server's precision unless the run chose fp32, as Predictor.logits (the gallery) computes.
    compute = precision.resolve(cpu, (ckpt.get("config") or {}).get("amp", True))
    result = engine.evaluate(model, test, cpu, stats, return_predictions=True, side=ckpt["image_size"], compute=compute)
    result.update(classes=ckpt["classes"], dataset=dataset, targets=test.targets.tolist())
    return result


# ---------------------------------------------------------------------------------------------
# The gallery: every test image, to find and understand the mistakes


def evaluate_gallery(predictor: Predictor, batch_size: int = 250) -> dict:
    """The checkpoint's whole test split, image by image, for the gallery and its confusion matrix.

    Per image (numpy, in split order): ``targets``, ``preds``, ``prob_actual`` (softmax
    probability of the actual class), ``loss`` (cross-entropy, ``-log prob_actual``); over the
    split: ``confusion`` (k x k, rows actual, columns predicted), ``accuracy``, ``per_class``.
    The pixels (at the dataset's size) come back only when the split is in memory anyway
    (``images``); a folder's are decoded for the few images shown (:func:`gallery_images`).
    """
    test = data_mod.load_dataset(predictor.dataset, "test")
    if len(test.classes) != len(predictor.classes):
        raise data_mod.DatasetUnavailable(  # the folder was deleted and added again with other classes
            "data.classes_changed", dataset=predictor.dataset, now=len(test.classes), then=len(predictor.classes)
        )
    logits = []
    # No lock: a forward pass through the inference copy registers no hooks.
    with torch.inference_mode():
        for idx in torch.arange(len(test)).split(batch_size):
            x, _ = engine.fetch(test, idx)
            # Resized per batch as in training (a 28 px split at 224 px is 64 times the memory);
            # the gallery shows the dataset's own images.
            logits.append(predictor.logits(engine.resize(x, predictor.size)).float())
    logits = torch.cat(logits) if logits else torch.zeros(0, len(predictor.classes))
    targets = test.targets
    loss = F.cross_entropy(logits, targets, reduction="none")
    preds = logits.argmax(1)
    k = len(predictor.classes)
    confusion = torch.bincount(targets * k + preds, minlength=k * k).view(k, k)
    return {
        "classes": list(predictor.classes),
        "targets": targets.numpy().copy(),
        "preds": preds.numpy().copy(),
        "prob_actual": torch.exp(-loss).numpy().copy(),
        "loss": loss.numpy().copy(),
        "confusion": confusion.numpy().copy(),
        "accuracy": int((preds == targets).sum()) / max(len(targets), 1),
        "per_class": (confusion.diag() / confusion.sum(1).clamp_min(1)).tolist(),
        "images": test.images,
        "files": test.files,
        "size": test.size,
        "channels": test.channels,
    }


def gallery_images(result: dict, indices) -> torch.Tensor:
    """uint8 (n, C, H, W) of the gallery's test images at ``indices``, at the dataset's size."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    if result["images"] is not None:
        return result["images"][idx]
    folder = data_mod.LabData(
        "",
        "test",
        result["classes"],
        result["channels"],
        result["size"],
        torch.as_tensor(result["targets"]),
        files=result["files"],
    )
    return engine.fetch(folder, idx)[0]


def mistakes(
    result: dict,
    cell: tuple[int, int] | None = None,
    only_wrong: bool = True,
    order: str = "loss",
    limit: int | None = None,
) -> np.ndarray:
    """Indices of the gallery's images to show: those of one confusion-matrix ``cell``
    (actual, predicted) if given, only the wrong ones if ``only_wrong``, highest loss first
    (``order="loss"``) or in split order (``"index"``), at most ``limit``."""
    if order not in ("loss", "index"):
        raise ValueError(f"Gallery order {order!r} is not one of: loss, index.")
    targets, preds = result["targets"], result["preds"]
    keep = np.ones(len(targets), dtype=bool)
    if cell is not None:
        keep &= (targets == cell[0]) & (preds == cell[1])
    if only_wrong:
        keep &= targets != preds
    idx = np.flatnonzero(keep)
    if order == "loss":
        idx = idx[np.argsort(-result["loss"][idx], kind="stable")]  # ties keep split order
    return idx[:limit]


def confused_pairs(confusion, top: int | None = 10) -> list[dict]:
    """The most frequent mistakes: ``{"actual", "predicted", "count", "share"}`` (share of the
    actual class's images), most frequent first, ``top`` of them; correct answers are no pairs."""
    confusion = np.asarray(confusion)
    totals = confusion.sum(1)
    pairs = [
        {
            "actual": int(a),
            "predicted": int(p),
            "count": int(confusion[a, p]),
            "share": float(confusion[a, p] / totals[a]),
        }
        for a, p in zip(*np.nonzero(confusion))
        if a != p
    ]
    pairs.sort(key=lambda r: (-r["count"], -r["share"], r["actual"], r["predicted"]))
    return pairs[:top]
