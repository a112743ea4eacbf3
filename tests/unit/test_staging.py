"""agent/staging.py without a controller: the command that runs a release, which releases
are staged and selected, and what a wheel requires that the node lacks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgecloud import __version__, staging
from edgecloud.errors import DriverError


def _stage_by_hand(state: Path, release: str) -> Path:
    folder = staging.staged_dir(state, release)
    folder.mkdir(parents=True)
    (folder / staging.MANIFEST).write_text(json.dumps({"release": release}))
    return folder


def test_the_command_runs_the_same_arguments_at_the_release_without_the_join_token(
    tmp_path: Path,
) -> None:
    folder = _stage_by_hand(tmp_path, "0.2.1")
    old = str(staging.staged_dir(tmp_path, "0.2.0"))
    argv = ["agent", "--state-dir", str(tmp_path), "--join", "T0KEN", "--join=T1", "-v"]
    environ = {"PYTHONPATH": os.pathsep.join([old, "/opt/site"]), "HOME": "/root"}
    command, env = staging.exec_command(tmp_path, "0.2.1", argv, environ)
    assert command == [
        sys.executable,
        "-m",
        "edgecloud",
        "agent",
        "--state-dir",
        str(tmp_path),
        "-v",
    ]
    # the release first, an earlier release's folder gone, the rest kept
    assert env["PYTHONPATH"] == os.pathsep.join([str(folder.resolve()), "/opt/site"])
    assert env["HOME"] == "/root" and env[staging.GUARD] == "0.2.1"
    _, installed = staging.exec_command(tmp_path, None, argv, environ)
    assert installed["PYTHONPATH"] == "/opt/site"
    _, bare = staging.exec_command(tmp_path, None, argv, {"PYTHONPATH": str(folder)})
    assert "PYTHONPATH" not in bare


def test_only_a_staged_release_is_selected(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match=r"0\.3\.0 is not staged"):
        staging.select(tmp_path, "0.3.0")
    _stage_by_hand(tmp_path, "0.3.0")
    (staging.releases_dir(tmp_path) / ".0.4.0.partial").mkdir()  # an unpack cut short
    assert staging.staged(tmp_path) == ["0.3.0"]
    staging.select(tmp_path, "0.3.0")
    assert staging.selected(tmp_path) == "0.3.0"
    staging.select(tmp_path, None)
    assert staging.selected(tmp_path) is None


def test_a_selected_release_that_does_not_start_as_itself_does_not_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stage_by_hand(tmp_path, "9.9.9")
    staging.select(tmp_path, "9.9.9")
    monkeypatch.setenv(staging.GUARD, "9.9.9")  # this process is the re-exec already
    execs: list[object] = []
    monkeypatch.setattr(os, "execve", lambda *a: execs.append(a))
    staging.reexec_if_needed(tmp_path, ["agent"])
    assert execs == [] and __version__ != "9.9.9"
    monkeypatch.delenv(staging.GUARD)
    staging.reexec_if_needed(tmp_path, ["agent"])
    assert len(execs) == 1


def test_requirements_the_node_lacks_are_named() -> None:
    metadata = (
        "Name: edgecloud\nVersion: 0.3.0\n"
        "Requires-Dist: click>=1\n"
        "Requires-Dist: no-such-distribution-here>=1\n"
        "Requires-Dist: click>=999\n"
        'Requires-Dist: pytest-nothing; extra == "dev"\n'
    )
    missing = staging._missing_requirements(metadata)
    assert missing[0] == "no-such-distribution-here>=1"
    assert missing[1].startswith("click>=999 (has ")
    assert len(missing) == 2
