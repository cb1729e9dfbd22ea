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


def configs(backbone: str | Path, target: str, k: int = 50, seed: int = 0, **recipe) -> dict[str, TrainConfig]:
    """One :class:`TrainConfig` per strategy: ``backbone`` (a run's best.pt) on ``k`` images per
    class of ``target``. The model is the backbone's architecture; ``recipe`` overrides RECIPE.
    An architecture without ``layerN`` stages (the tutorial net, VGG) has no "last-stage" run."""
    data.get_spec(target)  # an unknown target names the valid ones before anything is queued
    ckpt = load_checkpoint(backbone)
    group = f"compare-{uuid.uuid4().hex[:8]}"
    # All four fed the backbone's input size, the scratch baseline included (it has no source to take it from).
    base = {**RECIPE, "image_size": ckpt["image_size"], **recipe}
    base |= {"dataset": target, "model": ckpt["arch"], "labels_per_class": k, "seed": seed}
    with torch.device("meta"):  # shapes only: which stages it has
        probe = models.get_model(ckpt["arch"], len(ckpt["classes"]), ckpt["in_channels"], ckpt["image_size"])
    try:
        transfer.last_stage(probe)
        chosen = STRATEGIES
    except ValueError:
        chosen = {name: change for name, change in STRATEGIES.items() if change["trainable"] != "last-stage"}
    out = {}
    for name, change in chosen.items():
        config = {**base, "pretrained": str(backbone), **change}
        extra = {"group": group, "kind": KIND, "strategy": name, "k": k, "backbone": str(backbone)}
        extra["source"] = ckpt["dataset"]
        out[name] = TrainConfig(**config, extra=extra).validate()
    return out


def launch(backbone: str | Path, target: str, k: int = 50, actor=None, **recipe) -> str:
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
    return {
        "dataset": rows[-1]["dataset"],
        "k": extra.get("k"),
        "backbone": backbone.stem if shipped else backbone.parent.name,
        "shipped": shipped,
        "when": f"{s[:4]}-{s[4:6]}-{s[6:8]} {s[9:11]}:{s[11:13]}",
    }


def table(group: str) -> list[dict]:
    """One row per strategy of ``group``: state, progress, test accuracy at the last epoch and at
    the best, trainable parameters, seconds (the epochs' own, training and test pass; queueing
    and start-up excluded)."""
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
                "seconds": round(sum(e["seconds"] for e in epochs), 1),
                "run": row["run"],
            }
        )
    order = list(STRATEGIES)
    return sorted(rows, key=lambda r: order.index(r["strategy"]) if r["strategy"] in order else len(order))
