"""Shared fixtures: an isolated lab home per test, and the shipped digits model as a finished run."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
# fp32 on every processor, trainers started by the tests included: a CPU with bf16 units (AMX,
# AVX512-BF16) would otherwise train and predict in bf16 by default, and the suite would check other
# numbers there than everywhere else. The bf16 path is tested where asked for, on any CPU
# (RESNET_LAB_CPU_BF16=on: emulated where there are no units), in tests/test_precision.py.
os.environ["RESNET_LAB_CPU_BF16"] = "off"


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A fresh $RESNET_LAB_HOME: nothing downloaded, no runs."""
    monkeypatch.setenv("RESNET_LAB_HOME", str(tmp_path / "lab"))
    return tmp_path / "lab"


# The shipped checkpoints (built by scripts/build_photo_fixtures.py): fixed models for tests that
# judge a model's answers. A model trained inside the session would not do: a short run's weights
# follow the float rounding of the CPU's kernels (AVX2, AVX-512, AMX differ), so a test counting its
# right answers, or expecting one of its mistakes, passes on one processor and fails on another.
CHECKPOINTS = Path(__file__).parent.parent / "resnet_core" / "shipped"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A run directory holding the shipped digits ResNet-20 as ``best.pt`` (98.75 % on the 2,000
    bundled test digits, 25 mistakes): the same model on every processor. Tests of training itself
    train their own run (test_engine.py) and assert only what holds for any model the recipe gives."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run_dir.mkdir()
    shutil.copy(CHECKPOINTS / "mnist-resnet20.pt", run_dir / "best.pt")
    return run_dir


def digit_png(tmp_path: Path, index: int = 0) -> tuple[Path, int]:
    """A real test digit from the bundled sample, saved as an ordinary PNG; returns (path, label)."""
    from PIL import Image

    from resnet_core import data

    test = data.load_dataset("mnist-sample", "test")
    path = tmp_path / f"digit{index}.png"
    Image.fromarray(test.images[index, 0].numpy()).save(path)
    return path, int(test.targets[index])


def tiny_config(**overrides):
    """A run that starts in seconds: the tutorial net, Adam, a few batches (override as needed)."""
    from resnet_core.config import TrainConfig

    base = dict(
        dataset="mnist-sample",
        model="mini_residual",
        epochs=1,
        batch_size=16,
        optimizer="adam",
        lr=1e-3,
        schedule="none",
        max_train_batches=5,
        max_test_images=100,
    )
    return TrainConfig(**{**base, **overrides})


# The same tiny run as command-line flags, for the CLI and torchrun tests.
TINY_ARGS = [
    "--dataset",
    "mnist-sample",
    "--model",
    "mini_residual",
    "--epochs",
    "1",
    "--optimizer",
    "adam",
    "--lr",
    "0.002",
    "--schedule",
    "none",
    "--max-test-images",
    "300",
]


def shown(markdown: str) -> str:
    """What the reader sees of a message whose user text was escaped (``ui.common.plain``)."""
    return re.sub(r"\\(.)", r"\1", markdown)
