"""edgecloud/files.py: private folders (0700, also when they existed wider), atomic private
writes (0600 whatever the umask or the old file's mode; the old content survives a failed
write), and tolerant reads (missing, empty or garbage -> None, logged)."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgecloud import files


@pytest.fixture
def wide_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_is_0700_when_new_and_when_it_existed_wider(
    tmp_path: Path, wide_umask: None
) -> None:
    new = files.private_dir(tmp_path / "a" / "state")
    assert _mode(new) == 0o700
    old = tmp_path / "old"
    old.mkdir(mode=0o755)
    os.chmod(old, 0o755)
    files.private_dir(old)
    assert _mode(old) == 0o700


def test_write_atomic_makes_an_existing_wide_file_0600(tmp_path: Path, wide_umask: None) -> None:
    path = tmp_path / "admin-token"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    files.write_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert _mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin-token"]  # no temporary left


def test_write_atomic_gives_the_mode_asked_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.write_atomic(tmp_path / "ca.crt", b"cert", files.PUBLIC_FILE)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "ca.crt") == 0o644


def test_a_failed_write_leaves_the_old_content_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "desired.json"
    files.write_atomic(path, '{"v": 1}')

    def no_room(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_room)
    with pytest.raises(OSError):
        files.write_atomic(path, '{"v": 2}')
    assert path.read_text() == '{"v": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["desired.json"]


def test_restrict_and_create_private(tmp_path: Path, wide_umask: None) -> None:
    db = tmp_path / "edgecloud.db"
    files.create_private(db)
    assert db.exists() and db.stat().st_size == 0 and _mode(db) == 0o600
    db.write_bytes(b"SQLite format 3\x00")
    os.chmod(db, 0o644)
    files.create_private(db)  # an existing database keeps its bytes, loses its wide mode
    assert db.read_bytes() == b"SQLite format 3\x00" and _mode(db) == 0o600
    files.restrict(tmp_path / "missing")  # nothing to do, no error
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("content", "logged"), [(None, False), (b"", True), (b"  \n", True), (b'{"spec": [', True)]
)
def test_read_tolerant_treats_missing_empty_and_torn_files_as_absent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | None, logged: bool
) -> None:
    path = tmp_path / "desired.json"
    if content is not None:
        path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="edgecloud.files"):
        assert files.read_tolerant(path, json.loads, "the saved desired state") is None
    assert (str(path) in caplog.text) is logged


def test_read_tolerant_returns_what_parse_makes_of_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    files.write_atomic(path, '{"host": "n1"}')
    assert files.read_tolerant(path, json.loads, "x") == {"host": "n1"}
