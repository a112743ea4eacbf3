# edgecloud developer entry points; CI runs `make test` (see .ci/run).
VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin

.PHONY: setup host demo test check unit integration e2e clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

host: setup                ## install and start libvirt/QEMU/OVS (root), libvirt-python into the venv
	scripts/bootstrap-host --venv $(VENV)

demo: host                 ## an all-in-one site with a sample vCPE on real VMs, shown, then stopped
	scripts/demo

test: host                 ## everything: unit, integration (real TLS), e2e (real QEMU/OVS)
	scripts/bootstrap-postgres
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit tests/drivers

integration: setup
	$(BIN)/pytest tests/integration

e2e: host
	$(BIN)/pytest tests/e2e

scenarios: host            ## the long real-VM scenarios (minutes each; not part of make test)
	scripts/bootstrap-postgres
	$(BIN)/pytest -m scenario tests/e2e tests/integration

check: setup               ## lint, format, types, layering
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .state
