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

lint: setup  ## ruff and mypy (strict on domain and services)
	$(BIN)/ruff check orchestrator workers tests
	$(BIN)/mypy orchestrator workers

test: setup lint  ## lint, then the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: setup  ## the fast tests only
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

format: setup
	$(BIN)/ruff check --fix orchestrator workers tests
	$(BIN)/ruff format orchestrator workers tests

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache .mypy_cache .ruff_cache
