"""The Streamlit entry point renders offline with no exception (AppTest, no browser)."""

from streamlit.testing.v1 import AppTest


def test_home_page_renders_registries_and_runs(lab):
    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "ResNet Lab"
    tables = [df.value for df in at.dataframe]
    assert "mnist-sample" in tables[0]["name"].tolist()
    assert "resnet56" in tables[1]["name"].tolist()
