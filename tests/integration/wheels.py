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


def source_wheel(version: str) -> bytes:
    """This checkout's edgecloud as the wheel of release ``version``: the product's own code
    (what `pip wheel --no-deps .` packs), its version and its Requires-Dist from
    pyproject.toml; so a node that stages and runs it runs this code under another release."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    out = io.BytesIO()
    dist = f"edgecloud-{version}.dist-info"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        package = root / "src" / "edgecloud"
        for path in sorted(package.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            data = path.read_bytes()
            if path == package / "__init__.py":
                data = data.replace(
                    f'__version__ = "{project["version"]}"'.encode(),
                    f'__version__ = "{version}"'.encode(),
                )
                assert f'"{version}"'.encode() in data
            z.writestr(f"edgecloud/{path.relative_to(package)}", data)
        requires = "".join(f"Requires-Dist: {r}\n" for r in project["dependencies"])
        z.writestr(
            f"{dist}/METADATA",
            f"Metadata-Version: 2.1\nName: edgecloud\nVersion: {version}\n{requires}",
        )
        z.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{dist}/RECORD", "")
    return out.getvalue()
