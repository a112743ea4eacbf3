"""What a software package is, read from its bytes: a wheel of edgecloud at some release.

A release is shipped as the wheel ``pip wheel`` or ``python -m build`` makes of this project
(``edgecloud-0.3.0-py3-none-any.whl``): a zip whose ``*.dist-info/METADATA`` names the
project and its version. Its kind follows from the version (upgrades/releases.py):

- ``release``: ``MAJOR.MINOR.0``, a new train; it replaces a whole node's software.
- ``patch``: ``MAJOR.MINOR.PATCH`` with PATCH > 0, fixes on the train ``MAJOR.MINOR``
  (``applies_to``): it goes onto nodes at an older release of that train only.

Whether a package needs its hosts rebooted is said by whoever uploads it (a kernel or QEMU
fix does; an agent fix does not): it is not in the wheel. Pure; the caller reads the file
in a thread.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from edgecloud.errors import InvalidInput
from edgecloud.upgrades import releases

PROJECT = "edgecloud"
MAX_METADATA = 1 << 20  # bytes of METADATA read at most


@dataclass(frozen=True)
class PackageFacts:
    release: str  # "0.3.0"
    kind: str  # release | patch
    applies_to: str | None  # a patch's train, "0.2"; None for a release


def read_wheel(path: Path) -> PackageFacts:
    """The facts of the wheel at ``path``; InvalidInput saying what is wrong otherwise."""
    try:
        with zipfile.ZipFile(path) as wheel:
            metadata = [
                n
                for n in wheel.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if len(metadata) != 1:
                raise InvalidInput(
                    "a zip but not a wheel: it has no single *.dist-info/METADATA "
                    "(build one with `pip wheel --no-deps .`)",
                    field="package",
                )
            info = wheel.getinfo(metadata[0])
            if info.file_size > MAX_METADATA:
                raise InvalidInput("the wheel's METADATA is too large to be one", field="package")
            text = wheel.read(info).decode("utf-8", errors="replace")
    except zipfile.BadZipFile as exc:
        raise InvalidInput(
            "not a zip file, so not a wheel: upload the .whl that `pip wheel --no-deps .` "
            "makes of edgecloud",
            field="package",
        ) from exc
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if _normalised(name) != PROJECT:
        raise InvalidInput(
            f"a wheel of project {name!r}, not {PROJECT!r}: only edgecloud's own "
            "releases and patches are software packages",
            field="package",
        )
    return facts_of(version or "")


def facts_of(version: str) -> PackageFacts:
    """A package's kind and train from its version."""
    try:
        release = releases.parse(version)
    except ValueError as exc:
        raise InvalidInput(
            f"the wheel's version {version!r} is not a release of the form MAJOR.MINOR.PATCH",
            field="package",
        ) from exc
    if release.patch == 0:
        return PackageFacts(str(release), "release", None)
    return PackageFacts(str(release), "patch", f"{release.major}.{release.minor}")


def _normalised(name: str | None) -> str:
    return (name or "").strip().lower().replace("_", "-").replace(".", "-")
