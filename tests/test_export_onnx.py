"""ONNX export: the metadata a user needs to feed the model, and the same answers as PyTorch."""

import json

import numpy as np
import pytest
import torch

from resnet_core import data, engine, export, predict
from resnet_core.checkpoints import load_checkpoint

ort = pytest.importorskip("onnxruntime", reason="pip install -r requirements-dev.txt")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert export.export(trained_run / "best.pt", "onnx", out) == out
    return out, load_checkpoint(trained_run / "best.pt")


def test_the_metadata_says_how_to_feed_the_model(exported):
    out, ckpt = exported
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ckpt["classes"] == list(data.BUILTIN["mnist-sample"].classes)
    assert json.loads(meta["mean"]) == ckpt["mean"] and json.loads(meta["std"]) == ckpt["std"]
    assert (meta["image_size"], meta["in_channels"]) == ("28", "1")
    assert (meta["arch"], meta["dataset"]) == ("resnet20", "mnist-sample")
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # written atomically: no temp file left


def test_onnxruntime_answers_as_pytorch_on_every_test_image(lab, exported):
    out, ckpt = exported
    test = data.load_dataset(ckpt["dataset"], "test")
    # Prepared exactly as PyTorch's input, from the file's own metadata.
    meta = ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map
    mean = torch.tensor(json.loads(meta["mean"])).view(1, -1, 1, 1)
    std = torch.tensor(json.loads(meta["std"])).view(1, -1, 1, 1)
    x = engine.normalize(test.images, mean, std)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    theirs = np.concatenate([session.run(["logits"], {"image": b.numpy()})[0] for b in x.split(500)])
    with torch.inference_mode():
        ours = predict.build_from_checkpoint(ckpt)(x).numpy()
    assert theirs.shape == ours.shape == (len(test), 10)
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=1e-4)
    # Same answers wherever PyTorch's answer is not a near tie (two kernel libraries round differently).
    top2 = np.sort(ours, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2e-4
    assert clear.mean() > 0.99 and (theirs.argmax(1) == ours.argmax(1))[clear].all()
    assert (ours.argmax(1) == test.targets.numpy()).mean() > 0.8  # a trained model, not a constant one


def test_exporting_again_replaces_the_file_and_a_bad_format_is_one_sentence(trained_run, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an older export")
    export.export(trained_run / "best.pt", "onnx", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert ort.InferenceSession(str(out)).get_modelmeta().custom_metadata_map["arch"] == "resnet20"
    with pytest.raises(ValueError, match="'tflite' is not one of: pth, onnx"):
        export.export(trained_run / "best.pt", "tflite", tmp_path / "m.tflite")
