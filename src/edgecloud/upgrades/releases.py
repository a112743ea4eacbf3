"""Releases and which of them work together.

A release is the package version, ``MAJOR.MINOR.PATCH`` (``edgecloud.__version__``); a
controller or agent older than 0.2.0 did not say its release and is 0.1.0. A release's
*train* is ``(MAJOR, MINOR)``: patch releases of one train differ only by fixes. A controller
of train N serves agents of trains N and N-1 (Nova's rule: computes one release behind keep
working while the site upgrades) and, while an upgrade is rolled back, N+1; so a site may only
upgrade to a train at most one ahead of its oldest agent. Pure functions.
"""

from __future__ import annotations

import re
from typing import NamedTuple

BEFORE_RELEASES = "0.1.0"  # what a controller or agent that says no release is
PATTERN = r"^(0|[1-9]\d{0,3})\.(0|[1-9]\d{0,3})\.(0|[1-9]\d{0,3})$"  # MAJOR.MINOR.PATCH
_FORM = re.compile(PATTERN)


class Release(NamedTuple):
    major: int
    minor: int
    patch: int

    @property
    def train(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse(text: str | None) -> Release:
    """``"0.2.0"`` -> Release(0, 2, 0); None (a process that said no release) -> 0.1.0;
    ValueError, saying the form, for anything else."""
    match = _FORM.match(BEFORE_RELEASES if text is None else text)
    if match is None:
        raise ValueError(f"release {text!r} is not of the form MAJOR.MINOR.PATCH, e.g. 0.2.0")
    return Release(*(int(part) for part in match.groups()))


def compatible(controller: Release, agent: Release) -> bool:
    """Whether a controller at ``controller`` and an agent at ``agent`` work together: the
    same train or neighbouring ones, either way round (a controller serves agents one train
    behind while a site upgrades, and agents one train ahead while an upgrade is rolled
    back, hosts first). A new major release serves only its own major."""
    return agent.major == controller.major and abs(agent.minor - controller.minor) <= 1
