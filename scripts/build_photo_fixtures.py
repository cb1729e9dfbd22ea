"""Build what the photo tests ship: the default presets' checkpoints and a small fixed set of photos.

    python scripts/build_photo_fixtures.py [--skip-training | --only NAME ...] [--n 240]

1. Trains each default preset as a user would (``python -m resnet_core train --dataset
   mnist-sample``, then ``fashion-sample``: about 20 s and 2 minutes on 2 CPU cores), and a
   ResNet-20 on digits (``--model resnet20 --epochs 5``, about 1 minute), and keeps each best
   checkpoint without its optimizer state as resnet_core/shipped/{NAME}.pt, so CI does not
   train for minutes. The photo tests read the presets; the gallery, Grad-CAM and transfer tests
   read mnist-resnet20 (they want a network with stages, which the digit preset is not).
2. Renders tests/fixtures/photos/digits/ and photos/clothes/: photos of the first ``--n`` test
   images of each bundled sample (never a training image), by scripts/make_photos.py with seed 0,
   frames 300-900 px as in the benchmark (which renders new ones with seed 1), so the fixed set is a
   sample of what the benchmark measures. About 7 MB per kind. Small frames are the harsh end: at
   300-600 px (JPEG blocks and sensor noise large against the garment) the first 120 clothes
   scored 78.3 % against 81.7 % here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

KEEP = ("config", "dataset", "arch", "classes", "mean", "std", "image_size", "in_channels", "versions")
KEEP += ("model", "epoch", "metrics")
# name -> (dataset, extra CLI flags); no flags is the dataset's default preset.
CHECKPOINTS = {
    "mnist-sample": ("mnist-sample", []),
    "fashion-sample": ("fashion-sample", []),
    "mnist-resnet20": ("mnist-sample", ["--model", "resnet20", "--epochs", "5"]),
}


def train(name: str, home: Path) -> None:
    dataset, flags = CHECKPOINTS[name]
    run_dir = home / "runs" / name
    env = {**os.environ, "RESNET_LAB_HOME": str(home)}
    command = [sys.executable, "-m", "resnet_core", "train", "--dataset", dataset, "--run-dir", str(run_dir)]
    subprocess.run(command + flags, check=True, env=env, cwd=ROOT)
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    out = ROOT / "resnet_core" / "shipped" / f"{name}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: ckpt[k] for k in KEEP if k in ckpt}, out)
    print(f"{out.relative_to(ROOT)}: best test accuracy {ckpt['metrics']['best_acc']:.2%}")


def render(n: int) -> None:
    from make_photos import make

    for kind, folder in (("digit", "digits"), ("item", "clothes")):
        out = FIXTURES / "photos" / folder
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for i, jpeg, label in make(kind, n, seed=0, longest=900):
            (out / f"{i:04d}-{label}.jpg").write_bytes(jpeg)
        size = sum(p.stat().st_size for p in out.iterdir())
        print(f"{out.relative_to(ROOT)}: {n} photos, {size / 2**20:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-training", action="store_true", help="only render the photos")
    parser.add_argument("--only", nargs="+", choices=CHECKPOINTS, default=list(CHECKPOINTS), help="which to train")
    parser.add_argument("--n", type=int, default=240, help="photos per kind")
    args = parser.parse_args()
    if not args.skip_training:
        with tempfile.TemporaryDirectory() as home:
            for name in args.only:
                train(name, Path(home))
    render(args.n)


if __name__ == "__main__":
    main()
