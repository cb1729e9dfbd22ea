"""Every pretrained path does what it says (issue 10 part 1): the input a backbone is fed, what
trains, batch-norm modes, the load report, and the refusal of a load that matches nothing.

ImageNet weights cannot be downloaded here, so a fixture writes random weights under the exact
file name torchvision's hub cache looks for: the code path is the one a download takes.
"""

import json

import pytest
import torch
import torchvision
from torch import nn

from resnet_core import data, engine, models, transfer
from resnet_core.__main__ import main
from resnet_core.config import TrainConfig
from resnet_core.transfer import TransferError


@pytest.fixture
def imagenet(tmp_path, monkeypatch):
    """Random 'ImageNet' weights for resnet18 and vgg16_bn where torch.hub keeps downloads."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    states = {}
    for arch in ("resnet18", "vgg16_bn"):
        torch.manual_seed(1)
        model = torchvision.models.get_model(arch, weights=None)
        for m in model.modules():  # non-trivial running statistics, so a change shows
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
        states[arch] = model.state_dict()
        name = torchvision.models.get_model_weights(arch).DEFAULT.url.rsplit("/", 1)[-1]
        torch.save(states[arch], hub / "checkpoints" / name)
    return states


MNIST_STATS = ([0.1307], [0.3081])


def test_imagenet_backbone_on_gray_28px_digits_is_fed_224px_rgb_with_imagenet_statistics(imagenet):
    # The old path replaced conv1 by a random 3x3 conv for 28 px input and froze it in "head"
    # mode: the head learned on features of a random stem.
    config = TrainConfig(dataset="mnist-sample", model="resnet18", pretrained="imagenet", trainable="head")
    source = transfer.source_weights(config)
    plan = transfer.plan_input(config, 1, 28, MNIST_STATS, source)
    assert plan == transfer.InputPlan(3, 224, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    model, report = transfer.prepare_model(config, 10, plan, source)
    assert report["fresh"] == [] and report["skipped"] == ["fc.bias", "fc.weight"]
    assert isinstance(model.maxpool, nn.MaxPool2d) and model.conv1.kernel_size == (7, 7)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    # Oracle: torchvision's own network with those weights, fed the gray digit copied into RGB
    # and normalised by the weights' own transforms.
    theirs = torchvision.models.resnet18()
    theirs.load_state_dict(imagenet["resnet18"])
    theirs.fc, model.fc = nn.Identity(), nn.Identity()
    gray = data.load_dataset("mnist-sample", "test").images[:4]
    big = engine.resize(gray, plan.size)
    stats = torch.tensor([plan.mean, plan.std]).view(2, 1, -1, 1, 1)
    ours_in = engine.normalize(big, stats[0], stats[1])
    prep = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    theirs_in = torchvision.transforms.functional.normalize(
        big.expand(-1, 3, -1, -1).float() / 255, prep.mean, prep.std
    )
    assert ours_in.shape == (4, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model.eval()(ours_in), theirs.eval()(theirs_in), atol=1e-4)


def test_a_stem_rebuilt_for_small_input_trains_and_frozen_batch_norm_keeps_its_statistics(imagenet, lab):
    # At 64 px the 7x7 stride-2 stem gives way to a fresh 3x3 one: frozen at random it would feed
    # noise to the backbone, so it trains with the head and the log says so.
    config = TrainConfig(
        dataset="mnist-sample",
        model="resnet18",
        pretrained="imagenet",
        trainable="head",
        image_size=64,
        epochs=1,
        batch_size=8,
        max_train_batches=3,
        max_test_images=16,
        lr=0.01,
        run_dir=str(lab / "run"),
    )
    (lab / "run").mkdir(parents=True)
    events = []
    engine.fit(config, callback=events.append)
    start = next(e for e in events if e["type"] == "start")
    assert start["image_size"] == 64 and "fresh and trained: conv1" in start["transfer"]
    ckpt = torch.load(lab / "run" / "last.pt", weights_only=True)
    assert ckpt["transfer"]["fresh"] == ["conv1"] and ckpt["in_channels"] == 3
    state, source = ckpt["model"], imagenet["resnet18"]
    for key in ("bn1.running_mean", "layer1.0.bn1.running_var", "layer4.1.bn2.running_mean", "layer4.1.conv2.weight"):
        assert torch.equal(state[key], source[key]), f"{key} changed in a frozen backbone"
    assert state["conv1.weight"].shape == (64, 3, 3, 3)


@pytest.mark.parametrize(
    ("mode", "training_bn"),
    [
        ("head", set()),
        ("last-stage", {"layer4.0.bn1", "layer4.1.bn2"}),
        ("all", {"bn1", "layer1.0.bn1", "layer4.1.bn2"}),
    ],
)
def test_batch_norm_of_frozen_parts_stays_in_eval_mode(mode, training_bn):
    model = models.get_model("resnet18", num_classes=10, in_channels=3, image_size=224)
    transfer.set_trainable(model, mode)
    transfer.train_mode(model)
    bn = {n: m.training for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert all(bn[n] for n in training_bn)
    assert all(not bn[n] for n in bn if not n.startswith("layer4") and mode != "all")
    assert model.fc.training


def test_the_backbone_learns_at_a_lower_rate_than_the_head(trained_run):
    config = TrainConfig(
        model="resnet20", pretrained=str(trained_run / "best.pt"), lr=0.1, backbone_lr_scale=0.1, schedule="onecycle"
    )
    source = transfer.source_weights(config)
    model, report = transfer.prepare_model(config, 10, transfer.InputPlan(1, 28, [0.5], [0.3]), source)
    optimizer = engine.build_optimizer(config, model, set(report["loaded"]))
    by_id = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert by_id[id(model.fc.weight)] == 0.1 and by_id[id(model.layer1[0].conv1.weight)] == pytest.approx(0.01)
    engine.build_scheduler(config, optimizer, 100)  # one-cycle keeps the ratio: its peaks are per group
    assert optimizer.param_groups[0]["lr"] / optimizer.param_groups[-1]["lr"] == pytest.approx(10)


def test_a_run_backbone_brings_its_own_normalisation_to_the_target(trained_run):
    ckpt = torch.load(trained_run / "best.pt", weights_only=True)
    config = TrainConfig(dataset="fashion-sample", model="resnet20", pretrained=str(trained_run / "best.pt"))
    plan = transfer.plan_input(config, 1, 28, ([0.286], [0.353]), transfer.source_weights(config))
    assert (plan.mean, plan.std, plan.size, plan.channels) == (ckpt["mean"], ckpt["std"], 28, 1)


def test_a_load_that_matches_nothing_is_refused_in_one_sentence(tmp_path, lab, capsys):
    tutorial = models.get_model("mini_residual", num_classes=10, in_channels=1, image_size=28).state_dict()
    path = tmp_path / "tutorial.pth"
    torch.save(tutorial, path)
    config = TrainConfig(dataset="mnist-sample", model="resnet20", pretrained=str(path))
    with pytest.raises(TransferError, match=r"No tensor of .*tutorial.pth fits resnet20 .*choose the architecture"):
        transfer.prepare_model(config, 10, transfer.InputPlan(1, 28, [0.5], [0.3]), transfer.source_weights(config))
    assert main(["train", "--dataset", "mnist-sample", "--model", "resnet20", "--pretrained", str(path)]) == 2
    err = capsys.readouterr().err
    assert "No tensor of" in err and err.count("\n") == 1


def test_the_run_log_reports_loaded_skipped_and_missing(trained_run, lab, capsys):
    args = ["train", "--dataset", "fashion-sample", "--model", "resnet20", "--pretrained", str(trained_run / "best.pt")]
    args += ["--epochs", "1", "--max-train-batches", "2", "--max-test-images", "50", "--trainable", "head"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "backbone run/best.pt: loaded 95 tensors, skipped 2, missing 2;" in out  # batch norms' counters aside
    assert "650 of 269,434 parameters train" in out


def test_vgg_head_is_classifier_6_and_imagenet_preview_needs_no_download(imagenet):
    config = TrainConfig(model="vgg16_bn", pretrained="imagenet", trainable="head")
    view = transfer.preview(config, 10, 1, 28, MNIST_STATS)
    assert (view["before"], view["after"]) == ("classifier.6: Linear(4096, 1000)", "classifier.6: Linear(4096, 10)")
    assert view["trainable"]["head"][0] == 4096 * 10 + 10 and "last-stage" not in view["trainable"]
    assert view["plan"].size == 224 and view["plan"].channels == 3 and view["report"]["fresh"] == []
    source = transfer.source_weights(config)
    small = transfer.InputPlan(3, 32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    model, report = transfer.prepare_model(config, 10, small, source)  # the last max-pool skipped: no new names
    weights = [k for k in source.state if not k.endswith("num_batches_tracked")]  # counters take no part
    assert report["fresh"] == [] and len(report["loaded"]) == len(weights) - 2
    with torch.no_grad():
        assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_k_labels_per_class_are_a_seeded_stratified_pick():
    train = data.load_dataset("fashion-sample", "train")
    few = train.per_class(7, seed=3)
    assert torch.bincount(few.targets, minlength=10).tolist() == [7] * 10
    assert torch.equal(few.images, train.per_class(7, seed=3).images)
    assert not torch.equal(few.images, train.per_class(7, seed=4).images)
    assert json.dumps(TrainConfig(labels_per_class=7).validate().to_dict())


def test_the_transfer_page_says_what_an_imagenet_backbone_is_fed_and_what_starts_fresh(imagenet, lab):
    from tests.conftest import shown
    from tests.test_pages import app

    at = app("transfer")
    at.radio[0].set_value("imagenet").run()
    at.selectbox[-1].set_value("resnet18").run()
    captions = " ".join(shown(c.value) for c in at.caption)
    assert "224 px images with 3 channel(s)" in captions and "0.485" in captions
    assert "three colour channels" in captions  # the MNIST sample is gray
    assert codes_of(at) == ["fc: Linear(512, 1000)", "fc: Linear(512, 10)"]
    fresh = [shown(i.value) for i in at.info if "Starting fresh" in shown(i.value)]
    assert not fresh and not at.error
    assert "head only: 5,130 parameters" in trainable_choices(at)
    at.select_slider[0].set_value(64).run()  # the stem is rebuilt for small input: it must train
    fresh = [shown(i.value) for i in at.info if "Starting fresh" in shown(i.value)]
    assert len(fresh) == 1 and "conv1" in fresh[0]
    assert "head only: 6,858 parameters" in trainable_choices(at)  # + the 3x3 stem's 64 x 3 x 9


def trainable_choices(at) -> str:
    return " | ".join(str(o) for r in at.radio for o in r.options)


def codes_of(at) -> list[str]:
    return [c.value for c in at.code]


def test_an_upload_is_prepared_at_the_datasets_size_then_resized_as_in_training(lab, tmp_path):
    # A 28 px digit model trained at 40 px (as an ImageNet backbone trains 28 px digits at 224 px):
    # the photo is prepared as a 28 px MNIST digit, then resized by the engine's own resize.
    from resnet_core import imaging, predict
    from tests.conftest import digit_png, tiny_config

    run_dir = lab / "run"
    run_dir.mkdir(parents=True)
    engine.fit(tiny_config(image_size=40, run_dir=str(run_dir)))
    predictor = predict.Predictor.from_checkpoint(run_dir / "best.pt")
    assert (predictor.size, predictor.data_size) == (40, 28)
    path, _ = digit_png(tmp_path)
    seen = predictor.read(path.read_bytes(), path.name).tensor
    at_28 = imaging.prepare(imaging.decode(path.read_bytes(), path.name), "digit", 28, 1, "digit").tensor
    assert seen.shape == (1, 40, 40) and torch.equal(seen, engine.resize(at_28[None], 40)[0])
    result = predict.evaluate_checkpoint(run_dir / "best.pt", limit=50)  # resized batch by batch
    assert result["n"] == 50


def test_fine_tune_config_uses_the_backbone_rate_only_when_everything_trains(monkeypatch, tmp_path):
    from resnet_core import classroom

    draft = transfer.draft_config("mnist-sample", data.get_spec("mnist-sample").preset, "resnet18", "imagenet", 96)
    assert (draft.model, draft.pretrained, draft.image_size, draft.dataset) == (
        "resnet18",
        "imagenet",
        96,
        "mnist-sample",
    )
    assert transfer.fine_tune_config(draft, "head", 3, 0.01, 0.1).backbone_lr_scale == 1.0
    # CIFAR-10's from-scratch recipe (batch 256 at 0.2) is not a fine-tuning one at 224 px.
    cifar = transfer.draft_config("cifar10", data.get_spec("cifar10").preset, "resnet50", "imagenet", None)
    assert data.get_spec("cifar10").preset["batch_size"] == 256
    assert (cifar.batch_size, cifar.lr) == (128, 0.1)
    config = transfer.fine_tune_config(draft, "all", 3, 0.01, 0.1)
    assert (config.trainable, config.epochs, config.backbone_lr_scale) == ("all", 3, 0.1)
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setenv("RESNET_LAB_MAX_WEIGHTS_MB", "1")
    with pytest.raises(classroom.ClassroomError, match="limited to 1 MB"):
        transfer.keep_upload(b"0" * (2 * 1024**2), "big.pth", tmp_path)
