"""The agent's state on disk: its folder 0700 and key 0600 (also when they existed wider),
desired.json written whole (fsync + rename) and read tolerantly: a torn, empty or garbage
file is logged and treated as absent (the agent starts at version 0 and the controller sends
its snapshot again) instead of crashing the agent at every start."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from edgecloud.agent import identity
from edgecloud.agent.applying import Applier
from edgecloud.agent.image_cache import ImageCache
from edgecloud.drivers.compute.fake import FakeComputeDriver
from edgecloud.drivers.network.fake import FakeNetworkDriver
from edgecloud.errors import EnrollmentError
from edgecloud.protocol.desired import read


class _NoFetch:
    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        raise AssertionError("no image is fetched here")


def _applier(state: Path) -> Applier:
    return Applier(
        FakeComputeDriver(), FakeNetworkDriver(), state, ImageCache(state / "images", _NoFetch())
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"spec": {"version": 3, "instan',
        b"\x00\x00\x00\x00",
        b'["not", "a", "state"]',
        b'{"spec": {"version": 3, "instances": [{"id": 1}]}, "applied_version": 3}',
    ],
    ids=["empty", "torn", "zeros", "wrong-shape", "bad-spec"],
)
def test_a_bad_desired_state_file_is_logged_and_treated_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    (tmp_path / "desired.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        applier = _applier(tmp_path)
    assert applier.applied_version == 0
    assert applier.spec.instances == ()
    assert "desired.json" in caplog.text


def test_the_desired_state_is_saved_whole_and_private_and_read_back(tmp_path: Path) -> None:
    applier = _applier(tmp_path)
    applier.spec = read({"version": 7, "instances": [], "networks": []})
    applier.applied_version = 7
    applier._save()
    path = tmp_path / "desired.json"
    assert _mode(path) == 0o600
    saved = json.loads(path.read_text())
    assert saved["applied_version"] == 7
    assert saved["spec"] == {"version": 7, "host": "", "networks": [], "instances": []}  # wire
    again = _applier(tmp_path)
    assert again.applied_version == 7 and again.spec == applier.spec
    assert [p.name for p in tmp_path.iterdir()] == ["desired.json"]  # no temporary left


def test_identity_files_are_private_also_when_they_existed_wider(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "host.key").write_bytes(b"old key")
    os.chmod(state / "host.key", 0o644)
    saved = identity.save(state, "n1", "127.0.0.1:7444", b"ca", b"cert", b"key")
    assert _mode(state) == 0o700
    assert _mode(saved.key) == 0o600 and saved.key.read_bytes() == b"key"
    assert identity.load(state) == saved
    os.chmod(state, 0o755)  # left wider by an older version: loading narrows it again
    os.chmod(saved.key, 0o644)
    identity.load(state)
    assert (_mode(state), _mode(saved.key)) == (0o700, 0o600)


@pytest.mark.parametrize("content", [b"", b'{"host": "n1"', b'{"host": 1}'])
def test_a_torn_enrollment_record_reads_as_not_enrolled(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "agent.json").write_bytes(content)
    with pytest.raises(EnrollmentError, match="not enrolled"):
        identity.load(tmp_path)
