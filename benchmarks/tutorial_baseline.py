"""The reference every speed goal is a ratio against: the classic PyTorch MNIST tutorial loop.

    python benchmarks/tutorial_baseline.py [--model mini_residual] [--epochs 5] [--target 0.97] [--json]

What people run today, on the same bundled data the presets use: torchvision's MNIST class
reading the bundled IDX files (a PIL image per sample), ``ToTensor()`` and
``Normalize((0.1307,), (0.3081,))`` per sample, a ``DataLoader`` with batch 64 and shuffling,
SGD with lr 0.01 and momentum 0.5, cross-entropy, a test pass after each epoch. The model is
the tutorial's small residual net (``mini_residual``) unless ``--model`` names another of the
registry (for same-model throughput ratios).

Prints one JSON object: seconds from process start to the end of each epoch's test pass, test
accuracy per epoch, the first epoch that crosses ``--target`` (time-to-accuracy, start-up
included), and training images/s of the whole loop and of the optimizer step alone.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before torch is imported: start-up counts, as for `python -m resnet_core train`

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from resnet_core import data, models  # noqa: E402

WARMUP = 2  # batches left out of the images/s figures, on both sides of every ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mini_residual")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--max-batches", type=int, help="stop each epoch early (throughput runs)")
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args()

    torch.manual_seed(1)
    data.load_dataset("mnist-sample", "train")  # unpacks the bundled IDX files where torchvision looks
    root = data.dataset_dir("mnist-sample")
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(root, train=True, download=False, transform=tf)
    test_set = datasets.MNIST(root, train=False, download=False, transform=tf)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000)
    model = models.get_model(args.model, num_classes=10, in_channels=1, image_size=28)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)

    epochs, rates, loop_rates, crossed = [], [], [], None
    for epoch in range(1, args.epochs + 1):
        model.train()
        began, seen = time.perf_counter(), 0
        for i, (x, y) in enumerate(train_loader):
            if i == WARMUP:  # the loop's rate counts from here: the first batches warm caches up
                began, seen = time.perf_counter(), 0
            seen += len(y)
            t0 = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            if i >= WARMUP:
                rates.append(len(y) / (time.perf_counter() - t0))
            if args.max_batches and i + 1 >= args.max_batches:
                break
        loop_rates.append(seen / (time.perf_counter() - began))
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += int((model(x).argmax(1) == y).sum())
        acc = correct / len(test_set)
        epochs.append({"epoch": epoch, "test_acc": acc, "seconds": round(time.perf_counter() - START, 2)})
        if not args.json:
            print(f"epoch {epoch}: test accuracy {acc:.2%} at {epochs[-1]['seconds']:.1f} s", flush=True)
        if crossed is None and acc >= args.target:
            crossed = epochs[-1]
    result = {
        "benchmark": "tutorial_baseline",
        "model": args.model,
        "target": args.target,
        "time_to_target_s": crossed["seconds"] if crossed else None,
        "epochs": epochs,
        # The whole loop (per-sample PIL decoding and transforms included): what a user waits for.
        "images_per_s": round(statistics.median(loop_rates), 1),
        # The optimizer step alone (forward, backward, update), data loading excluded.
        "step_images_per_s": round(statistics.median(rates), 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        # The tutorial's loop has no autocast: fp32 on any CPU.
        "path": f"fp32; torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
