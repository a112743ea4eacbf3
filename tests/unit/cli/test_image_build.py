"""`edgecloud image build debian-cloud` builds (or finds cached) a local file and prints its
path: it needs no running site (images/cloud_guest.py builds; cli/images.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main


def test_image_build_debian_cloud_prints_the_cached_path_without_a_site(tmp_path: Path) -> None:
    from edgecloud.images.cloud_guest import image_path

    cached = image_path(tmp_path / "images")
    cached.parent.mkdir()
    cached.write_bytes(b"QFI\xfb")  # a previous build's result: nothing is rebuilt
    argv = ["--config", str(tmp_path / "none.json"), "image", "build", "debian-cloud"]
    result = CliRunner().invoke(
        main, [*argv, "--out", str(tmp_path / "images")], obj=CliState(), prog_name="edgecloud"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(cached)
