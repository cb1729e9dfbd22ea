"""Training images/s of the engine against the tutorial loop, same model, same data (issue 11, goal 3).

    python benchmarks/train_throughput.py [--models mini_residual resnet20 resnet18] [--out FILE]

For each model, two processes on mnist-sample at batch 64, one after the other:

- the tutorial loop (``benchmarks/tutorial_baseline.py --model M``): a PIL image, ``ToTensor`` and
  ``Normalize`` per sample in the ``DataLoader``, then the step; images/s of the whole loop;
- the engine (``python -m resnet_core train --model M``, the dataset's preset otherwise: uint8
  batches in memory, augmentation and normalisation per batch, device-side sums): images/s from
  its batch events, which cover the whole loop too.

The first batches warm caches up and are left out on both sides. Prints a line per model and a
JSON object with both rates and their ratio (goal: at least 2x on CPU, 10x on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import report  # benchmarks/report.py: run as a script, its folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = {"mini_residual": 150, "resnet20": 40, "resnet18": 12}  # about 10-30 s each on 2 cores


def tutorial(model: str, batches: int) -> float:
    cmd = [sys.executable, "benchmarks/tutorial_baseline.py", "--model", model, "--epochs", "1"]
    out = subprocess.run([*cmd, "--max-batches", str(batches), "--json"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.splitlines()[-1])["images_per_s"]


def engine(model: str, batches: int, home: Path) -> float:
    run_dir = home / f"engine-{model}"
    cmd = [sys.executable, "-m", "resnet_core", "train", "--dataset", "mnist-sample", "--model", model]
    cmd += ["--epochs", "1", "--batch-size", "64", "--max-train-batches", str(batches), "--max-test-images", "100"]
    env = {**os.environ, "RESNET_LAB_HOME": str(home)}
    out = subprocess.run([*cmd, "--run-dir", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "batch"]
    # Each event covers the batches since the one before, at its images_per_s; the first
    # (batch 1, warming up) is left out, as the tutorial's first batches are.
    images = seconds = 0.0
    for before, event in zip(steps, steps[1:]):
        n = (event["step"] - before["step"]) * 64
        images, seconds = images + n, seconds + n / event["images_per_s"]
    if not seconds:
        raise SystemExit(f"{model}: too few batch events to time; raise its batch count in BATCHES.")
    return round(images / seconds, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(BATCHES))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="resnet-lab-throughput-") as home:
        for model in args.models:
            n = BATCHES.get(model, 20)
            base, ours = tutorial(model, n), engine(model, n, Path(home))
            rows.append({"model": model, "tutorial_images_per_s": base, "engine_images_per_s": ours})
            rows[-1]["ratio"] = round(ours / base, 2)
            print(f"{model}: tutorial {base} images/s, engine {ours} images/s, {ours / base:.2f}x", flush=True)
    summary = {
        "benchmark": "train_throughput",
        "results": rows,
        "machine": report.machine(load),
    }
    report.emit(summary, args.out)


if __name__ == "__main__":
    main()
