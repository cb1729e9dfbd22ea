import json

import pytest

from resnet_core.config import ConfigError, TrainConfig


def test_roundtrip_through_json(tmp_path):
    config = TrainConfig(dataset="fashion-sample", epochs=3, lr=0.05, image_size=32, extra={"note": "x"})
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    ("field", "value", "names"),
    [
        ("optimizer", "rmsprop", "sgd, adam, adamw"),
        ("schedule", "linear", "onecycle, cosine, step, none"),
        ("device", "tpu", "auto, cpu, cuda, mps"),
        ("augment", "mixup", "none, crop, flip, crop+flip"),
        ("trainable", "some", "all, last-stage, head"),
    ],
)
def test_bad_choice_names_the_valid_ones(field, value, names):
    with pytest.raises(ConfigError, match=names.replace("+", r"\+")):
        TrainConfig(**{field: value}).validate()


@pytest.mark.parametrize(
    "kwargs",
    [{"epochs": 0}, {"batch_size": -1}, {"lr": 0}, {"label_smoothing": 1.0}, {"image_size": 4}, {"weight_decay": -1}],
)
def test_out_of_range_values_are_refused(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs).validate()


def test_unknown_keys_are_refused_not_ignored(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"dataset": "mnist-sample", "epoch": 3}))
    with pytest.raises(ConfigError, match="epoch"):
        TrainConfig.load(tmp_path / "c.json")
