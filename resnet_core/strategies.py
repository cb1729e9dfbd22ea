"""Which transfer strategy wins when labels are few: one backbone, K labelled images per class
of a target dataset, four runs side by side.

- ``head``: the backbone frozen (batch norm included), only the new head learns;
- ``last-stage``: the deepest stage and the head learn;
- ``all``: everything learns, the backbone at a tenth of the head's rate, so the few labels
  adjust its features without washing them out;
- ``scratch``: the same network from random weights, the baseline every strategy must beat.

Each strategy is an ordinary run (queued, stoppable, listed on the Train page) tagged with the
comparison's group; :func:`table` reads the figures back from the run directories.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from resnet_core import catalog, data, models, runs, transfer
from resnet_core.checkpoints import load_checkpoint
from resnet_core.config import TrainConfig

STRATEGIES = {
    "head": {"trainable": "head"},
    "last-stage": {"trainable": "last-stage"},
    "all": {"trainable": "all", "backbone_lr_scale": 0.1},
    "scratch": {"trainable": "all", "pretrained": None},
}
# One recipe for all four, so only the strategy differs. K x classes images make few steps per
# epoch: small batches and more epochs give SGD the steps; no augmentation (the sample sets'
# items are centred and upright, see data.py's presets).
KIND = "compare"  # the group kind of a comparison's runs (runs.group_kind): other groups are not ours
SOURCE, TARGET = "mnist-sample", "fashion-sample"  # offline out of the box: the bundled samples
RECIPE = dict(epochs=15, batch_size=32, optimizer="sgd", lr=0.05, schedule="onecycle", augment="none")
# The ImageNet ResNet-50 on a folder of photos, a recipe for 2 CPU cores: a ResNet-50 step at 224 px
# is some 400 times a ResNet-20's at 28, and fine-tuning from ImageNet needs few epochs. Head only is
# a linear probe on features computed once (resnet_core.features); its 2,048 features are large, so
# the rate is a fifth of RECIPE's (at 0.05 the probe's loss jumped above 2 on ants and bees).
IMAGENET = "imagenet:resnet50"  # whichever ResNet-50 ImageNet weights this server has
PHOTO_RECIPE = dict(epochs=3, batch_size=16, optimizer="sgd", lr=0.01, schedule="onecycle", augment="none")


def is_imagenet(backbone: str | Path) -> bool:
    """ "imagenet" or "imagenet:NAME", as TrainConfig.pretrained says it; a file named imagenet_x.pt is a file."""
    return str(backbone) == "imagenet" or str(backbone).startswith("imagenet:")


def source_of(backbone: str | Path) -> dict:
    """What a backbone brings to a comparison: its model (``arch``), input (``image_size``,
    ``in_channels``), head width, the dataset it learned, and what ``TrainConfig.pretrained`` says.
    ``backbone``: a run's best.pt, or "imagenet:NAME" (an entry or a network of
    :mod:`resnet_core.weights`, which must be on this server: ``weights get`` fetches it)."""
    if is_imagenet(backbone):
        from resnet_core import weights

        name = str(backbone).partition(":")[2] or "resnet50"
        cfg = weights.cached(name)
        if cfg is None:
            raise models.WeightsUnavailable("weights.not_cached", name=name, folder=weights.cache_dir())
        return {
            "arch": cfg.arch,
            "image_size": cfg.input_size,
            "in_channels": 3,
            "classes": cfg.num_classes,
            "dataset": "imagenet",
            "pretrained": f"imagenet:{cfg.name}",
        }
    ckpt = load_checkpoint(backbone)
    return {
        "arch": ckpt["arch"],
        "image_size": ckpt["image_size"],
        "in_channels": ckpt["in_channels"],
        "classes": len(ckpt["classes"]),
        "dataset": ckpt["dataset"],
        "pretrained": str(backbone),
    }


def configs(backbone: str | Path, target: str, k: int | None = 50, seed: int = 0, **recipe) -> dict[str, TrainConfig]:
    """One :class:`TrainConfig` per strategy: ``backbone`` (a run's best.pt, or "imagenet:NAME",
    see :func:`source_of`) on ``k`` images per class of ``target`` (None: all of them). The model
    is the backbone's architecture; ``recipe`` overrides RECIPE (PHOTO_RECIPE for ImageNet).
    An architecture without ``layerN`` stages (the tutorial net, VGG) has no "last-stage" run."""
    data.get_spec(target)  # an unknown target names the valid ones before anything is queued
    src = source_of(backbone)
    group = f"compare-{uuid.uuid4().hex[:8]}"
    # All four fed the backbone's input size, the scratch baseline included (it has no source to take it from).
    base = {**(PHOTO_RECIPE if is_imagenet(backbone) else RECIPE), "image_size": src["image_size"], **recipe}
    base |= {"dataset": target, "model": src["arch"], "labels_per_class": k, "seed": seed}
    with torch.device("meta"):  # shapes only: which stages it has
        probe = models.get_model(src["arch"], src["classes"], src["in_channels"], src["image_size"])
    try:
        transfer.last_stage(probe)
        chosen = STRATEGIES
    except ValueError:
        chosen = {name: change for name, change in STRATEGIES.items() if change["trainable"] != "last-stage"}
    out = {}
    for name, change in chosen.items():
        config = {**base, "pretrained": src["pretrained"], **change}
        extra = {"group": group, "kind": KIND, "strategy": name, "k": k, "backbone": src["pretrained"]}
        extra["source"] = src["dataset"]
        out[name] = TrainConfig(**config, extra=extra).validate()
    return out


def launch(backbone: str | Path, target: str, k: int | None = 50, actor=None, **recipe) -> str:
    """Queue the four strategy runs as one job; return the comparison's group id."""
    chosen = configs(backbone, target, k, **recipe)
    runs.launch_group(list(chosen.values()), actor=actor)
    return next(iter(chosen.values())).extra["group"]


# The backbone a first comparison trains where the source's preset model has no stages (the
# mnist-sample preset is the tutorial net: its comparison would lack the "last stage" run): a
# ResNet-20 for 5 epochs of the preset's recipe (~98.7 %). Other sources train their preset.
BACKBONE_MODEL, BACKBONE_EPOCHS = "resnet20", 5


def staged_models() -> set[str]:
    """Architectures with ``layerN`` stages, for which all four strategies run."""
    return {m for family in ("cifar", "torchvision") for m in models.list_models(family)}


def backbone_config(source: str = SOURCE) -> TrainConfig:
    """The backbone a first comparison needs: ``source``'s preset, as a ResNet-20 if it has no stages."""
    preset = {**data.get_spec(source).preset, "dataset": source}
    if preset["model"] not in staged_models():
        preset |= {"model": BACKBONE_MODEL, "epochs": BACKBONE_EPOCHS}
    return TrainConfig(**preset)


def default_backbone(rows: list[dict], owner: str | None = None, source: str = SOURCE) -> int:
    """Index in ``rows`` (``catalog.checkpoints``) of the backbone to offer first: among those on
    ``source`` whose model has stages (all four strategies run), the one ``catalog.default``
    picks for ``owner`` (their own, the teacher's pin, the newest from the command line, the
    shipped ResNet-20); never another student's run. Without such a checkpoint,
    ``catalog.default`` over all of them."""
    staged = [i for i, r in enumerate(rows) if r.get("dataset") == source and r.get("model") in staged_models()]
    if not staged:
        return catalog.default(rows, owner, catalog.pinned())
    return staged[catalog.default([rows[i] for i in staged], owner, catalog.pinned())]


def active(rows: list[dict]) -> bool:
    """Whether any run of a comparison's :func:`table` is still queued or training."""
    return any(r["state"] in runs.ACTIVE for r in rows)


def groups() -> list[str]:
    """Comparison groups on this server, newest first."""
    seen = []
    for row in runs.list_runs():
        if row.get("kind") == KIND and row["group"] not in seen:
            seen.append(row["group"])
    return seen


def _extra(row: dict) -> dict | None:
    """A run's ``extra`` as its config.json has it; None when the run was deleted meanwhile."""
    try:
        return json.loads((Path(row["path"]) / "config.json").read_text())["extra"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def label(group: str) -> dict | None:
    """What a person recognises a comparison by: target, K, backbone (its run, or the shipped
    checkpoint's name), when it was queued; None once its runs are gone. The page words it."""
    rows = [r for r in runs.list_runs() if r.get("group") == group]
    extra = _extra(rows[-1]) if rows else None
    if extra is None:
        return None
    s = rows[-1]["run"]  # runs are named YYYYMMDD-HHMMSS-...
    backbone = Path(extra.get("backbone", "?"))
    shipped = backbone.parent == catalog.SHIPPED
    name = backbone.stem if shipped else backbone.parent.name
    return {
        "dataset": rows[-1]["dataset"],
        "k": extra.get("k"),
        "backbone": str(backbone).partition(":")[2] if is_imagenet(backbone) else name,
        "imagenet": is_imagenet(backbone),
        "shipped": shipped,
        "when": f"{s[:4]}-{s[4:6]}-{s[6:8]} {s[9:11]}:{s[11:13]}",
    }


def table(group: str) -> list[dict]:
    """One row per strategy of ``group``: state, progress, test accuracy at the last epoch and at
    the best, trainable parameters, seconds (the epochs' own, training and test pass, and a linear
    probe's features; queueing and start-up excluded)."""
    rows = []
    for row in runs.list_runs():
        if row.get("group") != group or row.get("kind") != KIND:
            continue
        run_dir = Path(row["path"])
        extra = _extra(row)
        if extra is None or "strategy" not in extra:
            continue  # deleted while we read, or not one of ours
        events = runs.read_metrics(run_dir)
        start = next((e for e in events if e["type"] == "start"), {})
        epochs = [e for e in events if e["type"] == "epoch"]
        # A linear probe's features (computed once per image, or read from the cache) count too.
        feats = [e["seconds"] for e in events if e["type"] == "features" and e.get("state") == "done"]
        rows.append(
            {
                "strategy": extra["strategy"],
                "k": extra.get("k"),
                "state": row["state"],
                "epochs_done": len(epochs),
                "epochs": row["epochs"],
                "test_acc": epochs[-1]["test_acc"] if epochs else None,
                "best_acc": max((e["test_acc"] for e in epochs), default=None),
                "trainable": start.get("trainable"),
                "parameters": start.get("parameters"),
                "seconds": round(sum(e["seconds"] for e in epochs) + sum(feats), 1),
                "features": bool(feats),
                "run": row["run"],
            }
        )
    order = list(STRATEGIES)
    return sorted(rows, key=lambda r: order.index(r["strategy"]) if r["strategy"] in order else len(order))
