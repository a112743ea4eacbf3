"""Software on a node or controller: staging a signed release next to the running one, and
choosing which one the process runs (issue 12). Used by the agent (agent/runner.py) and by
each controller (controller/self_upgrade.py) alike.

- ``Stager.stage(signed)``: check the manifest's signature against the site CA the process
  trusts (pki/software.py), fetch the wheel (an agent over its mTLS port, with the image
  fetcher: resumable, throttled by the controller; a controller from the site's image store),
  check its size and sha256 against
  the manifest, check that this node has what the release requires (its wheel's
  Requires-Dist, against the installed distributions), and unpack it into
  ``STATE/releases/RELEASE/`` (a pure-Python wheel is laid out to be put on ``sys.path`` as
  it is). All or nothing: a damaged or unsigned package, or a node that lacks a dependency,
  leaves no staged release. Staging again what is staged does nothing.
- ``select(state_dir, release)``: the release the agent runs from now on, written to
  ``STATE/releases/selected`` (None: the one installed with the node). It outlives the
  process: a crash, a host reboot or a supervisor's restart starts the installed code, which
  re-executes into the selected release at once (``reexec_if_needed``, before anything else).
- ``exec_command``: the command and environment that run ``edgecloud`` of a release: the same
  interpreter, ``python -m edgecloud`` with the same arguments (less a one-time ``--join``),
  the release's folder first on PYTHONPATH. Same PID (``os.execve``): a supervisor or systemd
  sees one process. VMs are the hypervisor's, not the agent's: they run on while it restarts
  and the new agent adopts them; a controller's agents reconnect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import zipfile
from collections.abc import Mapping, Sequence
from email.parser import HeaderParser
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement

from edgecloud import __version__, files
from edgecloud.errors import DriverError, Untrusted
from edgecloud.pki import software
from edgecloud.upgrades import releases

log = logging.getLogger(__name__)
RELEASES = "releases"
SELECTED = "selected"
MANIFEST = "manifest.json"  # in a staged release's folder: what was verified
GUARD = "EDGECLOUD_REEXEC"  # set across one re-exec, so that a bad release cannot loop


def releases_dir(state_dir: Path) -> Path:
    return state_dir / RELEASES


def staged_dir(state_dir: Path, release: str) -> Path:
    return releases_dir(state_dir) / str(releases.parse(release))


def staged(state_dir: Path) -> list[str]:
    """The releases staged on this node."""
    root = releases_dir(state_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())


class BlobSource(Protocol):
    async def fetch(self, sha256: str, size: int, partial: Path) -> None:
        """Fill ``partial`` with blob ``sha256`` (the agent's ImageFetcher, or a controller's
        copy from its image store)."""


class Stager:
    """Stages signed releases under ``state_dir`` (one at a time), trusting the CA bundle in
    ``trust_file`` for their signatures and getting their bytes from ``source``."""

    def __init__(self, state_dir: Path, trust_file: Path, source: BlobSource) -> None:
        self.state_dir, self.trust_file, self.source = state_dir, trust_file, source
        self._one = asyncio.Lock()

    async def stage(self, signed: Mapping[str, Any]) -> str:
        """Verify, fetch, check and unpack the package ``signed`` describes; its release.
        Untrusted (signature, signer, bytes) or DriverError (fetch, dependencies) otherwise."""
        trust = await asyncio.to_thread(self.trust_file.read_bytes)
        manifest = software.verify(dict(signed), trust)
        if manifest.get("name") != "edgecloud":
            raise Untrusted(f"the package is {manifest.get('name')!r}, not edgecloud")
        release = str(releases.parse(str(manifest.get("release"))))
        async with self._one:
            target = staged_dir(self.state_dir, release)
            if _verified(target) == manifest:
                return release
            root = releases_dir(self.state_dir)
            files.private_dir(root)
            wheel, partial = root / f".{release}.whl", root / f".{release}.partial"
            try:
                await self.source.fetch(manifest["sha256"], int(manifest["size"]), wheel)
                await asyncio.to_thread(software.check_blob, manifest, wheel)
                await asyncio.to_thread(_unpack, wheel, partial, manifest)
                await asyncio.to_thread(_replace, partial, target)
            finally:
                wheel.unlink(missing_ok=True)
                await asyncio.to_thread(shutil.rmtree, partial, True)
        log.info("staged release %s (%s, %d bytes)", release, manifest["kind"], manifest["size"])
        return release


def _verified(folder: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _unpack(wheel: Path, into: Path, manifest: dict[str, Any]) -> None:
    """The wheel's files under ``into`` (none outside it), once the node has what it needs."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(mode=0o755)
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for name in names:
            path = (into / name).resolve()
            if not path.is_relative_to(into.resolve()):
                raise Untrusted(f"the package has a file outside its folder: {name!r}")
        metadata_name = next((n for n in names if n.endswith(".dist-info/METADATA")), None)
        if metadata_name is None:
            raise Untrusted("the package has no METADATA: not a wheel")
        text = z.read(metadata_name).decode("utf-8", errors="replace")
        missing = _missing_requirements(text)
        if missing:
            raise DriverError(
                f"release {manifest['release']} needs {', '.join(missing)}, which this node "
                "lacks: install them with the node's software first"
            )
        z.extractall(into)
    files.write_atomic(into / MANIFEST, json.dumps(manifest, sort_keys=True), mode=0o644)


def _missing_requirements(metadata_text: str) -> list[str]:
    """The wheel's unconditional Requires-Dist that no installed distribution satisfies."""
    headers = HeaderParser().parsestr(metadata_text, headersonly=True)
    missing = []
    for line in headers.get_all("Requires-Dist") or []:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            missing.append(f"{line!r} (unreadable)")
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's, or another platform's
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            missing.append(str(requirement))
            continue
        if requirement.specifier and not requirement.specifier.contains(
            installed, prereleases=True
        ):
            missing.append(f"{requirement} (has {installed})")
    return missing


def _replace(partial: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)


def select(state_dir: Path, release: str | None) -> None:
    """Run ``release`` from now on (None: the release installed with the node). A staged
    release only."""
    path = releases_dir(state_dir) / SELECTED
    if release is None:
        path.unlink(missing_ok=True)
        return
    if _verified(staged_dir(state_dir, release)) is None:
        raise DriverError(f"release {release} is not staged on this node")
    files.private_dir(releases_dir(state_dir))
    files.write_atomic(path, release, mode=0o644)


def selected(state_dir: Path) -> str | None:
    """The release chosen to run on this node (None: the installed one)."""
    try:
        text = (releases_dir(state_dir) / SELECTED).read_text().strip()
    except OSError:
        return None
    return text or None


def exec_command(
    state_dir: Path, release: str | None, argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run this same ``edgecloud`` command (``argv``: its
    arguments) at ``release`` (None: the installed one)."""
    args, skip = [], False
    for arg in argv:  # the join token was used up at the first start
        if skip:
            skip = False
            continue
        if arg == "--join":
            skip = True
            continue
        if arg.startswith("--join="):
            continue
        args.append(arg)
    root = str(releases_dir(state_dir).resolve())
    paths = [
        p
        for p in environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and not str(Path(p).resolve()).startswith(root + os.sep)
    ]
    if release is not None:
        paths.insert(0, str(staged_dir(state_dir, release).resolve()))
    env = {k: v for k, v in environ.items() if k != "PYTHONPATH"}
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env[GUARD] = release or __version__
    return [sys.executable, "-m", "edgecloud", *args], env


def reexec_if_needed(state_dir: Path, argv: Sequence[str]) -> None:
    """Before an agent starts: when another release than this code's is selected on this
    node, become it (same PID). Once only: a release that does not start as itself is logged
    and this code runs on."""
    wanted = selected(state_dir)
    running = __version__
    if wanted is None or wanted == running:
        return
    if os.environ.get(GUARD) == wanted:
        log.error(
            "release %s is selected but this process runs %s after re-executing into it: "
            "running %s",
            wanted,
            running,
            running,
        )
        return
    if _verified(staged_dir(state_dir, wanted)) is None:
        log.error("release %s is selected but not staged: running %s", wanted, running)
        return
    command, env = exec_command(state_dir, wanted, argv, os.environ)
    log.warning("this node runs release %s: re-executing (was %s)", wanted, running)
    os.execve(command[0], command, env)
