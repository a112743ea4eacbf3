"""CA rotation steps on a PKI folder (pki/rotation.py) and the `edgecloud ca rotate` commands."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgecloud.cli.main import main
from edgecloud.errors import Conflict
from edgecloud.pki import rotation
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import make_key_and_csr, verify_signed_by


def test_begin_trusts_both_and_signs_with_the_new_ca(tmp_path: Path) -> None:
    old = CertificateAuthority.load_or_create(tmp_path, "edge")
    new = rotation.begin(tmp_path, "edge")
    loaded = CertificateAuthority.load_or_create(tmp_path, "edge")
    assert loaded.fingerprint == new.fingerprint != old.fingerprint
    assert loaded.rotating and loaded.trust_pem == new.cert_pem + old.cert_pem
    cert, _ = loaded.sign_csr(make_key_and_csr("node1")[1], "node1")
    assert verify_signed_by(cert, new.cert_pem) and not verify_signed_by(cert, old.cert_pem)
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(Conflict, match="in progress"):
        rotation.begin(tmp_path, "edge")
    rotation.finish(tmp_path)
    done = CertificateAuthority.load_or_create(tmp_path, "edge")
    assert not done.rotating and done.fingerprint == new.fingerprint
    assert not (tmp_path / "ca.previous.key").exists()
    with pytest.raises(Conflict, match="no CA rotation"):
        rotation.finish(tmp_path)


def test_rollback_restores_the_old_ca(tmp_path: Path) -> None:
    old = CertificateAuthority.load_or_create(tmp_path, "edge")
    rotation.begin(tmp_path, "edge")
    rotation.rollback(tmp_path)
    back = CertificateAuthority.load_or_create(tmp_path, "edge")
    assert back.fingerprint == old.fingerprint and not back.rotating


def test_a_replacement_cut_by_a_crash_is_completed_at_load(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path, "edge")
    new = CertificateAuthority.create("edge")
    (tmp_path / "ca.next.key").write_bytes(new.key_pem)
    (tmp_path / "ca.next.key").replace(tmp_path / "ca.key")  # crashed after the key's rename
    (tmp_path / "ca.next.crt").write_bytes(new.cert_pem)
    assert CertificateAuthority.load_or_create(tmp_path, "edge").fingerprint == new.fingerprint


def test_the_cli_says_what_it_did_and_refuses_in_one_sentence(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["ca", "rotate", "begin", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "holds no site CA" in result.output
    CertificateAuthority.load_or_create(tmp_path / "pki", "edge")
    result = runner.invoke(main, ["ca", "rotate", "begin", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0 and "CA rotation begun" in result.output
    result = runner.invoke(main, ["ca", "rotate", "finish", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0 and "only the new CA" in result.output
    result = runner.invoke(main, ["ca", "rotate", "finish", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_a_controller_reloading_meanwhile_never_sees_a_half_replaced_ca(tmp_path: Path) -> None:
    """controller/tls.py reloads the folder every few seconds while `edgecloud ca rotate` runs
    in another process: the loads must neither settle a half-written replacement (a new
    certificate with the old key) nor race the rotation's own renames (seen in CI)."""
    CertificateAuthority.load_or_create(tmp_path, "edge")
    stop = threading.Event()
    failures: list[BaseException] = []

    def reload() -> None:
        while not stop.is_set():
            try:
                ca = CertificateAuthority.load_or_create(tmp_path, "edge")
                rotation.server_issuer(tmp_path, ca)
                rotation.previous_fingerprint(tmp_path)
            except BaseException as exc:
                failures.append(exc)

    readers = [threading.Thread(target=reload) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for round_ in range(40):
            new = rotation.begin(tmp_path, "edge")
            assert CertificateAuthority.load_or_create(tmp_path, "edge").fingerprint == (
                new.fingerprint
            )
            if round_ % 2:
                rotation.finish(tmp_path)
            else:
                rotation.rollback(tmp_path)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert failures == []
