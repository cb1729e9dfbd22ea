"""Shared fixtures: an isolated lab home per test, and one small trained run for the whole session."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def lab(tmp_path, monkeypatch) -> Path:
    """A fresh $RESNET_LAB_HOME: nothing downloaded, no runs."""
    monkeypatch.setenv("RESNET_LAB_HOME", str(tmp_path / "lab"))
    return tmp_path / "lab"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A resnet20 trained briefly on mnist-sample (about 15 s on 2 cores): ~95 % test accuracy."""
    from resnet_core import engine
    from resnet_core.config import TrainConfig

    home = tmp_path_factory.mktemp("trained")
    old = os.environ.get("RESNET_LAB_HOME")
    os.environ["RESNET_LAB_HOME"] = str(home / "lab")
    try:
        run_dir = home / "run"
        config = TrainConfig(
            dataset="mnist-sample",
            model="resnet20",
            epochs=2,
            batch_size=128,
            lr=0.1,
            max_train_batches=30,
            max_test_images=500,
            run_dir=str(run_dir),
        )
        engine.fit(config)
    finally:
        if old is None:
            os.environ.pop("RESNET_LAB_HOME")
        else:
            os.environ["RESNET_LAB_HOME"] = old
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
