"""Models against their oracles: the paper's parameter counts and torchvision itself."""

import pytest
import torch
import torchvision

from resnet_core import models

# He et al. 2016, Table 6: parameters of the CIFAR-10 ResNets (3-channel input, 10 classes).
PAPER_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS_M))
def test_cifar_resnets_match_the_paper_parameter_counts(depth):
    n = models.count_parameters(models.get_model(f"resnet{depth}", num_classes=10, in_channels=3))
    digits = 1 if depth == 110 else 2
    assert round(n / 1e6, digits) == PAPER_PARAMS_M[depth]


@pytest.mark.parametrize("depth", models.CIFAR_DEPTHS)
def test_plain_twin_has_the_same_parameters_and_no_shortcut(depth):
    res = models.get_model(f"resnet{depth}")
    plain = models.get_model(f"plain{depth}")
    assert models.count_parameters(res) == models.count_parameters(plain)  # option A is parameter-free
    assert not any(isinstance(m, models.OptionAShortcut) for m in plain.modules())
    assert sum(isinstance(m, models.OptionAShortcut) for m in res.modules()) == 3 * (depth - 2) // 6


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = torch.randn(2, 16, 8, 8)
    y = models.OptionAShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("name", [n for n in models.list_models("torchvision") if not models.get_spec(n).variant])
def test_torchvision_models_are_torchvision_itself(name):
    torch.manual_seed(0)
    ours = models.get_model(name, num_classes=1000, in_channels=3, image_size=224).eval()
    theirs = torchvision.models.get_model(name, num_classes=1000).eval()
    theirs_state = theirs.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs_state.items()}
    ours.load_state_dict(theirs_state)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_resnet50_v1_is_torchvision_resnet50_with_the_stride_on_the_first_1x1():
    v1 = models.get_model("resnet50_v1", num_classes=1000).eval()
    tv = torchvision.models.resnet50().eval()
    assert {k: v.shape for k, v in v1.state_dict().items()} == {k: v.shape for k, v in tv.state_dict().items()}
    v1.load_state_dict(tv.state_dict(), strict=True)
    strides = lambda m: {n: c.stride for n, c in m.named_modules() if isinstance(c, torch.nn.Conv2d)}  # noqa: E731
    moved = {n for n, s in strides(v1).items() if s != strides(tv)[n]}
    assert moved == {f"layer{i}.0.conv{j}" for i in (2, 3, 4) for j in (1, 2)}
    assert all(v1.get_submodule(f"layer{i}.0.conv1").stride == (2, 2) for i in (2, 3, 4))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = v1(x), tv(x)
    assert a.shape == b.shape and not torch.allclose(a, b, atol=1e-3)  # the same tensors, another network
    assert models.get_model("resnet50", 1000, variant="v1").layer2[0].conv1.stride == (2, 2)
    with pytest.raises(ValueError, match="only bottleneck ResNets"):
        models.get_model("resnet18", variant="v1")


def test_small_input_stem_keeps_spatial_detail_for_28px():
    model = models.get_model("resnet18", num_classes=10, in_channels=1, image_size=28)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    feats = {}
    model.layer4.register_forward_hook(lambda m, i, o: feats.update(layer4=o.shape))
    model(torch.zeros(1, 1, 28, 28))
    assert feats["layer4"][-2:] == (4, 4)


@pytest.mark.parametrize("name", models.list_models())
def test_every_registered_model_classifies_a_small_gray_batch(name):
    model = models.get_model(name, num_classes=7, in_channels=1, image_size=28).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 7)


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="resnet20.*mini_residual"):
        models.get_model("resnet21")


def test_pretrained_only_where_weights_exist():
    with pytest.raises(ValueError, match="resnet18.*vgg16_bn"):
        models.imagenet_weights("resnet20")


def test_mini_residual_is_the_tutorial_net():
    m = models.get_model("mini_residual", num_classes=10, in_channels=1, image_size=28)
    assert m.fc.in_features == 512  # 32 channels x 4 x 4 after two conv5x5 + pool stages
    assert [type(c).__name__ for c in m.children()] == [
        "Conv2d",
        "TutorialResidualBlock",
        "Conv2d",
        "TutorialResidualBlock",
        "Linear",
    ]
