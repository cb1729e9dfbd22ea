"""Folder datasets from hostile zips: every target stays inside the lab, whatever the zip says."""

import io
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from resnet_core import data, folders


def png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (seed * 37 % 256, 90, 160)).save(buf, format="PNG")
    return buf.getvalue()


def png_folder(root: Path, classes=("cat", "dog"), per_class: int = 5) -> Path:
    """A directory of class sub-folders holding small PNGs."""
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            (root / c / f"{i}.png").write_bytes(png(i))
    return root


class RawNameInfo(zipfile.ZipInfo):
    """A member whose name is written as given bytes with no UTF-8 flag, as Windows' own zipper does."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw.decode("cp437"))
        self.raw = raw

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's name)
        return self.raw, self.flag_bits & ~0x800


def make_zip(path: Path, entries: list, good_classes: bool = True) -> Path:
    """``entries``: (name or ZipInfo, bytes). Two valid classes are added unless told not to."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if good_classes:
            for c in ("cat", "dog"):
                for i in range(5):
                    zf.writestr(f"{c}/{i}.png", png(i))
        for name, content in entries:
            zf.writestr(name, content)
    return path


@pytest.mark.parametrize(
    "member",
    [
        "\\{tmp}\\escaped.txt",  # the reported hole: a Windows absolute path
        "/{tmp}/escaped.txt",
        "C:\\escaped.png",
        "C:escaped.png",
        "c:/Users/me/escaped.png",
        "//server/share/escaped.png",
        "../escaped.png",
        "cat/../../escaped.png",
        "cat\\..\\..\\escaped.png",
    ],
)
def test_a_zip_that_points_outside_is_refused_and_writes_nothing(lab, tmp_path, member):
    outside = tmp_path / "outside"
    outside.mkdir()
    name = member.format(tmp=str(outside).strip("/").replace("/", "\\" if member.startswith("\\") else "/"))
    archive = make_zip(tmp_path / "evil.zip", [(name, b"owned")])
    with pytest.raises(folders.FolderError, match="outside its folder"):
        data.add_folder("evil", archive)
    assert not (outside / "escaped.txt").exists()
    assert not list(tmp_path.rglob("escaped.*"))
    assert data.list_datasets("folder") == []
    assert not [p for p in (lab / "data" / "folders").iterdir()]  # no staging left behind


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_links_and_duplicates_are_skipped_and_counted(lab, tmp_path):
    link = zipfile.ZipInfo("cat/passwd.png")
    link.external_attr = (0o120777 << 16) | 0x10
    archive = make_zip(tmp_path / "x.zip", [(link, b"/etc/passwd"), ("dog/0.png", png(9))])
    info = data.add_folder("pets", archive)
    assert info.skipped == {"links": 1, "duplicate names": 1}
    assert info.counts["train"] == [4, 4] and info.counts["test"] == [1, 1]
    assert not [p for p in lab.rglob("*") if p.is_symlink()]


def test_a_file_where_a_folder_should_be_is_skipped(lab, tmp_path):
    archive = make_zip(tmp_path / "x.zip", [("fox", b"a file"), ("fox/0.png", png(1))])
    info = data.add_folder("pets", archive)
    assert info.skipped.get("unusable names") == 1


@pytest.mark.parametrize("how", ["gbk", "utf8-no-flag", "utf8-flag"])
def test_chinese_class_names_from_windows_and_mac_zips(lab, tmp_path, how):
    archive = tmp_path / "zh.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for c in ("猫", "狗"):
            for i in range(5):
                name = f"动物/{c}/{i}.png"
                if how == "utf8-flag":
                    zf.writestr(name, png(i))  # Python sets the flag itself
                else:
                    zf.writestr(RawNameInfo(name.encode("gbk" if how == "gbk" else "utf-8")), png(i))
    info = data.add_folder("zh", archive)
    assert info.classes == ["狗", "猫"]  # sorted by code point: 狗 U+72D7 < 猫 U+732B
    assert sum(info.counts["train"]) + sum(info.counts["test"]) == 10


def test_bombs_are_refused_by_count_size_and_ratio(lab, tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "bomb.zip", [("cat/zeros.bmp", b"\0" * 4_000_000)])
    monkeypatch.setattr(folders, "RATIO_FLOOR", 1_000_000)
    with pytest.raises(folders.FolderError, match="expand"):
        data.add_folder("bomb", archive)
    monkeypatch.setattr(folders, "RATIO_FLOOR", 10**12)
    monkeypatch.setattr(folders, "MAX_ZIP_BYTES", 1_000_000)
    with pytest.raises(folders.FolderError, match="more than"):
        data.add_folder("bomb", archive)
    monkeypatch.setattr(folders, "MAX_ZIP_BYTES", 4 * 1024**3)
    monkeypatch.setattr(folders, "MAX_ZIP_FILES", 5)
    with pytest.raises(folders.FolderError, match="more than 5 files"):
        data.add_folder("bomb", archive)
    assert data.list_datasets("folder") == []


def test_understated_sizes_cannot_write_past_the_budget(tmp_path, monkeypatch):
    # zipfile stops at the declared size and then checks the CRC; _copy_limited is the second wall.
    monkeypatch.setattr(folders, "MAX_ZIP_BYTES", 100)
    with pytest.raises(folders.FolderError, match="more than"):
        folders._copy_limited(io.BytesIO(b"x" * 1000), io.BytesIO(), 100)


def mark_encrypted(archive: Path, name: bytes) -> None:
    """Set the "encrypted" flag of one member in its local and central headers (zipfile cannot write one)."""
    raw = bytearray(archive.read_bytes())
    for signature, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = raw.find(signature)
        while at >= 0:
            if raw[at + name_at : at + name_at + len(name)] == name:
                raw[at + flag_at] |= 0x1
            at = raw.find(signature, at + 1)
    archive.write_bytes(bytes(raw))


def test_an_encrypted_member_gets_a_sentence(lab, tmp_path):
    archive = make_zip(tmp_path / "x.zip", [("cat/secret.png", png(3))])
    mark_encrypted(archive, b"cat/secret.png")
    with pytest.raises(folders.FolderError, match="password"):
        data.add_folder("locked", archive)


@pytest.mark.parametrize(
    ("entries", "good", "message"),
    [
        ([("__MACOSX/._a.png", b"fork"), (".DS_Store", b"junk"), ("a/.DS_Store", b"junk")], False, "at least two"),
        ([("notes/readme.txt", b"hello")], False, "at least two"),
        ([("only/0.png", png(0)), ("only/1.png", png(1))], False, "at least two"),
    ],
)
def test_zips_without_two_classes_of_images(lab, tmp_path, entries, good, message):
    archive = make_zip(tmp_path / "x.zip", entries, good_classes=good)
    with pytest.raises(folders.FolderError, match=message) as err:
        data.add_folder("x", archive)
    assert "in x.zip;" in str(err.value)  # the zip the student chose, not the lab's staging folder


def test_a_file_that_looks_like_a_zip_but_is_not_gets_a_sentence(lab, tmp_path):
    fake = tmp_path / "x.zip"
    fake.write_bytes(make_zip(tmp_path / "good.zip", []).read_bytes()[:-30])  # the central directory cut off
    with pytest.raises(folders.FolderError, match="x.zip is"):
        data.add_folder("x", fake)
    assert data.list_datasets("folder") == []


def test_links_leaving_a_browsers_server_folder_are_skipped(lab, tmp_path):
    """A student given one server folder cannot reach beyond it through links inside it."""
    outside = png_folder(tmp_path / "private", classes=("secret",))
    shared = png_folder(tmp_path / "shared" / "flowers")
    (shared / "secret").symlink_to(outside / "secret")  # a class folder that is a link out
    (shared / "cat" / "passwd.png").symlink_to(outside / "secret" / "0.png")  # an image that is one
    (shared / "cat" / "inside.png").symlink_to(shared / "dog" / "0.png")  # a link that stays: kept
    confined = data.add_folder("browser", shared, confine=True)
    assert confined.classes == ["cat", "dog"]
    index = folders.read_index(data.data_root(), "browser")
    # The linked class folder counts once (never walked: it could be "/"), the linked image once.
    assert index["skipped"] == {"links leaving the folder": 2} and "cat/inside.png" in index["files"]
    assert data.add_folder("shell", shared).classes == ["cat", "dog", "secret"]  # the shell's own: links followed


def test_junk_beside_real_classes_is_counted_not_fatal(lab, tmp_path):
    junk = [("__MACOSX/cat/._0.png", b"fork"), (".DS_Store", b"junk"), ("cat/.DS_Store", b"junk")]
    info = data.add_folder("pets", make_zip(tmp_path / "x.zip", junk))
    assert info.classes == ["cat", "dog"]
    assert info.skipped["hidden or __MACOSX"] == 3
    base = folders.folders_dir(data.data_root()) / "pets"
    index = folders.read_index(data.data_root(), "pets")
    kept = {str(p.relative_to(base / "files")) for p in base.rglob("*") if p.is_file() and p.parent != base}
    assert kept == set(index["files"])  # junk is counted, then not kept on the server's disk


def test_two_students_adding_the_same_name_at_once(lab, tmp_path):
    archive = make_zip(tmp_path / "x.zip", [])
    outcomes = []

    def add():
        try:
            data.add_folder("pets", archive)
            outcomes.append("ok")
        except folders.FolderError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=add) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcomes.count("ok") == 1 and all("exists already" in o for o in outcomes if o != "ok")
    assert sorted(p.name for p in (lab / "data" / "folders").iterdir()) == ["pets"]


def test_a_registered_folder_that_has_gone_says_so(lab, tmp_path):
    src = png_folder(tmp_path / "gone")
    data.add_folder("gone", src)
    shutil.rmtree(src)
    with pytest.raises(folders.FolderError, match="which is gone"):
        data.load_dataset("gone", "train")


def test_a_deleted_server_folder_dataset_leaves_its_images_alone(lab, tmp_path):
    source = png_folder(tmp_path / "shared")
    data.add_folder("pets", source)
    data.remove_folder("pets")
    assert data.list_datasets("folder") == [] and len(list(source.rglob("*.png"))) == 10
    with pytest.raises(ValueError, match="No folder dataset named 'pets'; choose one of: none"):
        data.remove_folder("pets")
    with pytest.raises(ValueError, match="No folder dataset"):
        data.remove_folder("mnist-sample")  # a built-in is no folder dataset


def test_what_a_zip_unpacks_to_is_read_from_its_directory(tmp_path):
    archive = make_zip(tmp_path / "x.zip", [("cat/zeros.bin", bytes(1024**2))])  # 1 MB of zeros: ~1 kB packed
    assert archive.stat().st_size < 100_000 and data.unpacked_bytes(archive) > 1024**2
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    assert data.unpacked_bytes(junk) == 9
