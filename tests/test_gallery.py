"""The test gallery: the whole split evaluated once, filtered to mistakes, a confusion-matrix
cell, the most confused pairs and the highest losses, each against a brute-force computation.

The model is the shipped digit checkpoint (a ResNet-20, resnet_core/shipped, 98.75 % on the 2,000 bundled
test digits, so 25 mistakes): real mistakes, and no training here.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from resnet_core import data, engine, models, predict, runs
from resnet_core.config import TrainConfig
from tests.conftest import CHECKPOINTS, shown
from ui.i18n import catalogue

CHECKPOINT = CHECKPOINTS / "mnist-resnet20.pt"
EN = catalogue("en")


@pytest.fixture(scope="module")
def predictor():
    return predict.Predictor.from_checkpoint(CHECKPOINT)


@pytest.fixture(scope="module")
def result(predictor, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESNET_LAB_HOME", str(tmp_path_factory.mktemp("gallery") / "lab"))
        return predict.evaluate_gallery(predictor, batch_size=300)  # not a divisor of 2,000: a short last batch


@pytest.fixture(scope="module")
def brute(predictor, result):
    """The same numbers the obvious way: softmax, then counting in Python loops."""
    test = data.load_dataset("mnist-sample", "test")
    probs = torch.cat([predictor.probabilities(test.images[i : i + 100]) for i in range(0, len(test), 100)]).double()
    targets = test.targets.tolist()
    preds = probs.argmax(1).tolist()
    # The exact counts below hold on every processor because no image is a near tie: the smallest gap
    # between the top two probabilities is far above any kernel's rounding (logits differ by ~1e-6).
    top2 = probs.topk(2, 1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 1e-3, "another checkpoint: re-check the counts"
    k = len(predictor.classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    for y, p in zip(targets, preds):
        confusion[y, p] += 1
    prob_actual = [float(probs[i, y]) for i, y in enumerate(targets)]
    return {
        "images": test.images,
        "targets": targets,
        "preds": preds,
        "prob_actual": prob_actual,
        "loss": [-math.log(p) for p in prob_actual],
        "confusion": confusion,
    }


def test_the_whole_split_is_evaluated(result, brute):
    assert len(result["targets"]) == 2000
    assert result["targets"].tolist() == brute["targets"] and result["preds"].tolist() == brute["preds"]
    np.testing.assert_allclose(result["prob_actual"], brute["prob_actual"], atol=1e-5)
    np.testing.assert_allclose(result["loss"], brute["loss"], atol=1e-4, rtol=1e-4)
    assert np.array_equal(result["confusion"], brute["confusion"])
    assert result["accuracy"] == 0.9875  # what training measured on this split
    rows = brute["confusion"].sum(1)
    assert result["per_class"] == pytest.approx((brute["confusion"].diagonal() / rows).tolist())
    assert torch.equal(result["images"], brute["images"])
    assert torch.equal(predict.gallery_images(result, [5, 0, 1999]), brute["images"][[5, 0, 1999]])


def test_filters_match_brute_force(result, brute):
    y, p, loss = brute["targets"], brute["preds"], brute["loss"]
    wrong = [i for i in range(len(y)) if y[i] != p[i]]
    assert len(wrong) == 25
    assert predict.mistakes(result, order="index").tolist() == wrong
    assert predict.mistakes(result).tolist() == sorted(wrong, key=lambda i: -loss[i])  # highest loss first
    assert predict.mistakes(result, limit=5).tolist() == sorted(wrong, key=lambda i: -loss[i])[:5]
    assert predict.mistakes(result, only_wrong=False, order="index", limit=40).tolist() == list(range(40))
    cell = [i for i in range(len(y)) if (y[i], p[i]) == (3, 8)]
    assert len(cell) == 3 and predict.mistakes(result, cell=(3, 8), order="index").tolist() == cell
    sevens = [i for i in range(len(y)) if y[i] == p[i] == 7]
    assert predict.mistakes(result, cell=(7, 7), only_wrong=False, order="index").tolist() == sevens
    assert len(predict.mistakes(result, cell=(7, 7))) == 0  # a diagonal cell has no mistakes
    with pytest.raises(ValueError, match="'confidence' is not one of: loss, index"):
        predict.mistakes(result, order="confidence")


def test_the_highest_losses_are_the_lowest_probabilities_of_the_actual_class(result, brute):
    top = predict.mistakes(result, only_wrong=False, order="loss", limit=30)
    assert top.tolist() == sorted(range(2000), key=lambda i: -brute["loss"][i])[:30]
    assert brute["prob_actual"][top[0]] == pytest.approx(min(brute["prob_actual"]), abs=1e-6)
    rest = np.delete(np.array(brute["loss"]), top)
    assert min(brute["loss"][i] for i in top) >= rest.max()


def test_ties_keep_the_split_order():
    result = {
        "targets": np.array([0, 0, 1, 1, 2]),
        "preds": np.array([0, 1, 1, 0, 1]),
        "loss": np.array([0.5, 2.0, 2.0, 0.1, 2.0]),
    }
    assert predict.mistakes(result).tolist() == [1, 4, 3]
    assert predict.mistakes(result, only_wrong=False).tolist() == [1, 2, 4, 0, 3]
    assert predict.mistakes(result, cell=(2, 1)).tolist() == [4]


def test_confused_pairs_count_the_off_diagonal_cells():
    confusion = [[5, 3, 0], [1, 7, 3], [0, 0, 0]]  # class 2 has no images at all
    pairs = predict.confused_pairs(confusion)
    assert pairs == [
        {"actual": 0, "predicted": 1, "count": 3, "share": 3 / 8},  # same count as (1, 2): larger share first
        {"actual": 1, "predicted": 2, "count": 3, "share": 3 / 11},
        {"actual": 1, "predicted": 0, "count": 1, "share": 1 / 11},
    ]
    assert predict.confused_pairs(confusion, top=2) == pairs[:2]
    assert predict.confused_pairs(np.eye(4, dtype=int) * 9) == []


def test_confused_pairs_of_the_real_model(result, brute):
    conf = brute["confusion"]
    cells = [(conf[a, b], a, b) for a in range(10) for b in range(10) if a != b and conf[a, b]]
    pairs = predict.confused_pairs(result["confusion"], top=None)
    assert sum(r["count"] for r in pairs) == 25 and len(pairs) == len(cells)
    assert [(r["actual"], r["predicted"]) for r in pairs[:1]] == [(3, 8)]  # measured: 3 threes read as 8
    assert [r["count"] for r in pairs] == sorted((c for c, _, _ in cells), reverse=True)
    for r in pairs:
        assert r["share"] == pytest.approx(conf[r["actual"], r["predicted"]] / conf[r["actual"]].sum())


def test_a_folder_dataset_is_decoded_only_for_the_images_shown(lab, tmp_path, monkeypatch):
    from tests.test_folders import png_folder

    monkeypatch.setenv("RESNET_LAB_CACHE_MB", "0")  # too large to cache: it streams

    data.add_folder("pets", png_folder(tmp_path / "pets", per_class=10))
    test = data.load_dataset("pets", "test")
    assert test.images is None and len(test) >= 2
    torch.manual_seed(0)
    model = models.get_model("resnet20", num_classes=2, in_channels=3, image_size=32).eval()
    # Trained at 32 px on 16 px images: the gallery resizes each batch as training did.
    p = predict.Predictor(model, list(test.classes), [0.5] * 3, [0.25] * 3, 32, 3, "natural", "pets")
    g = predict.evaluate_gallery(p, batch_size=3)
    shown = predict.gallery_images(g, [1, 0])
    expected = engine.fetch(test, torch.tensor([1, 0]))[0]
    assert g["images"] is None and shown.shape == (2, 3, test.size, test.size) and torch.equal(shown, expected)
    whole = engine.fetch(test, torch.arange(len(test)))[0]
    assert g["preds"].tolist() == p.probabilities(engine.resize(whole, 32)).argmax(1).tolist()


# --- the page ------------------------------------------------------------------------------


def page(lab) -> AppTest:
    """The Predict page with the preset checkpoint as a finished run."""
    ckpt = torch.load(CHECKPOINT, weights_only=True)
    run_dir = runs.create(TrainConfig.from_dict({**ckpt["config"], "run_dir": None}))
    shutil.copy(CHECKPOINT, run_dir / "best.pt")
    runs.update_status(run_dir, state="finished", best_acc=ckpt["metrics"]["best_acc"], started=1, ended=2)
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.run()
    at.session_state["predict_tab"] = catalogue("en")["predict.tab.gallery"]  # the gallery runs only while open
    at.switch_page("pages/predict.py").run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest, key: str) -> list[str]:
    """The image captions of the grid in the container ``key``, in reading order, as the reader sees
    them (a class name is escaped: ``ui.common.plain``)."""

    def find(node):
        if getattr(node, "key", None) == key:
            return node
        for child in getattr(node, "children", {}).values():
            if (hit := find(child)) is not None:
                return hit
        return None

    block = find(at.main)
    if block is None:  # nothing to show: the page wrote a sentence instead
        return []
    columns = [[c for image in column.get("image") for c in image.captions] for column in block.get("column")]
    total = sum(map(len, columns))  # image j is in column j % n: read the grid row by row
    return [shown(columns[j % len(columns)][j // len(columns)]) for j in range(total)]


def mistake(classes, y, p) -> str:
    return EN["predict.mistake"].format(pred=classes[p], actual=classes[y])


def test_the_page_filters_to_mistakes_and_to_a_cell(lab, brute):
    at = page(lab)
    classes = torch.load(CHECKPOINT, weights_only=True)["classes"]
    y, p = brute["targets"], brute["preds"]
    assert [m.value for m in at.metric] == ["98.8%", "25"]
    first = captions(at, "gallery_grid")  # 40 images in split order, right and wrong
    assert first == [classes[p[i]] if y[i] == p[i] else mistake(classes, y[i], p[i]) for i in range(40)]

    at.toggle(key="gallery_wrong").set_value(True).run()
    shown = captions(at, "gallery_grid")
    assert shown == [mistake(classes, y[i], p[i]) for i in range(2000) if y[i] != p[i]]  # all 25, only them

    cell = at.selectbox(key="gallery_cell")
    assert cell.options[1] == EN["predict.cell_option"].format(actual=classes[3], predicted=classes[8], count=3)
    cell.set_value(3 * 10 + 8).run()
    assert captions(at, "gallery_grid") == [mistake(classes, 3, 8)] * 3

    at.selectbox(key="gallery_cell").set_value(7 * 10 + 7).run()  # correct answers, mistakes filter on
    assert captions(at, "gallery_grid") == [] and at.info[0].value == EN["predict.cell_correct"]
    at.toggle(key="gallery_wrong").set_value(False).run()
    assert captions(at, "gallery_grid") == [classes[7]] * 40
    assert not at.exception


def test_the_page_shows_the_pairs_and_the_highest_losses(lab, brute):
    at = page(lab)
    classes = torch.load(CHECKPOINT, weights_only=True)["classes"]
    table = at.dataframe[0].value
    assert table.iloc[0].tolist()[:3] == [classes[3], classes[8], 3] and len(table) == 10
    hardest = sorted(range(2000), key=lambda i: -brute["loss"][i])[:40]
    y, p, prob = brute["targets"], brute["preds"], brute["prob_actual"]
    expected = [
        EN["predict.hard_caption"].format(pred=classes[p[i]], actual=classes[y[i]], prob=prob[i])
        if y[i] != p[i]
        else EN["predict.hard_right"].format(pred=classes[p[i]], prob=prob[i])
        for i in hardest
    ]
    assert captions(at, "gallery_hardest") == expected
    assert 0 < sum("(right)" in c for c in expected) < 40  # both kinds are drawn in the 40 hardest


def test_the_page_evaluates_once_and_passes_the_grad_cam_layer_and_opacity(lab, tmp_path, monkeypatch):
    from tests.conftest import digit_png

    calls, layers, alphas = [], [], []
    real_eval, real_explain, real_overlay = predict.evaluate_gallery, predict.Predictor.explanation, predict.overlay

    def explain(self, x, target=None, method=None, layer=None):
        layers.append(layer)
        return real_explain(self, x, target, method, layer)

    monkeypatch.setattr(predict, "evaluate_gallery", lambda *a, **k: calls.append(1) or real_eval(*a, **k))
    monkeypatch.setattr(predict.Predictor, "explanation", explain)
    monkeypatch.setattr(
        predict, "overlay", lambda image, cam, alpha: alphas.append(alpha) or real_overlay(image, cam, alpha)
    )
    at = page(lab)
    assert at.selectbox(key="cam_method").value == "occlusion"  # the default at 28 px
    at.selectbox(key="cam_method").set_value("gradcam").run()
    assert at.selectbox(key="cam_layer").options == ["layer1", "layer2", "layer3"]
    assert at.selectbox(key="cam_layer").value == "layer3"  # the deepest stage by default
    at.selectbox(key="cam_layer").set_value("layer1").run()
    at.slider(key="cam_alpha").set_value(0.8).run()
    path, _ = digit_png(tmp_path, 0)
    at.file_uploader[0].set_value((path.name, path.read_bytes(), "image/png")).run()
    at.toggle(key="gallery_wrong").set_value(True).run()
    assert not at.exception and len(calls) == 1  # five runs of the page, one evaluation
    assert layers == ["layer1"] and alphas == [0.8]  # the upload; the toggle's rerun reuses its answer
