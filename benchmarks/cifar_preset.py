"""The lab's side of the CIFAR-10 comparison: ``train --dataset cifar10-jpeg`` with its preset, in-process.

    python benchmarks/cifar_preset.py [--model M] [--epochs N] [--batch-size B] [--lr LR] [--compile]
                                      [--time-budget SECONDS] [--target 0.85] [--threads N]
                                      [--max-batches N] [--max-test-images N] [--prepare-only] [--json] [--out PATH]

What ``python -m resnet_core train --dataset cifar10-jpeg`` does, in this process so that its
epochs can be timed from process start: the CIFAR-10 JPEG folder in ``../shared/data`` added to a
bench lab (``$RESNET_LAB_HOME``, default ``/tmp/resnet-lab-bench-cifar``) as a user adds a zip
(``data.add_folder``), the dataset's preset (``data.get_spec(...).preset``: for a 32 px folder
``data.folder_preset``'s CIFAR recipe) with any flag given here put over it, as the CLI's flags are,
and the run created and trained as the CLI does it (``runs.create`` then ``runs.train_run``:
``config.json``, ``metrics.jsonl``, ``best.pt`` and ``last.pt`` in a run directory, each
checkpoint's save counted in the epoch's time as a user waits for it).

``--time-budget``: stop after the first epoch that ends past that many seconds from process start,
as the Train page's Stop does (the run's ``STOP`` file, which the engine reads after each batch:
one batch of the next epoch is trained before it stops, after the last figure is taken). The
schedule is still planned over ``--epochs``, so such a run is measured mid-schedule.

Prints the JSON shape of ``benchmarks/cifar_reference.py`` (:func:`report.emit`): seconds from
process start to the end of each epoch's test pass, test accuracy per epoch, the first epoch that
crosses ``--target``, training images/s from the engine's batch events. The first run adds the
folder and decodes it into the lab's cache (``prepare_s``, counted in its seconds, as it is in a
user's first run); ``--prepare-only`` does that and exits, so a timed run finds the lab ready.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before torch is imported: start-up counts, as for `python -m resnet_core train`

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Before resnet_core reads it: the bench lab is its own, never a user's ./lab.
os.environ.setdefault("RESNET_LAB_HOME", "/tmp/resnet-lab-bench-cifar")

import report  # noqa: E402  (benchmarks/report.py: run as a script, its folder is on sys.path)
import torch  # noqa: E402

from resnet_core import data, runs  # noqa: E402
from resnet_core.config import TrainConfig  # noqa: E402

NAME = "cifar10-jpeg"
ZIP = ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip"


def prepare(zip_path: Path) -> None:
    """Add the folder when the bench lab lacks it, then load both splits once: the first load decodes
    every JPEG into the lab's cache, which the run then maps in milliseconds."""
    if NAME not in data.list_datasets("folder"):
        if not zip_path.is_file():
            sys.exit(f"No CIFAR-10 JPEG zip at {zip_path}: this benchmark needs ../shared/data/cifar10-jpeg.zip.")
        data.add_folder(NAME, zip_path)
    for split in data.SPLITS:
        data.load_dataset(NAME, split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="default: the preset's")
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--lr", type=float, help="default: the preset's")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (TrainConfig.compile)")
    parser.add_argument("--time-budget", type=float, help="stop after the epoch that ends past these seconds")
    parser.add_argument("--target", type=float, default=0.85, help="test accuracy for time_to_target_s")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--max-batches", type=int, help="stop each epoch after this many batches (smoke runs)")
    # The engine keeps a split's first N images, and a folder's test split lists class by class: a
    # capped test pass sees one or two classes, so its accuracy says nothing (smoke runs only).
    parser.add_argument("--max-test-images", type=int, help="test on the first N images (smoke runs; see above)")
    parser.add_argument("--zip", type=Path, default=ZIP)
    parser.add_argument("--prepare-only", action="store_true", help="add and decode the folder, then exit")
    parser.add_argument("--json", action="store_true", help="only the JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    load = os.getloadavg()[0]  # other work on the box slows the run; say how much there was
    if args.threads:
        torch.set_num_threads(args.threads)

    began = time.perf_counter()
    prepare(args.zip)
    prepare_s = time.perf_counter() - began
    if args.prepare_only:
        print(f"{NAME} is ready in {data.lab_home()} ({prepare_s:.1f} s)")
        return
    preset = data.get_spec(NAME).preset
    given = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "compile": args.compile or None,
    }
    caps = {"max_train_batches": args.max_batches, "max_test_images": args.max_test_images}
    # The CLI's rule (resnet_core.__main__.config_from_args): the preset, then what was given over it.
    config = TrainConfig(
        **{**preset, "dataset": NAME, **{k: v for k, v in {**given, **caps}.items() if v is not None}}
    ).validate()
    run_dir = runs.create(config, here=True)

    epochs, rates, crossed = [], [], None
    state = {"start": {}, "first": None, "last": None}

    def echo(event: dict) -> None:
        """Take each epoch's time as the engine reports it, and the batch events' rate; write STOP
        once the budget is spent."""
        nonlocal crossed
        now = time.perf_counter()
        kind = event["type"]
        if kind == "start":
            state["start"] = event
        elif kind == "batch":
            if state["first"] is None or state["first"][0] != event["epoch"]:
                state["first"] = (event["epoch"], event["step"], now)
            state["last"] = (event["epoch"], event["step"], now)
        elif kind == "epoch":
            (_, s0, t0), (_, s1, t1) = state["first"], state["last"]
            if s1 > s0:  # from the first batch event on: the epoch's first batch warms caches up
                rates.append((s1 - s0) * config.batch_size / (t1 - t0))
            epochs.append(
                {
                    "epoch": event["epoch"],
                    "test_acc": event["test_acc"],
                    "train_acc": round(event["train_acc"], 4),
                    "seconds": round(now - START, 2),
                    "epoch_s": event["seconds"],  # the engine's: training and the test pass
                    # From the epoch's last batch to its event: the test pass and the checkpoints' saves.
                    "test_s": round(now - t1, 2),
                }
            )
            if not args.json:
                print(
                    f"epoch {event['epoch']}: test accuracy {event['test_acc']:.2%} at {now - START:.1f} s", flush=True
                )
            if crossed is None and event["test_acc"] >= args.target:
                crossed = epochs[-1]
            if args.time_budget is not None and now - START >= args.time_budget:
                (run_dir / "STOP").touch()

    result = runs.train_run(run_dir, echo=echo)
    start = state["start"]
    summary = {
        "benchmark": "cifar_preset",
        "dataset": f"{NAME} (the lab's folder, decoded once into its cache)",
        "model": config.model,
        "recipe": {
            k: getattr(config, k)
            for k in (
                "optimizer",
                "lr",
                "momentum",
                "weight_decay",
                "schedule",
                "batch_size",
                "augment",
                "pad",
                "compile",
            )
        }
        | {"label_smoothing": config.label_smoothing, "epochs": config.epochs, "preset": preset},
        "target": args.target,
        "time_to_target_s": crossed["seconds"] if crossed else None,
        "epoch_at_target": crossed["epoch"] if crossed else None,
        "best_acc": result["best_acc"],
        "epochs": epochs,
        # The engine's loop: uint8 batches from memory, augmented and normalised whole on the device.
        "images_per_s": round(statistics.median(rates), 1) if rates else None,
        "step_images_per_s": None,  # the engine times no step apart from its loop (its batches wait for nothing)
        "train_images": start.get("train_images"),
        "test_images": start.get("test_images"),
        "prepare_s": round(prepare_s, 2),  # adding the folder and decoding it, ~0 once done
        "caps": {"max_batches": args.max_batches, "max_test_images": args.max_test_images},
        "device": start.get("device"),
        "path": start.get("precision"),
        "status": result["status"],
        "run_dir": str(run_dir),
        "machine": report.machine(load),
    }
    report.emit(summary, args.out)
    if not args.json:
        at = f"{crossed['seconds']:.1f} s (epoch {crossed['epoch']})" if crossed else "not reached"
        rate = f"{summary['images_per_s']:,.0f}" if rates else "n/a"
        last = epochs[-1]["seconds"] if epochs else time.perf_counter() - START
        print(
            f"lab preset ({config.model}, {len(epochs)} of {config.epochs} epoch(s), {summary['path']}): "
            f"best test accuracy {result['best_acc']:.2%}, {args.target:.0%} at {at}, {rate} training images/s, "
            f"{last:.1f} s in all; {summary['machine']}"
        )


if __name__ == "__main__":
    main()
