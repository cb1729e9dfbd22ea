"""A frozen backbone's features, computed once per image and kept: training only the head on a
frozen backbone is then a linear probe, seconds of work instead of epochs of ResNet-50 forwards.

Exact, not an approximation: with the backbone frozen (its batch norms in eval mode, see
:func:`resnet_core.transfer.train_mode`), no augmentation and no dropout, the head's input for an
image is the same at every epoch, so ``head(features[i])`` is what ``model(image[i])`` computes.
:func:`applies` says when that holds; otherwise the engine trains on images as usual.

The cache, ``$RESNET_LAB_HOME/features/<backbone>.pt``, holds one row per image, keyed by

- the backbone: its weights (an ImageNet entry's name and checksum, or a file's path, size and
  modification time), the model, the input plan (size, channels, mean, std) and the precision the
  features were computed in (bf16's differ from fp32's);
- the image: a hash of its pixels as the network is fed them, so an edited or replaced photo
  misses, whatever its name, and the same photo in two datasets is computed once.

Thirty students comparing strategies on the same folder compute its features once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from resnet_core import data as data_mod
from resnet_core import transfer
from resnet_core.checkpoints import save_checkpoint

BATCH = 32  # images per forward: a ResNet-50 at 224 px holds about 3 GB of activations at 32 in fp32
MAX_ROWS = 200_000  # per backbone file (2,048 floats each: 1.6 GB); past it, new rows are not kept


def applies(config, model: nn.Module, report: dict, world_size: int = 1) -> bool:
    """Whether ``config``'s training is a linear probe that cached features reproduce exactly:
    only the head trains, nothing random between the image and the head (no augmentation, no
    dropout) and no fresh module ahead of it; one process (a cache per rank would race)."""
    return (
        config.trainable == "head"
        and bool(config.pretrained)
        and config.augment == "none"
        and not report.get("fresh")
        and world_size == 1
        and not config.max_train_batches  # a quick demo's few batches: features of the whole split would cost more
        and not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    )


def backbone_key(config, model: nn.Module, plan, compute_label: str, device_type: str = "cpu") -> str:
    """What the features depend on besides the image (see the module docstring), hashed. The
    backbone is the weights the model holds, not the file they came from: a resumed run holds
    its last.pt's even after the source file was replaced or deleted (0.2 s for a ResNet-50)."""
    head = transfer.find_head(model)[0]
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        if name.startswith(head + ".") or name.endswith("num_batches_tracked"):
            continue  # the head is what trains; a step count changes no feature
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    parts = {
        "weights": h.hexdigest(),
        "model": config.model,
        "plan": [plan.size, plan.channels, list(plan.mean), list(plan.std)],
        "precision": compute_label,
        "device": device_type,  # CUDA's convolutions (TF32) round otherwise
        "torch": torch.__version__.split("+")[0],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def image_key(image: torch.Tensor) -> str:
    """One uint8 (C, H, W) image's pixels, hashed (with its shape: a crop is another image)."""
    pixels = image.detach().cpu().contiguous()
    h = hashlib.blake2b(str(tuple(pixels.shape)).encode(), digest_size=16)
    h.update(pixels.numpy().tobytes())
    return h.hexdigest()


def cache_path(key: str) -> Path:
    return data_mod.lab_home() / "features" / f"{key}.pt"


def read_cache(path: Path) -> dict[str, torch.Tensor]:
    """The kept rows by image key; empty for a missing or damaged file (it is only a cache)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        return dict(zip(obj["keys"], obj["features"].unbind(0)))
    except Exception:  # missing, torn, or not ours: computed again
        return {}


def kept() -> dict:
    """What the cache holds on this server: backbones, image rows and megabytes on disk."""
    files = sorted((data_mod.lab_home() / "features").glob("*.pt"))
    rows = 0
    for path in files:
        try:  # the keys only: the features stay on disk (mmap)
            rows += len(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["keys"])
        except Exception:  # torn or not ours: it counts for nothing and is computed again
            continue
    megabytes = sum(p.stat().st_size for p in files) / 1e6
    return {"backbones": len(files), "images": rows, "mb": round(megabytes, 1)}


def head_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the head receives for ``x``, caught by a hook in one forward pass; refused where the
    model's output is not the head's output (something after the head: a probe would miss it).
    The model may be shared by a server's sessions: another thread's forward pass runs this hook
    too, so it keeps only what this thread's pass gave (a hook runs in the thread that called)."""
    _, head = transfer.find_head(model)
    seen, me = {}, threading.get_ident()

    def hook(module, args, output):
        if threading.get_ident() == me:
            seen["input"], seen["output"] = args[0], output

    handle = head.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    if "input" not in seen or seen["output"] is not out:
        raise ValueError("the model's output is not its head's: features cannot stand in for images")
    return seen["input"].float()


@torch.inference_mode()
def compute(
    model: nn.Module,
    split: data_mod.LabData,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    key: str,
    compute_ctx,
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[torch.Tensor, int] | None:
    """The head's input for every image of ``split`` in order (float32, (N, D), on ``device``) and
    how many came from the cache; None when ``should_stop`` said so between two batches (what was
    computed is kept). ``prepare`` turns a uint8 batch into the model's input (resize, normalise);
    ``compute_ctx`` is the run's precision."""
    from resnet_core import engine

    path = cache_path(key)
    kept = read_cache(path)
    model.eval()
    rows, new, hits, stopped = [], {}, 0, False
    order = engine.batch_indices(len(split), BATCH, None, 0, drop_last=False)
    for x, _ in engine.batches(split, order, 0, device):
        if should_stop is not None and should_stop():
            stopped = True
            break
        keys = [image_key(img) for img in x]
        missing = [i for i, k in enumerate(keys) if k not in kept and k not in new]
        if missing:
            with compute_ctx.autocast(device):
                feats = head_input(model, prepare(engine.to_device(x[missing], device)))
            new.update(zip([keys[i] for i in missing], feats.cpu().unbind(0)))
        hits += len(keys) - len(missing)
        rows.extend(kept.get(k, new.get(k)) for k in keys)
    if new and len(kept) + len(new) <= MAX_ROWS:
        merged = {**read_cache(path), **new}  # another run may have added rows meanwhile
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint({"keys": list(merged), "features": torch.stack(list(merged.values()))}, path)
    if stopped:
        return None
    if not rows:  # a folder too small to hold test images: an empty split, as on images
        return torch.zeros(0, transfer.find_head(model)[1].in_features, device=device), 0
    return torch.stack(rows).to(device), hits


def as_split(split: data_mod.LabData, feats: torch.Tensor) -> data_mod.LabData:
    """``split`` with features where its images were: the engine indexes and batches it alike."""
    targets = split.targets.to(feats.device)
    return data_mod.LabData(split.name, split.split, split.classes, split.channels, split.size, targets, feats)


def prepare_both(model, train, test, prepare, key, compute_ctx, device, emit, should_stop=None) -> tuple | None:
    """Features of both splits, timed, with one event for the run's log before and after; None
    when a stop was asked for meanwhile."""
    t0 = time.perf_counter()
    total = len(train) + len(test)
    emit({"type": "features", "state": "computing", "images": total})
    train_out = compute(model, train, prepare, key, compute_ctx, device, should_stop)
    test_out = compute(model, test, prepare, key, compute_ctx, device, should_stop) if train_out else None
    if test_out is None:
        emit({"type": "features", "state": "stopped"})
        return None
    (train_f, train_hits), (test_f, test_hits) = train_out, test_out
    info = {"images": total, "cached": train_hits + test_hits, "seconds": round(time.perf_counter() - t0, 2)}
    emit({"type": "features", "state": "done", **info})
    return as_split(train, train_f), as_split(test, test_f), info
