"""How long the Train page's side-by-side pair takes, and whether the residual twin pulls ahead.

    python benchmarks/pair.py [--dataset fashion-sample] [--depth 20] [--epochs 6] [--alone] [--out F]

Launches ``theory.pair_configs`` as the page does (``runs.launch_group``: both trainers start
together, each on half the cores) in a fresh lab home, waits for both, and prints each epoch's
test accuracy for both nets and the wall-clock seconds from the click to the last "finished".
``--alone`` then trains the same two configs one after the other (each on every core) for the
same-run ratio: side by side against one after the other.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import emit, machine  # noqa: E402


def wait(run_dirs: list[Path], runs) -> None:
    while any(runs.read_status(d)["state"] in runs.ACTIVE for d in run_dirs):
        time.sleep(1.0)


def table(run_dirs: list[Path], runs) -> dict:
    out = {}
    for d in run_dirs:
        epochs = runs.read_metrics(d, ("epoch",))
        status = runs.read_status(d)
        out[runs._config(d)["model"]] = {
            "state": status["state"],
            "test_acc": [round(e["test_acc"], 4) for e in epochs],
            "train_ce": [round(e.get("train_ce", e["train_loss"]), 4) for e in epochs],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-sample")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--alone", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    os.environ["RESNET_LAB_HOME"] = tempfile.mkdtemp(prefix="pair-bench-")
    from resnet_core import runs, theory

    configs = theory.pair_configs(args.dataset, args.depth, args.epochs)
    start = time.perf_counter()
    made = runs.launch_group(configs)
    wait(made, runs)
    summary = {
        "machine": machine(load),
        "dataset": args.dataset,
        "depth": args.depth,
        "epochs": args.epochs,
        "side_by_side_s": round(time.perf_counter() - start, 1),
        "side_by_side": table(made, runs),
    }
    if args.alone:
        start = time.perf_counter()
        alone = []
        for config in theory.pair_configs(args.dataset, args.depth, args.epochs):
            config.extra = {}  # ordinary runs: one slot each, one after the other
            alone.append(runs.launch(config))
            wait(alone, runs)
        summary["one_after_the_other_s"] = round(time.perf_counter() - start, 1)
        summary["one_after_the_other"] = table(alone, runs)
    emit(summary, args.out)


if __name__ == "__main__":
    main()
