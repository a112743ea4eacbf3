# edgecloud developer entry points; CI runs `make test` (see .ci/run).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: setup demo test check unit integration e2e clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

demo: setup                ## an all-in-one site with a sample vCPE on it, shown, then stopped
	scripts/demo

test: setup                ## everything: unit, integration (real TLS), e2e (real QEMU/OVS)
	scripts/bootstrap-postgres
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit tests/drivers

integration: setup
	$(BIN)/pytest tests/integration

check: setup               ## lint, format, types, layering
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .state
