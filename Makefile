# avatarjobs: `make test` sets up everything it needs (Python 3.13 virtual environments) and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

# Python 3.13, as in the Lambda runtime: python3.13 on PATH, else pyenv's 3.13.x. Override with PYTHON313=...
PYTHON313 ?= $(shell for candidate in python3.13 "$$(PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null)"; do \
	"$$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)' 2>/dev/null && break; \
	done)
VENV := .venv
SAM_VENV := .venv-sam
CODEGEN_VENV := .venv-codegen
PY := $(VENV)/bin/python
SAM_ENV := PATH="$(dir $(PYTHON313)):$$PATH" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

.PHONY: help test lint format validate build unit e2e openapi demo up bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is required and was not found. Install it (e.g. 'pyenv install 3.13.0')" \
		"or run make with PYTHON313=/path/to/python3.13." >&2; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is required and was not found." >&2; exit 1; }
	$(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt
	touch $@

$(CODEGEN_VENV)/.installed: requirements-codegen.txt
	@test -n "$(PYTHON313)" || { echo "Python 3.13 is required and was not found." >&2; exit 1; }
	$(PYTHON313) -m venv $(CODEGEN_VENV)
	$(CODEGEN_VENV)/bin/pip install --quiet --upgrade pip
	$(CODEGEN_VENV)/bin/pip install --quiet -r requirements-codegen.txt
	touch $@

test: lint validate build unit e2e ## every check: ruff, mypy, sam validate --lint, cfn-lint, sam build, pytest unit and e2e

lint: $(VENV)/.installed ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common/avatarjobs functions devstack client bench tests

format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

validate: $(SAM_VENV)/.installed ## sam validate --lint and cfn-lint with the serverless rules
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint
	$(SAM_VENV)/bin/cfn-lint template.yaml -a cfn_lint_serverless.rules

build: $(SAM_VENV)/.installed ## sam build (arm64 wheels from PyPI; no Docker, no AWS account)
	$(SAM_ENV) $(SAM_VENV)/bin/sam build

unit: $(VENV)/.installed $(SAM_VENV)/.installed ## pytest tests/unit in 2 processes (test_iam.py runs .venv-sam's SAM translator)
	$(PY) -m pytest -n 2 tests/unit

e2e: $(VENV)/.installed $(CODEGEN_VENV)/.installed ## pytest tests/e2e: the local stack over HTTP, and a client generated from docs/openapi.json
	$(PY) -m pytest tests/e2e

demo: $(VENV)/.installed ## the whole pipeline locally: two jobs end to end, MP4s into ./out/, notifications shown
	PYTHONPATH=layers/common:. $(PY) -m devstack.demo

up: $(VENV)/.installed ## keep the local stack running (prints the API URL and key; Ctrl-C stops it)
	PYTHONPATH=layers/common:. $(PY) -m devstack up

bench: $(VENV)/.installed ## benchmarks; results in docs/benchmarks.md
	PYTHONPATH=layers/common:. $(PY) -m bench.run

openapi: $(VENV)/.installed ## regenerate docs/openapi.json from the API resolver
	PYTHONPATH=layers/common:. $(PY) -m tests.openapi_document > docs/openapi.json

clean: ## remove the virtual environments and build output
	rm -rf $(VENV) $(SAM_VENV) $(CODEGEN_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache
