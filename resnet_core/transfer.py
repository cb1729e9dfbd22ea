"""Transfer learning: find and replace a model's head, load a backbone without it, freeze.

torchvision has the models and the weights but no "replace the classifier" or "freeze all but
the last stage" API (timm's ``reset_classifier`` is the model for the first), hence this file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from resnet_core import models
from resnet_core.checkpoints import load_state_dict_file

HEAD_NAMES = ("fc", "classifier", "head")


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final linear layer's dotted name: ResNet ``fc``, VGG-style ``classifier[-1]``, ``head``."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Sequential):
            idx = max(i for i, m in enumerate(head) if isinstance(m, nn.Linear))
            return f"{name}.{idx}", head[idx]
        if isinstance(head, nn.Linear):
            return name, head
    raise ValueError(f"{type(model).__name__} has no linear head named {', '.join(HEAD_NAMES)}.")


def replace_head(model: nn.Module, num_classes: int) -> tuple[str, str]:
    """Swap the head for a fresh ``Linear(in_features, num_classes)``; return (before, after),
    e.g. ``("fc: Linear(512, 1000)", "fc: Linear(512, 10)")``."""
    name, old = find_head(model)
    new = nn.Linear(old.in_features, num_classes)
    parent = model
    *path, last = name.split(".")
    for part in path:
        parent = getattr(parent, part)
    if last.isdigit():
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
    return f"{name}: Linear({old.in_features}, {old.out_features})", f"{name}: Linear({new.in_features}, {num_classes})"


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load every weight whose name and shape match, except the head's.

    A 3-channel first conv meeting a 1-channel model is summed over its input channels, so a
    gray image gives what its RGB copy would. Returns the keys loaded, skipped and missing.
    """
    head, _ = find_head(model)
    own = model.state_dict()
    loaded, skipped = {}, []
    for key, value in state.items():
        if key.startswith(head + ".") or key not in own:
            skipped.append(key)
        elif value.shape == own[key].shape:
            loaded[key] = value
        elif (
            value.ndim == 4
            and value.shape[1] == 3
            and own[key].shape[1] == 1
            and value.shape[0] == own[key].shape[0]
            and value.shape[2:] == own[key].shape[2:]
        ):
            loaded[key] = value.sum(dim=1, keepdim=True)
        else:
            skipped.append(key)
    model.load_state_dict(loaded, strict=False)
    return {"loaded": sorted(loaded), "skipped": sorted(skipped), "missing": sorted(k for k in own if k not in loaded)}


def last_stage(model: nn.Module) -> str:
    """The deepest ``layerN`` (layer4 in torchvision ResNets, layer3 in the CIFAR ones)."""
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if not stages:
        raise ValueError(f"{type(model).__name__} has no layerN stages to train on their own.")
    return max(stages, key=lambda n: int(n[5:]))


def set_trainable(model: nn.Module, mode: str) -> tuple[int, int]:
    """``all``, ``last-stage`` (deepest stage + head) or ``head``; return (trainable, total)."""
    if mode == "all":
        keep = None
    elif mode == "head":
        keep = [find_head(model)[0]]
    else:
        keep = [last_stage(model), find_head(model)[0]]
    for name, p in model.named_parameters():
        p.requires_grad = keep is None or any(name.startswith(k + ".") for k in keep)
    return models.count_parameters(model, trainable_only=True), models.count_parameters(model)


def prepare_model(config, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build ``config.model`` for the data, start from ``config.pretrained``, set what trains."""
    if config.pretrained == "imagenet":
        model = models.get_model(config.model, num_classes, in_channels, image_size, pretrained=True)
    else:
        model = models.get_model(config.model, num_classes, in_channels, image_size)
        if config.pretrained:
            load_backbone(model, load_state_dict_file(Path(config.pretrained)))
    set_trainable(model, config.trainable)
    return model


def preview(arch: str, source_classes: int, num_classes: int, in_channels: int, image_size: int) -> dict:
    """Head before (``source_classes`` outputs) and after replacement, and trainable parameters
    for each choice. Built on the meta device: shapes only, so an uploaded file that claims a
    head of millions of classes costs milliseconds and no memory."""
    with torch.device("meta"):
        model = models.get_model(arch, num_classes=source_classes, in_channels=in_channels, image_size=image_size)
        before, after = replace_head(model, num_classes)
    counts = {}
    for mode in ("head", "last-stage", "all"):
        try:
            counts[mode] = set_trainable(model, mode)
        except ValueError:  # a model without stages (the tutorial net) has no "last stage"
            continue
    return {"before": before, "after": after, "trainable": counts}


def head_classes(state: dict[str, torch.Tensor], default: int = 1000) -> int:
    """How many classes a state_dict's ``fc`` head outputs; ``default`` when it has no 2-D one."""
    for key, value in state.items():
        if key.endswith("fc.weight") and value.ndim == 2 and value.shape[0] > 0:
            return int(value.shape[0])
    return default


def imagenet_cached(arch: str) -> bool:
    """Whether torchvision's ImageNet weights for ``arch`` are already on disk."""
    import torchvision

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    return (Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]).is_file()


def save_uploaded_weights(raw: bytes, folder: Path) -> Path:
    """Check an uploaded .pth (safe loader, a dict of tensors) and keep it by content hash."""
    import hashlib
    import io

    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"The file is not a readable PyTorch weights file ({err.__class__.__name__}).") from err
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError("The file is not a state_dict: save one with torch.save(model.state_dict(), path).")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}.pth"
    if not path.exists():
        from resnet_core.checkpoints import save_checkpoint

        save_checkpoint(obj, path)
    return path
