"""The lab's CIFAR ResNets against He et al.'s networks as trained by Y. Idelbayev
(../shared/data/cifar-resnets, BSD-2-Clause; option-A shortcuts, as in the paper).

An oracle for models.py's CIFAR family: the trained weights of ResNet-20/32/44/56 load strictly
into the lab's networks of those depths (and, shortcuts having no parameters, into the plain twins),
and evaluated through the lab's own path (a checkpoint, ``predict.evaluate_checkpoint``, the
folder dataset made from ../shared/data/cifar10-jpeg.zip) they score what they score in their own
code: 81.0 % (ResNet-20) and 83.2 % (ResNet-56) on the JPEG test split, the JPEG re-encoding
costing them about 10 points of the 91.8 % and 93.6 % recorded on the original pixels. A wrong
stride, padding, shortcut or layer order would load just as strictly and score near chance.

Skips with a sentence where ../shared/data is absent (a user's clone has none)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from resnet_core import data, models, predict
from resnet_core.checkpoints import save_checkpoint
from resnet_core.config import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NETS = {
    depth: next(iter(sorted((SHARED / "cifar-resnets").glob(f"resnet{depth}-*.th"))), None)
    for depth in (20, 32, 44, 56)
}
# Measured by the data's README in the networks' own code (ImageNet mean/std, no resizing).
JPEG_ACCURACY = {20: 0.810, 56: 0.832}
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # what they were trained with


def he_state(path: Path) -> dict[str, torch.Tensor]:
    """Their state_dict in the lab's names: DataParallel's ``module.`` dropped, ``linear`` is ``fc``."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        renamed["fc." + key.removeprefix("linear.") if key.startswith("linear.") else key] = value
    return renamed


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A lab with the 60,000 JPEGs as the folder dataset ``cifar10-jpeg`` (17 s on 2 cores)."""
    if not (SHARED / "cifar10-jpeg.zip").is_file() or not all(NETS.values()):
        pytest.skip(f"{SHARED} lacks cifar10-jpeg.zip or cifar-resnets/: they come with the shared data only.")
    home = tmp_path_factory.mktemp("cifar") / "lab"
    old = os.environ.get("RESNET_LAB_HOME")
    os.environ["RESNET_LAB_HOME"] = str(home)
    try:
        info = data.add_folder("cifar10-jpeg", SHARED / "cifar10-jpeg.zip")
        yield info
    finally:
        if old is None:
            os.environ.pop("RESNET_LAB_HOME", None)
        else:
            os.environ["RESNET_LAB_HOME"] = old


def test_the_folder_is_cifar10(cifar):
    assert cifar.classes == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert cifar.counts == {"train": [5000] * 10, "test": [1000] * 10} and cifar.size == 32


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_he_et_al_s_trained_resnets_load_and_score_in_the_lab(cifar, depth, tmp_path):
    state = he_state(NETS[depth])
    models.get_model(f"resnet{depth}", 10, 3, 32).load_state_dict(state, strict=True)
    models.get_model(f"plain{depth}", 10, 3, 32).load_state_dict(state, strict=True)  # same shapes, no shortcut
    config = TrainConfig(dataset="cifar10-jpeg", model=f"resnet{depth}", amp=False)
    ckpt = {
        "model": state,
        "config": config.to_dict(),
        "dataset": "cifar10-jpeg",
        "arch": f"resnet{depth}",
        "classes": list(cifar.classes),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "image_size": 32,
        "in_channels": 3,
    }
    save_checkpoint(ckpt, tmp_path / "best.pt")
    result = predict.evaluate_checkpoint(tmp_path / "best.pt")
    assert result["n"] == 10_000
    if depth in JPEG_ACCURACY:  # 0.5 point either way: about 50 images, far above any kernel's rounding
        assert abs(result["acc"] - JPEG_ACCURACY[depth]) < 0.005, result["acc"]
    else:  # no published figure on the JPEGs: between its neighbours' range
        assert 0.79 < result["acc"] < 0.85, result["acc"]
    if depth == 20:  # the Predict page's gallery over the 10,000 test images: the same answers, shown
        shown = predict.evaluate_gallery(predict.Predictor.from_checkpoint(tmp_path / "best.pt"))
        assert shown["confusion"].sum() == 10_000 and shown["accuracy"] == pytest.approx(result["acc"], abs=0.002)
        wrong = predict.mistakes(shown)[:12]
        pixels = predict.gallery_images(shown, wrong)  # decoded for the few shown only
        assert pixels.shape == (12, 3, 32, 32) and all(shown["preds"][i] != shown["targets"][i] for i in wrong)
