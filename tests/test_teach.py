"""Your classes (resnet_core/teach.py) on a small stand-in backbone: classes and examples per owner,
features computed once and again when the backbone changes, held-out accuracy, refusals, limits,
two tabs adding at once, pruning. The real ResNet-50 is in test_teach_page.py."""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from resnet_core import classroom, predict, teach
from resnet_core.imaging import ImageError

ME, YOU = "a1" * 8, "b2" * 8


@pytest.fixture(scope="module")
def net():
    """A ResNet-18 at 64 px with fixed random weights: features that tell colours apart, fast."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    return predict.Predictor(model, [str(i) for i in range(10)], [0.5] * 3, [0.25] * 3, 64, 3, "natural", "t")


def photo(colour: str, seed: int, size=(96, 80)) -> bytes:
    """A JPEG of noise around one colour: two colours are two easy classes."""
    base = {"red": (200, 40, 40), "blue": (40, 60, 200), "green": (40, 180, 60)}[colour]
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(base) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def fill(owner, net, per_class=4, colours=("red", "blue")):
    for colour in colours:
        teach.add_class(owner, colour)
        for i in range(per_class):
            teach.add_example(owner, colour, photo(colour, i), f"{colour}{i}.jpg", net)


def test_classes_in_any_language_with_refusals_that_name_the_valid_choices(lab):
    teach.add_class(ME, "  杯子\u200b ")  # outer spaces and a zero-width character gone
    teach.add_class(ME, "Pen")
    assert [c["name"] for c in teach.read_state(ME)["classes"]] == ["杯子", "Pen"]
    with pytest.raises(teach.TeachError, match="already have a class named pen"):
        teach.add_class(ME, "pen")
    with pytest.raises(teach.TeachError, match="needs a name"):
        teach.add_class(ME, " \t")
    with pytest.raises(teach.TeachError, match="at most 40"):
        teach.add_class(ME, "x" * 41)
    with pytest.raises(teach.TeachError, match="your classes are: 杯子, Pen"):
        teach.rename_class(ME, "cup", "mug")
    teach.rename_class(ME, "Pen", "钢笔")
    assert [c["name"] for c in teach.read_state(ME)["classes"]] == ["杯子", "钢笔"]
    assert teach.read_state(YOU) == {"classes": []}  # another browser's page is untouched


def test_an_owner_is_an_id_never_a_path(lab):
    for bad in ("../../etc", "A1" * 8, "", "a1/b2"):
        with pytest.raises(ValueError):
            teach.folder(bad or "x")
    with pytest.raises(ValueError):
        teach.example_path(ME, "../state")
    assert teach.folder(None).name == teach.LOCAL


def test_examples_train_a_head_and_a_shot_gets_bars_and_its_nearest_examples(lab, net):
    fill(ME, net, per_class=5)
    state = teach.read_state(ME)
    assert [len(c["examples"]) for c in state["classes"]] == [5, 5]
    crop = teach.example_path(ME, state["classes"][0]["examples"][0]["id"])
    with Image.open(crop) as im:
        assert im.size == (64, 64)  # the crop the network saw is what is kept and shown
    result = teach.train(ME, net)
    assert result["folds"] == 5 and result["method"] == "k-fold" and result["examples"] == 10
    assert result["accuracy"] >= 0.8 and np.array(result["confusion"]).sum() == 10
    answer = teach.ask(ME, photo("blue", 99), "shot.jpg", net)
    assert (
        answer["classes"] == ["red", "blue"]
        and answer["top"] == 1
        and sum(answer["probs"]) == pytest.approx(1, abs=1e-3)
    )
    assert [n["class"] for n in answer["nearest"]] == ["blue"] * 3
    assert answer["nearest"][0]["similarity"] >= answer["nearest"][-1]["similarity"]
    cam = teach.explain(ME, answer["prepared"].tensor, answer["top"], net)
    assert cam.shape == (64, 64, 3) and cam.dtype == np.uint8
    assert not any(
        isinstance(m, torch.nn.Linear) and m.out_features == 2 for m in net.model.modules()
    )  # shared, unchanged


def test_a_small_class_is_held_out_one_photo_at_a_time(lab, net):
    fill(ME, net, per_class=3)
    result = teach.train(ME, net)
    assert result["folds"] == 3 and result["method"] == "leave-one-out"
    k, fold = teach.folds_of(torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1]))
    assert k == 3 and all(
        set(fold[torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1]) == c].tolist()) == {0, 1, 2} for c in (0, 1)
    )


def test_too_few_photos_to_train_says_how_many(lab, net):
    teach.add_class(ME, "red")
    teach.add_example(ME, "red", photo("red", 0), "r.jpg", net)
    with pytest.raises(teach.TeachError, match="at least 2 classes with at least 2 photos"):
        teach.train(ME, net)
    with pytest.raises(teach.TeachError, match="Train on your classes first"):
        teach.ask(ME, photo("red", 1), "s.jpg", net)


def test_a_change_makes_the_head_stale_until_trained_again(lab, net):
    fill(ME, net, per_class=2)
    teach.train(ME, net)
    assert not teach.trained(ME)["stale"]
    first = teach.read_state(ME)["classes"][0]["examples"][0]["id"]
    teach.remove_example(ME, first)
    assert teach.trained(ME)["stale"] and not teach.example_path(ME, first).exists()
    with pytest.raises(teach.TeachError, match="Train on your classes first"):
        teach.save_run(ME, "", net)


def test_hostile_uploads_are_refused_with_a_sentence_and_leave_nothing(lab, net, monkeypatch):
    teach.add_class(ME, "red")
    with pytest.raises(ImageError):
        teach.add_example(ME, "red", b"<?php echo 1; ?>", "evil.jpg", net)
    monkeypatch.setenv("RESNET_LAB_MAX_PHOTO_MB", "1")
    with pytest.raises(classroom.ClassroomError, match="limited to 1 MB"):
        teach.add_example(ME, "red", b"\xff" * (2 * 1024**2), "big.jpg", net)
    with pytest.raises(teach.TeachError, match="no class named blue"):
        teach.add_example(ME, "blue", photo("blue", 0), "b.jpg", net)
    assert teach.read_state(ME)["classes"][0]["examples"] == []
    assert not list((teach.folder(ME) / "examples").glob("*")) if (teach.folder(ME) / "examples").exists() else True


def test_the_teachers_limits_hold(lab, net, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_CLASSES", "2")
    monkeypatch.setenv("RESNET_LAB_MAX_EXAMPLES", "2")
    fill(ME, net, per_class=2)
    with pytest.raises(teach.TeachError, match="2 classes, the most the teacher allows"):
        teach.add_class(ME, "green")
    with pytest.raises(teach.TeachError, match="red has 2 photos"):
        teach.add_example(ME, "red", photo("red", 7), "r.jpg", net)
    monkeypatch.setenv("RESNET_LAB_MAX_EXAMPLES", "9")
    monkeypatch.setenv("RESNET_LAB_MAX_EXAMPLES_MB", "1")
    monkeypatch.setattr(teach, "used_bytes", lambda: 1024**2)  # everyone's photos fill the megabyte
    with pytest.raises(teach.TeachError, match="limit of 1 MB"):
        teach.add_example(ME, "red", photo("red", 7), "r.jpg", net)
    names = {r["limit"] for r in classroom.limits()}
    assert {"classes_per_student", "examples_per_class", "examples_mb"} <= names  # listed on Home


def test_two_tabs_adding_at_once_lose_no_photo(lab, net):
    teach.add_class(ME, "red")
    errors = []

    def add(i):
        try:
            teach.add_example(ME, "red", photo("red", i), f"{i}.jpg", net)
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    ids = [e["id"] for e in teach.read_state(ME)["classes"][0]["examples"]]
    assert len(set(ids)) == 8 and all(teach.example_path(ME, i).is_file() for i in ids)
    kept = torch.load(teach.folder(ME) / "features.pt", weights_only=True)
    assert sorted(kept["ids"]) == sorted(ids)  # every row written, none lost to a concurrent write


def test_features_are_computed_again_for_another_backbone(lab, net):
    fill(ME, net, per_class=2)
    _, ids, _, before = teach.all_features(ME, net)
    torch.manual_seed(1)
    other = predict.Predictor(
        torchvision.models.resnet18(num_classes=10).eval(), net.classes, net.mean, net.std, 64, 3, "natural", "t"
    )
    _, same_ids, _, after = teach.all_features(ME, other)
    assert same_ids == ids and not torch.allclose(before, after)  # the other weights' features, not the first's
    assert torch.load(teach.folder(ME) / "features.pt", weights_only=True)["key"] == teach.backbone_key(other)
    (teach.folder(ME) / "features.pt").write_bytes(b"torn")  # a damaged cache is computed again
    assert torch.allclose(teach.all_features(ME, other)[3], after, atol=1e-5)


def test_old_photos_go_with_the_other_uploads(lab, net):
    fill(ME, net, per_class=2)
    state = teach.read_state(ME)
    state["classes"][0]["examples"][0]["added"] = time.time() - 30 * 86400
    (teach.folder(ME) / "state.json").write_text(json.dumps(state))
    assert teach.prune() == 1
    assert [len(c["examples"]) for c in teach.read_state(ME)["classes"]] == [1, 2]


def test_the_teacher_sees_every_students_classes(lab, net):
    fill(ME, net, per_class=1)
    teach.add_class(YOU, "猫")
    rows = {r["owner"]: r for r in teach.owners()}
    assert rows[ME]["classes"] == ["red", "blue"] and rows[ME]["examples"] == 2 and rows[YOU]["classes"] == ["猫"]


def test_pruning_from_page_loads_runs_once_an_hour_and_never_breaks_the_page(lab, net, monkeypatch):
    fill(ME, net, per_class=2)
    state = teach.read_state(ME)
    state["classes"][0]["examples"][0]["added"] = time.time() - 30 * 86400
    (teach.folder(ME) / "state.json").write_text(json.dumps(state))
    monkeypatch.setattr(teach, "_PRUNED", {"at": 0.0})
    now = time.time()
    assert teach.prune_if_due(now) == 1 and teach.prune_if_due(now + 60) == 0  # a page load a minute later
    monkeypatch.setattr(teach, "prune", lambda now=None: (_ for _ in ()).throw(OSError("disk full")))
    assert teach.prune_if_due(now + teach.PRUNE_EVERY_S + 1) == 0  # the page opens all the same


def test_the_mistakes_are_the_held_out_photos_predicted_wrong():
    result = {"held_out": [{"id": "a", "true": 0, "pred": 0}, {"id": "b", "true": 1, "pred": 0}]}
    assert [r["id"] for r in teach.mistakes(result)] == ["b"]
