"""upgrades/packages.py: a package's release and kind come from its wheel's METADATA."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from edgecloud.errors import InvalidInput
from edgecloud.upgrades.packages import PackageFacts, facts_of, read_wheel


def _wheel(path: Path, metadata: str, dist: str = "edgecloud-0.3.0.dist-info") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{dist}/METADATA", metadata)
    return path


def test_a_release_and_a_patch_are_known_by_their_version() -> None:
    assert facts_of("0.3.0") == PackageFacts("0.3.0", "release", None)
    assert facts_of("0.2.7") == PackageFacts("0.2.7", "patch", "0.2")
    assert facts_of("1.0.0").kind == "release"


@pytest.mark.parametrize("version", ["0.3", "0.3.0rc1", "v0.3.0", "", "0.03.0"])
def test_a_version_that_is_no_release_is_refused(version: str) -> None:
    with pytest.raises(InvalidInput, match=r"not a release of the form MAJOR\.MINOR\.PATCH"):
        facts_of(version)


def test_the_project_name_is_compared_as_pip_normalises_it(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "w.whl", "Metadata-Version: 2.1\nName: EdgeCloud\nVersion: 0.3.0\n")
    assert read_wheel(wheel).release == "0.3.0"
    other = _wheel(tmp_path / "o.whl", "Name: edgecloud-tools\nVersion: 0.3.0\n")
    with pytest.raises(InvalidInput, match="'edgecloud-tools', not 'edgecloud'"):
        read_wheel(other)


def test_metadata_must_be_one_and_at_the_top(tmp_path: Path) -> None:
    nested = _wheel(
        tmp_path / "n.whl", "Name: edgecloud\nVersion: 0.3.0\n", "vendor/edgecloud-0.3.0.dist-info"
    )
    with pytest.raises(InvalidInput, match="no single"):
        read_wheel(nested)
