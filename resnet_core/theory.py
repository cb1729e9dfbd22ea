"""Residual theory, measured on real modules: parameters and multiply-adds of the building blocks.

The numbers the theory page shows are computed here from torchvision's own blocks and models,
never typed in. Multiply-adds (MACs) are counted with forward hooks on every convolution and
linear layer: a k x k convolution costs (C_in / groups) * k * k MACs per output element.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from resnet_core import models


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of a single input of ``input_shape`` (C, H, W)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs, out) -> None:
        nonlocal total
        total += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m: nn.Linear, inputs, out) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total


def _cost(module: nn.Module, input_shape: tuple[int, ...]) -> dict:
    return {"params": models.count_parameters(module), "macs": count_macs(module, input_shape)}


def block_costs(size: int = 56) -> dict:
    """He et al. 2016 Fig. 5: a basic block on 64 channels against a bottleneck on 256
    (1x1 reduce to 64, 3x3, 1x1 expand to 256), both from torchvision, at ``size`` x ``size``."""
    resnet = torchvision.models.resnet
    return {
        "basic": _cost(resnet.BasicBlock(64, 64), (64, size, size)),
        "bottleneck": _cost(resnet.Bottleneck(256, 64), (256, size, size)),
        "basic_on_256": _cost(resnet.BasicBlock(256, 256), (256, size, size)),
    }


def shortcut_costs(in_channels: int = 16, out_channels: int = 32, size: int = 32) -> dict:
    """Where shapes change: option A (subsample and zero-pad) against option B (1x1 conv + BN)."""
    option_b = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False), nn.BatchNorm2d(out_channels)
    )
    return {
        "A": _cost(models.OptionAShortcut(in_channels, out_channels, 2), (in_channels, size, size)),
        "B": _cost(option_b, (in_channels, size, size)),
    }


def cardinality_costs(width: int = 128, size: int = 56, groups: int = 32) -> dict:
    """ResNeXt's grouped 3x3 (32 groups of 4) against a plain 3x3 of the same width, and the
    whole resnet50 against resnext50_32x4d as torchvision builds them, at 224 px."""
    grouped = nn.Conv2d(width, width, 3, padding=1, groups=groups, bias=False)
    dense = nn.Conv2d(width, width, 3, padding=1, bias=False)
    tv = torchvision.models
    return {
        "grouped_3x3": _cost(grouped, (width, size, size)),
        "dense_3x3": _cost(dense, (width, size, size)),
        "resnet50": _cost(tv.resnet50(), (3, 224, 224)),
        "resnext50_32x4d": _cost(tv.resnext50_32x4d(), (3, 224, 224)),
    }


def one_by_one_costs(size: int = 28, in_channels: int = 192, out_channels: int = 32, reduce: int = 16) -> dict:
    """A 5x5 convolution from 192 to 32 channels, directly and through a 1x1 to 16 first."""
    direct = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
    reduced = nn.Sequential(
        nn.Conv2d(in_channels, reduce, 1, bias=False), nn.Conv2d(reduce, out_channels, 5, padding=2, bias=False)
    )
    return {"direct": _cost(direct, (in_channels, size, size)), "reduced": _cost(reduced, (in_channels, size, size))}


# ---------------------------------------------------------------------------------------------
# Gradient flow at initialisation, and shattered gradients, on real images


def real_batch(dataset: str = "mnist-sample", n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` normalised training images and labels of a bundled dataset, chosen with ``seed``."""
    from resnet_core import data, engine

    d = data.load_dataset(dataset, "train")
    rows = torch.randperm(len(d), generator=torch.Generator().manual_seed(seed))[:n]
    mean, std = data.normalization(dataset)
    x = engine.normalize(d.images[rows], torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1))
    return x, d.targets[rows]


def twin(depth: int, residual: bool, batch_norm: bool, in_channels: int = 1, seed: int = 0) -> nn.Module:
    """A CIFAR-style ResNet of ``depth`` or its plain twin, with the same seeded initial weights."""
    torch.manual_seed(seed)
    return models.CifarResNet(depth, 10, in_channels, residual=residual, batch_norm=batch_norm)


def gradient_flow(depth: int = 56, batch_norm: bool = True, dataset: str = "mnist-sample", n: int = 64) -> dict:
    """Per-conv-layer gradient norm of the loss, and per-block output std, at initialisation.

    Layers are in forward order (index 0 is the first convolution), for the plain net and its
    residual twin, measured on one batch of real images in training mode.
    """
    x, y = real_batch(dataset, n)
    out = {}
    for kind, residual in (("plain", False), ("residual", True)):
        model = twin(depth, residual, batch_norm, x.shape[1]).train()
        stds = []
        blocks = [m for m in model.modules() if isinstance(m, models.CifarBasicBlock)]
        handles = [
            b.register_forward_hook(lambda m, i, o, stds=stds: stds.append(float(o.detach().std()))) for b in blocks
        ]
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        for h in handles:
            h.remove()
        grads = [float(p.grad.norm()) for name, p in model.named_parameters() if p.ndim == 4]
        out[kind] = {"grad_norm": grads, "act_std": stds, "loss": loss.item()}
    return out


def shattered_gradients(
    depth: int, residual: bool, batch_norm: bool = True, points: int = 128, dataset: str = "mnist-sample"
) -> float:
    """Balduzzi et al. 2017: correlation of input-gradients at neighbouring points on a line.

    The line runs between two real images; at each point we take the gradient of the top
    logit with respect to the input. Smooth (correlated) gradients give values near 1; white
    noise gives values near 0. Batch norm uses the line's own statistics (training mode), as
    the paper measures at initialisation.
    """
    x, _ = real_batch(dataset, 2)
    t = torch.linspace(0, 1, points).view(-1, 1, 1, 1)
    line = ((1 - t) * x[0] + t * x[1]).requires_grad_(True)
    model = twin(depth, residual, batch_norm, x.shape[1]).train()
    logits = model(line)
    logits[:, int(logits.mean(0).argmax())].sum().backward()
    g = line.grad.flatten(1)
    g = g - g.mean(1, keepdim=True)
    g = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((g[1:] * g[:-1]).sum(1).mean())
