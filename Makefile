# Two commands set everything up on a fresh machine:
#   make approx   -- builds .venv and runs `structlayers approx --layer acdc --depth 16`
#   make test     -- builds .venv and runs the whole test suite
#   make test-random -- the suite with fresh hypothesis examples (HYPOTHESIS_PROFILE=random)
#   make lint     -- ruff (configured in pyproject.toml); .ci/run runs it before the tests
#   make docs     -- the documentation site into site/ (mkdocs build --strict: any warning fails)
#   make figures  -- redraw every committed figure from its recorded data (experiments/figures.py)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup approx test test-random lint docs figures

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[lab,atompaint,test]'
	# escnn's py3nj dependency needs a Fortran compiler; escnn works without it (numerical
	# Clebsch-Gordan coefficients), so it is installed without dependencies and py3nj is optional.
	$(BIN)/pip install -q --no-deps escnn==1.0.11
	if command -v gfortran >/dev/null; then $(BIN)/pip install -q py3nj || true; fi
	touch $@

approx: setup
	$(BIN)/structlayers approx --layer acdc --depth 16

test: setup
	$(BIN)/python -m pytest -n 2 -q tests

test-random: setup
	HYPOTHESIS_PROFILE=random $(BIN)/python -m pytest -n 2 -q tests

lint: setup
	$(BIN)/ruff check src tests experiments docs

# The docs extra is installed once, on top of the set-up environment.
$(VENV)/.docs-ready: $(VENV)/.ready
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

docs: $(VENV)/.docs-ready
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

figures: setup
	OMP_NUM_THREADS=1 $(BIN)/python experiments/figures.py
