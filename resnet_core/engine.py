"""Training engine in the shape of torchvision's reference script: flat functions, plain dicts.

``fit(config)`` builds the model, data, optimizer and schedule from one :class:`TrainConfig`,
then alternates ``train_one_epoch`` and ``evaluate``. Progress goes to a callback as plain dict
events; ``best.pt`` is written when test accuracy improves and ``last.pt`` after every epoch
and on a stop request, both atomically. Resuming from ``last.pt`` continues at the exact batch:
each epoch's order and each batch's augmentation come from generators seeded by
(seed, epoch, step), so a stopped-and-resumed run sees the same batches as an unbroken one.

Data stays uint8 until it reaches the device; normalisation and augmentation (random
translation, horizontal flip) run on whole batches there, as in cifar10-airbench, because
per-image PIL transforms cost more than the ResNet-20 step itself on 2 CPU cores.
Several GPUs: run under ``torchrun``; each process takes every world_size-th batch row.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from resnet_core import data as data_mod
from resnet_core import features as features_mod
from resnet_core import precision, transfer
from resnet_core.checkpoints import load_checkpoint, save_checkpoint
from resnet_core.config import TrainConfig

Callback = Callable[[dict[str, Any]], None]
LOG_EVERY_S = 0.5  # a "batch" event (and the host sync it needs) at most this often, plus each epoch's first and last
STOP_CHECK_EVERY = 10  # under torchrun, the ranks agree on a stop request every this many batches


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an unavailable choice says so."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for but Apple's MPS is not available; use 'auto' or 'cpu'.")
    if name == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def world() -> tuple[int, int]:
    """(rank, world_size): (0, 1) unless running under torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------------------------------------
# Batches, on the device


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool) -> list[torch.Tensor]:
    """This process's batches for one epoch; under torchrun each takes a strided share."""
    rank, size = world()
    order = epoch_order(n, seed, epoch) if seed is not None else torch.arange(n)
    step = batch_size * size
    full = n // step * step if drop_last and n >= step else n
    return [order[s : s + step][rank::size] for s in range(0, full, step) if len(order[s : s + step][rank::size])]


def fetch(data: data_mod.LabData, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and int64 labels for the given rows (folders decode their files here)."""
    if data.images is not None:
        idx = to_device(idx, data.images.device)
        return data.images[idx], data.targets[idx]
    ds = data.dataset()
    items = [ds[int(i)] for i in idx]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def batches(data: data_mod.LabData, index_lists: list[torch.Tensor], workers: int, device=None):
    """Yield (uint8 images, labels) per index list. A split in memory is indexed directly; a
    folder too large for memory streams through a DataLoader whose workers decode the files
    while the model trains (pinned batches on CUDA, so the copy overlaps the compute)."""
    if data.images is not None:
        for idx in index_lists:
            yield fetch(data, idx)
        return
    loader = torch.utils.data.DataLoader(
        data.dataset(),
        batch_sampler=[idx.tolist() for idx in index_lists],
        num_workers=workers,
        pin_memory=device is not None and torch.device(device).type == "cuda",
        persistent_workers=False,
    )
    yield from loader


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to the device without making the host wait: a non-blocking copy is asynchronous
    only from pinned (page-locked) memory, so a CUDA-bound batch is pinned first."""
    if t.device == device:
        return t
    if device.type != "cuda":  # MPS: a non-blocking copy from pageable memory can read it after it is freed
        return t.to(device)
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)


def on_device(d: data_mod.LabData, device: torch.device, share: float = 0.25) -> data_mod.LabData:
    """An in-memory split moved to the GPU once when it takes at most ``share`` of the free
    memory (MNIST is 8 MB, CIFAR-10 150 MB): batches are then gathered there, with no copy per
    step, as in cifar10-airbench. Elsewhere, or when larger, the split stays on the host."""
    if device.type != "cuda" or d.images is None:
        return d
    free, _ = torch.cuda.mem_get_info(device)
    if d.images.nbytes > share * free:
        return d
    targets, images = d.targets.to(device), d.images.to(device)
    return data_mod.LabData(d.name, d.split, d.classes, d.channels, d.size, targets, images, d.files)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float().div_(255) - mean) / std


def affine(x: torch.Tensor, pad: int, rotate: float, zoom: float, generator: torch.Generator) -> torch.Tensor:
    """Per image: rotate by up to ``rotate`` degrees, scale by 1 +- ``zoom``, shift by up to ``pad`` px.

    One ``affine_grid`` + bilinear ``grid_sample`` over the batch, black fill: a tilted or
    nearer photo of a digit, as the imaging module prepares it, without a per-image PIL call.
    """
    b, _, h, w = x.shape
    r = torch.rand(4, b, generator=generator) * 2 - 1
    angle = r[0] * math.radians(rotate)
    scale = 1 + r[1] * zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # output -> input, so 1 / scale
    theta = torch.stack([cos, -sin, r[2] * 2 * pad / w, sin, cos, r[3] * 2 * pad / h], 1).view(b, 2, 3)
    grid = F.affine_grid(to_device(theta, x.device), list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def augment(
    x: torch.Tensor, kind: str, pad: int, generator: torch.Generator, rotate: float = 0.0, zoom: float = 0.0
) -> torch.Tensor:
    """Random translation by up to ``pad`` px (or an affine warp) and/or horizontal flip, on uint8 pixels.

    Done before normalisation so the fill is black (0), as the padding of the real images is,
    and as one gather over the batch rather than a Python loop of crops.
    """
    b, _, h, w = x.shape
    if "affine" in kind:
        x = affine(x, pad, rotate, zoom, generator)
    if "crop" in kind and pad > 0:
        shift = to_device(torch.randint(0, 2 * pad + 1, (2, b), generator=generator), x.device)
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (torch.arange(h, device=x.device)[None, :] + shift[0][:, None])[:, None, :, None]
        cols = (torch.arange(w, device=x.device)[None, :] + shift[1][:, None])[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if "flip" in kind:
        flip = to_device(torch.rand(b, generator=generator) < 0.5, x.device)[:, None, None, None]
        x = torch.where(flip, x.flip(3), x)
    return x


# ---------------------------------------------------------------------------------------------
# Model, optimizer, schedule


def build_model(
    config: TrainConfig, info: data_mod.LabData, stats, resumed: dict | None = None
) -> tuple[nn.Module, transfer.InputPlan, dict]:
    """The registry's model for this dataset, optionally starting from ImageNet or a file: the
    model, the input it is fed (:class:`transfer.InputPlan`) and the backbone's load report.
    A run ``resumed`` from its last.pt goes on as it began (:func:`transfer.resume_model`)."""
    if resumed is not None:
        return transfer.resume_model(config, len(info.classes), resumed)
    source = transfer.source_weights(config)
    plan = transfer.plan_input(config, info.channels, info.size, stats, source)
    model, report = transfer.prepare_model(config, len(info.classes), plan, source)
    return model, plan, report


def build_optimizer(config: TrainConfig, model: nn.Module, pretrained: set[str] = frozenset()) -> torch.optim.Optimizer:
    """Weight decay on conv and linear weights only: decaying batch-norm scales and biases
    only slows training (Goyal et al. 2017, "no bias decay"). Parameters loaded from a backbone
    (``pretrained``) learn at ``lr * backbone_lr_scale``, the head and fresh layers at ``lr``."""
    groups = []
    for scale, members in ((1.0, False), (config.backbone_lr_scale, True)):
        params = [p for n, p in model.named_parameters() if p.requires_grad and (n in pretrained) == members]
        for decay in (True, False):
            chosen = [p for p in params if (p.ndim > 1) == decay]
            if chosen:
                wd = config.weight_decay if decay else 0.0
                groups.append({"params": chosen, "weight_decay": wd, "lr": config.lr * scale})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    cls = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    return cls(groups, lr=config.lr)


def build_scheduler(config: TrainConfig, optimizer, total_steps: int):
    """Stepped once per batch, so a mid-epoch resume lands on the same learning rate."""
    sched = torch.optim.lr_scheduler
    if config.schedule == "onecycle" and total_steps >= 3:  # fewer steps leave a phase empty (a division by 0)
        return sched.OneCycleLR(
            optimizer,
            max_lr=[g["lr"] for g in optimizer.param_groups],
            total_steps=total_steps + 1,
            pct_start=min(0.5, max(0.25, 2 / (total_steps + 1))),
            anneal_strategy="linear",
            div_factor=10,
            final_div_factor=100,
        )
    if config.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=total_steps)
    if config.schedule == "step":  # He et al. 2016: divide by 10 at 50 % and 75 % of training
        return sched.MultiStepLR(optimizer, [total_steps // 2, total_steps * 3 // 4], gamma=0.1)
    return None


# ---------------------------------------------------------------------------------------------
# One epoch, and evaluation


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    data: data_mod.LabData,
    config: TrainConfig,
    device: torch.device,
    stats: torch.Tensor,
    epoch: int,
    start_step: int = 0,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    partial: dict | None = None,
    side: int | None = None,
    compute: precision.Precision | None = None,
    features: bool = False,
) -> dict[str, Any]:
    """Train over this epoch's batches from ``start_step``; return sums, and whether it stopped.
    With ``features``, ``data`` holds a frozen backbone's features and ``model`` is the head
    (:mod:`resnet_core.features`): the batches go to it as they are.

    Loss and accuracy add up on the device: reading them back (``.item()``) makes the host
    wait for the device, so it happens once per logging interval (:data:`LOG_EVERY_S`), not
    once per batch. On a GPU that wait would otherwise empty the queue of launched kernels
    at every step.
    """
    mean, std = stats
    transfer.train_mode(model)
    side = side or data.size
    index_lists = batch_indices(len(data), config.batch_size, config.seed, epoch, drop_last=True)
    if config.max_train_batches:
        index_lists = index_lists[: config.max_train_batches]
    steps, (rank, size) = len(index_lists), world()
    # A last.pt saved before ``ce`` existed, mid-epoch and with smoothing: this epoch's plain
    # cross-entropy cannot be known, and the epoch's row goes without it (the charts say so).
    ce_known = not partial or "ce" in partial or not config.label_smoothing
    partial = partial or {"loss": 0.0, "ce": 0.0, "correct": 0, "seen": 0}
    loss_sum = torch.tensor(float(partial["loss"]), device=device)  # float32: MPS has no float64
    # The training objective includes label smoothing, which puts a floor under it (about 0.5 at
    # 0.1 over 10 classes); the test loss is plain cross-entropy. ``ce_sum`` is the plain one on
    # the training batches too, so the two curves of a chart measure the same thing (issue 17).
    ce_sum = torch.tensor(float(partial.get("ce", partial["loss"])), device=device)
    correct = torch.tensor(int(partial["correct"]), device=device)
    seen = int(partial["seen"])
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    compute = compute or precision.resolve(device, config.amp)  # fit passes the run's own, resolved once
    logged = {"time": time.perf_counter(), "seen": seen}
    pending: list[torch.Tensor] = []  # each batch's loss since the last event, still on the device
    workers = data_mod.stream_workers(config.workers)
    for step, (x, y) in enumerate(batches(data, index_lists[start_step:], workers, device), start_step):
        # Seeded by (seed, epoch, step) for exact resumes, and by rank: under torchrun each
        # rank's rows get their own shifts, not the same ones as every other rank's.
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 10_007 + step + rank * 2**40)
        x = to_device(x, device)
        y = to_device(y, device)
        if not features:
            x = resize(augment(x, config.augment, config.pad, g, config.rotate, config.zoom), side)
            x = normalize(x, mean, std).contiguous(memory_format=torch.channels_last)
        with compute.autocast(device):
            logits = model(x)
            loss = criterion(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = len(y)
        batch_loss = loss.detach().float()
        loss_sum += batch_loss * n
        if config.label_smoothing:
            ce_sum += nn.functional.cross_entropy(logits.detach().float(), y, reduction="sum")
        else:
            ce_sum += batch_loss * n
        correct += (logits.argmax(1) == y).sum()
        seen += n
        pending.append(batch_loss)
        last = step + 1 == steps
        due = last or step == start_step or time.perf_counter() - logged["time"] >= LOG_EVERY_S
        if callback and rank == 0 and due:
            # Every batch's loss, in the one host sync of this interval: the chart gets a point
            # per batch to smooth (one per event gave 38 points for 1,000 steps), at no extra sync.
            losses = torch.stack(pending).tolist()
            now = time.perf_counter()  # after the sync: the device's work is done and counted
            images = seen - logged["seen"]
            callback(
                {
                    "type": "batch",
                    "epoch": epoch,
                    "step": step + 1,
                    "steps": steps,
                    "loss": round(sum(losses) / len(losses), 5),  # mean over the batches since the last event
                    "losses": [round(v, 5) for v in losses],  # one per batch, the last one is ``step``'s
                    "lr": optimizer.param_groups[0]["lr"],
                    "images_per_s": round(images * size / max(now - logged["time"], 1e-9), 1),
                }
            )
            logged = {"time": now, "seen": seen}  # the callback's time counts too
        if due:
            pending = []  # sent, or no callback to send them to (rank > 0)
        # Under torchrun the ranks agree on stopping with a collective: every STOP_CHECK_EVERY
        # steps, at the same step on every rank, so it costs no per-batch sync either.
        if (size == 1 or last or (step + 1) % STOP_CHECK_EVERY == 0) and _agree_to_stop(should_stop):
            sums = {"loss": float(loss_sum), "ce": float(ce_sum) if ce_known else None, "correct": int(correct)}
            return {**sums, "seen": seen, "stopped": True, "next_step": step + 1, "steps": steps}
    sums = {"loss": float(loss_sum), "ce": float(ce_sum) if ce_known else None, "correct": int(correct), "seen": seen}
    return {**sums, "stopped": False, "next_step": steps, "steps": steps}


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: data_mod.LabData,
    device: torch.device,
    stats: torch.Tensor,
    batch_size: int = 500,
    return_predictions: bool = False,
    side: int | None = None,
    compute: precision.Precision = precision.FP32,
    features: bool = False,
) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and confusion matrix (rows: true, columns: predicted);
    images are resized to ``side`` px on the device, batch by batch, and the forward runs in
    ``compute`` (a run's own precision; fp32 unless asked). Sums stay on the device until the end:
    one host sync per evaluation. With ``features``, ``data`` holds features and ``model`` is the head."""
    mean, std = stats
    model.eval()
    k = len(data.classes)
    confusion = torch.zeros(k, k, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float32, device=device)
    preds = []
    for x, y in batches(data, batch_indices(len(data), batch_size, None, 0, drop_last=False), 0, device):
        x = to_device(x, device)
        if not features:
            x = normalize(resize(x, side or data.size), mean, std).contiguous(memory_format=torch.channels_last)
        y = to_device(y, device)
        with compute.autocast(device):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.argmax(1)
        confusion += torch.bincount(y * k + pred, minlength=k * k).view(k, k)
        if return_predictions:
            preds.append(pred)
    if world()[1] > 1:
        dist.all_reduce(confusion)
        dist.all_reduce(loss_sum)
    confusion = confusion.cpu()
    total = int(confusion.sum())
    per_class = (confusion.diag().double() / confusion.sum(1).clamp_min(1)).tolist()
    result = {
        "loss": float(loss_sum) / max(total, 1),
        "acc": float(confusion.diag().sum()) / max(total, 1),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "n": total,
    }
    if return_predictions:
        result["predictions"] = torch.cat(preds).tolist() if preds else []
    return result


def _agree_to_stop(should_stop: Callable[[], bool] | None) -> bool:
    """Under torchrun every process must stop at the same batch, or the next all-reduce hangs."""
    stop = bool(should_stop and should_stop())
    if world()[1] > 1:
        flag = torch.tensor([int(stop)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


# ---------------------------------------------------------------------------------------------
# fit


def setup_distributed() -> None:
    """Join the torchrun process group when launched by torchrun; a no-op otherwise."""
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def checkpoint_meta(config: TrainConfig, train: data_mod.LabData, plan: transfer.InputPlan, report) -> dict[str, Any]:
    """What a predictor needs without the dataset at hand; the same in every checkpoint of a run.
    ``in_channels`` is the model's (a gray dataset on an RGB backbone gives 3), ``data_size``
    the dataset's own side, prepared at and then resized to ``image_size`` as in training."""
    return {
        "config": config.to_dict(),
        "dataset": config.dataset,
        "arch": config.model,
        "classes": list(train.classes),
        "mean": list(plan.mean),
        "std": list(plan.std),
        "image_size": plan.size,
        "data_size": train.size,
        "in_channels": plan.channels,
        # The names, not only their counts: a resumed run rebuilds its optimizer groups from them.
        "transfer": {k: report[k] for k in ("source", "loaded", "skipped", "missing", "fresh", "trainable", "total")},
        "versions": {"torch": str(torch.__version__)},
    }


def resume_point(run_dir: Path | None, device) -> dict[str, Any]:
    """The run's ``last.pt``, where training stopped."""
    if run_dir is None or not (run_dir / "last.pt").is_file():
        raise RuntimeError(f"Nothing to resume: {run_dir} has no last.pt; start a new run instead.")
    return load_checkpoint(run_dir / "last.pt", map_location=device)


def restore(ckpt: dict[str, Any], model, optimizer, scheduler) -> dict[str, Any]:
    """Load a ``last.pt`` (:func:`resume_point`) into model, optimizer and schedule."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if scheduler is not None and ckpt["lr_scheduler"] is not None:
        scheduler.load_state_dict(ckpt["lr_scheduler"])
    return ckpt


def teardown_distributed() -> None:
    """Leave the process group together; a rank exiting alone aborts gloo's threads (SIGABRT)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def fit(
    config: TrainConfig,
    callback: Callback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``config`` to the end or to a stop request; return the final summary.

    With ``resume``, continue from ``<run_dir>/last.pt`` at its epoch and batch.
    """
    config.validate()
    setup_distributed()
    rank, size = world()
    emit = callback if (callback and rank == 0) else (lambda event: None)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    train = data_mod.load_dataset(config.dataset, "train").per_class(config.labels_per_class, config.seed)
    test = data_mod.load_dataset(config.dataset, "test").subset(config.max_test_images)
    run_dir = Path(config.run_dir) if config.run_dir else None
    resumed = resume_point(run_dir, device) if resume else None
    model, plan, report = build_model(config, train, data_mod.normalization(config.dataset), resumed)
    stats = torch.tensor([plan.mean, plan.std], device=device).view(2, 1, -1, 1, 1)
    side = plan.size
    model = model.to(device).to(memory_format=torch.channels_last)
    train, test = on_device(train, device), on_device(test, device)
    optimizer = build_optimizer(config, model, set(report["loaded"]))
    steps = len(batch_indices(len(train), config.batch_size, config.seed, 0, drop_last=True))
    steps = min(steps, config.max_train_batches or steps)
    scheduler = build_scheduler(config, optimizer, steps * config.epochs)

    start_epoch, start_step, partial, history, best_acc = 0, 0, None, [], 0.0
    if resumed is not None:
        ckpt = restore(resumed, model, optimizer, scheduler)
        history, best_acc = ckpt["history"], ckpt["metrics"]["best_acc"]
        start_epoch, start_step, partial = ckpt["epoch"], ckpt["next_step"], ckpt["partial"]
        if start_step >= steps:
            start_epoch, start_step, partial = start_epoch + 1, 0, None
    module = model
    if size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:  # the first batches wait for compilation; checkpoints keep ``module``'s plain names
        model = torch.compile(model)
    compute = precision.resolve(device, config.amp)
    meta = {**checkpoint_meta(config, train, plan, report), "precision": compute.label}

    def save(name: str, epoch: int, next_step: int, part: dict | None = None) -> None:
        """``epoch`` is the epoch the weights are in; ``next_step`` its batches done."""
        if rank == 0 and run_dir is not None:
            ckpt = {
                **meta,
                "model": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch,
                "next_step": next_step,
                "partial": part,
                "history": history,
                "metrics": {"best_acc": best_acc, **(history[-1] if history else {})},
            }
            save_checkpoint(ckpt, run_dir / name)

    emit(
        {
            "type": "start",
            "epochs": config.epochs,
            "steps": steps,
            "device": str(device),
            "precision": compute.label,
            "world_size": size,
            "start_epoch": start_epoch,
            "start_step": start_step,
            "train_images": len(train),
            "test_images": len(test),
            "image_size": side,
            "transfer": transfer.summary(report),
            "trainable": report["trainable"],
            "parameters": report["total"],
        }
    )
    started = time.perf_counter()
    step_model, probe, stopped = model, None, False
    if features_mod.applies(config, module, report, size) and not config.compile:
        # A linear probe: the frozen backbone's features once (cached), then the head alone on them.
        key = features_mod.backbone_key(config, module, plan, compute.label, device.type)

        def prepare(x: torch.Tensor) -> torch.Tensor:
            return normalize(resize(x, side), *stats).contiguous(memory_format=torch.channels_last)

        done = features_mod.prepare_both(module, train, test, prepare, key, compute, device, emit, should_stop)
        if done is not None:
            train, test, probe = done
            step_model = transfer.find_head(module)[1]
        else:  # stopped during the features: resumable from here (those computed are kept)
            save("last.pt", start_epoch, start_step, partial)
            stopped = True
    for epoch in range(start_epoch, config.epochs if not stopped else start_epoch):
        t0 = time.perf_counter()
        out = train_one_epoch(
            step_model,
            optimizer,
            scheduler,
            train,
            config,
            device,
            stats,
            epoch,
            start_step,
            callback=emit,
            should_stop=should_stop,
            partial=partial,
            side=side,
            compute=compute,
            features=probe is not None,
        )
        start_step, partial = 0, None
        if out["stopped"] and out["next_step"] < out["steps"]:
            kept = ("loss", "ce", "correct", "seen") if out["ce"] is not None else ("loss", "correct", "seen")
            save("last.pt", epoch, out["next_step"], {k: out[k] for k in kept})
            stopped = True
            break
        if size > 1:  # batch-norm statistics are per rank after the last step: all score rank 0's, which is saved
            for buffer in module.buffers():
                dist.broadcast(buffer, 0)
        if probe is not None:
            result = evaluate(step_model, test, device, stats, compute=compute, features=True)
        else:
            result = evaluate(module, test, device, stats, side=side, compute=compute)
        row = {
            "epoch": epoch + 1,
            "train_loss": out["loss"] / max(out["seen"], 1),  # the objective, label smoothing included
            **({"train_ce": out["ce"] / max(out["seen"], 1)} if out["ce"] is not None else {}),  # ~ test_loss
            "train_acc": out["correct"] / max(out["seen"], 1),
            "test_loss": result["loss"],
            "test_acc": result["acc"],
            "seconds": round(time.perf_counter() - t0, 2),
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(row)
        improved = len(history) == 1 or result["acc"] > best_acc
        if improved:
            best_acc = result["acc"]
            save("best.pt", epoch, out["steps"])
        save("last.pt", epoch, out["steps"])
        emit({"type": "epoch", **row, "best_acc": best_acc, "improved": improved})
        if out["stopped"]:
            stopped = epoch + 1 < config.epochs
            break
    summary = {
        "type": "end",
        "status": "stopped" if stopped else "finished",
        "best_acc": best_acc,
        "epochs_done": len(history),
        "seconds": round(time.perf_counter() - started, 2),
        "best_path": str(run_dir / "best.pt") if run_dir else None,
    }
    emit(summary)
    return {**summary, "history": history, "model": module}


def resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images resized to ``side`` px (bilinear, antialiased, rounded back to uint8 as
    :func:`resize_split` does), batch by batch on the device: a 28 px split at ImageNet's 224 px
    would take 64 times its memory if resized whole."""
    if x.shape[-2:] == (side, side):
        return x
    out = F.interpolate(x.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def resize_split(d: data_mod.LabData, side: int) -> data_mod.LabData:
    """Resize an in-memory split once (folders resize per image as they load)."""
    if d.images is None:
        return data_mod.LabData(d.name, d.split, d.classes, d.channels, side, d.targets, files=d.files)
    images = F.interpolate(d.images.float(), size=(side, side), mode="bilinear", antialias=True, align_corners=False)
    images = images.round().clamp(0, 255).to(torch.uint8)
    return data_mod.LabData(d.name, d.split, d.classes, d.channels, side, d.targets, images)
