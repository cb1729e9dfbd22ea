"""Your classes (resnet_core/teach.py, pages/teach.py) against what the real world sends: damaged
files in an owner's folder (state.json, head.pt, features.pt, a photo), a freed backbone whose
id a new one reuses, photos no state lists, Save pressed twice or on a full disk, class names
that are Markdown or numbers, a saved run on Predict's gallery tab, a run's config.json by hand.
Each gets a sentence or its literal text, never a traceback, and nothing of one owner's reaches
another's page."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import time

import pytest
import torch
import torchvision
from streamlit.testing.v1 import AppTest

from resnet_core import checkpoints, predict, runs, teach
from tests.conftest import shown
from tests.imagenet_real import real  # noqa: F401 (a fixture, by name)
from tests.test_teach import ME, YOU, fill, photo
from tests.test_teach_page import ANIMALS, THINGS, add_class, open_page, taught_lab  # noqa: F401
from ui.common import plain
from ui.i18n import catalogue


@pytest.fixture(scope="module")
def net():
    """test_teach's stand-in: a ResNet-18 at 64 px with fixed random weights."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    return predict.Predictor(model, [str(i) for i in range(10)], [0.5] * 3, [0.25] * 3, 64, 3, "natural", "t")


def every_action(owner, net) -> None:
    """What a page and the hourly prune do with an owner's folder: none may raise but a TeachError."""
    teach.read_state(owner)
    teach.trained(owner)
    teach.owners()
    teach.prune()
    for action in (
        lambda: teach.add_class(owner, f"new{time.time_ns()}"),
        lambda: teach.add_example(owner, "red", photo("red", 50), "r.jpg", net),
        lambda: teach.train(owner, net),
        lambda: teach.ask(owner, photo("red", 51), "s.jpg", net),
    ):
        with contextlib.suppress(teach.TeachError):
            action()


DAMAGED_STATES = {
    "a class that is a number": {"classes": [1, {"name": "red", "examples": []}]},
    "a class without examples": {"classes": [{"name": "red"}]},
    "a name that is a number": {"classes": [{"name": 5, "examples": []}, {"name": "red", "examples": []}]},
    "an example id that is a path": {"classes": [{"name": "red", "examples": [{"id": "../../etc", "added": 1}]}]},
    "an example that is a string": {"classes": [{"name": "red", "examples": ["0123456789ab"]}]},
    "a date that is a string": {"classes": [{"name": "red", "examples": [{"id": "0123456789ab", "added": "x"}]}]},
    "one name twice": {"classes": [{"name": "red", "examples": []}, {"name": "RED", "examples": []}]},
}


@pytest.mark.parametrize("damage", [*DAMAGED_STATES, "nested 100,000 deep"])
def test_a_damaged_state_json_breaks_no_page_and_no_prune(lab, net, damage):
    """Before: a state.json of the right outer shape but wrong insides (a hand edit, another
    version's file) raised TypeError/KeyError/ValueError from owners() (the teacher's page), prune()
    (any visitor's page, hourly), trained(), train() and ask(); a deeply nested one RecursionError."""
    fill(ME, net, per_class=2)
    teach.add_class(YOU, "猫")  # another student, whose page and the teacher's list must survive
    raw = "[" * 100_000 if damage.startswith("nested") else json.dumps(DAMAGED_STATES[damage])
    (teach.folder(ME) / "state.json").write_text(raw)
    every_action(ME, net)
    assert {r["owner"] for r in teach.owners()} >= {YOU}
    state = teach.read_state(ME)
    assert all(isinstance(c["name"], str) and isinstance(c["examples"], list) for c in state["classes"])
    assert len({c["name"].casefold() for c in state["classes"]}) == len(state["classes"])


class Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-head-pt",))


def test_a_head_pt_of_another_shape_counts_as_no_training(lab, net, tmp_path, monkeypatch):
    """Before: a head.pt that loads (weights_only) but is not a dict of the right things raised
    TypeError/KeyError in trained(), so the page's training section crashed on every render; one
    whose weight has another shape made ask() raise a RuntimeError (mat1 and mat2 shapes)."""
    monkeypatch.chdir(tmp_path)
    fill(ME, net, per_class=2)
    teach.train(ME, net)
    path = teach.folder(ME) / "head.pt"
    good = torch.load(path, weights_only=True)
    shapes = {**good, "weight": torch.zeros(7, 100), "bias": torch.zeros(7)}
    no_result = {k: v for k, v in good.items() if k != "result"}
    wrong_classes = {**good, "result": {**good["result"], "classes": 5}}
    for blob in ([1, 2], no_result, shapes, wrong_classes):
        torch.save(blob, path)
        assert teach.trained(ME) is None
        with pytest.raises(teach.TeachError, match="Train on your classes first"):
            teach.ask(ME, photo("red", 9), "s.jpg", net)
    path.write_bytes(pickle.dumps(Payload()))  # a pickle's code: refused by weights_only, never run
    assert teach.trained(ME) is None and not (tmp_path / "pwned-by-head-pt").exists()
    torch.save(good, path)
    assert teach.trained(ME) is not None


def test_a_head_learnt_on_another_backbones_features_is_stale_not_a_crash(lab, net):
    """Before: a head trained on one backbone's 512 features, asked through a backbone of 2,048
    (other weights on the server), was neither stale nor refused: ask() raised a RuntimeError."""
    fill(ME, net, per_class=2)
    teach.train(ME, net)
    torch.manual_seed(2)
    wider = predict.Predictor(
        torchvision.models.resnet50(num_classes=10).eval(), net.classes, net.mean, net.std, 64, 3, "natural", "t"
    )
    assert teach.trained(ME, wider)["stale"] and not teach.trained(ME, net)["stale"]
    with pytest.raises(teach.TeachError, match="Train on your classes first"):
        teach.ask(ME, photo("red", 9), "s.jpg", wider)
    with pytest.raises(teach.TeachError, match="Train on your classes first"):
        teach.explain(ME, wider.read(photo("red", 9)).tensor, 0, wider)
    teach.train(ME, wider)  # trained again: the features are computed again for this backbone
    assert teach.ask(ME, photo("red", 9), "s.jpg", wider)["classes"] == ["red", "blue"]


def test_a_freed_backbones_id_does_not_lend_its_key_to_a_new_one(net):
    """Before: backbone_key cached by id(net) alone. CPython reuses a freed object's id (seen 1 in
    30 times making and freeing a Predictor), and a backbone replaced on the server (weights got
    again: teach.backbone() clears its cache) then took the old one's key, so features.pt of the
    old weights counted as the new ones' and the head learnt from the wrong numbers."""
    torch.manual_seed(1)
    other = predict.Predictor(
        torchvision.models.resnet18(num_classes=10).eval(), net.classes, net.mean, net.std, 64, 3, "natural", "t"
    )
    old_key = teach.backbone_key(net)
    teach._KEYS[id(other)] = teach._KEYS[id(net)]  # what a freed predictor leaves where `other` now lives
    assert teach.backbone_key(other) != old_key
    assert teach.backbone_key(net) == old_key
    del other
    gc.collect()


def test_a_photo_gone_or_damaged_on_disk_does_not_leave_every_training_stale(lab, net):
    """Before: an example in state.json whose file was gone was left out of training but not of
    trained()'s comparison, so the head was stale for good: Try it and Save never came back; a
    damaged stored photo (when features were computed again) made train() raise from Pillow."""
    fill(ME, net, per_class=3)
    first, second = (c["examples"][0]["id"] for c in teach.read_state(ME)["classes"])
    teach.example_path(ME, first).unlink()
    (teach.folder(ME) / "features.pt").unlink()  # features computed again from the photos
    teach.example_path(ME, second).write_bytes(b"\xff\xd8\xff torn")
    result = teach.train(ME, net)
    assert result["examples"] == 4 and not teach.trained(ME)["stale"]
    ids = [e["id"] for c in teach.read_state(ME)["classes"] for e in c["examples"]]
    assert first not in ids and second not in ids and not teach.example_path(ME, second).exists()
    assert teach.ask(ME, photo("blue", 9), "s.jpg", net)["classes"] == ["red", "blue"]


def test_explaining_a_class_the_head_no_longer_has_is_a_sentence(lab, net):
    """Before: the page's Grad-CAM of the answer's class, after another tab trained again on fewer
    classes, raised IndexError from the model's output."""
    fill(ME, net, per_class=2, colours=("red", "blue", "green"))
    teach.train(ME, net)
    answer = teach.ask(ME, photo("green", 9), "s.jpg", net)
    teach.remove_class(ME, "green")
    teach.train(ME, net)
    with pytest.raises(teach.TeachError, match="Train on your classes first"):
        teach.explain(ME, answer["prepared"].tensor, 2, net)


def test_prune_takes_photos_no_state_lists_and_leaves_odd_files_alone(lab, net):
    """Before: photos no state.json listed (one damaged and started again, a write cut short) were
    never pruned and counted against everyone's examples_mb for good."""
    fill(ME, net, per_class=2)
    examples = teach.folder(ME) / "examples"
    orphan, fresh = examples / "0123456789ab.jpg", examples / "ba9876543210.jpg"
    for path in (orphan, fresh):
        path.write_bytes(b"x" * 100)
    month_ago = time.time() - 30 * 86400
    os.utime(orphan, (month_ago, month_ago))
    (examples / "a folder").mkdir()
    (teach.root() / "README").write_text("not an owner")
    (teach.root() / "ZZZZZZZZ").mkdir()  # no owner's name
    assert teach.prune() == 1
    assert not orphan.exists() and fresh.exists() and (examples / "a folder").is_dir()
    assert [len(c["examples"]) for c in teach.read_state(ME)["classes"]] == [2, 2]
    assert [r["owner"] for r in teach.owners()] == [ME]


def test_a_run_whose_config_holds_something_else_for_teach_breaks_no_list(lab):
    """Before: runs._row read extra["teach"]["title"] outside its guard: a config.json by hand
    with "teach": "x" made list_runs(), so every page that lists runs, raise AttributeError."""
    folder = runs.runs_dir() / "by-hand"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"dataset": "mnist-sample", "model": "resnet20", "extra": {"teach": "x"}})
    )
    [row] = runs.list_runs()
    assert row["run"] == "by-hand" and row["title"] is None


# ---------------------------------------------------------------------------------------------
# the real ResNet-50: saving, and the page


def taught(photos, owner=None, per_class=2) -> predict.Predictor:
    backbone = teach.backbone()
    for name, members in (("animals", ANIMALS), ("things", THINGS)):
        teach.add_class(owner, name)
        for index in members[:per_class]:
            teach.add_example(owner, name, photos[index].read_bytes(), "p.jpg", backbone)
    teach.train(owner, backbone)
    return backbone


def test_save_pressed_twice_is_one_run_and_a_full_disk_leaves_none(taught_lab, monkeypatch):  # noqa: F811
    """Before: each press of Save wrote another run of 94 MB (the whole ResNet-50) for the same
    training; a full disk while writing best.pt left a run "running" on Train for good, and the
    page caught OSError only (the write's CheckpointError is a ValueError): a traceback."""
    backbone = taught(taught_lab["by_index"])
    first = teach.save_run(None, "mine", backbone)
    assert teach.save_run(None, "mine", backbone) == first and len(runs.list_runs()) == 1
    assert teach.save_run(None, "another name", backbone) != first  # a new name: a new run

    def full(obj, path):
        raise checkpoints._unsaved(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(teach, "save_checkpoint", full)
    with pytest.raises(checkpoints.CheckpointError, match="No space left"):
        teach.save_run(None, "third", backbone)
    assert len(runs.list_runs()) == 2  # no half run left behind


def test_the_page_shows_markdown_class_names_as_typed_and_numbers_as_names(taught_lab):  # noqa: F811
    """Before: a class name went into Markdown as it was typed: "[x](https://…)" became a link on
    the student's page and on the teacher's view of it, "**" ate the bold, in the list, the radio,
    the upload button, the answer, the captions. And Plotly read classes named "1" and "1.0" as
    one number on the confusion matrix and the bars."""
    hostile = "**b** [x](https://e.example) :red[r]"
    at = open_page("en")
    for name in (hostile, "1", "1.0"):
        add_class(at, name, "en")
    said = [m.value for m in at.markdown]
    assert f"**{plain(hostile)}** · 0 photo(s)" in said and not [s for s in said if "[x](https" in s]
    assert at.radio(key="teach_target").options[0] == plain(hostile)
    at.radio(key="teach_target").set_value(hostile).run()  # the value is still the name itself
    assert at.radio(key="teach_target").value == hostile

    [owner] = [p.name for p in teach.root().iterdir()]
    backbone, photos = teach.backbone(), [*ANIMALS, *THINGS]
    for n, name in enumerate((hostile, "1", "1.0")):
        for index in photos[2 * n : 2 * n + 2]:
            teach.add_example(owner, name, taught_lab["by_index"][index].read_bytes(), "p.jpg", backbone)
    teach.train(owner, backbone)
    at.run()
    assert not at.exception
    [matrix] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert matrix["layout"]["xaxis"]["type"] == matrix["layout"]["yaxis"]["type"] == "category"


def test_the_page_says_one_sentence_when_the_disk_is_full(taught_lab, monkeypatch):  # noqa: F811
    """Before: a full disk while adding a class or training (CheckpointError from the atomic
    write) was a traceback on the page."""
    at = open_page("zh")

    def full(path, text):
        raise checkpoints._unsaved(path, OSError(28, "No space left on device"))

    monkeypatch.setattr(teach, "atomic_write_text", full)
    add_class_label = catalogue("zh")["teach.class.name"]
    next(w for w in at.text_input if w.label == add_class_label).set_value("猫")
    next(b for b in at.button if b.label == catalogue("zh")["teach.class.add"]).click().run()
    assert not at.exception and len(at.error) == 1
    said = at.error[0].value
    assert "/tmp/" not in said and "Traceback" not in said and "磁盘空间" in said, said


def test_predicts_gallery_of_a_saved_run_says_why_there_is_none(taught_lab):  # noqa: F811
    """Before: the gallery tab of a run saved from Your classes said "Unknown dataset
    'your-classes'; choose one of: mnist-sample, …" in English on the Chinese page too."""
    backbone = taught(taught_lab["by_index"])
    run = teach.save_run(None, "我的", backbone)
    for lang in ("en", "zh"):
        at = AppTest.from_file("../streamlit_app.py", default_timeout=180)
        at.query_params["lang"] = lang
        at.run()
        at.switch_page("pages/predict.py").run()
        box = next(w for w in at.selectbox if w.label == catalogue(lang)["predict.checkpoint"])
        box.set_value(str(run / "best.pt")).run()
        at.session_state["predict_tab"] = catalogue(lang)["predict.tab.gallery"]
        at.run()
        assert not at.exception and not at.error
        assert [shown(i.value) for i in at.info] == [catalogue(lang)["predict.no_gallery_teach"]]
