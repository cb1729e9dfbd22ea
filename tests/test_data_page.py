"""The Data page's own datasets: a zip appears chosen at once, named after its file, and can be
deleted by whoever added it or the teacher, never by another student."""

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core import classroom, data, folders
from tests.conftest import shown
from tests.test_folders import make_zip
from ui.i18n import catalogue

EN = catalogue("en")


def data_page(monkeypatch=None, token=None, lang="en") -> AppTest:
    if token:
        monkeypatch.setenv(classroom.TEACHER_ENV, token)
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = lang
    at.run()
    at.switch_page("pages/data.py").run()
    assert not at.exception, at.exception
    return at


def add(at: AppTest, name: str, file_name: str, raw: bytes) -> AppTest:
    at.text_input[0].set_value(name)
    at.file_uploader[0].set_value((file_name, raw, "application/zip"))
    at.run()
    next(b for b in at.button if b.label == EN["data.add.button"]).click().run()
    assert not at.exception, at.exception
    return at


def test_a_zip_appears_chosen_at_once_and_names_its_file(lab, tmp_path):
    archive = make_zip(tmp_path / "x.zip", [])
    at = add(data_page(), "pets", "Ants & Bees (1).zip", archive.read_bytes())
    assert at.selectbox(key="data_name").value == "pets"  # the list holds it, and it is the one shown
    assert [m.value for m in at.metric][:3] == ["2", "8", "2"]  # its own counts, not the bundled digits'
    assert shown(at.success[0].value).startswith("Added pets: 2 classes")
    assert EN["data.source"].format(source="zip: Ants & Bees (1).zip") in [shown(c.value) for c in at.caption]
    at.run()  # the message was for that moment
    assert not at.success and at.selectbox(key="data_name").value == "pets"


def delete_button(at: AppTest):
    return [b for b in at.button if b.label == EN["data.delete.button"]]


def test_the_student_who_added_it_deletes_it_another_cannot(lab, tmp_path, monkeypatch):
    archive = make_zip(tmp_path / "x.zip", []).read_bytes()
    mine = add(data_page(monkeypatch, "s3cret"), "pets", "pets.zip", archive)
    other = data_page()
    other.selectbox(key="data_name").set_value("pets").run()
    assert not delete_button(other)  # another browser: no button at all
    with pytest.raises(classroom.NotYours):  # and the core refuses it too
        data.remove_folder("pets", actor=classroom.Actor(owner=classroom.owner_id("someone else")))
    delete_button(mine)[0].click().run()
    assert not mine.exception and data.list_datasets("folder") == []
    assert mine.selectbox(key="data_name").value == "mnist-sample"
    assert shown(mine.success[0].value) == EN["data.delete.done"].format(name="pets")


def test_the_teacher_deletes_any_dataset(lab, tmp_path, monkeypatch):
    data.add_folder("shell", make_zip(tmp_path / "x.zip", []))  # from the command line: no owner
    student = data_page(monkeypatch, "s3cret")
    student.selectbox(key="data_name").set_value("shell").run()
    assert not delete_button(student)
    student.session_state["teacher"] = True
    student.run()
    delete_button(student)[0].click().run()
    assert not student.exception and data.list_datasets("folder") == []


def test_a_single_user_server_deletes_without_asking_who(lab, tmp_path):
    data.add_folder("shell", make_zip(tmp_path / "x.zip", []))
    at = data_page()
    at.selectbox(key="data_name").set_value("shell").run()
    delete_button(at)[0].click().run()
    assert data.list_datasets("folder") == []


def test_a_dataset_added_again_under_its_name_is_shown_anew(lab, tmp_path):
    """The page's views are cached by name and version: the second dataset's counts, not the first's."""
    from tests.test_folders import png

    at = add(data_page(), "pets", "a.zip", make_zip(tmp_path / "a.zip", []).read_bytes())
    assert [m.value for m in at.metric][0] == "2"
    data.remove_folder("pets")
    data.add_folder("pets", make_zip(tmp_path / "b.zip", [("bird/0.png", png(7)), ("bird/1.png", png(8))]))
    at = data_page()
    at.selectbox(key="data_name").set_value("pets").run()
    assert [m.value for m in at.metric][0] == "3"  # cat, dog and now bird


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_folder_of_photos_is_shown_from_a_sample_in_both_languages(lab, tmp_path, lang):
    """36 training photos of 3 classes: every view drawn, each statistic saying what it is of,
    and no split decoded whole (its training cache is not written by looking at it)."""
    from tests.test_explore_folders import make_photos

    data.add_folder("photos", make_photos(tmp_path / "photos"))
    at = data_page(lang=lang)
    # By index: the box's labels are in the page's language, which the test's thread does not know.
    at.selectbox(key="data_name").select_index(data.list_datasets().index("photos")).run()
    assert not at.exception and not at.error, (at.exception, at.error)
    assert at.selectbox(key="data_name").value == "photos"
    text = catalogue(lang)
    assert [m.value for m in at.metric][:3] == ["3", "36", "12"]
    captions = [c.value for c in at.caption]
    assert text["data.means_caption"].format(n=36, per=12, of=36) in captions
    assert text["data.hist_caption"].format(n=36, of=36) in captions
    pca = text["data.pca_caption"].format(n=36, a=0.5, b=0.25)
    assert any(c[:8] == pca[:8] for c in captions)  # the share of variance is the sample's, not known here
    assert not folders.cache_dir(data.data_root(), "photos").exists()
