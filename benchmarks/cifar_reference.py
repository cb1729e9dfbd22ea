"""The CIFAR-10 reference the lab's preset is measured against: the most copied CIFAR training loop.

    python benchmarks/cifar_reference.py [--epochs 1] [--max-batches N] [--max-test-images N]
                                         [--threads N] [--workers 2] [--target 0.85] [--json] [--out PATH]

kuangliu/pytorch-cifar's ``main.py`` in spirit, on the CIFAR-10 JPEG folder in ``../shared/data``
read as a user's folder is read: ``torchvision.datasets.ImageFolder`` over the extracted files, a
JPEG decoded into a PIL image per sample, then ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, ``ToTensor()`` and ``Normalize`` with kuangliu's mean and std (the test
split: ``ToTensor`` and ``Normalize``), a ``DataLoader`` with batch 128, shuffling and
``--workers`` processes (2, as kuangliu), the test pass at batch 100. The model is the CIFAR
ResNet-18 (basic blocks [2, 2, 2, 2] at 64-128-256-512 channels, a 3x3 stride-1 stem, no max-pool,
global average pooling, a linear head) with PyTorch's default initialisation; SGD at lr 0.1,
momentum 0.9, weight decay 5e-4 on every parameter, plain cross-entropy, fp32, and
``CosineAnnealingLR`` stepped once per epoch over the planned ``--epochs`` (kuangliu plans 200:
``T_max=200``; a shorter run here anneals to zero over its own epochs instead of stopping at a
high rate). The best test accuracy's weights are saved as kuangliu saves them.

Prints one JSON object (:func:`report.emit`): seconds from process start to the end of each
epoch's test pass, test accuracy per epoch, the first epoch that crosses ``--target``, training
images/s of the whole loop (decoding and transforms included), the machine. The zip is extracted
once into ``$RESNET_LAB_BENCH/cifar10-jpeg-extracted`` (default ``/tmp``); a run that extracts it
counts that in its seconds and says how long it took (``prepare_s``): time a second run.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before torch is imported: start-up counts, as for `python -m resnet_core train`

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import report  # noqa: E402  (benchmarks/report.py: run as a script, its folder is on sys.path)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402

from resnet_core import models  # noqa: E402

ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # kuangliu's figures, as copied everywhere
WARMUP = 2  # batches left out of the images/s figure: worker start-up and the first batches' caches
RECIPE = {
    "optimizer": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "cosine over the planned epochs, stepped per epoch",
    "batch_size": 128,
    "augment": "RandomCrop(32, padding=4) + RandomHorizontalFlip, per sample (PIL)",
    "label_smoothing": 0.0,
}


def cache_dir() -> Path:
    return Path(os.environ.get("RESNET_LAB_BENCH", "/tmp")) / "cifar10-jpeg-extracted"


def extracted(zip_path: Path) -> Path:
    """The zip's ``cifar10/`` folder, extracted once: into a temporary folder beside the cache that
    is renamed when whole, so a run stopped mid-way never leaves a half folder that looks ready."""
    root = cache_dir() / "cifar10"
    if (root / "train").is_dir() and (root / "test").is_dir():
        return root
    if not zip_path.is_file():
        sys.exit(f"No CIFAR-10 JPEG zip at {zip_path}: this benchmark needs ../shared/data/cifar10-jpeg.zip.")
    cache_dir().parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-jpeg.", dir=cache_dir().parent))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(staging)
        staging.rename(cache_dir())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root


def cifar_resnet18() -> torch.nn.Module:
    """kuangliu's ResNet18: the lab's ``resnet18`` at 32 px is the same network layer for layer
    (torchvision's basic blocks and 1x1-conv projection shortcuts, a 3x3 stride-1 stem, no max-pool,
    global average pooling over the 4x4 map, 11,173,962 parameters). torchvision initialises its
    convolutions kaiming-normal, kuangliu's modules keep PyTorch's defaults: reset to those."""
    model = models.get_model("resnet18", num_classes=10, in_channels=3, image_size=32, small_input=True)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.BatchNorm2d | torch.nn.Linear):
            module.reset_parameters()
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="planned epochs: the cosine schedule's T_max")
    parser.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (smoke runs)")
    parser.add_argument("--max-test-images", type=int, help="test on this many images, a seeded sample (smoke runs)")
    parser.add_argument("--threads", type=int, help="torch threads in the training process (default: torch's)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (kuangliu: 2)")
    parser.add_argument("--target", type=float, default=0.85, help="test accuracy for time_to_target_s")
    parser.add_argument("--zip", type=Path, default=ZIP)
    parser.add_argument("--json", action="store_true", help="only the JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other work on the box slows the loop; say how much there was
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # kuangliu seeds nothing; a seed makes two runs of this script comparable

    began = time.perf_counter()
    root = extracted(args.zip)
    prepare_s = time.perf_counter() - began
    device = "cuda" if torch.cuda.is_available() else "cpu"  # kuangliu's choice, so a GPU box is not handicapped
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # as kuangliu sets it
    train_tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    test_tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train_set = datasets.ImageFolder(root / "train", transform=train_tf)
    test_set = datasets.ImageFolder(root / "test", transform=test_tf)
    if args.max_test_images:  # ImageFolder lists class by class: a seeded sample keeps every class in it
        keep = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(0))[: args.max_test_images]
        test_set = torch.utils.data.Subset(test_set, keep.sort().values.tolist())
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True, num_workers=args.workers)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=100, shuffle=False, num_workers=args.workers)
    model = cifar_resnet18().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)

    epochs, rates, step_rates, crossed, best = [], [], [], None, 0.0
    for epoch in range(1, args.epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        t0, seen, train_loss, correct, total = time.perf_counter(), 0, 0.0, 0, 0
        for i, (x, y) in enumerate(train_loader):
            if i == WARMUP:  # the loop's rate counts from here on
                t0, seen = time.perf_counter(), 0
            t_step = time.perf_counter()
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            outputs = model(x)
            loss = F.cross_entropy(outputs, y)
            loss.backward()
            optimizer.step()
            # kuangliu's running figures: a host sync per batch, part of the loop users copy.
            train_loss += loss.item()
            correct += outputs.argmax(1).eq(y).sum().item()
            total += len(y)
            seen += len(y)
            if i >= WARMUP:
                step_rates.append(len(y) / (time.perf_counter() - t_step))
            if args.max_batches and i + 1 >= args.max_batches:
                break
        if i >= WARMUP:
            rates.append(seen / (time.perf_counter() - t0))
        model.eval()
        t_test, right, n = time.perf_counter(), 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = x.to(device), y.to(device)
                right += model(x).argmax(1).eq(y).sum().item()
                n += len(y)
        acc, test_s = right / n, time.perf_counter() - t_test
        if acc > best:  # kuangliu saves the best weights after each test pass; the save counts
            best = acc
            torch.save({"net": model.state_dict(), "acc": acc, "epoch": epoch}, cache_dir() / "ckpt.pth")
        scheduler.step()
        now = time.perf_counter()
        epochs.append(
            {
                "epoch": epoch,
                "test_acc": acc,
                "train_acc": round(correct / total, 4),
                "seconds": round(now - START, 2),
                "epoch_s": round(now - t_epoch, 2),
                "test_s": round(test_s, 2),
            }
        )
        if not args.json:
            print(f"epoch {epoch}: test accuracy {acc:.2%} at {epochs[-1]['seconds']:.1f} s", flush=True)
        if crossed is None and acc >= args.target:
            crossed = epochs[-1]

    summary = {
        "benchmark": "cifar_reference",
        "dataset": "cifar10-jpeg (ImageFolder over the extracted JPEGs)",
        "model": "resnet18 (kuangliu's CIFAR ResNet-18, PyTorch's default init)",
        "recipe": {**RECIPE, "epochs": args.epochs, "workers": args.workers},
        "target": args.target,
        "time_to_target_s": crossed["seconds"] if crossed else None,
        "epoch_at_target": crossed["epoch"] if crossed else None,
        "best_acc": best,
        "epochs": epochs,
        # The whole loop, per-sample JPEG decoding and PIL transforms included: what a user waits for.
        "images_per_s": round(statistics.median(rates), 1) if rates else None,
        # The step alone (forward, backward, update), waiting for the workers' batches excluded.
        "step_images_per_s": round(statistics.median(step_rates), 1) if step_rates else None,
        "train_images": len(train_set),
        "test_images": len(test_set),
        "prepare_s": round(prepare_s, 2),  # extracting the zip, 0 once it is extracted
        "caps": {"max_batches": args.max_batches, "max_test_images": args.max_test_images},
        "device": device,
        "path": "fp32 (the reference has no autocast)",
        "machine": report.machine(load),
    }
    report.emit(summary, args.out)
    if not args.json:
        at = f"{crossed['seconds']:.1f} s (epoch {crossed['epoch']})" if crossed else "not reached"
        rate = f"{summary['images_per_s']:,.0f}" if rates else "n/a"
        print(
            f"reference (kuangliu ResNet-18, fp32, {args.epochs} planned epoch(s)): best test accuracy {best:.2%}, "
            f"{args.target:.0%} at {at}, {rate} training images/s, {epochs[-1]['seconds']:.1f} s in all; "
            f"{summary['machine']}"
        )


if __name__ == "__main__":
    main()
