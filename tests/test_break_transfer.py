"""Transfer learning meets the real world: old weight files, old runs, vanished backbones,
architectures without stages (each test is a bug found by trying to break issue 10)."""

import pytest
import torch
import torchvision
from torch import nn

from resnet_core import engine, models, strategies, transfer
from resnet_core.config import TrainConfig
from resnet_core.transfer import TransferError
from tests.conftest import tiny_config

FIXTURE = "resnet_core/shipped/mnist-resnet20.pt"  # saved before issue 10


@pytest.fixture
def zoo_imagenet(tmp_path, monkeypatch):
    """resnet18 'ImageNet' weights as torchvision's model zoo serves them: saved before PyTorch
    0.4.1, so without batch norm's num_batches_tracked counters (102 tensors, not 122)."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if "num_batches" not in k}
    name = torchvision.models.get_model_weights("resnet18").DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(state, hub / "checkpoints" / name)
    return state


def test_weights_without_batch_norm_counters_stay_frozen(zoo_imagenet):
    # Every batch norm was reported "fresh" (its counter missing), so in "head" mode all 20 of
    # them trained, in train mode, and the page said 20 layers start from random weights.
    config = TrainConfig(dataset="cifar10", model="resnet18", pretrained="imagenet", trainable="head")
    source = transfer.source_weights(config)
    plan = transfer.plan_input(config, 3, 32, ([0.5] * 3, [0.25] * 3), source)
    model, report = transfer.prepare_model(config, 10, plan, source)
    assert report["fresh"] == [] and report["missing"] == ["fc.bias", "fc.weight"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    transfer.train_mode(model)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(model.layer1[0].bn1.running_var, zoo_imagenet["layer1.0.bn1.running_var"])


def test_a_wrong_architecture_sharing_only_batch_norm_counters_is_refused(tmp_path):
    # resnet20's file chosen as resnet18: the 13 batch norms with the same names loaded their
    # step counters and nothing else, which passed for a backbone and trained from scratch.
    config = TrainConfig(dataset="mnist-sample", model="resnet18", pretrained=FIXTURE)
    view = transfer.preview(config, 10, 1, 28)
    assert view["report"]["loaded"] == []
    source = transfer.source_weights(config)
    with pytest.raises(TransferError, match="No tensor of .* fits resnet18"):
        transfer.prepare_model(config, 10, transfer.plan_input(config, 1, 28, ([0.1], [0.3]), source), source)


def _stop_after(n: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n

    return should_stop


def test_a_transfer_run_saved_before_issue_10_resumes_offline(lab, monkeypatch):
    # Its last.pt has one learning rate (2 optimizer groups, not 4), no load report, and was fed
    # 1-channel 28 px digits through a rebuilt stem: resuming rebuilt the model for today's plan
    # (3 channels, 224 px), needed the ImageNet weights again, and then refused the optimizer
    # ("loaded state dict has a different number of parameter groups").
    def offline(arch):
        raise models.WeightsUnavailable("offline")

    monkeypatch.setattr(models, "imagenet_weights", offline)
    run_dir = lab / "old"
    run_dir.mkdir(parents=True)
    config = TrainConfig(
        dataset="mnist-sample",
        model="resnet18",
        pretrained="imagenet",
        trainable="all",
        epochs=1,
        batch_size=8,
        max_train_batches=3,
        max_test_images=16,
        optimizer="sgd",
        schedule="none",
        run_dir=str(run_dir),
    )
    model = models.get_model("resnet18", 10, in_channels=1, image_size=28)  # as built then
    params = list(model.parameters())
    old = torch.optim.SGD(
        [{"params": [p for p in params if p.ndim > 1]}, {"params": [p for p in params if p.ndim <= 1]}], lr=0.1
    )
    meta = {"dataset": "mnist-sample", "arch": "resnet18", "classes": [str(i) for i in range(10)]}
    meta |= {"mean": [0.1307], "std": [0.3081], "image_size": 28, "in_channels": 1, "versions": {}}
    state = {"model": model.state_dict(), "optimizer": old.state_dict(), "lr_scheduler": None, "epoch": 0}
    state |= {
        "next_step": 1,
        "partial": {"loss": 2.3, "correct": 1, "seen": 8},
        "history": [],
        "metrics": {"best_acc": 0},
    }
    torch.save({"config": config.to_dict(), **meta, **state}, run_dir / "last.pt")
    out = engine.fit(config, resume=True)
    assert out["status"] == "finished" and out["model"].conv1.weight.shape == (64, 1, 3, 3)
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    assert (ckpt["in_channels"], ckpt["image_size"], ckpt["mean"]) == (1, 28, [0.1307])
    assert len(ckpt["optimizer"]["param_groups"]) == 2


def test_a_stopped_transfer_run_resumes_after_its_backbone_run_was_deleted(lab):
    source_dir, run_dir = lab / "backbone", lab / "transfer"
    source_dir.mkdir(parents=True)
    engine.fit(tiny_config(run_dir=str(source_dir)))
    config = tiny_config(
        dataset="fashion-sample",
        pretrained=str(source_dir / "best.pt"),
        backbone_lr_scale=0.1,
        run_dir=str(run_dir),
    )
    run_dir.mkdir()
    assert engine.fit(config, should_stop=_stop_after(2))["status"] == "stopped"
    (source_dir / "best.pt").unlink()  # its owner deleted the backbone's run
    out = engine.fit(config, resume=True)
    assert out["status"] == "finished"
    ckpt = torch.load(run_dir / "last.pt", weights_only=True)
    lrs = sorted({g["lr"] for g in ckpt["optimizer"]["param_groups"]})
    assert lrs == [pytest.approx(1e-4), pytest.approx(1e-3)]  # the backbone still at a tenth
    assert ckpt["transfer"]["source"] == "backbone/best.pt" and len(ckpt["transfer"]["loaded"]) > 0


def test_a_comparison_from_a_backbone_without_stages_queues_no_run_bound_to_fail(lab):
    # The tutorial net (and VGG) has no layerN stage: the "last-stage" run was queued anyway and
    # failed at start ("MiniResidual has no layerN stages"); the CLI stopped at it.
    backbone = lab / "mini"
    backbone.mkdir(parents=True)
    engine.fit(tiny_config(run_dir=str(backbone)))
    chosen = strategies.configs(backbone / "best.pt", "fashion-sample", k=3)
    assert list(chosen) == ["head", "all", "scratch"]
    for config in chosen.values():  # each one builds
        source = transfer.source_weights(config)
        transfer.prepare_model(config, 10, transfer.plan_input(config, 1, 28, ([0.3], [0.3]), source), source)


def test_the_transfer_page_says_so_when_a_listed_runs_best_pt_vanished(lab, monkeypatch):
    # The run list is up to a second old: a run deleted meanwhile crashed the page (CheckpointError).
    import ui.common
    from tests.conftest import shown
    from tests.test_pages import app

    gone = {"path": str(lab / "runs" / "gone"), "run": "gone", "model": "resnet20", "best_acc": 0.9}
    gone["checkpoint"] = f"{gone['path']}/best.pt"
    monkeypatch.setattr(ui.common, "checkpoints", lambda: [{**gone, "dataset": "mnist-sample", "has_best": True}])
    at = app("transfer")
    assert "No checkpoint at" in shown(at.error[0].value) and not at.code


def test_weights_saved_from_a_data_parallel_wrapper_load(tmp_path):
    # torch.save(ddp_model.state_dict()) prefixes every name with "module.": nothing matched, and
    # the refusal said to choose another architecture, the right one being chosen.
    state = torch.load(FIXTURE, weights_only=True)["model"]
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    config = TrainConfig(dataset="fashion-sample", model="resnet20", pretrained=str(path), trainable="head")
    source = transfer.source_weights(config)
    model, report = transfer.prepare_model(config, 10, transfer.InputPlan(1, 28, [0.3], [0.3]), source)
    assert report["missing"] == ["fc.bias", "fc.weight"] and report["fresh"] == []
    assert torch.equal(model.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])


def test_a_vgg_checkpoint_at_any_size_but_224_exports_to_onnx(tmp_path, monkeypatch):
    # VGG's adaptive 7x7 pool meets a 1x1 map at 28 px (2x2 at 32, 8x8 at 256): ONNX has no
    # adaptive pooling to a size that does not divide the input, and the export failed.
    ort = pytest.importorskip("onnxruntime")
    from resnet_core import export

    torch.manual_seed(0)
    vgg = models.get_model("vgg16_bn", 10, in_channels=1, image_size=28).eval()
    vgg.classifier = nn.Linear(512 * 7 * 7, 10)  # the real head is 400 MB; the pool is the point
    monkeypatch.setattr(export, "build_from_checkpoint", lambda ckpt: vgg)
    ckpt = torch.load(FIXTURE, weights_only=True) | {"arch": "vgg16_bn", "image_size": 28, "in_channels": 1}
    torch.save(ckpt, tmp_path / "best.pt")
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        ours = vgg(x)
    out = export.export(tmp_path / "best.pt", "onnx", tmp_path / "vgg.onnx")
    theirs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(theirs), ours, atol=1e-4)


def test_uploading_the_same_weights_again_keeps_them_from_the_pruner(lab, tmp_path):
    # The class uploads the teacher's file all week: stored once by content, it kept the first
    # upload's date, so the pruner deleted it under a run queued from today's upload.
    import io
    import os
    import time

    from resnet_core import classroom

    buf = io.BytesIO()
    torch.save(torch.load(FIXTURE, weights_only=True)["model"], buf)
    folder = lab / "uploads"
    path = transfer.save_uploaded_weights(buf.getvalue(), folder)
    week_ago = time.time() - 6.9 * 86400
    os.utime(path, (week_ago, week_ago))
    assert transfer.save_uploaded_weights(buf.getvalue(), folder) == path  # today's upload
    assert classroom.prune_uploads(folder, now=time.time() + 0.2 * 86400) == 0 and path.is_file()


def test_a_weights_file_with_a_name_that_is_not_a_string_is_no_state_dict(lab, tmp_path):
    # {0: tensor} passed as a state_dict, then the page's preview crashed on 0.endswith(...).
    import io

    from resnet_core.checkpoints import CheckpointError, load_weights_file

    buf = io.BytesIO()
    torch.save({0: torch.zeros(3), "conv1.weight": torch.zeros(16, 1, 3, 3)}, buf)
    with pytest.raises(ValueError, match="not a state_dict"):
        transfer.save_uploaded_weights(buf.getvalue(), lab / "uploads")
    (tmp_path / "odd.pth").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not a state_dict"):
        load_weights_file(tmp_path / "odd.pth")


@pytest.mark.parametrize(
    ("pretrained", "image_size", "channels", "size"),
    [("imagenet", 64, 1, 28), (FIXTURE, None, 3, 32)],  # a stem rebuilt for 64 px; for 3 channels
)
def test_a_stem_rebuilt_on_purpose_is_no_reason_to_pick_another_architecture(
    zoo_imagenet, pretrained, image_size, channels, size
):
    # The page warned "pick the architecture they were trained with" for the right architecture,
    # whenever the stem had been rebuilt for small input or another channel count.
    arch = "resnet18" if pretrained == "imagenet" else "resnet20"
    config = TrainConfig(model=arch, pretrained=pretrained, image_size=image_size)
    view = transfer.preview(config, 10, channels, size)
    assert view["report"]["fresh"] == ["conv1"] and "mismatch" not in view["report"]


def test_the_scratch_baseline_is_fed_the_same_size_as_the_strategies_it_is_compared_with(tmp_path):
    # A backbone trained at 32 px (CIFAR-like) fed the three transfer runs 32 px images and the
    # scratch run the target's own 28 px: the baseline differed in more than its weights.
    backbone = tmp_path / "best.pt"
    torch.save(torch.load(FIXTURE, weights_only=True) | {"image_size": 32}, backbone)
    sizes = {}
    for name, config in strategies.configs(backbone, "fashion-sample", k=3).items():
        source = transfer.source_weights(config)
        sizes[name] = transfer.plan_input(config, 1, 28, ([0.3], [0.3]), source).size
    assert sizes == {"head": 32, "last-stage": 32, "all": 32, "scratch": 32}
