# Two entry points, both safe on machines that refuse a system-wide pip install (PEP 668):
#   make app   - make .venv, install requirements.txt, start the dashboard on the bundled data
#   make test  - make .venv, install requirements-dev.txt, run ruff and the whole test suite
# Options, on the command line (make app PORT=8601 ADDRESS=127.0.0.1):
#   PORT=N      serve on port N; unset: Streamlit's 8501, or the next free port if 8501 is taken
#   ADDRESS=A   listen on address A only (127.0.0.1: this machine only, e.g. behind a reverse
#               proxy); unset: Streamlit listens on every interface, so a LAN can reach it
#   ARGS='...'  more `streamlit run` options, e.g. --server.sslCertFile F --server.sslKeyFile K
#   CPU=1       for a new .venv: torch and torchvision's CPU-only builds from PyTorch's own index
#               first, so pip never downloads the CUDA libraries (needs that index reachable)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
PORT ?=
ADDRESS ?=
ARGS ?=
CPU ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# torch and torchvision as requirements.txt pins them (torch==2.14.1 torchvision==0.29.2)
TORCH_PINS = $(shell grep -E '^torch(vision)?==' requirements.txt | cut -d' ' -f1)
CPU_STAMP := $(if $(CPU),$(VENV)/.cpu)
SERVE_FLAGS := $(strip $(if $(PORT),--server.port $(PORT)) $(if $(ADDRESS),--server.address $(ADDRESS)) $(ARGS))

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# CPU=1. With --index-url, torch==2.14.1 resolves to the index's 2.14.1+cpu build; requirements.txt's
# torch==2.14.1 then counts as met (a local build +cpu matches its plain version), so the next
# install fetches no CUDA wheels. A .venv that already has a CUDA torch is refused: start afresh.
$(VENV)/.cpu: requirements.txt | $(BIN)/python
	@v=$$($(BIN)/python -m pip show torch 2>/dev/null | sed -n 's/^Version: //p'); \
	case "$$v" in ""|*+cpu) ;; *) echo "$(VENV) already has torch $$v: for the CPU-only build, rm -rf $(VENV) first"; exit 1;; esac
	$(BIN)/python -m pip install $(TORCH_PINS) --index-url $(TORCH_CPU_INDEX)
	touch $@

$(VENV)/.app: requirements.txt $(CPU_STAMP) | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt $(CPU_STAMP) | $(BIN)/python
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@ $(VENV)/.app

.PHONY: app test lint
app: $(VENV)/.app
	$(BIN)/python scripts/serve.py $(SERVE_FLAGS)    # streamlit run streamlit_app.py, with torch imported before the first visitor

lint: $(VENV)/.dev
	$(BIN)/ruff check .

test: $(VENV)/.dev lint
	$(BIN)/python -m pytest
