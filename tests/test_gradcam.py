"""Grad-CAM against its reference implementation, pytorch-grad-cam (PyPI ``grad-cam``).

Same model (random but fixed weights, eval mode), same layer, same image, same target class:
our map must be the package's ``GradCAM`` output. Measured difference: at most 8e-7.
"""

import threading

import numpy as np
import pytest
import torch

from resnet_core import models, predict

pytest.importorskip("pytorch_grad_cam", reason="pip install -r requirements-dev.txt")
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CASES = [  # (arch, channels, input height, input width)
    ("resnet20", 1, 28, 28),
    ("resnet18", 3, 24, 40),  # not square: catches a swapped (height, width)
    ("mini_residual", 1, 28, 28),
    ("vgg16_bn", 3, 32, 32),  # the transfer page's VGG: the ends of its conv blocks
]


def model_and_image(arch: str, channels: int, h: int, w: int, seed: int = 0):
    torch.manual_seed(seed)
    model = models.get_model(arch, num_classes=10, in_channels=channels, image_size=max(h, w)).eval()
    return model, torch.randn(1, channels, h, w)


def reference(model, x, target: int, layer: str) -> np.ndarray:
    with GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


def test_the_layers_offered_and_the_default():
    assert predict.cam_layers(models.get_model("resnet18", 10, 3, 64)) == ["layer1", "layer2", "layer3", "layer4"]
    assert predict.cam_layers(models.get_model("resnet20", 10, 1, 28)) == ["layer1", "layer2", "layer3"]
    assert predict.cam_layers(models.get_model("mini_residual", 10, 1, 28)) == ["rblock1", "rblock2"]
    vgg = models.get_model("vgg16_bn", 10, 3, 224)
    assert predict.cam_layers(vgg) == ["features.5", "features.12", "features.22", "features.32", "features.42"]
    with pytest.raises(ValueError, match="no residual stages"):
        predict.cam_layers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))


@pytest.mark.parametrize(("arch", "channels", "h", "w"), CASES)
def test_grad_cam_equals_pytorch_grad_cam_at_every_layer(arch, channels, h, w):
    model, x = model_and_image(arch, channels, h, w)
    with torch.no_grad():
        logits = model(x)[0]
    first, second = logits.topk(2).indices.tolist()
    for layer in predict.cam_layers(model):
        for target in (first, second):
            ours = predict.grad_cam(model, x, target, layer)
            theirs = reference(model, x, target, layer)
            assert ours.shape == theirs.shape == (h, w)
            np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5, err_msg=f"{arch} {layer} class {target}")
            # The top class's maps are never flat here (measured), so the comparison has something to see.
            assert target != first or (float(ours.max()), float(ours.min())) == (1.0, 0.0), layer


@pytest.mark.parametrize("arch", models.list_models())
def test_every_registered_model_offers_layers_that_exist(arch):
    """The registry drives the page's layer list: no model may leave it empty."""
    model = models.get_model(arch, num_classes=10, in_channels=3, image_size=32)
    names = predict.cam_layers(model)
    assert names and all(isinstance(model.get_submodule(n), torch.nn.Module) for n in names)


def test_the_default_layer_is_the_deepest_stage():
    model, x = model_and_image("resnet20", 1, 28, 28)
    assert torch.equal(predict.grad_cam(model, x, 3), predict.grad_cam(model, x, 3, "layer3"))
    assert not torch.allclose(predict.grad_cam(model, x, 3), predict.grad_cam(model, x, 3, "layer1"))
    with pytest.raises(ValueError, match="'layer4' is not one of: layer1, layer2, layer3"):
        predict.grad_cam(model, x, 3, "layer4")


def test_another_threads_forward_pass_does_not_reach_the_hook():
    """The model is shared: a gallery evaluation may run through it while a session explains."""
    model, x = model_and_image("resnet20", 1, 28, 28)
    expected = predict.grad_cam(model, x, 3)
    stop, other = threading.Event(), torch.randn(64, 1, 28, 28)

    def evaluate():
        with torch.inference_mode():
            while not stop.is_set():
                model(other)

    thread = threading.Thread(target=evaluate)
    thread.start()
    try:
        maps = [predict.grad_cam(model, x, 3) for _ in range(5)]
    finally:
        stop.set()
        thread.join()
    for cam in maps:
        torch.testing.assert_close(cam, expected)


def test_overlay_blends_by_alpha():
    image = torch.full((1, 4, 4), 255, dtype=torch.uint8)  # white
    cam = torch.zeros(4, 4)
    cam[0, 0] = 1.0
    assert (predict.overlay(image, cam, 0.0) == 255).all()  # alpha 0: the image alone
    hot = predict.overlay(image, cam, 1.0)  # alpha 1: the heat map alone, red-yellow where hot, black elsewhere
    assert hot[0, 0].tolist() == [255, 255, 0] and hot[1, 1].tolist() == [0, 0, 0]
    half = predict.overlay(image, cam, 0.5)
    assert half[1, 1].tolist() == [127, 127, 127] and half[0, 0].tolist() == [255, 255, 127]
