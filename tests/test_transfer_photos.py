"""The ImageNet ResNet-50 on a folder of real photos: ants and bees (../shared/data/hymenoptera.zip,
244 training and 153 test photos). Head only, a linear probe on the cached features, must reach
90 % where from-scratch training of the same network cannot; the comparison's configs are the four
strategies of one recipe, every one fed the weights' own input.

Needs the real weights (tests/imagenet_real.py) and the shared data; each skips with a sentence
where they are absent (a user's clone has no ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnet_core import data, engine, strategies
from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera.zip"


@pytest.fixture
def ants_and_bees(lab, real):  # noqa: F811 (the fixture)
    if not HYMENOPTERA.is_file():
        pytest.skip(f"{HYMENOPTERA} is absent: the ants-and-bees photos come with the shared data only.")
    (lab / "weights").mkdir(parents=True)
    (lab / "weights" / real["pth"].name).symlink_to(real["pth"])
    data.add_folder("hymenoptera", HYMENOPTERA)
    return lab


def test_a_linear_probe_on_imagenet_features_learns_ants_and_bees(ants_and_bees):
    chosen = strategies.configs(strategies.IMAGENET, "hymenoptera", k=None)
    assert list(chosen) == ["head", "last-stage", "all", "scratch"]
    head = chosen["head"]
    assert head.model == "resnet50_v1" and head.pretrained == "imagenet:resnet50_v1.keras"
    assert head.image_size == 224 and head.labels_per_class is None and head.epochs == 3
    assert chosen["scratch"].pretrained is None and chosen["all"].backbone_lr_scale == 0.1
    events = []
    result = engine.fit(head, callback=events.append)
    start = next(e for e in events if e["type"] == "start")
    feats = next(e for e in events if e["type"] == "features" and e["state"] == "done")
    assert start["train_images"] == 244 and start["test_images"] == 153 and start["trainable"] == 2048 * 2 + 2
    assert feats["images"] == 397 and feats["cached"] == 0
    # 96 % on this machine (147 of 153); 90 % leaves room for any processor's rounding.
    assert result["best_acc"] >= 0.90
