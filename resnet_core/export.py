"""Export a checkpoint's weights: a plain state_dict (``.pth``) or an ONNX graph.

The ONNX file carries what a user needs to feed it, as model metadata (``metadata_props``,
read with onnxruntime's ``get_modelmeta().custom_metadata_map``): the class names, the
normalisation, the input size and channels, the architecture and the dataset.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import onnx
import torch
from torch import nn

from resnet_core.checkpoints import _atomic, load_checkpoint, save_checkpoint
from resnet_core.predict import build_from_checkpoint

FORMATS = ("pth", "onnx")
# How the input is made from 8-bit pixels, the same as engine.normalize.
PREPROCESSING = "NCHW float32: x = (pixels / 255 - mean) / std, per channel"


def export(checkpoint: str | Path, fmt: str = "pth", output: str | Path | None = None) -> Path:
    """Write ``model.load_state_dict(torch.load(path))``-ready weights, or ONNX; return the path."""
    if fmt not in FORMATS:
        raise ValueError(f"Export format {fmt!r} is not one of: {', '.join(FORMATS)}.")
    ckpt = load_checkpoint(checkpoint)
    out = Path(output) if output else Path(checkpoint).with_suffix(f".{fmt}")
    if fmt == "pth":
        save_checkpoint(ckpt["model"], out)
        return out
    model = build_from_checkpoint(ckpt)
    example = torch.zeros(1, ckpt["in_channels"], ckpt["image_size"], ckpt["image_size"])
    fix_adaptive_pools(model, example)
    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buffer,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, metadata(ckpt))
    # Temp file, fsync, rename (as checkpoints are saved): a reader never sees half a model.
    _atomic(out, lambda f: f.write(graph.SerializeToString()))
    return out


class FixedAdaptivePool(nn.Module):
    """``AdaptiveAvgPool2d`` for one input size, as the linear map it is there (a matrix product)."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d, h: int, w: int) -> None:
        super().__init__()
        pooled = pool(torch.eye(h * w).view(h * w, 1, h, w))  # of each one-pixel image: a row of the map
        self.out = tuple(pooled.shape[-2:])
        self.register_buffer("weight", pooled.flatten(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(2) @ self.weight).unflatten(2, self.out)


def fix_adaptive_pools(model: nn.Module, example: torch.Tensor) -> None:
    """ONNX has no adaptive average pooling to a size that does not divide the input: VGG's 7x7
    pool meets 1x1 at 28 px, 2x2 at 32, 8x8 at 256 (only 224 divides). The exported graph has one
    input size, where such a pool is a fixed linear map: swap it in (in place)."""
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = tuple(inputs[0].shape[-2:])

        return hook

    pools = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    hooks = [m.register_forward_hook(record(n)) for n, m in pools]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    for name, pool in pools:
        if name not in seen:  # not on the forward path
            continue
        h, w = seen[name]
        out_h, out_w = pool(torch.zeros(1, 1, h, w)).shape[-2:]
        if h % out_h or w % out_w:
            parent, _, last = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, last, FixedAdaptivePool(pool, h, w))


def metadata(ckpt: dict) -> dict[str, str]:
    """ONNX metadata values are strings: lists as JSON."""
    return {
        "classes": json.dumps(list(ckpt["classes"]), ensure_ascii=False),
        "mean": json.dumps(list(ckpt["mean"])),
        "std": json.dumps(list(ckpt["std"])),
        "image_size": str(ckpt["image_size"]),
        "in_channels": str(ckpt["in_channels"]),
        "arch": str(ckpt["arch"]),
        "dataset": str(ckpt["dataset"]),
        "preprocessing": PREPROCESSING,
    }


def state_dict_bytes(checkpoint: str | Path) -> bytes:
    """The plain state_dict of a checkpoint as ``.pth`` bytes, for a download button."""
    buffer = io.BytesIO()
    torch.save(load_checkpoint(checkpoint)["model"], buffer)
    return buffer.getvalue()
