"""`edgecloud up` runs real VMs by default; on a host scripts/bootstrap-host did not prepare it
says so in one sentence and exits non-zero, before it starts or writes anything
(cli/site.py, drivers/readiness.py). The checks are real: an unreachable libvirt socket and a
PATH without Open vSwitch."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgecloud.cli.context import CliState
from edgecloud.cli.main import main
from edgecloud.drivers import readiness

NO_LIBVIRTD = "qemu+unix:///system?socket=/nonexistent/edgecloud-test/libvirt-sock"


def _up(tmp_path: Path, *args: str) -> Result:
    argv = ["--config", str(tmp_path / "config.json"), "up", "--state-dir", str(tmp_path / "site")]
    return CliRunner().invoke(main, [*argv, *args], obj=CliState(), prog_name="edgecloud")


@pytest.fixture
def unprepared_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No libvirtd at the URI edgecloud dials, and no ovs-vsctl on PATH."""
    pytest.importorskip("libvirt")
    monkeypatch.setattr(readiness, "LIBVIRT_URI", NO_LIBVIRTD)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def test_up_defaults_to_real_vms_and_refuses_an_unprepared_host(
    unprepared_host: None, tmp_path: Path
) -> None:
    result = _up(tmp_path, "--detach")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] == (
        f"error: this host is not prepared for real VMs (libvirtd is not reachable at "
        f"{NO_LIBVIRTD}; Open vSwitch is not installed): run scripts/bootstrap-host as root "
        "first, or use --driver fake"
    )
    assert "Traceback" not in result.output
    assert not (tmp_path / "site").exists() and not (tmp_path / "config.json").exists()


def test_explicit_libvirt_is_checked_the_same(unprepared_host: None, tmp_path: Path) -> None:
    result = _up(tmp_path, "--driver", "libvirt")
    assert result.exit_code == 1 and "scripts/bootstrap-host" in result.stderr


def test_fake_driver_needs_nothing(unprepared_host: None) -> None:
    assert readiness.host_problems("fake", "fake") == []


def test_a_missing_libvirt_python_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt raises ImportError
    assert readiness.host_problems("libvirt", "fake") == [
        "libvirt-python is not installed in this Python environment"
    ]


def test_help_shows_libvirt_as_the_default(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["up", "--help"], obj=CliState(), prog_name="edgecloud")
    assert result.exit_code == 0
    assert "[default: libvirt]" in result.output
