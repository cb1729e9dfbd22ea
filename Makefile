# Two entry points, both safe on machines that refuse a system-wide pip install (PEP 668):
#   make app   - make .venv, install requirements.txt, start the dashboard on the bundled data
#   make test  - make .venv, install requirements-dev.txt, run ruff and the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.app: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@ $(VENV)/.app

.PHONY: app test lint
app: $(VENV)/.app
	$(BIN)/python scripts/serve.py    # streamlit run streamlit_app.py, with torch imported before the first visitor

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: $(VENV)/.dev lint
	$(BIN)/python -m pytest
