"""A controller's PKI folder made to match the site CA of the store (pki/rotation.py
``mirror``, used by controller/shared_ca.py): from any state, cut off by a crash at any file
operation and run again, it ends where the store says, and at no point in between does the
folder stop trusting a CA that both the state before and the state after trust (so neither
the server certificate nor the nodes' certificates fall out of trust mid-way)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecloud.cli.main import main
from edgecloud.pki import rotation
from edgecloud.pki.authority import CertificateAuthority, split_pem
from edgecloud.pki.identity import fingerprint_of, make_key_and_csr, verify_signed_by

OLD = CertificateAuthority.create("edge")
NEW = CertificateAuthority.create("edge")
Target = tuple[CertificateAuthority, CertificateAuthority | None]  # signing, previous


class Crash(Exception):
    pass


def apply(directory: Path, target: Target) -> bool:
    signing, previous = target
    old = (previous.cert_pem, previous.key_pem) if previous else None
    return rotation.mirror(directory, signing.cert_pem, signing.key_pem, old)


def trusted(directory: Path) -> set[str]:
    ca = CertificateAuthority.load_or_create(directory, "edge")
    return {fingerprint_of(pem) for pem in split_pem(ca.trust_pem)}


def crash_after(operations: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file write, rename and removal counts; the one after ``operations`` raises."""
    done = [0]

    def counted(real: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            done[0] += 1
            if done[0] > operations:
                raise Crash
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(rotation, "write_atomic", counted(rotation.write_atomic))
    monkeypatch.setattr(Path, "unlink", counted(Path.unlink))
    monkeypatch.setattr(Path, "replace", counted(Path.replace))


STEPS = {
    "begin": ((OLD, None), (NEW, OLD)),
    "finish": ((NEW, OLD), (NEW, None)),
    "rollback": ((NEW, OLD), (OLD, None)),
    "two steps at once (a controller away during begin and finish)": ((OLD, None), (NEW, None)),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_mirror_cut_at_any_point_completes_and_never_drops_a_ca_trusted_throughout(
    tmp_path: Path, step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = STEPS[step]
    start = tmp_path / "start"
    apply(start, before)
    end = tmp_path / "end"
    apply(end, after)
    kept = trusted(start) & trusted(end)  # trusted before and after: so at every point
    cut = 0
    while True:
        folder = tmp_path / f"cut{cut}"
        shutil.copytree(start, folder)
        with monkeypatch.context() as patch:
            crash_after(cut, patch)
            try:
                apply(folder, after)
                finished = True
            except Crash:
                finished = False
        assert kept <= trusted(folder), f"cut after {cut} operations"
        apply(folder, after)  # the controller's next try (at start, or the next notice)
        assert apply(folder, after) is False  # nothing left to do
        ca = CertificateAuthority.load_or_create(folder, "edge")
        assert ca.fingerprint == after[0].fingerprint
        assert ca.rotating is (after[1] is not None)
        assert (folder / "ca.previous.key").exists() is (after[1] is not None)
        if finished:
            break
        cut += 1
    assert cut >= 2  # the step took several operations, each one cut once


def test_during_a_rotation_the_server_certificate_comes_from_the_old_ca(tmp_path: Path) -> None:
    """Nodes that have not renewed trust only the old CA: a server certificate issued during
    the overlap (missing, expiring) must be one they accept; after the finish, the new CA's."""
    apply(tmp_path, (NEW, OLD))
    ca = CertificateAuthority.load_or_create(tmp_path, "edge")
    cert, _ = rotation.server_issuer(tmp_path, ca).ensure_server_cert(tmp_path, ["c1"], [])
    assert verify_signed_by(cert.read_bytes(), OLD.cert_pem)
    node, _ = ca.sign_csr(make_key_and_csr("n1")[1], "n1")  # nodes: the new CA
    assert verify_signed_by(node, NEW.cert_pem)
    apply(tmp_path, (NEW, None))
    ca = CertificateAuthority.load_or_create(tmp_path, "edge")
    assert rotation.server_issuer(tmp_path, ca) is ca
    cert, _ = ca.ensure_server_cert(tmp_path, ["c1"], [])
    assert verify_signed_by(cert.read_bytes(), NEW.cert_pem)


def test_the_cli_says_where_a_step_is_taken(tmp_path: Path) -> None:
    runner = CliRunner()
    both = ["--state-dir", str(tmp_path), "--db", "postgresql+asyncpg://x@127.0.0.1/x"]
    for args in ([], both, ["--db", "postgresql+asyncpg://x@127.0.0.1/x"]):
        result = runner.invoke(main, ["ca", "rotate", "finish", *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert "--db" in result.output and "--site-secret-file" in result.output
    apply(tmp_path / "pki", (OLD, None))
    (tmp_path / "pki" / "site-ca.json").write_text("{}")  # mirrors the store's CA
    result = runner.invoke(main, ["ca", "rotate", "begin", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2 and "shared through the store" in result.output
    assert not (tmp_path / "pki" / "trust.crt").exists()


def test_the_cli_status_of_a_controller_folder_and_a_redundant_site_folder(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["ca", "rotate", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "holds no site CA" in result.output
    assert not (tmp_path / "pki").exists()  # asking made no CA
    apply(tmp_path / "pki", (NEW, OLD))
    result = runner.invoke(main, ["ca", "rotate", "status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"signing CA {NEW.fingerprint}" in result.output
    assert f"old CA {OLD.fingerprint} trusted too" in result.output
    # `edgecloud up --nodes 2 --redundant`'s folder: its replicated store (not running here)
    site = tmp_path / "site"
    (site / "db").mkdir(parents=True)
    members = [{"name": n, "port": 1} for n in ("monitor", "n1", "n2")]
    (site / "db" / "cluster.json").write_text(
        json.dumps({"root": str(tmp_path / "db"), "members": members})
    )
    (site / "site-secret").write_text("s" * 43 + "\n")
    result = runner.invoke(main, ["ca", "rotate", "begin", "--state-dir", str(site)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the site's store could not be used" in result.output
