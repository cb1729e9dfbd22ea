"""Export a checkpoint's weights: a plain state_dict (``.pth``) or an ONNX graph."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from resnet_core.checkpoints import load_checkpoint, save_checkpoint
from resnet_core.predict import build_from_checkpoint

FORMATS = ("pth", "onnx")


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
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (example,),
        str(out),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return out


def state_dict_bytes(checkpoint: str | Path) -> bytes:
    """The plain state_dict of a checkpoint as ``.pth`` bytes, for a download button."""
    buffer = io.BytesIO()
    torch.save(load_checkpoint(checkpoint)["model"], buffer)
    return buffer.getvalue()
