# Shelf Audit Pipeline: every entry point a person or CI needs.
# `make help` lists the targets. The environment is built from the hashed
# lock on first use and rebuilt only when the lock or pyproject changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
PY        := $(VENV)/bin/python
UV        := $(VENV)/bin/uv
STAMP     := $(VENV)/.installed
LOCK      := requirements.lock
# MediaPipe Tasks (the `mediapipe` test tier) cannot share the main lock (protobuf 3 here, 4 there):
# its own environment from its own hashed lock, built on first use with .venv's uv.
MP_VENV   := .venv-mediapipe
MP_PY     := $(MP_VENV)/bin/python
MP_STAMP  := $(MP_VENV)/.installed
MP_LOCK   := requirements-mediapipe.lock
UV_VERSION := 0.13.9
DEMO_DATA := data/demo
DEMO_HOME := runs/demo

export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: help env lock run test test-services test-fast lint bench demo-data wheel image push-image base-image \
  compile clean env-mediapipe .venv-mediapipe lock-mediapipe

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-13s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): $(LOCK) pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
	  PY310="$$(scripts/find_python310.sh)"; \
	  echo ">> creating $(VENV) with $$PY310"; \
	  rm -rf $(VENV); "$$PY310" -m venv $(VENV); \
	fi; \
	for tool in gcc g++; do \
	  command -v $$tool >/dev/null 2>&1 || { echo "error: no $$tool on PATH: pyfarmhash (needed by TensorFlow Transform)" \
	    "has no wheel and is built from source with a C++ compiler. Install one, e.g. apt-get install g++" >&2; exit 1; }; \
	done; \
	start=$$(date +%s); \
	$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"; \
	echo ">> syncing $(VENV) with $(LOCK)"; \
	VIRTUAL_ENV=$(VENV) $(UV) pip sync --quiet --require-hashes --compile-bytecode $(LOCK); \
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .; \
	$(PY) -m shelf_audit.preflight; \
	touch $(STAMP); \
	echo ">> environment ready in $$(( $$(date +%s) - start ))s"

env: $(STAMP) ## Create or refresh .venv from the lock (only when stale)

lock: ## Recompile requirements.lock from pyproject.toml (Python 3.10, x86_64 Linux)
	@[ -x $(UV) ] || { PY310="$$(scripts/find_python310.sh)"; "$$PY310" -m venv $(VENV); $(PY) -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.10 \
	  --python-platform x86_64-unknown-linux-gnu --generate-hashes \
	  --no-emit-package shelf-audit --custom-compile-command "make lock" -o $(LOCK)

$(MP_STAMP): $(MP_LOCK) | $(STAMP)
	@set -e; \
	if [ ! -x $(MP_PY) ] || ! $(MP_PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then \
	  PY310="$$(scripts/find_python310.sh)"; \
	  echo ">> creating $(MP_VENV) with $$PY310"; \
	  rm -rf $(MP_VENV); "$$PY310" -m venv --without-pip $(MP_VENV); \
	fi; \
	start=$$(date +%s); \
	echo ">> syncing $(MP_VENV) with $(MP_LOCK)"; \
	VIRTUAL_ENV=$(MP_VENV) $(UV) pip sync --quiet --require-hashes --compile-bytecode $(MP_LOCK); \
	touch $(MP_STAMP); \
	echo ">> $(MP_VENV) ready in $$(( $$(date +%s) - start ))s"

env-mediapipe: $(MP_STAMP) ## Create or refresh .venv-mediapipe (MediaPipe Tasks, for the mediapipe tier) from its lock

.venv-mediapipe: $(MP_STAMP)

lock-mediapipe: ## Recompile requirements-mediapipe.lock from requirements-mediapipe.in (Python 3.10, x86_64 Linux)
	@[ -x $(UV) ] || { PY310="$$(scripts/find_python310.sh)"; "$$PY310" -m venv $(VENV); $(PY) -m pip install --quiet "uv==$(UV_VERSION)"; }
	$(UV) pip compile requirements-mediapipe.in --python-version 3.10 \
	  --python-platform x86_64-unknown-linux-gnu --generate-hashes --no-emit-package opencv-contrib-python \
	  --custom-compile-command "make lock-mediapipe" -o $(MP_LOCK)

demo-data: $(STAMP) ## Make the synthetic demo photos if missing
	@if ls $(DEMO_DATA)/span-*/*.tfrecord.gz >/dev/null 2>&1; then \
	  echo ">> demo data present in $(DEMO_DATA)"; \
	else \
	  $(VENV)/bin/shelf-audit synth --out $(DEMO_DATA) --span 1 --count 6000 --seed 7; \
	fi

run: demo-data ## Run the whole pipeline locally on the demo data
	$(VENV)/bin/shelf-audit run --config configs/demo.toml --data $(DEMO_DATA) --home $(DEMO_HOME)

# Both cores: test modules are spread over two workers, a module's tests stay on one
# (module-scoped fixtures such as the tiny pipeline runs are built once).
PYTEST := $(VENV)/bin/python -m pytest -n 2 --dist loadscope

test: test-services $(STAMP) $(MP_STAMP) ## Set up the test services (scripts/test_services.sh: as root, installs chromium, fonts-dejavu-core, mariadb-server and docker.io when missing and starts MariaDB with its test user and dockerd; without root, names the packages and stops), lint (ruff check, ruff format --check, mypy), then every test tier (unit, component, stores, e2e, kfp, mysql, notebook, browser, mediapipe, image), as CI runs them
	$(MAKE) --no-print-directory lint
	$(PYTEST)

test-services: ## Only the test services of `make test` (Chromium; MariaDB and its test user; the Docker engine), idempotent: seconds when set up
	@scripts/test_services.sh

test-fast: $(STAMP) ## Lint and the quick tiers only (skips e2e, kfp, mysql, notebook, browser, mediapipe, image), for iteration
	$(MAKE) --no-print-directory lint
	$(PYTEST) -m "not e2e and not kfp and not mysql and not notebook and not browser and not mediapipe and not image"

lint: $(STAMP) ## Lint (ruff check), check the formatting (ruff format --check) and the types (mypy, the packages pyproject.toml lists)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: demo-data ## Run the benchmarks (demo pipeline, scaling to 54,000 photos, Trainer trials, TFLite, synth, re-run; about 1 h 15 min on 2 cores); figures go to benchmarks/results.md
	$(VENV)/bin/python -m benchmarks.run --out benchmarks/results.md

wheel: $(STAMP) ## Build the project wheel into dist/ (what the image installs)
	rm -rf dist build
	$(UV) build --wheel --quiet --out-dir dist . && rm -rf build  # setuptools' staging copy of the sources
	@ls dist/*.whl

# The image's base: any Debian 12 image with CPython 3.10 in /usr/local (the Dockerfile's default is
# python:3.10-slim-bookworm); `make base-image` builds BASE_IMAGE_TAG from Debian's mirrors alone.
BASE_IMAGE_TAG := shelf-audit-base:bookworm-py3.10
NEED_IMAGE = @[ -n "$(IMAGE)" ] || { echo "error: set IMAGE, e.g. make $@ IMAGE=europe-docker.pkg.dev/PROJECT/ml/shelf-audit:0.1.0" >&2; exit 2; }

image: wheel ## Build the Kubeflow/Dataflow image locally, never pushes: make image IMAGE=NAME [BASE_IMAGE=python:3.10-slim-bookworm] [BEAM_BOOT_IMAGE=apache/beam_python3.10_sdk:2.59.0]
	$(NEED_IMAGE)
	@UV_VERSION=$(UV_VERSION) BASE_IMAGE="$(BASE_IMAGE)" BEAM_BOOT_IMAGE="$(BEAM_BOOT_IMAGE)" scripts/build_image.sh "$(IMAGE)"

push-image: ## Push an image built by make image: make push-image IMAGE=NAME
	$(NEED_IMAGE)
	@command -v docker >/dev/null 2>&1 || { echo "error: docker is not installed (Debian: apt-get install docker.io)" >&2; exit 1; }
	@docker image inspect "$(IMAGE)" >/dev/null 2>&1 || { echo "error: no local image $(IMAGE) (or the Docker daemon does not answer): make image IMAGE=$(IMAGE) first" >&2; exit 1; }
	docker push "$(IMAGE)"

base-image: ## Build a Debian 12 + CPython 3.10 base image from Debian's mirrors alone (scripts/base_image.sh, as root; skipped when built), for make image BASE_IMAGE=<the tag it prints>
	@scripts/base_image.sh $(BASE_IMAGE_TAG)

compile: $(STAMP) ## Write the Kubeflow V2 spec: make compile PIPELINE_ROOT=gs://... [IMAGE=...] [CONFIG=...]
	@[ -n "$(PIPELINE_ROOT)" ] || { echo "error: set PIPELINE_ROOT, e.g. make compile PIPELINE_ROOT=gs://BUCKET/pipelines" >&2; exit 2; }
	$(VENV)/bin/shelf-audit compile --config $(or $(CONFIG),configs/production.toml) \
	  --pipeline-root $(PIPELINE_ROOT) --out pipeline.yaml $(if $(IMAGE),--image $(IMAGE))

clean: ## Remove run outputs (keeps .venv and demo data)
	rm -rf runs/ dist/ .pytest_cache
