"""Earlier releases of edgecloud, built from this repository's history, for compatibility tests.

Issue 12: a controller at release N serves agents at N-1, and an agent at N works with a
controller at N-1. ``PREVIOUS_RELEASE`` names release N-1 as a fixed commit of this repository
(so a fresh ``git clone`` has it); ``built(commit)`` gives a virtual environment holding that
commit's edgecloud, installed as a user would install it (``pip install`` of the tree, not
editable, with its own dependencies from PyPI), so the old code runs in its own processes next to
this checkout's (tests/integration/test_release_compatibility.py).

The environment lives under ~/.cache/edgecloud/releases (``EDGECLOUD_RELEASE_CACHE`` moves it),
built once and reused by every later run:

- ``<commit>-py3.11`` is a symbolic link to the finished environment, put in place with one
  ``rename`` after the build succeeded; nothing else ever looks finished, so a build killed
  half way leaves only a ``.<commit>-py3.11.*`` folder that the next build removes;
- the build runs under an exclusive ``flock`` on ``<commit>-py3.11.lock``: tests running in
  parallel (or two checkouts) build it once, the others wait and then use it;
- the environment is not moved after it is built (a virtual environment's scripts name their
  own folder), hence the link rather than renaming the folder itself.

Measured on the 2-core development host (2026-12-02, shared with other work, pip's wheel cache
warm from `make setup`): building release 0.1.0 (7a38c9e) took 44-62 s wall (32 s CPU) and the
environment holds 311 MB; a cached call returns at once (one ``stat``). On a fresh CI runner
pip downloads the wheels as well (not measured here).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Earlier:
    """An earlier release: the commit of this repository that was it, and its version."""

    commit: str
    name: str


# release 0.2.0 (agent protocol 2, the upgrade procedure): main as it landed at stop 23, the
# last commit before 0.3.0; release N-1 of this checkout, the one sites upgrade from
PREVIOUS_RELEASE = Earlier("8900f13ae889ff29fc1c8542c96fc7aeecddfa87", "0.2.0")
# release 0.1.0 (agent protocol 1): the last commit before releases existed; the oldest
# protocol this checkout still speaks (protocol/messages.py ``OLDEST_VERSION``)
FIRST_RELEASE = Earlier("7a38c9e6f78ab92d651592121eca0b8682606fdb", "0.1.0")

REPOSITORY = Path(__file__).resolve().parents[1]
PYTHON_TAG = f"py{sys.version_info.major}.{sys.version_info.minor}"

Builder = Callable[[str, Path], None]  # (commit, empty folder to build the environment in)


def cache_dir() -> Path:
    configured = os.environ.get("EDGECLOUD_RELEASE_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "edgecloud" / "releases"


def built(
    commit: str,
    *,
    cache: Path | None = None,
    builder: Builder | None = None,
    extras: tuple[str, ...] = (),
) -> Path:
    """A virtual environment with ``commit``'s edgecloud installed (its ``bin/python`` runs
    ``-m edgecloud``), with its optional dependencies ``extras`` (``("libvirt",)`` for real
    nodes), built by ``builder`` (default: from this repository with pip) on first use and
    cached under ``cache``; safe against parallel callers and killed builds."""
    cache = cache_dir() if cache is None else cache
    name = f"{commit}-{PYTHON_TAG}" + "".join(f"+{extra}" for extra in extras)
    if builder is None:
        builder = functools.partial(build_with_pip, extras=extras)
    final = cache / name
    if final.is_dir():  # the link exists only once a build finished
        return final
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / f"{name}.lock"):
        if final.is_dir():  # another caller built it while we waited
            return final
        _remove_leftovers(cache, name)
        building = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=cache))
        try:
            builder(commit, building)
            link = cache / f".{name}.link"
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(building.name)  # relative: the cache folder may move
            os.replace(link, final)  # atomic: now, and only now, it looks finished
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return final


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftovers(cache: Path, name: str) -> None:
    """What a killed build left: its half-built folder, a dangling link (under the lock, so
    no build is running)."""
    final = cache / name
    if final.is_symlink() and not final.exists():
        final.unlink()
    for leftover in cache.glob(f".{name}.*"):
        if leftover.is_symlink() or leftover.is_file():
            leftover.unlink()
        else:
            shutil.rmtree(leftover, ignore_errors=True)


def build_with_pip(commit: str, venv: Path, extras: tuple[str, ...] = ()) -> None:
    """``git archive`` of ``commit`` from this repository, ``python -m venv`` in ``venv``,
    ``pip install`` of the tree with ``extras`` (not editable: the tree is removed after)."""
    with tempfile.TemporaryDirectory(prefix="edgecloud-release-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        archive = Path(tmp) / "source.tar"
        with archive.open("wb") as out:
            subprocess.run(
                ["git", "-C", str(REPOSITORY), "archive", "--format=tar", commit],
                stdout=out,
                check=True,
            )
        with tarfile.open(archive) as tar:
            tar.extractall(source, filter="data")
        subprocess.run([_base_python(), "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "-q",
                _with_extras(str(source), extras),
            ],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )


def _with_extras(requirement: str, extras: tuple[str, ...]) -> str:
    return f"{requirement}[{','.join(extras)}]" if extras else requirement


def _base_python() -> str:
    """The interpreter this test venv was made from (a venv made from a venv's python works
    too, but names the outer venv's folder as its home)."""
    return str(getattr(sys, "_base_executable", sys.executable))


def python(venv: Path) -> Path:
    return venv / "bin" / "python"
