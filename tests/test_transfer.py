"""Transfer learning: heads, backbones, freezing, and ImageNet weights offline."""

import socket

import pytest
import torch
import torchvision

from resnet_core import models, transfer
from resnet_core.config import TrainConfig


def test_replace_head_reports_before_and_after():
    model = torchvision.models.resnet18()
    before, after = transfer.replace_head(model, 7)
    assert (before, after) == ("fc: Linear(512, 1000)", "fc: Linear(512, 7)")
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 7)


def test_vgg_style_classifier_head_is_found_and_replaced():
    model = torchvision.models.vgg11()
    assert transfer.find_head(model)[0] == "classifier.6"
    transfer.replace_head(model, 3)
    assert model.classifier[6].out_features == 3


@pytest.mark.parametrize(("mode", "expected"), [("head", 512 * 10 + 10), ("all", None), ("last-stage", None)])
def test_trainable_counts(mode, expected):
    model = models.get_model("resnet18", num_classes=10, in_channels=3, image_size=224)
    trainable, total = transfer.set_trainable(model, mode)
    assert total == models.count_parameters(model)
    if mode == "head":
        assert trainable == expected
    elif mode == "all":
        assert trainable == total
    else:
        assert trainable == sum(p.numel() for p in model.layer4.parameters()) + 512 * 10 + 10
        assert not model.conv1.weight.requires_grad and model.layer4[0].conv1.weight.requires_grad


def test_backbone_from_a_trained_run_loads_everything_but_the_head(trained_run):
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    target = models.get_model("resnet20", num_classes=3, in_channels=1, image_size=28)
    report = transfer.load_backbone(target, ckpt["model"])
    assert report["missing"] == ["fc.bias", "fc.weight"]
    assert set(report["skipped"]) == {"fc.bias", "fc.weight"}
    assert torch.equal(target.layer3[0].conv1.weight, ckpt["model"]["layer3.0.conv1.weight"])


def test_prepare_model_starts_from_a_file_and_freezes(trained_run):
    config = TrainConfig(model="resnet20", pretrained=str(trained_run / "best.pt"), trainable="last-stage")
    plan = transfer.InputPlan(1, 28, [0.5], [0.25])
    model, report = transfer.prepare_model(config, 5, plan, transfer.source_weights(config))
    assert model.fc.out_features == 5 and report["fresh"] == [] and report["missing"] == ["fc.bias", "fc.weight"]
    assert model.layer3[0].conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad


def test_imagenet_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(models.WeightsUnavailable, match=r"resnet18.*unreachable.*resnet18-.*\.pth.*checkpoints"):
        models.imagenet_weights("resnet18")
