"""Residual theory, measured on real modules: parameters and multiply-adds of the building blocks.

The numbers the theory page shows are computed here from torchvision's own blocks and models,
never typed in. Multiply-adds (MACs) are counted with forward hooks on every convolution and
linear layer: a k x k convolution costs (C_in / groups) * k * k MACs per output element.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torch import nn

from resnet_core import models

DATA = Path(__file__).parent / "theory_data"  # results shipped with the package, with how they were made


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of a single input of ``input_shape`` (C, H, W)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs, out) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, inputs, out) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def _cost(module: nn.Module, input_shape: tuple[int, ...]) -> dict:
    return {"params": models.count_parameters(module), "macs": count_macs(module, input_shape)}


def block_costs(size: int = 56) -> dict:
    """He et al. 2016 Fig. 5: a basic block on 64 channels against a bottleneck on 256
    (1x1 reduce to 64, 3x3, 1x1 expand to 256), both from torchvision, at ``size`` x ``size``."""
    resnet = torchvision.models.resnet
    return {
        "basic": _cost(resnet.BasicBlock(64, 64), (64, size, size)),
        "bottleneck": _cost(resnet.Bottleneck(256, 64), (256, size, size)),
        "basic_on_256": _cost(resnet.BasicBlock(256, 256), (256, size, size)),
    }


def shortcut_costs(in_channels: int = 16, out_channels: int = 32, size: int = 32) -> dict:
    """Where shapes change: option A (subsample and zero-pad) against option B (1x1 conv + BN)."""
    option_b = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
    )
    return {
        "A": _cost(models.OptionAShortcut(in_channels, out_channels, 2), (in_channels, size, size)),
        "B": _cost(option_b, (in_channels, size, size)),
    }


def cardinality_costs(width: int = 128, size: int = 56, groups: int = 32) -> dict:
    """ResNeXt's grouped 3x3 (32 groups of 4) against a plain 3x3 of the same width, and the
    whole resnet50 against resnext50_32x4d as torchvision builds them, at 224 px."""
    grouped = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False)
    dense = nn.Conv2d(width, width, 3, padding=1, bias=False)
    tv = torchvision.models
    return {
        "grouped_3x3": _cost(grouped, (width, size, size)),
        "dense_3x3": _cost(dense, (width, size, size)),
        "resnet50": _cost(tv.resnet50(), (3, 224, 224)),
        "resnext50_32x4d": _cost(tv.resnext50_32x4d(), (3, 224, 224)),
    }


def one_by_one_costs(size: int = 28, in_channels: int = 192, out_channels: int = 32, reduce: int = 16) -> dict:
    """A 5x5 convolution from 192 to 32 channels, directly and through a 1x1 to 16 first."""
    direct = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
    reduced = nn.Sequential(
        nn.Conv2d(in_channels, reduce, 1, bias=False), nn.Conv2d(reduce, out_channels, 5, padding=2, bias=False)
    )
    return {"direct": _cost(direct, (in_channels, size, size)), "reduced": _cost(reduced, (in_channels, size, size))}


def costs() -> dict:
    """Every cost table the theory page shows (none depends on a control)."""
    return {
        "blocks": block_costs(),
        "shortcuts": shortcut_costs(),
        "cardinality": cardinality_costs(),
        "one_by_one": one_by_one_costs(),
    }


# ---------------------------------------------------------------------------------------------
# Gradient flow at initialisation, and shattered gradients, on real images


def real_batch(dataset: str = "mnist-sample", n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` normalised training images and labels of a bundled dataset, chosen with ``seed``."""
    from resnet_core import data, engine

    d = data.load_dataset(dataset, "train")
    rows = torch.randperm(len(d), generator=torch.Generator().manual_seed(seed))[:n]
    mean, std = data.normalization(dataset)
    x = engine.normalize(d.images[rows], torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1))
    return x, d.targets[rows]


def twin(depth: int, residual: bool, batch_norm: bool, in_channels: int = 1, seed: int = 0) -> nn.Module:
    """A CIFAR-style ResNet of ``depth`` or its plain twin, with the same seeded initial weights."""
    torch.manual_seed(seed)
    return models.CifarResNet(depth, 10, in_channels, residual=residual, batch_norm=batch_norm)


def gradient_flow(depth: int = 56, batch_norm: bool = True, dataset: str = "mnist-sample", n: int = 64) -> dict:
    """Per-conv-layer gradient norm of the loss, and per-block output std, at initialisation.

    Layers are in forward order (index 0 is the first convolution), for the plain net and its
    residual twin, measured on one batch of real images in training mode.
    """
    x, y = real_batch(dataset, n)
    out = {}
    for kind, residual in (("plain", False), ("residual", True)):
        model = twin(depth, residual, batch_norm, x.shape[1]).train()
        stds = []
        blocks = [m for m in model.modules() if isinstance(m, models.CifarBasicBlock)]
        handles = [
            b.register_forward_hook(lambda m, i, o, stds=stds: stds.append(float(o.detach().std()))) for b in blocks
        ]
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        for h in handles:
            h.remove()
        grads = [float(p.grad.norm()) for name, p in model.named_parameters() if p.ndim == 4]
        out[kind] = {"grad_norm": grads, "act_std": stds, "loss": loss.item()}
    return out


def shattered_gradients(
    depth: int, residual: bool, batch_norm: bool = True, points: int = 128, dataset: str = "mnist-sample"
) -> dict:
    """Balduzzi et al. 2017: correlation of input-gradients at neighbouring points on a line.

    The line runs between two real images; at each point we take the gradient of the top
    logit with respect to the input. Smooth (correlated) gradients give values near 1; white
    noise gives values near 0. Batch norm uses the line's own statistics (training mode), as
    the paper measures at initialisation. Also returns the gradient at the most sensitive pixel
    along the line, scaled to unit standard deviation, which the page draws.
    """
    x, _ = real_batch(dataset, 2)
    t = torch.linspace(0, 1, points).view(-1, 1, 1, 1)
    line = ((1 - t) * x[0] + t * x[1]).requires_grad_(True)
    model = twin(depth, residual, batch_norm, x.shape[1]).train()
    logits = model(line)
    logits[:, int(logits.mean(0).argmax())].sum().backward()
    raw = line.grad.flatten(1)
    g = raw - raw.mean(1, keepdim=True)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    pixel = int(raw.abs().mean(0).argmax())  # the most sensitive pixel, to draw along the line
    trace = raw[:, pixel] / raw[:, pixel].std().clamp_min(1e-12)  # unit std: shapes, not scales, compare
    return {"correlation": float((g[1:] * g[:-1]).sum(1).mean()), "trace": trace.tolist()}


def shattered_pair(depth: int, batch_norm: bool = True) -> dict:
    """:func:`shattered_gradients` for the plain net and its residual twin, as the page draws them."""
    return {kind: shattered_gradients(depth, kind == "residual", batch_norm) for kind in ("plain", "residual")}


# ---------------------------------------------------------------------------------------------
# The degradation experiment (He et al. 2016, Fig. 6 and Table 6), reproducibly

DEGRADATION_MODELS = ("plain20", "plain56", "resnet20", "resnet56")
# What the shipped twins keep of a checkpoint: enough for Predictor and evaluation, no optimizer.
TWIN_KEYS = (
    "model",
    "config",
    "dataset",
    "arch",
    "classes",
    "mean",
    "std",
    "image_size",
    "in_channels",
    "metrics",
    "history",
    "versions",
)
# He et al. 2016, Table 6, CIFAR-10 test error (%), for the page's comparison.
PAPER_TEST_ERROR = {"resnet20": 8.75, "resnet32": 7.51, "resnet44": 7.17, "resnet56": 6.97, "resnet110": 6.43}


def twin_configs(models, kind: str, dataset: str = "fashion-sample", epochs: int = 6, seed: int = 0, **budget):
    """``models`` with one recipe and seed, as one job of ``kind`` (``extra["group"]``: a
    classroom cap counts it once; pages read only their own kind). The recipe is the dataset's
    preset with label smoothing and augmentation off, so errors are plain classification errors.
    ``budget`` takes TrainConfig fields such as ``max_train_batches`` (the tests' quick run)."""
    import uuid

    from resnet_core import data
    from resnet_core.config import TrainConfig

    preset = {**data.get_spec(dataset).preset, "label_smoothing": 0.0, "augment": "none", **budget}
    preset |= {"pretrained": None, "trainable": "all"}  # a folder's preset fine-tunes ImageNet weights: not here
    group = {"group": f"{kind}-{uuid.uuid4().hex[:8]}", "kind": kind}
    return [
        TrainConfig(**{**preset, "dataset": dataset, "model": name, "epochs": epochs, "seed": seed, "extra": group})
        for name in models
    ]


def degradation_configs(dataset: str = "fashion-sample", epochs: int = 6, seed: int = 0, **budget) -> list:
    """The plain and residual 20/56-layer twins (the Theory page's re-run and ``degradation``)."""
    return twin_configs(DEGRADATION_MODELS, "degradation", dataset, epochs, seed, **budget)


PAIR_DEPTHS = models.CIFAR_DEPTHS  # He et al.'s CIFAR depths (6n + 2), each with a plain twin


def pair_depth(cuda: bool) -> int:
    """The depth a side-by-side pair trains by default: 20 layers on a CPU (the pair takes a few
    minutes on 2 cores; README), 56 on a GPU, where the plain net's degradation is plain to see."""
    return 56 if cuda else 20


def pair_configs(dataset: str, depth: int = 20, epochs: int = 6, seed: int = 0, **budget) -> list:
    """The Train page's one click: plain-``depth`` and ResNet-``depth`` on the same data, recipe
    and seed, trained at the same time (``runs.dispatch`` starts a pair in one slot), so a class
    watches the residual one pull ahead (He et al. 2016, Fig. 6)."""
    if depth not in PAIR_DEPTHS:
        depths = ", ".join(map(str, PAIR_DEPTHS))
        raise ValueError(f"There are plain and residual twins of depth {depths}, not {depth}.")
    return twin_configs((f"plain{depth}", f"resnet{depth}"), "pair", dataset, epochs, seed, **budget)


def latest_rerun(owner: str | None) -> list[dict]:
    """The newest re-run of the degradation twins by ``owner`` (a browser; None: anyone's), one
    row per model: its state and, once it has finished an epoch, its errors in % at the last one,
    beside the shipped run's test error at its last epoch (``shipped_test_error``; its schedule
    ran to its end, as the re-run's did)."""
    from resnet_core import runs

    rows = [r for r in runs.list_runs() if r.get("kind") == "degradation" and owner in (None, r.get("owner"))]
    if not rows:
        return []
    group = rows[0]["group"]  # newest first
    _, shipped = read_degradation_csv(DATA / "degradation.csv")
    final = {r["model"]: r for r in shipped}  # rows are in epoch order: the last one stays
    out = []
    for row in sorted((r for r in rows if r["group"] == group), key=lambda r: r["model"]):
        epochs = runs.read_metrics(Path(row["path"]), ("epoch",))
        last = epochs[-1] if epochs else {}
        out.append(
            {
                "model": row["model"],
                "state": row["state"],
                "epoch": last.get("epoch"),
                "train_error": round(100 * (1 - last["train_acc"]), 2) if last else None,
                "test_error": round(100 * (1 - last["test_acc"]), 2) if last else None,
                "shipped_test_error": final.get(row["model"], {}).get("test_error"),
                "shipped_epochs": final.get(row["model"], {}).get("epoch"),
                "run": row["run"],
            }
        )
    return out


def degradation(
    dataset: str = "fashion-sample", epochs: int = 6, seed: int = 0, run_root=None, echo=print, **budget
) -> list:
    """Train the twins of :func:`degradation_configs`; one row per model and epoch.

    Rows hold train and test error in %, the seconds of the epoch, and the model.
    """
    import dataclasses
    import tempfile

    from resnet_core import engine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in degradation_configs(dataset, epochs, seed, **budget):
            name = config.model
            config = dataclasses.replace(config, run_dir=str(Path(run_root or tmp) / name))
            result = engine.fit(config)
            for r in result["history"]:
                rows.append(
                    {
                        "model": name,
                        "epoch": r["epoch"],
                        "train_error": round(100 * (1 - r["train_acc"]), 3),
                        "test_error": round(100 * (1 - r["test_acc"]), 3),
                        "seconds": r["seconds"],
                    }
                )
            echo(
                f"{name}: final train error {rows[-1]['train_error']:.2f} %, test error {rows[-1]['test_error']:.2f} %"
            )
    return rows


def write_degradation_csv(rows: list, path, dataset: str, epochs: int, seconds: float) -> None:
    """CSV with comment lines recording hardware, time and versions, written atomically."""
    import csv
    import io
    import os
    import platform

    from resnet_core.checkpoints import atomic_write_text

    buffer = io.StringIO()
    buffer.write(f"# He et al. 2016 degradation experiment on {dataset}, {epochs} epochs per model, seed 0\n")
    buffer.write(f"# command: python -m resnet_core.theory degradation --dataset {dataset} --epochs {epochs}\n")
    buffer.write(
        f"# hardware: {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}\n"
    )
    buffer.write(
        f"# versions: torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {platform.python_version()}\n"
    )
    buffer.write(f"# total seconds: {seconds:.0f}\n")
    writer = csv.DictWriter(buffer, fieldnames=["model", "epoch", "train_error", "test_error", "seconds"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def read_degradation_csv(path) -> tuple[list[str], list[dict]]:
    """(comment lines, rows) of a CSV written by :func:`write_degradation_csv`."""
    import csv

    lines = Path(path).read_text().splitlines()
    notes = [line[2:] for line in lines if line.startswith("# ")]
    rows = list(csv.DictReader(line for line in lines if not line.startswith("#")))
    for r in rows:
        r.update(
            epoch=int(r["epoch"]),
            train_error=float(r["train_error"]),
            test_error=float(r["test_error"]),
            seconds=float(r["seconds"]),
        )
    return notes, rows


def final_rows(rows: list[dict]) -> dict[str, dict]:
    """Each model's last epoch in a degradation CSV's rows: what the findings compare."""
    last: dict[str, dict] = {}
    for r in rows:
        if r["model"] not in last or r["epoch"] >= last[r["model"]]["epoch"]:
            last[r["model"]] = r
    return last


def bottleneck_saving(costs: dict) -> float:
    """How many times the multiply-adds of a basic block on 256 channels a bottleneck's are: the
    shipped cost table's point (He et al. 2016, Fig. 5)."""
    return costs["blocks"]["basic_on_256"]["macs"] / costs["blocks"]["bottleneck"]["macs"]


def shipped_twin(name: str):
    """Path of a 20-layer twin trained by the degradation command and shipped with the app."""
    return DATA / f"{name}.pt"


def block_deletion(checkpoint, limit: int = 1000) -> dict:
    """Veit et al. 2016: test accuracy with each block deleted in turn (replaced by its shortcut).

    A deleted residual block leaves its identity path; a plain block gets the same parameter-free
    path (option A), so both nets lose exactly one block's layers and keep their shapes.
    """
    from resnet_core import data, engine
    from resnet_core.checkpoints import load_checkpoint
    from resnet_core.predict import build_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model = build_from_checkpoint(ckpt)
    test = data.load_dataset(ckpt["dataset"], "test").subset(limit)
    stats = torch.tensor([ckpt["mean"], ckpt["std"]]).view(2, 1, -1, 1, 1)

    def accuracy() -> float:
        return engine.evaluate(model, test, torch.device("cpu"), stats)["acc"]

    base = accuracy()
    blocks = [m for m in model.modules() if isinstance(m, models.CifarBasicBlock)]
    deleted = []
    for block in blocks:
        path = block.shortcut or models.OptionAShortcut(
            block.conv1.in_channels, block.conv1.out_channels, block.conv1.stride[0]
        )
        block.forward = path.forward  # an instance attribute shadows the class method
        deleted.append(accuracy())
        del block.forward
    return {"arch": ckpt["arch"], "base": base, "deleted": deleted, "drop": [base - a for a in deleted]}


def deletions(limit: int = 1000) -> dict:
    """:func:`block_deletion` on both shipped 20-layer twins (the page's ensemble plot)."""
    return {name: block_deletion(shipped_twin(name), limit) for name in ("plain20", "resnet20")}


def csv_made(notes: list[str]) -> dict:
    """The comment lines of :func:`write_degradation_csv` as a ``made`` record (see :func:`_made`),
    so a page can say how a shipped result was made in its own language."""
    fields = dict(line.split(": ", 1) for line in notes if ": " in line)
    return {
        "command": fields.get("command", "?"),
        "hardware": fields.get("hardware", "?"),
        "versions": fields.get("versions", "?"),
        "seconds": float(fields.get("total seconds", "nan")),
    }


def hardware_parts(hardware: str) -> dict:
    """``_made``'s hardware text ("x86_64, 2 CPU cores[, GPU name | no GPU]") as its parts, so a
    page words it in its own language; ``gpu`` is None without one."""
    import re

    found = re.match(r"(\S+), (\d+) CPU cores(?:, (.+))?$", hardware)
    arch, cores, gpu = found.groups() if found else (hardware, "?", None)
    return {"arch": arch, "cores": cores, "gpu": None if gpu in (None, "no GPU") else gpu}


def _made(command: str, seconds: float) -> dict:
    import os
    import platform

    return {
        "command": command,
        "hardware": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "versions": f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"python {platform.python_version()}",
        "seconds": round(seconds, 1),
    }


def write_shipped(out: Path = DATA) -> list[Path]:
    """Write ``costs.json`` and ``deletion.json``: the parts of the theory page no control changes.

    They take about 25 CPU-s (resnet50 at 224 px, 2 x 10 evaluations of 1,000 images), which the
    first visitor of a fresh server used to wait for; shipped, the page draws them at once.
    """
    import time

    from resnet_core.checkpoints import atomic_write_text

    written = []
    for name, compute in (("costs", costs), ("deletion", deletions)):
        start = time.perf_counter()
        result = compute()
        result["made"] = _made("python -m resnet_core.theory shipped", time.perf_counter() - start)
        path = Path(out) / f"{name}.json"
        atomic_write_text(path, json.dumps(result, indent=1))
        written.append(path)
    return written


def shipped(name: str) -> dict:
    """A result shipped in ``theory_data/`` (``costs`` or ``deletion``), with its ``made`` note."""
    return json.loads((DATA / f"{name}.json").read_text())


def main(argv=None) -> int:
    import argparse
    import tempfile
    import time

    from resnet_core.checkpoints import load_checkpoint, save_checkpoint

    parser = argparse.ArgumentParser(prog="python -m resnet_core.theory")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("degradation", help="train plain/residual 20 and 56 layer twins, write a CSV")
    p.add_argument("--dataset", default="fashion-sample")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", type=Path, default=DATA / "degradation.csv")
    sub.add_parser("shipped", help="write costs.json and deletion.json (block deletion on the shipped twins)")
    args = parser.parse_args(argv)
    if args.command == "shipped":
        for path in write_shipped():
            print(f"wrote {path}")
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = degradation(args.dataset, args.epochs, run_root=tmp)
        for name in ("plain20", "resnet20"):  # the twins the block-deletion plot uses
            ckpt = load_checkpoint(Path(tmp) / name / "best.pt")
            save_checkpoint({k: ckpt[k] for k in TWIN_KEYS}, args.out.parent / f"{name}.pt")
    write_degradation_csv(rows, args.out, args.dataset, args.epochs, time.perf_counter() - start)
    write_shipped(args.out.parent)  # block deletion depends on the twins just written
    print(f"wrote {args.out}, the 20-layer twins and the shipped results beside it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
