"""The alarm catalogue: IDs, titles, severities and proposed actions (catalogue.yaml).

Alarms raised anywhere (controller services, the gateway on behalf of agents) must use an ID
from this catalogue; fm/alarming.py checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
SEVERITIES = ("critical", "major", "minor", "warning")

HOST_OFFLINE = "200.004"
HOST_APPLY_FAILED = "200.011"
HOST_DRIVER_UNAVAILABLE = "200.012"
HOST_DISK_FULL = "200.013"
MULTI_HOST_LOSS = "200.020"
HOST_FENCED = "200.040"
HOST_CERT_EXPIRING = "200.030"
HOST_CERT_RENEWAL_FAILED = "200.031"
HOST_INVALID_MESSAGE = "200.032"
VNF_FAILED = "700.001"
VNF_BINDING_MISMATCH = "700.002"
VNF_UNSCHEDULABLE = "700.003"
VNF_NOT_RECOVERED = "700.004"
SITE_OFFLINE = "900.001"  # raised by central (central/sites.py)


@dataclass(frozen=True)
class AlarmType:
    alarm_id: str
    title: str
    severity: str
    proposed_action: str


@cache
def catalogue() -> dict[str, AlarmType]:
    """Every alarm type by ID, loaded once."""
    raw = yaml.safe_load(CATALOGUE_FILE.read_text())
    types = {
        str(alarm_id): AlarmType(str(alarm_id), e["title"], e["severity"], e["proposed_action"])
        for alarm_id, e in raw.items()
    }
    for t in types.values():
        if t.severity not in SEVERITIES:
            raise ValueError(f"alarm {t.alarm_id}: unknown severity {t.severity!r}")
    return types


def alarm_type(alarm_id: str) -> AlarmType:
    """The catalogue entry for an ID; KeyError for an ID not in the catalogue."""
    return catalogue()[alarm_id]
