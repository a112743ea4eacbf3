"""`edgecloud image build debian-cloud --no-upload` builds (or finds cached) a local file and
prints its path: it needs no running site (images/cloud_guest.py builds; cli/images.py).
Without --no-upload it uploads the result like any image (tests/unit/cli/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main


def test_image_build_no_upload_prints_the_cached_path_without_a_site(tmp_path: Path) -> None:
    from edgecloud.images.cloud_guest import image_path

    cached = image_path(tmp_path / "images")
    cached.parent.mkdir()
    cached.write_bytes(b"QFI\xfb")  # a previous build's result: nothing is rebuilt
    argv = [
        "--config",
        str(tmp_path / "none.json"),
        "image",
        "build",
        "debian-cloud",
        "--no-upload",
    ]
    result = CliRunner().invoke(
        main, [*argv, "--out", str(tmp_path / "images")], obj=CliState(), prog_name="edgecloud"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(cached)


def test_image_build_uploads_unless_told_not_to(tmp_path: Path) -> None:
    from edgecloud.images.cloud_guest import image_path

    cached = image_path(tmp_path / "images")
    cached.parent.mkdir()
    cached.write_bytes(b"QFI\xfb")
    argv = ["--config", str(tmp_path / "none.json"), "image", "build", "debian-cloud"]
    result = CliRunner().invoke(
        main, [*argv, "--out", str(tmp_path / "images")], obj=CliState(), prog_name="edgecloud"
    )
    assert result.exit_code == 1  # it wants the site to upload to, and says so in a sentence
    assert "no edgecloud config" in result.output
    assert "Traceback" not in result.output
