"""Fixtures of the integration tests that run ``edgecloud`` processes."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.release_processes import Processes


@pytest.fixture
def processes() -> Iterator[Processes]:
    """A folder of the test's own for its processes and their logs; every process stopped
    and the folder removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="edgecloud-compat-"))
    running = Processes(root)
    try:
        yield running
    finally:
        running.stop_all()
        shutil.rmtree(root, ignore_errors=True)
