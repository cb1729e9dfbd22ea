"""Training images/s from a 60,000-image folder against the same images held in memory as a bundled
set is (issue 19: "a folder trains at the speed of the bundled samples, within 10 %").

    python benchmarks/folder_throughput.py [--model resnet20] [--batches 60] [--batch-size 128]

The folder is ../shared/data/cifar10-jpeg.zip added as the folder dataset ``cifar10-jpeg`` (into
$RESNET_LAB_HOME, default /tmp/resnet-lab-bench-cifar; once). Its training split is loaded as
training loads it: decoded once into the lab's cache, then mapped from disk. The other side is the
same uint8 tensor copied into memory, which is how a bundled sample is held. Both train the same
model, batch, recipe and augmentation (crop+flip on whole batches) with ``engine.train_one_epoch``,
alternating, three rounds each; the first batches warm caches and are left out. Prints images/s of
each side (median of the rounds), their ratio, and the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import report  # benchmarks/report.py: run as a script, its folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
WARMUP = 5  # batches per round left out of the rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batches", type=int, default=60, help="per round, warm-up included")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    os.environ.setdefault("RESNET_LAB_HOME", "/tmp/resnet-lab-bench-cifar")
    sys.path.insert(0, str(ROOT))
    import torch

    from resnet_core import data, engine, models, precision
    from resnet_core.config import TrainConfig

    if "cifar10-jpeg" not in data.list_datasets():
        if not ZIP.is_file():
            raise SystemExit(f"{ZIP} is absent: this benchmark needs the shared CIFAR-10 JPEGs.")
        data.add_folder("cifar10-jpeg", ZIP)
    folder = data.load_dataset("cifar10-jpeg", "train")  # decoded once into the cache, then mapped
    in_memory = data.LabData(
        folder.name,
        folder.split,
        folder.classes,
        folder.channels,
        folder.size,
        folder.targets.clone(),
        folder.images.clone(),  # as the bundled sets are held: one tensor in RAM
    )
    config = TrainConfig(
        dataset="cifar10-jpeg",
        model=args.model,
        batch_size=args.batch_size,
        augment="crop+flip",
        pad=4,
        max_train_batches=args.batches,
    )
    stats = torch.tensor([data.normalization("cifar10-jpeg")]).view(2, 1, -1, 1, 1)
    device = torch.device("cpu")
    compute = precision.resolve(device, config.amp)
    rates: dict[str, list[float]] = {"folder": [], "memory": []}
    for round_ in range(args.rounds):
        for side, split in (("folder", folder), ("memory", in_memory)):
            torch.manual_seed(0)
            model = models.get_model(args.model, 10, 3, 32).to(memory_format=torch.channels_last)
            optimizer = engine.build_optimizer(config, model)
            times: list[tuple[int, float]] = []
            tick = lambda event, times=times: times.append((event["step"], time.perf_counter()))  # noqa: E731
            engine.LOG_EVERY_S = 0.0  # an event per batch: the rate from exact step times
            engine.train_one_epoch(
                model, optimizer, None, split, config, device, stats, round_, callback=tick, compute=compute
            )
            (s0, t0), (s1, t1) = times[WARMUP - 1], times[-1]
            rates[side].append((s1 - s0) * args.batch_size / (t1 - t0))
    folder_rate, memory_rate = (statistics.median(rates[k]) for k in ("folder", "memory"))
    summary = {
        "benchmark": "folder_throughput",
        "model": args.model,
        "batch_size": args.batch_size,
        "images": len(folder),
        "folder_images_per_s": round(folder_rate, 1),
        "memory_images_per_s": round(memory_rate, 1),
        "ratio": round(folder_rate / memory_rate, 3),
        "rounds": {k: [round(v, 1) for v in vs] for k, vs in rates.items()},
        "machine": report.machine(load_before),
    }
    print(
        f"{args.model}, batch {args.batch_size}: folder {folder_rate:.0f} img/s, in memory {memory_rate:.0f} img/s, "
        f"ratio {folder_rate / memory_rate:.3f} (goal: within 10 %)"
    )
    report.emit(summary, args.out)


if __name__ == "__main__":
    main()
