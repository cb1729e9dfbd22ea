"""The typed configuration that flows from the UI or CLI through the engine into every checkpoint.

One dataclass, as nanoGPT's ``GPTConfig``: the CLI builds it from flags, the dashboard from a
form, ``runs`` writes it to ``config.json``, the engine reads only it, and every checkpoint
carries ``asdict(config)`` so a weights file says how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_core.messages import LabError

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTATIONS = ("none", "crop", "flip", "crop+flip", "affine", "affine+flip")
TRAINABLE = ("all", "last-stage", "head")  # transfer learning: which part learns


class ConfigError(LabError, ValueError):
    """A configuration a user wrote that cannot run; the message names the valid choices."""


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError("config.not_one_of", name=name, value=value, choices=", ".join(choices))


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units are in the field comments."""

    dataset: str = "mnist-sample"
    model: str = "resnet20"
    epochs: int = 5  # full passes over the training split
    batch_size: int = 64  # images per optimizer step (per process under torchrun)
    optimizer: str = "sgd"
    lr: float = 0.1  # peak learning rate (one-cycle) or initial rate (others)
    momentum: float = 0.9  # SGD momentum; Adam's beta1 is left at its default
    schedule: str = "onecycle"
    weight_decay: float = 5e-4  # L2 on conv/linear weights; batch-norm and biases are exempt
    label_smoothing: float = 0.1  # as in torch.nn.CrossEntropyLoss
    augment: str = "crop"  # batch-level: random translate by up to `pad` px, optional h-flip
    pad: int = 2  # pixels of translation for the "crop" and "affine" augmentations
    rotate: float = 10.0  # degrees: "affine" rotates each image by up to this much either way
    zoom: float = 0.1  # "affine" scales each image by a factor in 1 +- zoom
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast where the device has bf16 units (CUDA 8.0+, AMX/AVX512-BF16 CPUs): precision.py
    compile: bool = False  # torch.compile the model: faster steps on a GPU after a compile of a minute or so
    workers: int = 0  # DataLoader workers for folders too large to cache; 0 = one per core, at most 4
    image_size: int | None = None  # input side in px; None = the dataset's own size
    pretrained: str | None = None  # None, "imagenet", or a path to a .pt/.pth to start from
    trainable: str = "all"  # "head": only the new head learns; "last-stage": layer4 + head
    backbone_lr_scale: float = 1.0  # pretrained layers learn at lr x this; the head and fresh layers at lr
    labels_per_class: int | None = None  # keep only this many training images per class (seeded)
    max_train_batches: int | None = None  # cap per epoch, for quick demos and tests
    max_test_images: int | None = None  # cap on the test split, for quick demos and tests
    run_dir: str | None = None  # where the run lives; filled by `runs` when it launches
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the run

    def __post_init__(self) -> None:
        # "none" or "" from a command line or a config file means no pretrained weights, not a file so named.
        if isinstance(self.pretrained, str) and self.pretrained.strip().lower() in ("", "none"):
            self.pretrained = None

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` with an actionable sentence; return self when valid."""
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        _choice("augment", self.augment, AUGMENTATIONS)
        _choice("trainable", self.trainable, TRAINABLE)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError("config.whole_number", name=name, value=value)
        if not self.lr > 0:
            raise ConfigError("config.lr", value=self.lr)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("config.label_smoothing", value=self.label_smoothing)
        if self.weight_decay < 0 or self.pad < 0 or self.workers < 0:
            raise ConfigError("config.negative")
        if not (0 <= self.rotate <= 180 and 0 <= self.zoom < 1):
            raise ConfigError("config.affine", rotate=self.rotate, zoom=self.zoom)
        if not 0 < self.backbone_lr_scale <= 10:
            raise ConfigError("config.backbone_lr_scale", value=self.backbone_lr_scale)
        if self.labels_per_class is not None and self.labels_per_class < 1:
            raise ConfigError("config.labels_per_class", value=self.labels_per_class)
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise ConfigError("config.image_size", value=self.image_size)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, refusing unknown keys (a typo must not be silently ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError("config.unknown_keys", unknown=unknown, valid=", ".join(sorted(known)))
        return cls(**data).validate()

    def save(self, path: str | Path) -> None:
        from resnet_core.checkpoints import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))
