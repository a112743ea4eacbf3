"""Wheels of edgecloud releases for the software tests, made in memory as pip makes them."""

from __future__ import annotations

import io
import zipfile


def wheel(version: str, project: str = "edgecloud", payload: bytes = b"") -> bytes:
    """A wheel as pip builds one: a zip with the package and NAME-VERSION.dist-info/."""
    out = io.BytesIO()
    dist = f"{project}-{version}.dist-info"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(f"{project}/__init__.py", f'__version__ = "{version}"\n'.encode() + payload)
        z.writestr(
            f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
        )
        z.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{dist}/RECORD", "")
    return out.getvalue()
