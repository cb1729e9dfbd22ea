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
