"""The fast prediction path against its oracles: the plain model, and the slower code it replaced.

Predictor.top_k and probabilities run a copy of the model with each BatchNorm folded into its
convolution, channels-last, under torch.inference_mode (predict.inference_copy); Grad-CAM keeps
the plain model and its gradients. The imaging steps rewritten for speed are checked against the
code they replaced: scipy's zoom and numpy's max over channels (same values), the page's tilt
from 31 rotated images (the same lines found). Measured on 1080 photos (the 480 fixtures and 600
from scripts/make_photos.py): every prepared image identical to the bytes before the rewrite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage
from torch import nn

from resnet_core import imaging, models, predict

FIXTURES = Path(__file__).parent / "fixtures"
CASES = [  # (arch, channels, side): the benchmark's two, the tutorial net, a plain net, VGG's head
    ("resnet20", 1, 28),
    ("resnet18", 3, 224),
    ("mini_residual", 1, 28),
    ("plain20", 3, 32),
    ("vgg16_bn", 3, 32),
]


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine terms, so that folding them is not a no-op."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()


def close(fast: torch.Tensor, plain: torch.Tensor, rel: float = 1e-4) -> bool:
    return float((fast - plain).abs().max()) <= rel * float(plain.abs().max())


@pytest.mark.parametrize(("arch", "channels", "side"), CASES)
def test_the_inference_copy_gives_the_plain_models_logits(arch, channels, side):
    torch.manual_seed(0)
    model = trained_looking(models.get_model(arch, num_classes=10, in_channels=channels, image_size=side))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast = predict.inference_copy(model)
    x = torch.randn(3, channels, side, side)
    with torch.no_grad():
        plain = model(x)
    with torch.inference_mode():
        out = fast(x.contiguous(memory_format=torch.channels_last))
    assert close(out, plain), float((out - plain).abs().max())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())  # every BatchNorm folded
    assert all(not p.requires_grad for p in fast.parameters())
    # The model Grad-CAM uses is untouched: same weights and statistics, BatchNorms, gradients.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == norms
    assert all(p.requires_grad for p in model.parameters())


def test_a_model_torch_fx_cannot_trace_is_still_predicted_right():
    class Branchy(nn.Module):  # control flow on a tensor's value: symbolic tracing fails
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 10)

        def forward(self, x):
            x = self.bn(self.conv(x))
            x = x.relu() if x.sum() > 0 else x
            return self.fc(x.mean((2, 3)))

    model = trained_looking(Branchy())
    x = torch.randn(2, 1, 28, 28)
    with torch.inference_mode():
        assert close(predict.inference_copy(model)(x), model(x))


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    model = trained_looking(models.get_model("resnet20", num_classes=10, in_channels=1, image_size=28))
    return predict.Predictor(model, [str(i) for i in range(10)], [0.13], [0.31], 28, 1, "digit", "mnist-sample", 28)


def test_top_k_is_the_plain_models_softmax_and_records_no_graph(predictor):
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        plain = torch.softmax(predictor.model(predictor.normalized(images)), 1)
    probs = predictor.probabilities(images)
    assert close(probs, plain) and probs.is_inference() and not probs.requires_grad
    top = predictor.top_k(images[0], 3)
    assert [t["index"] for t in top] == plain[0].topk(3).indices.tolist()
    assert predictor.inference_model() is predictor.inference_model()  # made once, then shared


def test_grad_cam_still_has_gradients_after_the_fast_path(predictor):
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    target = predictor.top_k(image, 1)[0]["index"]
    cam, explained = predictor.explain(image)
    assert explained == target and cam.shape == (28, 28) and float(cam.max()) in (0.0, 1.0)
    assert all(not m._forward_hooks for m in predictor.model.modules())  # Grad-CAM's hook is gone
    assert all(not m._forward_hooks for m in predictor.inference_model().modules())


# ---------------------------------------------------------------------------------------------
# imaging: the rewritten steps against the code they replaced


def test_the_closing_background_is_scipys_zoom():
    rng = np.random.default_rng(0)
    for h, w, k in [(240, 320, 48), (320, 240, 30), (213, 320, 64), (300, 301, 17), (100, 90, 12)]:
        rgb = rng.random((h, w, 3), dtype=np.float32)
        f = max(1, min(k // 10, h // 8, w // 8))
        small = rgb[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f, 3).mean((1, 3))
        closed = ndimage.grey_closing(small, size=(max(3, round(k / f)), max(3, round(k / f)), 1), mode="nearest")
        zoom = (h / closed.shape[0], w / closed.shape[1], 1)
        expected = ndimage.zoom(closed, zoom, order=1, mode="nearest", grid_mode=True)[:h, :w]
        got = imaging._closing_background(rgb, k)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-6


def test_max3_is_the_max_over_channels():
    a = np.random.default_rng(1).standard_normal((37, 41, 3)).astype(np.float32)
    assert np.array_equal(imaging._max3(a), a.max(-1))


def ruled_page() -> np.ndarray:
    """A mask with tilted ruled lines, a margin line and a stroke crossing them."""
    page = Image.new("L", (320, 240), 0)
    draw = ImageDraw.Draw(page)
    for y in (60, 100, 140, 180):
        draw.line([(0, y), (319, y + 12)], fill=255, width=2)
    draw.line([(40, 0), (40, 239)], fill=255, width=2)
    draw.line([(150, 50), (170, 200)], fill=255, width=6)
    return np.asarray(page) > 127


def horizontal_lines_as_before(mask: np.ndarray) -> np.ndarray:
    """imaging._horizontal_lines as it was: a new PIL image for each of the 31 angles tried."""
    h, w = mask.shape
    thin = mask & (imaging._run_lengths(mask, 0) <= max(3, 0.03 * min(h, w)))
    angles = np.arange(-15, 15.5, 1.0)
    score = [float((imaging._rotate(thin, a).sum(1).astype(np.float64) ** 2).sum()) for a in angles]
    angle = float(angles[int(np.argmax(score))])
    level = imaging._rotate(mask, angle)
    across = imaging._run_lengths(level, 0)
    thin = level & (across <= max(3, 0.03 * min(h, w)))
    rows = thin.sum(1) >= 0.45 * w
    if not rows.any():
        return np.zeros_like(mask)
    thick = float(np.median(across[thin & rows[:, None]]))
    rows = ndimage.binary_dilation(rows, iterations=1)
    line = rows[:, None] & level & (across <= thick + 2)
    return ndimage.binary_dilation(imaging._rotate(line, -angle), iterations=1) & mask


def photo_masks(step: int = 4) -> list[np.ndarray]:
    """What find_object looks for lines in: every ``step``-th fixture photo of a digit, each way round."""
    masks = []
    for f in sorted((FIXTURES / "photos" / "digits").glob("*.jpg"))[::step]:
        rgb = imaging._working_copy(imaging.decode(f, f.name, imaging.WORK_SIDE)).astype(np.float32) / 255
        flat = imaging.flatten(rgb, "digit")
        mask = flat.dark > max(3.5 * flat.noise, 0.06)
        masks += [mask, mask.T]
    return masks


def test_line_removal_finds_the_lines_it_found_before():
    """_skew counts pixels where 31 rotated images were counted: the angle may differ in a
    near-tie, the lines found may not (on all 540 digit photos measured they did not)."""
    mask = ruled_page()
    noisy = mask | (np.random.default_rng(2).random(mask.shape) < 0.02)
    masks = [mask, mask.T, noisy, np.zeros_like(mask), *photo_masks()]
    found = [horizontal_lines_as_before(m) for m in masks]
    assert sum(f.any() for f in found) >= 15  # ruled pages among them: there were lines to find
    for m, expected in zip(masks, found):
        assert np.array_equal(imaging._horizontal_lines(m), expected)


def test_making_an_inference_copy_never_breaks_a_forward_in_another_thread():
    """The page server predicts in many threads: one browser's first prediction (the copy being
    made) must not break another's forward, as torch.fx's tracing did (it patches Module.__call__)."""
    import threading

    busy = models.get_model("resnet20", num_classes=10, in_channels=1, image_size=28).eval()
    errors, done = [], threading.Event()

    def forwards():
        try:
            with torch.inference_mode():
                while not done.is_set():
                    busy(torch.zeros(1, 1, 28, 28))
        except Exception as err:  # noqa: BLE001 - any failure is the finding
            errors.append(err)

    worker = threading.Thread(target=forwards)
    worker.start()
    try:
        for _ in range(3):
            predict.inference_copy(models.get_model("resnet18", num_classes=10, in_channels=3, image_size=64))
    finally:
        done.set()
        worker.join()
    assert not errors, errors
