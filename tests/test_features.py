"""The linear probe (resnet_core.features): head-only training on a frozen backbone's cached
features is the training on images it replaces, and its cache is keyed by the backbone and by each
image's pixels (an edited photo misses, a damaged cache file is only computed again)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, engine, features, models
from resnet_core.config import TrainConfig


def probe_config(backbone, **overrides) -> TrainConfig:
    base = dict(
        dataset="fashion-sample",
        model="resnet20",
        pretrained=str(backbone) if backbone else None,
        trainable="head",
        augment="none",
        labels_per_class=10,
        max_test_images=200,
        epochs=2,
        batch_size=16,
        optimizer="sgd",
        lr=0.05,
        schedule="onecycle",
        amp=False,
    )
    return TrainConfig(**{**base, **overrides})


def fit(config) -> tuple[dict, list[dict]]:
    events = []
    return engine.fit(config, callback=events.append), events


def done(events: list[dict]) -> dict | None:
    return next((e for e in events if e["type"] == "features" and e["state"] == "done"), None)


def test_the_probe_trains_the_head_as_training_on_images_would(trained_run, lab, monkeypatch):
    config = probe_config(trained_run / "best.pt")
    probed, events = fit(config)
    assert done(events) == {**done(events), "images": 100 + 200, "cached": 0}
    monkeypatch.setattr(features, "applies", lambda *a, **k: False)
    plain, plain_events = fit(config)
    assert done(plain_events) is None
    a, b = probed["model"].state_dict(), plain["model"].state_dict()
    # The same head after the same steps, up to float rounding (batched differently: 32 against 16).
    assert torch.allclose(a["fc.weight"], b["fc.weight"], atol=1e-4)
    assert torch.allclose(a["fc.bias"], b["fc.bias"], atol=1e-4)
    assert not torch.equal(a["fc.weight"], torch.load(trained_run / "best.pt", weights_only=True)["model"]["fc.weight"])
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("fc."))  # the backbone untouched in both
    # The test accuracy each reported is the saved model's on images, not only the head's on features.
    for run in (probed, plain):
        assert [r["epoch"] for r in run["history"]] == [1, 2]


def test_only_a_frozen_deterministic_backbone_is_probed(trained_run):
    model = models.get_model("resnet20", 10, 1, 28)
    config = probe_config(trained_run / "best.pt")
    assert features.applies(config, model, {"fresh": []})
    assert not features.applies(probe_config(trained_run / "best.pt", augment="flip"), model, {"fresh": []})
    assert not features.applies(probe_config(trained_run / "best.pt", trainable="last-stage"), model, {"fresh": []})
    assert not features.applies(probe_config(None), model, {"fresh": []})
    assert not features.applies(config, model, {"fresh": ["conv1"]})  # a stem rebuilt at random trains
    assert not features.applies(config, model, {"fresh": []}, world_size=2)
    assert not features.applies(probe_config(trained_run / "best.pt", max_train_batches=2), model, {"fresh": []})
    assert not features.applies(config, models.get_model("vgg16_bn", 10, 3, 32), {"fresh": []})  # dropout


def photo_folder(root, per_class=6, side=36):
    rng = np.random.default_rng(1)
    for c, name in enumerate(("ants", "bees")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture
def folder_probe(lab, tmp_path):
    """A folder of 12 photos and a random 3-channel ResNet-20 saved as a plain .pth backbone."""
    src = photo_folder(tmp_path / "photos")
    data.add_folder("photos", src)
    torch.manual_seed(0)
    backbone = tmp_path / "backbone.pth"
    torch.save(models.get_model("resnet20", 10, 3, 32).state_dict(), backbone)
    config = probe_config(backbone, dataset="photos", labels_per_class=None, max_test_images=None, epochs=1)
    return src, backbone, config


def test_features_are_kept_per_backbone_and_per_image(folder_probe):
    src, backbone, config = folder_probe
    first = done(fit(config)[1])
    assert first["cached"] == 0 and first["images"] == 12
    assert done(fit(config)[1])["cached"] == 12  # computed once for everyone
    assert features.kept() == {**features.kept(), "backbones": 1, "images": 12}
    # One photo edited in place: only it is computed again.
    path = src / "bees" / "0.png"
    Image.fromarray(np.full((36, 36, 3), 200, np.uint8)).save(path)
    assert done(fit(config)[1])["cached"] == 11
    # Other weights in the same file: nothing of the old backbone's is reused.
    torch.manual_seed(1)
    torch.save(models.get_model("resnet20", 10, 3, 32).state_dict(), backbone)
    assert done(fit(config)[1])["cached"] == 0
    # Another precision, device or input is another backbone too; the same weights from another file are not.
    model, plan = built(config)
    key = features.backbone_key(config, model, plan, "fp32")
    assert (
        key
        != features.backbone_key(config, model, plan, "bf16")
        != features.backbone_key(config, model, plan, "fp32", "cuda")
    )
    copy = backbone.with_name("copy.pth")
    copy.write_bytes(backbone.read_bytes())
    config_copy = probe_config(copy, dataset="photos", labels_per_class=None, max_test_images=None, epochs=1)
    assert features.backbone_key(config_copy, *built(config_copy), "fp32") == key


def built(config):
    info = data.load_dataset(config.dataset, "train")
    model, plan, _ = engine.build_model(config, info, data.normalization(config.dataset))
    return model, plan


def test_a_damaged_cache_file_is_computed_again(folder_probe):
    _, _, config = folder_probe
    fit(config)
    [path] = (data.lab_home() / "features").glob("*.pt")
    path.write_bytes(b"torn by a full disk")
    result, events = fit(config)
    assert done(events)["cached"] == 0 and result["status"] == "finished"
    assert done(fit(config)[1])["cached"] == 12


def test_another_threads_forward_pass_on_a_shared_model_does_not_stand_in_for_this_ones():
    """A server's sessions share one model (Your classes adds shots at once): the other thread's
    pass runs this call's hook on the head too, after this pass's own, before it is checked."""
    import threading

    from torch import nn

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fc, self.meddle = nn.Linear(4, 4), nn.Linear(4, 2), True

        def forward(self, x):
            out = self.fc(self.body(x))
            if self.meddle:  # the first pass: another session's pass comes in between
                self.meddle = False
                other = threading.Thread(target=other_pass)
                other.start()
                other.join()
            return out

    def other_pass() -> None:
        with torch.inference_mode():
            passes.append(model(torch.zeros(1, 4)))

    model, x, passes = Shared().eval(), torch.ones(3, 4), []
    with torch.inference_mode():
        got = features.head_input(model, x)
        assert len(passes) == 1 and torch.equal(got, model.body(x))
