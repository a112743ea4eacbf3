"""tests/releases.py: a release's environment is built once and then cached; parallel callers
build it once; a failed or killed build never leaves something that looks finished, and the
next call builds it again (with a fake builder: no git, no pip)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests import releases

COMMIT = "0" * 40


class FakeBuilder:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, commit: str, venv: Path) -> None:
        with self._lock:
            self.calls += 1
        assert list(venv.iterdir()) == []  # an empty folder of its own
        time.sleep(self.delay)
        (venv / "bin").mkdir()
        (venv / "bin" / "python").write_text(commit)


def _entries(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if not p.name.endswith(".lock")}


def test_built_once_then_cached(tmp_path: Path) -> None:
    builder = FakeBuilder()
    first = releases.built(COMMIT, cache=tmp_path, builder=builder)
    again = releases.built(COMMIT, cache=tmp_path, builder=builder)
    assert builder.calls == 1
    assert first == again == tmp_path / f"{COMMIT}-{releases.PYTHON_TAG}"
    assert first.is_symlink() and (first / "bin" / "python").read_text() == COMMIT
    assert _entries(tmp_path) == {first.name, os.readlink(first)}  # the link and its folder


def test_parallel_callers_build_once(tmp_path: Path) -> None:
    builder = FakeBuilder(delay=0.2)
    results: list[Path] = []

    def call() -> None:
        results.append(releases.built(COMMIT, cache=tmp_path, builder=builder))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert builder.calls == 1
    assert len(set(results)) == 1 and len(results) == 4


def test_a_failed_build_leaves_nothing_and_is_built_again(tmp_path: Path) -> None:
    def failing(commit: str, venv: Path) -> None:
        (venv / "half").write_text("pip died here")
        raise subprocess.CalledProcessError(1, ["pip"])

    with pytest.raises(subprocess.CalledProcessError):
        releases.built(COMMIT, cache=tmp_path, builder=failing)
    assert _entries(tmp_path) == set()
    builder = FakeBuilder()
    assert releases.built(COMMIT, cache=tmp_path, builder=builder).is_dir()
    assert builder.calls == 1


_KILLED_BUILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from tests import releases

def hangs(commit, venv):
    (venv / "bin").mkdir()
    (venv / "bin" / "python").write_text("half")
    Path(sys.argv[3]).touch()
    time.sleep(60)

releases.built(sys.argv[4], cache=Path(sys.argv[1]), builder=hangs)
"""


def test_a_killed_build_does_not_look_finished_and_is_cleaned_up(tmp_path: Path) -> None:
    cache, started = tmp_path / "cache", tmp_path / "started"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_BUILD,
            str(cache),
            str(releases.REPOSITORY),
            str(started),
            COMMIT,
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while not started.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    final = cache / f"{COMMIT}-{releases.PYTHON_TAG}"
    assert not final.exists() and len(_entries(cache)) == 1  # only the half-built folder
    builder = FakeBuilder()
    venv = releases.built(COMMIT, cache=cache, builder=builder)
    assert builder.calls == 1 and (venv / "bin" / "python").read_text() == COMMIT
    assert _entries(cache) == {final.name, os.readlink(final)}  # the half one is gone


def test_a_link_whose_folder_went_away_is_built_again(tmp_path: Path) -> None:
    venv = releases.built(COMMIT, cache=tmp_path, builder=FakeBuilder())
    target = tmp_path / os.readlink(venv)
    for path in sorted(target.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    target.rmdir()
    builder = FakeBuilder()
    assert releases.built(COMMIT, cache=tmp_path, builder=builder) == venv
    assert builder.calls == 1 and venv.is_dir()
