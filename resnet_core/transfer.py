"""Transfer learning: find and replace a model's head, load a backbone without it, freeze.

torchvision has the models and the weights but no "replace the classifier" or "freeze all but
the last stage" API (timm's ``reset_classifier`` is the model for the first), hence this file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnet_core import models
from resnet_core.checkpoints import describe_mismatch, load_weights_file
from resnet_core.messages import LabError

HEAD_NAMES = ("fc", "classifier", "head")
COUNTER = "num_batches_tracked"  # a batch norm's step count, see match()


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


class TransferError(LabError, ValueError):
    """Pretrained weights that cannot serve as this model's backbone; the message says what to pick."""


def stem_channels(state: dict[str, torch.Tensor]) -> int | None:
    """Input channels of the weights' first convolution (the first 4-D tensor, as registered)."""
    return next((int(v.shape[1]) for v in state.values() if v.ndim == 4), None)


def source_weights(config, shapes_only: bool = False) -> models.Weights | None:
    """The weights ``config.pretrained`` names, with the input they were trained on when known:
    "imagenet" (the model's default ImageNet weights), "imagenet:NAME" (an entry of
    :mod:`resnet_core.weights`, e.g. "imagenet:resnet50.IMAGENET1K_V1"), or a file's path.

    ``shapes_only`` skips the ImageNet download: the state is the lab's model on the meta
    device, whose names and shapes are the weights file's (enough for a preview offline).
    """
    from resnet_core import weights

    if not config.pretrained:
        return None
    if config.pretrained == "imagenet" or config.pretrained.startswith("imagenet:"):
        name = config.pretrained.partition(":")[2]
        cfg = weights.get_cfg(name) if name else weights.default_for(config.model)
        check_variant(cfg.label, cfg.arch, config.model)
        if not shapes_only:
            return weights.load(cfg) if name else models.imagenet_weights(config.model)
        with torch.device("meta"):
            model = models.get_model(cfg.arch, cfg.num_classes, in_channels=3, image_size=cfg.input_size)
        return dataclasses.replace(cfg.preprocessing(), state=model.state_dict())
    path = Path(config.pretrained)
    state, meta = load_weights_file(path)
    label = f"{path.parent.name}/{path.name}"
    check_variant(label, meta.get("arch"), config.model)
    return models.Weights(state, meta.get("mean"), meta.get("std"), meta.get("image_size"), label)


def check_variant(label: str, arch: str | None, model: str) -> None:
    """Refuse weights of one variant for the other (ResNet-50 v1 and torchvision's v1.5): every
    tensor would load, strictly even, and the network would compute with strides it was not trained
    with. Only the model's name tells them apart, so where the weights name theirs, it must match."""
    if not arch or arch == model or arch not in models.REGISTRY or model not in models.REGISTRY:
        return
    if models.get_spec(arch).variant == models.get_spec(model).variant:
        return
    with torch.device("meta"):
        theirs, ours = (models.get_model(a, 10, 3, 224).state_dict() for a in (arch, model))
    if {k: v.shape for k, v in theirs.items()} == {k: v.shape for k, v in ours.items()}:
        raise TransferError("transfer.other_variant", source=label, arch=arch, model=model)


@dataclass(frozen=True)
class InputPlan:
    """What the model is fed: a pretrained backbone gets the input its weights were trained on."""

    channels: int  # the model's input channels (3 for a gray dataset on an RGB backbone)
    size: int  # side in px; every batch is resized to it on the device
    mean: list[float] | None  # None only in a preview: the dataset's own, not computed yet
    std: list[float] | None


def _fit_channels(values, channels: int) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    return [sum(values) / len(values)] * channels


def plan_input(config, data_channels: int, data_size: int, data_stats, source: models.Weights | None) -> InputPlan:
    """Channels, size and normalisation for ``config`` on a dataset of ``data_channels``/``data_size``.

    A gray dataset meeting an RGB stem keeps the stem as trained and repeats the gray channel into
    its three (the normalisation broadcasts 1 channel to 3, see ``engine.normalize``): the exact
    input a gray photo in RGB gives it. The size defaults to the weights' (224 for ImageNet) and
    the mean and std are the weights' where known (our checkpoints and torchvision's record them).
    """
    channels = data_channels
    if source is not None and data_channels == 1 and stem_channels(source.state) == 3:
        channels = 3
    size = config.image_size or (source.image_size if source is not None and source.image_size else data_size)
    mean, std = data_stats or (None, None)
    if source is not None and source.mean is not None and source.std is not None:
        mean, std = source.mean, source.std
    if mean is None:  # a preview that did not compute the dataset's statistics
        return InputPlan(channels, int(size), None, None)
    return InputPlan(channels, int(size), _fit_channels(mean, channels), _fit_channels(std, channels))


def match(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], head: str) -> dict[str, list[str]]:
    """Which of ``state``'s tensors load into ``own`` (same name and shape), which are skipped (the
    head, other names or shapes), which of ``own`` are missing, and the modules that start fresh.

    Batch norm's ``num_batches_tracked`` step counters take no part: they are no weights (read
    only with ``momentum=None``, which no model here uses), files saved before PyTorch 0.4.1
    lack them (torchvision's model-zoo ResNets and VGGs among them); counted, they made every
    batch norm of such a file "fresh" (so training in a frozen backbone) and let a file of
    another architecture that shares only their names pass for a backbone."""
    own = {k: v for k, v in own.items() if not k.endswith(COUNTER)}
    state = {k: v for k, v in state.items() if not k.endswith(COUNTER)}
    body = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    loaded = sorted(k for k, v in body.items() if k in own and v.shape == own[k].shape)
    skipped = sorted(set(state) - set(loaded))
    missing = sorted(set(own) - set(loaded))
    fresh = sorted({k.rsplit(".", 1)[0] for k in missing if not k.startswith(head + ".")})
    return {"loaded": loaded, "skipped": skipped, "missing": missing, "fresh": fresh}


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Load every weight whose name and shape match, except the head's; return :func:`match`'s report."""
    report = match(model.state_dict(), state, find_head(model)[0])
    model.load_state_dict({k: state[k] for k in report["loaded"]}, strict=False)
    return report


def _refuse_empty(report: dict, label: str, arch: str, own: dict, state: dict) -> None:
    if not report["loaded"]:
        raise TransferError("transfer.nothing_fits", source=label, arch=arch, detail=describe_mismatch(own, state))


def last_stage(model: nn.Module) -> str:
    """The deepest ``layerN`` (layer4 in torchvision ResNets, layer3 in the CIFAR ones)."""
    stages = [name for name, _ in model.named_children() if name.startswith("layer")]
    if not stages:
        raise ValueError(f"{type(model).__name__} has no layerN stages to train on their own.")
    return max(stages, key=lambda n: int(n[5:]))


def set_trainable(model: nn.Module, mode: str, fresh: list[str] = ()) -> tuple[int, int]:
    """``all``, ``last-stage`` (deepest stage + head) or ``head``; return (trainable, total).

    Modules in ``fresh`` (no pretrained weight reached them, e.g. a stem rebuilt for 28 px)
    always train: frozen at their random initialisation they would feed noise to the rest.
    """
    keep = None
    if mode == "head":
        keep = [find_head(model)[0], *fresh]
    elif mode == "last-stage":
        keep = [last_stage(model), find_head(model)[0], *fresh]
    for name, p in model.named_parameters():
        p.requires_grad = keep is None or any(name.startswith(k + ".") for k in keep)
    return models.count_parameters(model, trainable_only=True), models.count_parameters(model)


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()``, except batch-norm layers with frozen parameters: they keep the running
    statistics the backbone was trained with (eval mode), so a frozen backbone stays the one loaded."""
    model.train()
    for m in model.modules():
        params = list(m.parameters())  # a BatchNorm without affine parameters follows the model
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            m.eval()
    return model


def prepare_model(config, num_classes: int, plan: InputPlan, source: models.Weights | None = None):
    """Build ``config.model`` for ``plan``, load ``source``'s backbone, set what trains.

    Returns the model and a report (tensors loaded, skipped, missing; modules fresh; trainable
    parameters). Raises :class:`TransferError` when nothing of the backbone loads.
    """
    model = models.get_model(config.model, num_classes, plan.channels, plan.size)
    report = {"source": None, "loaded": [], "skipped": [], "missing": [], "fresh": []}
    if source is not None:
        head = find_head(model)[0]
        report = {"source": source.label, **load_backbone(model, source.state)}
        body = {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}
        _refuse_empty(report, source.label, config.model, body, source.state)
    trainable, total = set_trainable(model, config.trainable, report["fresh"])
    return model, {**report, "trainable": trainable, "total": total}


def resume_model(config, num_classes: int, ckpt: dict) -> tuple[nn.Module, InputPlan, dict]:
    """The model of a run resumed from ``ckpt`` (its last.pt), before those weights load: fed
    what the run was fed, the same parameters training, the same ones in the backbone's
    optimizer groups (the saved optimizer state must fit them), and the same report.

    The backbone's source is not read again: last.pt holds every weight, and the source may be
    gone (a deleted run, a pruned upload, ImageNet offline). A last.pt from before the load
    report was trained with no fresh module kept training and one learning rate for all.
    """
    plan = InputPlan(ckpt["in_channels"], ckpt["image_size"], list(ckpt["mean"]), list(ckpt["std"]))
    saved = ckpt.get("transfer") or {}
    model = models.get_model(config.model, num_classes, plan.channels, plan.size)
    if isinstance(saved.get("loaded"), int):  # a report of counts only (early issue 10): match the source again
        state = source_weights(config, shapes_only=True).state
        saved = {**saved, **match(model.state_dict(), state, find_head(model)[0]), "fresh": saved["fresh"]}
    report = {"source": saved.get("source")} | {k: list(saved.get(k, [])) for k in ("loaded", "skipped", "missing")}
    report["fresh"] = list(saved.get("fresh", []))
    trainable, total = set_trainable(model, config.trainable, report["fresh"])
    return model, plan, {**report, "trainable": trainable, "total": total}


def summary(report: dict) -> str:
    """One line for the run's log: where the backbone came from and what happened to each tensor."""
    if not report.get("source"):
        return f"from scratch: {report['trainable']:,} of {report['total']:,} parameters train"
    fresh = f"; fresh and trained: {', '.join(report['fresh'])}" if report["fresh"] else ""
    return (
        f"backbone {report['source']}: loaded {len(report['loaded'])} tensors, skipped {len(report['skipped'])}, "
        f"missing {len(report['missing'])}{fresh}; {report['trainable']:,} of {report['total']:,} parameters train"
    )


def preview(config, num_classes: int, data_channels: int, data_size: int, data_stats=None) -> dict:
    """Everything the Transfer page shows before a launch, on the meta device (shapes only, so an
    uploaded file claiming a head of millions of classes costs milliseconds): the head before and
    after, the input plan, the load report, and trainable parameters for each choice."""
    source = source_weights(config, shapes_only=True)
    plan = plan_input(config, data_channels, data_size, data_stats, source)
    with torch.device("meta"):
        model = models.get_model(config.model, num_classes, plan.channels, plan.size)
    head = find_head(model)[0]
    old = source.state.get(head + ".weight") if source else None
    # A head with no class count to read (absent, 0-dim) is drawn as ImageNet's 1000, as before.
    before_classes = int(old.shape[0]) if old is not None and old.ndim == 2 and old.shape[0] > 0 else 1000
    with torch.device("meta"):
        replace_head(model, before_classes if source else num_classes)
        before, after = replace_head(model, num_classes)
    report = match(model.state_dict(), source.state, head) if source else None
    fresh = report["fresh"] if report else []
    # The stem rebuilt on purpose (small input, other channels) is reported as fresh, not as a
    # sign of another architecture; any other tensor left out is.
    stem = next((k.rsplit(".", 1)[0] for k, v in model.state_dict().items() if v.ndim == 4), head)
    if report and any(not k.startswith((head + ".", stem + ".")) for k in report["skipped"]):
        body = {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}
        report["mismatch"] = describe_mismatch(
            body, {k: v for k, v in source.state.items() if not k.startswith(head + ".")}
        )
    counts = {}
    for mode in ("head", "last-stage", "all"):
        try:
            counts[mode] = set_trainable(model, mode, fresh)
        except ValueError:  # a model without stages (the tutorial net, VGG) has no "last stage"
            continue
    return {"before": before, "after": after, "plan": plan, "report": report, "trainable": counts}


def imagenet_cached(arch: str) -> bool:
    """Whether the default ImageNet weights for ``arch`` (:func:`resnet_core.weights.default_for`)
    are already on disk: torchvision's in its hub cache, converted ones in the lab's."""
    from resnet_core import weights

    return weights.is_cached(weights.default_for(arch))


def save_uploaded_weights(raw: bytes, folder: Path) -> Path:
    """Check an uploaded .pth (safe loader, a dict of tensors) and keep it by content hash."""
    import hashlib
    import io

    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as err:
        raise TransferError("transfer.unreadable_upload", kind=err.__class__.__name__) from err
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise TransferError("transfer.not_state_dict")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(raw).hexdigest()[:16]}.pth"
    try:  # uploaded again: the upload-days limit counts from today, or the pruner takes it from a queued run
        os.utime(path)
    except FileNotFoundError:
        from resnet_core.checkpoints import save_checkpoint

        save_checkpoint(obj, path)
    return path


def keep_upload(raw: bytes, name: str, folder: Path) -> Path:
    """An uploaded weights file, checked against the class's size limit and the safe loader, kept
    by content hash in ``folder`` (old uploads pruned first); its path for ``config.pretrained``."""
    from resnet_core import classroom

    classroom.check_upload("weights", len(raw), name)
    classroom.prune_uploads(folder)
    return save_uploaded_weights(raw, folder)


FINE_TUNE_CAPS = {"batch_size": 128, "lr": 0.1}


def draft_config(target: str, preset: dict, arch: str, pretrained: str | None, image_size: int | None):
    """The fine-tuning config before the user picks what trains: the target's preset, the
    backbone's architecture and source, and the input size (None: the backbone's own)."""
    from resnet_core.config import TrainConfig

    # A target's batch and rate were tuned for its own small network from scratch (CIFAR-10's: 256
    # at 0.2); a pretrained backbone, often at 224 px, starts from at most batch 128 at 0.1.
    capped = {k: min(preset[k], cap) for k, cap in FINE_TUNE_CAPS.items() if k in preset}
    return TrainConfig(
        **{**preset, **capped, "dataset": target, "model": arch, "pretrained": pretrained, "image_size": image_size}
    )


def fine_tune_config(draft, mode: str, epochs: int, lr: float, backbone_lr_scale: float):
    """``draft`` with what trains; the backbone's own rate applies only when everything trains."""
    from resnet_core.config import TrainConfig

    scale = backbone_lr_scale if mode == "all" else 1.0
    change = {"trainable": mode, "epochs": int(epochs), "lr": lr, "backbone_lr_scale": scale}
    return TrainConfig(**{**draft.to_dict(), **change}).validate()
