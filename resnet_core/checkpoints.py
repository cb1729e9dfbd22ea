"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict, as in torchvision's reference script: ``model`` (state_dict),
``optimizer``, ``lr_scheduler``, ``epoch``, plus what a predictor needs without the dataset at
hand: ``config``, ``classes``, ``mean``, ``std``, ``image_size``, ``in_channels`` and
``metrics``. Only tensors, numbers, strings, lists and dicts go in, so the safe loader reads it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from resnet_core.messages import LabError

REQUIRED = ("model", "config", "classes", "mean", "std", "image_size", "in_channels")


class CheckpointError(LabError, ValueError):
    """A checkpoint file that cannot be used; the message says why and what to do."""


def _atomic(path: Path, write) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.

    A crash or a second reader never sees half a file: ``os.replace`` is atomic on POSIX
    and Windows when source and target are on the same file system.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _unsaved(path, err) from err
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a finished file gets the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _unsaved(path, err) from err
        raise


def _unsaved(path: Path, err: OSError) -> CheckpointError:
    """A full disk or a read-only folder: say so, and that the previous file is untouched."""
    why = err.strerror or err.__class__.__name__
    return CheckpointError("checkpoint.unsaved", name=path.name, folder=path.parent, why=why)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda f: f.write(text.encode("utf-8")))


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> None:
    _atomic(Path(path), lambda f: torch.save(obj, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a ResNet Lab checkpoint safely; raise :class:`CheckpointError` with a sentence."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint.missing", path=path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle, zip and unsafe-global errors all mean "not ours"
        raise CheckpointError("checkpoint.unreadable", name=path.name, kind=err.__class__.__name__) from err
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED):
        missing = ", ".join(k for k in REQUIRED if not isinstance(ckpt, dict) or k not in ckpt)
        raise CheckpointError("checkpoint.not_ours", name=path.name, missing=missing)
    return ckpt


def load_weights_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A plain ``.pth`` state_dict (as the tutorials save them) or our checkpoint's weights, and
    what the checkpoint says about its input (``mean``, ``std``, ``image_size``; empty for a plain file)."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError("checkpoint.unreadable_weights", name=path.name, why=str(err)) from err
    meta = {}
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        meta = {k: obj[k] for k in ("mean", "std", "image_size", "arch", "dataset") if k in obj}
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError("checkpoint.not_state_dict", name=path.name)
    if obj and all(isinstance(k, str) and k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}  # saved from a (Distributed)DataParallel
    return obj, meta


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of :func:`load_weights_file` alone."""
    return load_weights_file(path)[0]


def describe_mismatch(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], most: int = 3) -> str:
    """The keys and shapes that differ between a model's state_dict and a file's, for one sentence."""
    differ = [
        f"{k} {tuple(theirs[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in theirs and theirs[k].shape != v.shape
    ]
    missing = [k for k in own if k not in theirs]
    extra = [k for k in theirs if k not in own]
    parts = []
    for label, keys in (("shapes differ", differ), ("missing", missing), ("unexpected", extra)):
        if keys:
            more = f" and {len(keys) - most} more" if len(keys) > most else ""
            parts.append(f"{label}: {', '.join(keys[:most])}{more}")
    return "; ".join(parts)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> torch.nn.Module:
    """``model.load_state_dict(state)``, with a mismatch told as the keys and shapes that differ."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = describe_mismatch(model.state_dict(), state)
        raise CheckpointError("checkpoint.mismatch", name=name, model=type(model).__name__, detail=detail) from err
    return model
