"""Shared fixtures for the template engine tests: a realistic vCPE HOT template (vcpe.yaml)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecloud.templates import Template, load_template, resolve_parameters

VCPE_PATH = Path(__file__).with_name("vcpe.yaml")


@pytest.fixture
def vcpe_text() -> str:
    return VCPE_PATH.read_text()


@pytest.fixture
def vcpe_values() -> dict[str, object]:
    return {"customer": "acme", "customer_vlan": "101"}


@pytest.fixture
def vcpe(vcpe_text: str) -> Template:
    return load_template(vcpe_text, "vcpe.yaml")


@pytest.fixture
def vcpe_params(vcpe: Template, vcpe_values: dict[str, object]) -> dict[str, object]:
    return resolve_parameters(vcpe, vcpe_values)
