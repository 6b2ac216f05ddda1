# Two commands on a fresh machine (Python >= 3.11 and make): `make demo`, `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup demo dev test unit lint format bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)  ## create .venv and install the project with its dev tools

demo: setup  ## run the main job on the embedded default (200 sandbox jobs)
	$(BIN)/orchestrator demo --jobs 200

dev: setup  ## the whole stack on a laptop, until Ctrl-C
	$(BIN)/orchestrator dev

lint: setup lint-deploy  ## ruff, mypy (strict on domain and services) and the deploy files
	$(BIN)/ruff check orchestrator workers tests
	$(BIN)/mypy orchestrator workers

# No container engine runs here, so the deploy files are checked by tools that parse them:
# the compose file against the Compose Specification's schema, the manifests against
# Kubernetes 1.30's schemas (strict: unknown fields fail), and the Procfile's process types.
PROCFILE_TYPES = beat flower web worker
.PHONY: lint-deploy
lint-deploy: setup  ## validate the Procfile, deploy/docker-compose.yml and deploy/k8s
	@types="$$(sed -nE 's/^([A-Za-z0-9_-]+):.*/\1/p' Procfile | sort | tr '\n' ' ' | sed 's/ $$//')"; \
	  test "$$types" = "$(PROCFILE_TYPES)" || \
	  { echo "Procfile: process types are '$$types'; expected exactly '$(PROCFILE_TYPES)'"; exit 1; }
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/docker-compose.yml
	$(BIN)/kubernetes-validate --strict --kubernetes-version 1.30.0 --quiet deploy/k8s/*.yaml

test: setup lint  ## lint, then the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: setup  ## the fast tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: setup  ## the short version of every benchmark scenario (docs/benchmarks.md)
	$(BIN)/orchestrator bench all --quick

format: setup
	$(BIN)/ruff check --fix orchestrator workers tests
	$(BIN)/ruff format orchestrator workers tests

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache
