"""Datasets: the bundled samples through torchvision's own readers, folders, and offline failures."""

import hashlib
import socket
import zipfile

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from resnet_core import data, folders


@pytest.mark.parametrize(
    ("name", "tv_class", "train", "test"),
    [("mnist-sample", "MNIST", 8000, 2000), ("fashion-sample", "FashionMNIST", 12000, 2000)],
)
def test_samples_read_as_torchvision_reads_them(lab, name, tv_class, train, test):
    data.load_dataset(name, "train")  # unpacks into the lab
    root = data.dataset_dir(name)
    cls = getattr(torchvision.datasets, tv_class)
    tv_train, tv_test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    assert (len(tv_train), len(tv_test)) == (train, test)
    image, label = tv_test[0]
    assert image.size == (28, 28) and 0 <= label < 10
    # Our own IDX reader (no torchvision import in a trainer) against torchvision's, both splits.
    for ours, theirs in ((data.load_dataset(name, "test"), tv_test), (data.load_dataset(name, "train"), tv_train)):
        assert torch.equal(ours.images[:, 0], theirs.data) and torch.equal(ours.targets, theirs.targets)
        assert ours.images.dtype == torch.uint8 and ours.targets.dtype == torch.int64
    assert tuple(data.get_spec(name).classes) == tuple(cls.classes)


def test_written_out_class_names_are_torchvisions():
    assert data.get_spec("kmnist").classes == tuple(torchvision.datasets.KMNIST.classes)
    assert data.get_spec("mnist").classes == tuple(torchvision.datasets.MNIST.classes)
    assert data.get_spec("fashion-mnist").classes == tuple(torchvision.datasets.FashionMNIST.classes)


def test_splits_are_stratified_and_disjoint(lab):
    fashion = data.describe("fashion-sample")
    assert fashion.counts == {"train": [1200] * 10, "test": [200] * 10}
    mnist = data.describe("mnist-sample")
    for train_n, test_n in zip(mnist.counts["train"], mnist.counts["test"]):
        assert abs(test_n / (train_n + test_n) - 0.2) < 0.005
    for name in ("mnist-sample", "fashion-sample"):
        hashes = [
            {hashlib.sha1(x.numpy().tobytes()).hexdigest() for x in data.load_dataset(name, s).images}
            for s in ("train", "test")
        ]
        assert not hashes[0] & hashes[1], f"{name}: a test image also appears in train"


def test_reported_stats_match_the_known_full_dataset_values(lab):
    # Full-dataset normalisation constants used throughout the literature.
    mnist, fashion = data.describe("mnist-sample"), data.describe("fashion-sample")
    assert mnist.mean[0] == pytest.approx(0.1307, abs=0.01) and mnist.std[0] == pytest.approx(0.3081, abs=0.01)
    assert fashion.mean[0] == pytest.approx(0.2860, abs=0.01) and fashion.std[0] == pytest.approx(0.3530, abs=0.01)
    assert mnist.classes[3] == "3 - three" and fashion.classes[-1] == "Ankle boot"
    assert (mnist.channels, mnist.size, fashion.channels, fashion.size) == (1, 28, 1, 28)


def test_registry_lists_builtins_and_rejects_unknown_names(lab):
    names = data.list_datasets()
    assert names[:2] == ["mnist-sample", "fashion-sample"]
    assert {"mnist", "fashion-mnist", "kmnist", "cifar10", "svhn", "stl10"} <= set(names)
    with pytest.raises(data.DatasetUnavailable, match="mnist-sample, fashion-sample"):
        data.get_spec("imagenet")


def test_download_offline_fails_with_one_actionable_sentence(lab, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(data.DatasetUnavailable) as info:
        data.load_dataset("cifar10", "train")
    message = str(info.value)
    assert "CIFAR10" in message and "unreachable" in message
    assert str(data.dataset_dir("cifar10")) in message and "mnist-sample" in message
    assert "\n" not in message
    info = data.describe("cifar10")  # describing without downloading never touches the network
    assert not info.present and info.counts is None and len(info.classes) == 10


# ---------------------------------------------------------------------------------------------
# Folders of the user's own images


def make_folder(root, classes=("cat", "dog", "fox"), per_class=10, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8) // (c + 1)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / classes[0] / ".DS_Store").write_bytes(b"junk")
    (root / classes[0] / "notes.txt").write_text("not an image")
    (root / classes[-1] / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._0.png").write_bytes(b"resource fork")
    (root / "README.md").write_text("a file outside the class folders")
    return root


def test_folder_dataset_counts_what_it_skips_and_splits_80_20(lab, tmp_path):
    src = make_folder(tmp_path / "animals")
    info = data.add_folder("animals", src)
    assert info.classes == ["cat", "dog", "fox"] and info.channels == 3
    assert info.counts == {"train": [8, 8, 8], "test": [2, 2, 2]}
    assert info.skipped == {
        "hidden or __MACOSX": 2,
        "not an image file": 1,
        "unreadable or corrupt image": 1,
        "not inside a class folder": 1,
    }
    assert info.size == 24  # median short side 30 px, rounded down to a multiple of 8
    test = data.load_dataset("animals", "test")
    image, label = test.dataset()[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 24, 24)
    assert "animals" in data.list_datasets()


def test_folder_split_is_seeded(lab, tmp_path):
    src = make_folder(tmp_path / "animals")
    data.add_folder("a1", src)
    data.add_folder("a2", src)
    files = [data.load_dataset(n, "test").files for n in ("a1", "a2")]
    assert [f.name for f in files[0]] == [f.name for f in files[1]]


def test_zip_with_wrapper_folder_and_train_test_dirs(lab, tmp_path):
    make_folder(tmp_path / "src" / "train")
    make_folder(tmp_path / "src" / "test", per_class=3)
    archive = tmp_path / "pets.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in (tmp_path / "src").rglob("*"):
            if path.is_file():
                zf.write(path, "pets/" + str(path.relative_to(tmp_path / "src")))
    info = data.add_folder("pets", archive)
    assert info.counts == {"train": [10, 10, 10], "test": [3, 3, 3]}


@pytest.mark.parametrize("make", ["one_class", "not_zip", "bad_name"])
def test_folder_errors_are_sentences(lab, tmp_path, make):
    if make == "one_class":
        src = make_folder(tmp_path / "x", classes=("only",))
        with pytest.raises(folders.FolderError, match="at least two sub-folders"):
            data.add_folder("x", src)
    elif make == "not_zip":
        (tmp_path / "x.zip").write_bytes(b"PK nope")
        with pytest.raises(folders.FolderError, match="neither a directory nor a zip"):
            data.add_folder("x", tmp_path / "x.zip")
    else:
        with pytest.raises(folders.FolderError, match="any language; Latin ones lower case"):
            data.add_folder("Bad Name!", tmp_path)
    assert data.list_datasets("folder") == []


@pytest.mark.parametrize("name", ["形状", "ants-和-bees", "花_5"])
def test_a_dataset_may_be_named_in_any_script(lab, tmp_path, name):
    src = make_folder(tmp_path / "x", classes=("a", "b"))
    data.add_folder(name, src)
    assert data.list_datasets("folder") == [name]
    with pytest.raises(folders.FolderError, match="lower case"):
        data.add_folder("Ants", src)  # two names that differ by case would meet on a case-blind disk


@pytest.mark.parametrize(
    "damage", [lambda b: b[:-100], lambda b: b[:10], lambda b: b[:3], lambda b: b"", lambda b: b + b"x"]
)
def test_a_damaged_unpacked_sample_is_unpacked_again(lab, damage):
    data.load_dataset("mnist-sample", "test")
    raw = data.dataset_dir("mnist-sample") / "MNIST" / "raw"
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(damage((raw / name).read_bytes()))
        test = data.load_dataset("mnist-sample", "test")
        assert test.images.shape == (2000, 1, 28, 28) and len(test.targets) == 2000
