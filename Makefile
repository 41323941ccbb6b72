# Everything a newcomer needs: `make demo`, `make test`, `make ui`.
# Settings come from .env when present (plain KEY=value lines), else the demo defaults below.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR := $(CURDIR)/.demo
UI_PORT ?= 3000

-include .env
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PERSONA_DATA_ROOT ?= $(DEMO_DIR)/data
export PERSONA_ARTIFACT_ROOT ?= $(DEMO_DIR)/artifacts
export PERSONA_MODEL ?= $(DEMO_DIR)/models/demo-qwen3-tiny
export PERSONA_CONCEPTS_ROOT ?= $(DEMO_DIR)/concepts
export PERSONA_SAE_CONFIG ?= $(DEMO_DIR)/saes/saes.json
export PERSONA_SCENARIOS_ROOT ?= $(DEMO_DIR)/scenarios
export PERSONA_JUDGE_BACKEND ?= local
export PERSONA_JUDGE_LOCAL_MODEL ?= $(DEMO_DIR)/models/demo-judge
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test ui bench sync-partitions backfill-roles clean dagster-home

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@# On a machine without an NVIDIA GPU, prefer a CPU torch wheel that pip's find-links
	@# already hold over downloading the multi-GB CUDA build (a GPU machine gets CUDA).
	@if ! $(PY) -c "import torch" 2>/dev/null && ! command -v nvidia-smi >/dev/null 2>&1; then \
	  wheel=$$(ls $${PIP_FIND_LINKS:-/nonexistent}/torch-2.*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1); \
	  if [ -n "$$wheel" ]; then echo "installing local CPU torch: $$wheel"; $(PIP) install --quiet --no-compile "$$wheel"; fi; \
	fi
	@# --no-compile: Python compiles the modules actually imported on first use; compiling
	@# every file of torch and transformers up front costs most of a minute on 2 cores.
	$(PIP) install --quiet --no-compile -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dagster-home:
	@mkdir -p "$(DAGSTER_HOME)"
	@test -e "$(DAGSTER_HOME)/dagster.yaml" || ln -s "$(CURDIR)/dagster.yaml" "$(DAGSTER_HOME)/dagster.yaml"

demo: install dagster-home
	$(VENV)/bin/steering-assets demo --workspace "$(DEMO_DIR)"

test: install
	$(PY) -m pytest -q

ui: install dagster-home
	$(VENV)/bin/dagster instance concurrency set gpu 1 >/dev/null
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

bench: install
	$(PY) benchmarks/persona_budget.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/batched_training.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/prefix_features.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/judge_throughput.py

sync-partitions: install dagster-home
	$(VENV)/bin/steering-assets sync-partitions

backfill-roles: install dagster-home
	$(VENV)/bin/steering-assets backfill roles

clean:
	rm -rf "$(DEMO_DIR)" "$(CURDIR)/.dagster_home" .pytest_cache
