"""bf16 against fp32 on this CPU: training speed, prediction latency, answers, and accuracy over seeds.

    python benchmarks/bf16.py                                  # speed, latency and answers (minutes)
    python benchmarks/bf16.py --parity mnist-sample fashion-sample --seeds 0 1 2   # + presets trained

Both sides run in one process (one run of each training: a second run takes the other path), so
their ratio holds for this machine whatever its speed. bf16 is forced on for the bf16 side: on a
CPU with bf16 units (AMX, AVX512-BF16) that is the default path (``resnet_core.precision``), on
one without them it is emulated, and the table says which. The issue's goals on an AMX CPU:
ResNet-20 training >= 1.7x fp32, ResNet-18 >= 2x, ResNet-18 at 224 px prediction p50 <= 20 ms,
top-1 on each bundled test split within 0.1 point, and each preset's best accuracy within the
seeds' spread.

1. A training step (forward, backward, SGD update; batch 128, channels-last, the machine's torch
   threads): ResNet-20 at 28 px (1 channel) and ResNet-18 with the small-image stem at 32 px.
2. Prediction: one 224 px image through ResNet-18 as the Predictor runs it (BatchNorm folded,
   channels-last, inference mode); p50 and p95 over ``--n`` calls. The whole path from a JPEG's
   bytes is ``benchmarks/predict_latency.py``, which follows RESNET_LAB_CPU_BF16.
3. Answers: every shipped checkpoint (resnet_core/shipped) on its bundled test split, top-1
   both ways and how many answers differ.
4. With ``--parity``: each preset trained as ``python -m resnet_core train --dataset D --seed S``,
   fp32 (RESNET_LAB_CPU_BF16=off) and bf16 (=on); best accuracy per seed, their mean and spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report  # benchmarks/report.py: run as a script, its folder is on sys.path
import torch

from resnet_core import data, models, precision, predict

ROOT = Path(__file__).resolve().parent.parent
BF16 = precision.Precision(True, f"bf16 ({precision.cpu_bf16_units() or 'emulated'})")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def step_rate(name: str, side: int, channels: int, compute: precision.Precision, steps: int) -> float:
    """Training images/s of ``steps`` steps after two warm-up steps."""
    torch.manual_seed(0)
    model = models.get_model(name, 10, channels, side).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(128, channels, side, side).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with compute.autocast("cpu"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return round(128 * len(times) / sum(times), 1)


def latency(compute: precision.Precision, n: int) -> dict:
    """ResNet-18 at 224 px, one image, as the Predictor computes it: p50 and p95 in ms."""
    torch.manual_seed(0)
    fast = predict.inference_copy(models.get_model("resnet18", 1000, 3, 224))
    x = torch.randn(1, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode(), compute.autocast("cpu"):
        for i in range(n + 5):
            t = time.perf_counter()
            fast(x)
            if i >= 5:
                times.append(1000 * (time.perf_counter() - t))
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}


def answers(path: Path) -> dict:
    """A shipped checkpoint on its bundled test split: top-1 in fp32 and in bf16, answers changed."""
    predictor = predict.Predictor.from_checkpoint(path)
    predictor.amp = True  # the shipped runs chose fp32 (--no-amp); here both paths are compared
    test = data.load_dataset(predictor.dataset, "test")
    preds, before = {}, os.environ.get(precision.ENV)
    for label, setting in (("fp32", "off"), ("bf16", "on")):
        os.environ[precision.ENV] = setting
        logits = torch.cat([predictor.logits(test.images[i : i + 500]) for i in range(0, len(test), 500)])
        preds[label] = logits.argmax(1)
    if before is None:
        os.environ.pop(precision.ENV)
    else:
        os.environ[precision.ENV] = before
    acc = {k: round(100 * float((v == test.targets).float().mean()), 2) for k, v in preds.items()}
    changed = int((preds["fp32"] != preds["bf16"]).sum())
    return {"checkpoint": path.name, "images": len(test), "top1_fp32": acc["fp32"], "top1_bf16": acc["bf16"],
            "answers_changed": changed}  # fmt: skip


def trained(dataset: str, seed: int, setting: str, home: Path) -> dict:
    run_dir = home / f"{dataset}-{seed}-{setting}"
    env = {**os.environ, "RESNET_LAB_HOME": str(home), precision.ENV: setting}
    cmd = [sys.executable, "-m", "resnet_core", "train", "--dataset", dataset, "--seed", str(seed)]
    t = time.perf_counter()
    out = subprocess.run([*cmd, "--run-dir", str(run_dir)], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "start")
    end = next(e for e in events if e["type"] == "end")
    return {"best_acc": end["best_acc"], "precision": start["precision"], "seconds": round(time.perf_counter() - t, 1)}


def parity(datasets: list[str], seeds: list[int]) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="resnet-lab-bf16-") as home:
        for dataset in datasets:
            row = {"dataset": dataset, "seeds": seeds}
            for label, setting in (("fp32", "off"), ("bf16", "on")):
                runs = [trained(dataset, s, setting, Path(home)) for s in seeds]
                accs = [100 * r["best_acc"] for r in runs]
                row[label] = {
                    "path": runs[0]["precision"],
                    "best_acc": [round(a, 2) for a in accs],
                    "mean": round(statistics.mean(accs), 2),
                    "spread": round(max(accs) - min(accs), 2),
                    "seconds": [r["seconds"] for r in runs],
                }
                print(f"{dataset} {label}: {row[label]}", flush=True)
            gap = abs(row["fp32"]["mean"] - row["bf16"]["mean"])
            row["mean_gap"] = round(gap, 2)
            row["within_spread"] = gap <= max(row["fp32"]["spread"], row["bf16"]["spread"])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per model and path")
    parser.add_argument("--n", type=int, default=50, help="timed predictions per path")
    parser.add_argument("--parity", nargs="*", default=[], metavar="DATASET", help="presets to train both ways")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{cpu_name()}; {precision.describe()}; bf16 side: {BF16.label}", flush=True)
    speed = []
    for name, side, channels in (("resnet20", 28, 1), ("resnet18", 32, 3)):
        fp32 = step_rate(name, side, channels, precision.FP32, args.steps)
        bf16 = step_rate(name, side, channels, BF16, args.steps)
        speed.append({"model": f"{name} {side}px", "fp32_images_per_s": fp32, "bf16_images_per_s": bf16,
                      "ratio": round(bf16 / fp32, 2)})  # fmt: skip
        print(f"train step {speed[-1]}", flush=True)
    lat = {"fp32": latency(precision.FP32, args.n), "bf16": latency(BF16, args.n)}
    print(f"resnet18 224px forward: {lat}", flush=True)
    top1 = []
    for path in sorted((ROOT / "resnet_core" / "shipped").glob("*.pt")):
        top1.append(answers(path))
        print(f"answers {top1[-1]}", flush=True)
    summary = {
        "benchmark": "bf16",
        "cpu": cpu_name(),
        "bf16_side": BF16.label,
        "train_step": speed,
        "resnet18_224_latency": lat,
        "answers": top1,
        "parity": parity(args.parity, args.seeds) if args.parity else [],
        "machine": report.machine(load),
    }
    report.emit(summary, args.out)


if __name__ == "__main__":
    main()
