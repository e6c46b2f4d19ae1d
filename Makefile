.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
# HF_HUB_OFFLINE is not exported to every target: scripts/run.sh defaults it to 1 after reading .env
# (so .env can set 0), scripts/test.sh forces 1, the worker's model loaders default it to 1, and the
# benchmarks get 1 below unless the environment sets it.
export PYANNOTE_METRICS_ENABLED := 0

.PHONY: help install run test test-fast test-docker lint bench bench-gpu up

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## Install system packages, the venv (gateway + worker + dev) and the offline models
	scripts/install.sh

run: ## Run Redis (if none), the gateway on :8000 and one worker, in the foreground
	scripts/run.sh

test: install ## Every test: tests/unit, tests/integration and tests/e2e (real processes)
	scripts/test.sh

test-fast: install ## tests/unit and tests/integration (real Redis and models in process; no e2e)
	scripts/test.sh tests/unit tests/integration

test-docker: install ## Build both images with a real Docker engine (own dockerd) and run them on real speech
	VENV=$(VENV) scripts/test_docker.sh

lint: ## ruff (lint + format check) and mypy --strict on src/ and the client package (clients/python)
	$(VENV)/bin/ruff check src tests bench clients
	$(VENV)/bin/ruff format --check src tests bench clients
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy clients/python/src

bench: export HF_HUB_OFFLINE ?= 1
bench: install ## Benchmarks; writes bench/results.json
	$(PY) bench/run.py

bench-gpu: ## GPU benchmark (1 h, every stage, in-process and service); writes bench/results-gpu.json
	$(PY) bench/gpu.py --out bench/results-gpu.json

up: ## Run the GPU stack with Docker Compose
	docker compose -f docker-compose.gpu.yml up --build
