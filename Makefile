# Two entry points: `make demo` (the main job on the embedded phantom data) and
# `make test` (lint + unit tests). Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, pinned, so no multi-GB CUDA build is pulled in: the
	# package (and monai, in the dev extra) then find torch satisfied and leave it be.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	# dev: the test tools plus the yaml, onnx and monai extras and Playwright (which drives
	# the system Chromium; no browser is downloaded).
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/segshield demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -q

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_defenses.py

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
