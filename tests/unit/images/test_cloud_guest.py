"""The debian-cloud image builder's cache (images/cloud_guest.py): keyed by the recipe, found
again without rebuilding. The build itself needs root and a mirror: tests/e2e/conftest.py
builds it once per run and tests/e2e/test_cloud_guest.py boots it."""

from __future__ import annotations

from pathlib import Path

from edgecloud.images import cloud_guest


def test_the_cache_key_follows_the_recipe(tmp_path: Path) -> None:
    default = cloud_guest.image_path(tmp_path)
    assert default == cloud_guest.image_path(tmp_path)  # stable
    assert default.parent == tmp_path and default.name.startswith("debian-cloud-")
    assert cloud_guest.image_path(tmp_path, kernel="linux-image-amd64") != default


def test_a_cached_image_is_returned_without_building(tmp_path: Path) -> None:
    cached = cloud_guest.image_path(tmp_path)
    cached.write_bytes(b"QFI\xfb")
    lines: list[str] = []
    assert cloud_guest.build_cloud_guest(tmp_path, progress=lines.append) == cached
    assert lines == []  # nothing was done
