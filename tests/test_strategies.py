"""Transfer strategies compared on K labels per class (issue 10 part 1): the four runs differ only
in what trains, they really start from the backbone (or not), and a group is one job in a class."""

import json
from pathlib import Path

import pytest
import torch

from resnet_core import catalog, classroom, data, predict, runs, strategies
from resnet_core.__main__ import main
from resnet_core.classroom import Actor, ClassroomError
from resnet_core.config import TrainConfig


def test_the_four_configs_differ_only_in_what_trains(trained_run):
    chosen = strategies.configs(trained_run / "best.pt", "fashion-sample", k=20, epochs=3)
    assert list(chosen) == ["head", "last-stage", "all", "scratch"]
    dicts = {name: c.to_dict() for name, c in chosen.items()}
    varying = {"trainable", "pretrained", "backbone_lr_scale", "extra"}
    for d in dicts.values():
        assert {k: v for k, v in d.items() if k not in varying} == {
            k: v for k, v in dicts["head"].items() if k not in varying
        }
    assert dicts["head"]["model"] == "resnet20" and dicts["head"]["labels_per_class"] == 20
    assert dicts["head"]["epochs"] == 3
    assert [d["trainable"] for d in dicts.values()] == ["head", "last-stage", "all", "all"]
    assert dicts["all"]["backbone_lr_scale"] == 0.1 and dicts["scratch"]["pretrained"] is None
    assert len({d["extra"]["group"] for d in dicts.values()}) == 1


def test_a_small_k_comparison_from_the_cli(trained_run, lab, capsys):
    args = ["transfer-compare", "--backbone", str(trained_run / "best.pt"), "--k", "8", "--epochs", "2", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by = {r["strategy"]: r for r in rows}
    assert list(by) == ["head", "last-stage", "all", "scratch"]
    assert all(r["k"] == 8 and r["state"] == "finished" and r["epochs_done"] == 2 for r in rows)
    assert all(r["seconds"] > 0 for r in rows)
    # Each figure is its run's own: best.pt, evaluated again on the whole test split, scores the
    # table's best accuracy (a row read from another run, or a wrong epoch, would not).
    paths = {row["run"]: Path(row["path"]) for row in runs.list_runs()}
    for r in rows:
        best = paths[r["run"]] / "best.pt"
        assert predict.evaluate_checkpoint(best)["acc"] == pytest.approx(r["best_acc"]), r["strategy"]
    total = by["all"]["parameters"]
    assert by["head"]["trainable"] == 64 * 10 + 10
    assert by["head"]["trainable"] < by["last-stage"]["trainable"] < by["all"]["trainable"] == total
    assert by["scratch"]["trainable"] == total
    # The frozen strategies kept the backbone's weights; from scratch shares none of them.
    source = torch.load(trained_run / "best.pt", weights_only=True)["model"]
    key = "layer1.0.conv1.weight"
    weights = {r["strategy"]: torch.load(lab / "runs" / r["run"] / "last.pt", weights_only=True)["model"] for r in rows}
    assert torch.equal(weights["head"][key], source[key]) and torch.equal(weights["last-stage"][key], source[key])
    assert not torch.equal(weights["all"][key], source[key]) and not torch.equal(weights["scratch"][key], source[key])
    assert torch.equal(weights["last-stage"]["layer1.0.bn1.running_mean"], source["layer1.0.bn1.running_mean"])
    train_set = [json.loads(line) for line in (lab / "runs" / by["head"]["run"] / "metrics.jsonl").open()]
    assert next(e for e in train_set if e["type"] == "start")["train_images"] == 80  # 8 per class, 10 classes


def test_a_comparison_counts_once_against_a_students_queue(trained_run, lab, monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "2")
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # keep them queued: no processes here
    alice = Actor(owner=classroom.owner_id("alice"))
    group = strategies.launch(trained_run / "best.pt", "fashion-sample", 10, actor=alice)
    assert [r["strategy"] for r in strategies.table(group)] == ["head", "last-stage", "all", "scratch"]
    assert strategies.groups() == [group]
    found = strategies.label(group)
    assert (found["dataset"], found["k"], found["backbone"], found["shipped"]) == (
        "fashion-sample",
        10,
        trained_run.name,
        False,
    )
    runs.launch(TrainConfig(), actor=alice)  # the comparison is one job of her two
    with pytest.raises(ClassroomError, match=r"already have 2 run\(s\)"):
        strategies.launch(trained_run / "best.pt", "fashion-sample", 10, actor=alice)


def test_an_unknown_target_names_the_valid_ones(trained_run, lab):
    with pytest.raises(data.DatasetUnavailable, match="fashion-sample"):
        strategies.configs(trained_run / "best.pt", "fashion-sampel")


def test_the_page_helpers_pick_an_mnist_backbone_with_stages():
    def run(owner, model, dataset="mnist-sample"):
        return {"dataset": dataset, "model": model, "owner": owner, "state": "finished", "kind": None}

    shipped = catalog.shipped()
    # Newest first: another student's digits ResNet, a fashion run, the tutorial net, then mine.
    rows = [run("you", "resnet20"), run("me", "resnet20", "fashion-sample"), run("me", "mini_residual")]
    rows += [run("me", "resnet20"), *shipped]
    assert strategies.default_backbone(rows, "me") == 3  # my own digits network with stages
    first = rows[strategies.default_backbone(rows, "someone")]  # never another student's: the shipped one
    assert (first["kind"], first["run"], first["model"]) == ("shipped", "mnist-resnet20", "resnet20")
    no_staged = [run("me", "mini_residual"), run(None, "mini_residual")]
    assert strategies.default_backbone(no_staged, "me") == 0
    config = strategies.backbone_config()
    assert (config.dataset, config.model, config.epochs) == ("mnist-sample", "resnet20", 5)
    assert config.lr == data.get_spec("mnist-sample").preset["lr"]
    fashion = strategies.backbone_config("fashion-sample")  # a preset with stages is trained as it is
    assert (
        fashion.to_dict()
        == TrainConfig(**{**data.get_spec("fashion-sample").preset, "dataset": "fashion-sample"}).to_dict()
    )
    assert strategies.active([{"state": "finished"}, {"state": "queued"}])
    assert not strategies.active([{"state": "finished"}, {"state": "failed"}])
