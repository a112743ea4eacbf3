"""The simulator's bulk enrollment leaves each node as enrollment leaves a real one."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from edgecloud import files
from edgecloud.agent import identity, tls_files
from edgecloud.sim import identities


async def test_an_enrolled_node_starts_without_writing_its_hypervisor_files(
    tmp_path: Path,
) -> None:
    nodes = await identities.ensure_nodes(tmp_path / "controller", tmp_path / "nodes", 2)
    for node in nodes:
        # the agent's start (runner.py) finds the libvirt/QEMU copies current: no write, no
        # fsync inside a measured cold start
        assert tls_files.ensure(identity.load(node)) == []
        key = tls_files.libvirt_dir(node) / "serverkey.pem"
        assert key.read_bytes() == identity.load(node).key.read_bytes()
        assert key.stat().st_mode & 0o777 == 0o600


async def test_the_copies_are_not_fsynced(tmp_path: Path) -> None:
    writes: list[tuple[Path, bool]] = []
    real = files.write_atomic

    def record(path: Path, data: bytes | str, mode: int = 0o600, durable: bool = True) -> None:
        writes.append((path, durable))
        real(path, data, mode, durable)

    with mock.patch.object(files, "write_atomic", record):
        await identities.ensure_nodes(tmp_path / "controller", tmp_path / "nodes", 1)
    copies = [durable for path, durable in writes if "tls" in path.parts]
    assert len(copies) == 10 and not any(copies)
