"""Bulk enrollment for the simulator: N simulated nodes, each with its own key and certificate.

The join-token path (one API call and two TLS exchanges per node) is too slow for 10,000
nodes, so before the controller starts the simulator acts as a controller-side helper: it
opens the site CA and the store in the controller's state directory, creates the host records
and signs one CSR per node with the site CA, exactly what enrollment does. The certificates are
real; each node later uses its own over its own mTLS connection. The store is the controller's
SQLite file, or ``db_url`` (PostgreSQL, shared by several controllers). Node directories
(``SIM/nodes/sim-00042/{ca.crt,host.crt,host.key,agent.json}``) are cached: a later run with
the same or fewer nodes enrolls nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from edgecloud.agent import identity, tls_files
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import make_key_and_csr
from edgecloud.store.database import make_engine, migrate, session_factory, sqlite_url, transaction
from edgecloud.store.models import Host

SITE_NAME = "sim"
BATCH = 500


def node_name(index: int) -> str:
    return f"sim-{index:05d}"


async def ensure_nodes(
    controller_dir: Path,
    nodes_dir: Path,
    count: int,
    progress: Callable[[int], None] | None = None,
    db_url: str | None = None,
) -> list[Path]:
    """The node directories of nodes 0..count-1, enrolling those missing; the controller must
    not be running (its store is written directly)."""
    ca = CertificateAuthority.load_or_create(controller_dir / "pki", SITE_NAME)
    engine = make_engine(db_url or sqlite_url(controller_dir))
    try:
        await migrate(engine)
        sessions = session_factory(engine)
        async with transaction(sessions) as s:
            rows = (await s.execute(select(Host.name, Host.cert_serial))).all()
            serials = {name: serial for name, serial in rows}
        todo = [i for i in range(count) if not _cached(nodes_dir, node_name(i), serials)]
        for start in range(0, len(todo), BATCH):
            async with transaction(sessions) as s:
                for i in todo[start : start + BATCH]:
                    name = node_name(i)
                    key_pem, csr_pem = make_key_and_csr(name)
                    cert_pem, serial = ca.sign_csr(csr_pem, name)
                    who = identity.save(nodes_dir / name, name, "", ca.cert_pem, cert_pem, key_pem)
                    # the hypervisor's copies too, as enrollment leaves them on a real node:
                    # else every agent's first start writes 10 files, 20 fsyncs (tls_files.py),
                    # 200,000 at 10,000 nodes, inside the measured cold start
                    tls_files.ensure(who, durable=False)
                    host = (await s.scalars(select(Host).where(Host.name == name))).first()
                    if host is None:
                        s.add(Host(name=name, cert_serial=str(serial)))
                    else:
                        host.cert_serial = str(serial)
            if progress is not None:
                progress(min(start + BATCH, len(todo)))
    finally:
        await engine.dispose()
    return [nodes_dir / node_name(i) for i in range(count)]


def _cached(nodes_dir: Path, name: str, serials: dict[str, str | None]) -> bool:
    from edgecloud.pki.identity import cert_serial

    cert = nodes_dir / name / "host.crt"
    if name not in serials or not cert.exists():
        return False
    return str(cert_serial(cert.read_bytes())) == serials[name]


def point_at(node_dirs: list[Path], gateways: list[str]) -> None:
    """Write the controllers' gateway addresses into every node's agent.json (ports change).
    With one controller: ``controller`` only. With several, node i dials gateway i mod k
    first and knows every other (``controllers``), so the nodes are split evenly and each
    fails over to the others, as agents enrolled on a site with several controllers."""
    k = len(gateways)
    for i, node_dir in enumerate(node_dirs):
        path = node_dir / "agent.json"
        data = json.loads(path.read_text())
        first = gateways[i % k]
        wanted = dict(data, controller=first)
        wanted.pop("controllers", None)
        if k > 1:
            wanted["controllers"] = [*gateways[i % k :], *gateways[: i % k]]
        if data != wanted:
            path.write_text(json.dumps(wanted))
