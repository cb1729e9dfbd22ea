"""A folder's first recipe fits its images and what the server has (data.folder_preset): small
images get a CIFAR ResNet at their own size; photos a linear probe of cached ImageNet weights, else a
small ResNet from scratch at a size a CPU affords; never a default that needs a download. And
``--pretrained none`` means none."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from resnet_core import data, features, models, weights
from resnet_core.__main__ import build_parser, config_from_args
from resnet_core.config import TrainConfig


def folder(root, size, per_class=6):
    rng = np.random.default_rng(0)
    for name in ("ants", "bees"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def offline(lab, tmp_path, monkeypatch):
    """No ImageNet weights anywhere: the lab's folder is empty, torch's hub folder too."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return lab


def cli_config(*args) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *args]))


def test_small_images_get_a_cifar_resnet_at_their_own_size(offline, tmp_path):
    data.add_folder("tiny", folder(tmp_path / "tiny", (32, 32)))
    config = cli_config("--dataset", "tiny")
    assert config.model == "resnet20" and config.pretrained is None and config.image_size is None
    assert config.augment == "crop+flip" and config.trainable == "all"
    # 12 images: batch 256 would give one SGD step an epoch; the photo recipe's batch 128 over 30.
    assert (config.batch_size, config.epochs) == (128, 30)


def test_a_cifar_sized_folder_gets_cifar10s_own_recipe():
    """The recipe benchmarks/cifar_preset.py measures against the copied loop (batch 256, lr 0.2)."""
    assert data.folder_preset(32, 50_000) == data.get_spec("cifar10").preset == data.folder_preset(32)
    assert data.get_spec("cifar10").preset["batch_size"] == 256
    assert data.folder_preset(32, data.CIFAR_RECIPE_MIN_IMAGES - 1)["batch_size"] == 128


def test_photos_offline_without_weights_train_from_scratch_at_64_px(offline, tmp_path):
    data.add_folder("photos", folder(tmp_path / "photos", (200, 150)))
    assert data.get_spec("photos").size == 144
    config = cli_config("--dataset", "photos")
    assert config.pretrained is None and config.model == "resnet20" and config.image_size == 64
    assert models.get_spec(config.model).family == "cifar"


def test_photos_with_imagenet_weights_cached_are_a_linear_probe(offline, tmp_path):
    cfg = weights.get_cfg("resnet50_v1.keras")
    weights.path_of(cfg).parent.mkdir(parents=True)
    weights.path_of(cfg).write_bytes(b"")  # cached is a stat: the preset reads no file
    data.add_folder("photos", folder(tmp_path / "photos", (200, 150)))
    config = cli_config("--dataset", "photos")
    assert (config.model, config.pretrained, config.image_size) == ("resnet50_v1", "imagenet:resnet50_v1.keras", 224)
    with_stages = models.get_model(config.model, 2, 3, 224)
    assert features.applies(config, with_stages, {"fresh": []})  # head only, no augmentation: cached features
    # What the user says still wins: another model, or no pretrained weights at all.
    assert cli_config("--dataset", "photos", "--pretrained", "none").pretrained is None


@pytest.mark.parametrize("said", ["none", "None", "", " none "])
def test_pretrained_none_means_none(said):
    assert TrainConfig(pretrained=said).pretrained is None
    assert cli_config("--dataset", "mnist-sample", "--pretrained", said).pretrained is None


def test_a_capped_test_split_of_a_folder_holds_every_class(offline, tmp_path):
    data.add_folder("photos", folder(tmp_path / "photos", (40, 40), per_class=10))
    test = data.load_dataset("photos", "test")
    assert test.targets.tolist() == sorted(test.targets.tolist())  # a folder lists its images class by class
    capped = test.subset(2)
    assert sorted(capped.targets.tolist()) == [0, 1] and len(capped.files) == 2
    assert capped.files[1] == test.files[-1]  # rows spread over the split, the files with them
