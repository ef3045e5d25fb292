# Targets for working on the waiting room. `make help` lists them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install install-test run test test-unit test-integration test-e2e lint typecheck bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python ## install the service into .venv
	$(BIN)/pip install -q -e .

install-test: $(BIN)/python ## install the service, test tools, a browser and the JavaScript test clients
	$(BIN)/pip install -q -e '.[test]'
	bash scripts/install-test-deps.sh

run: install ## install and run on the embedded default (SQLite, no Redis), with a demo event
	$(BIN)/idp serve --demo

test: install-test ## install everything and run the whole test suite (three processes, a file each at a time)
	$(BIN)/python -m pytest -n 3 --dist loadfile $(PYTEST_ARGS)

test-unit: ## unit tests only (no services, no test extras needed beyond pytest)
	$(BIN)/python -m pytest tests/unit -m unit $(PYTEST_ARGS)

test-integration: ## integration tests (real Redis, PostgreSQL, SQLite)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

test-e2e: ## end-to-end tests (gunicorn, Chromium, real OIDC clients)
	$(BIN)/python -m pytest -m e2e $(PYTEST_ARGS)

lint: ## ruff check and ruff format --check (also run by the suite: tests/unit/test_code_quality.py)
	$(BIN)/ruff check idp tests bench migrations wsgi.py gunicorn.conf.py
	$(BIN)/ruff format --check idp tests bench migrations wsgi.py gunicorn.conf.py

typecheck: ## mypy --strict over every module of idp/ (the settings are in pyproject.toml)
	$(BIN)/mypy

bench: install-test ## run the benchmarks (see bench/README.md)
	$(BIN)/python bench/run_all.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
