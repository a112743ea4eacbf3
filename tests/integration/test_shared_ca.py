"""A second controller given only the database URL and the site secret: it takes the site CA
from the store, issues its own server certificate from it, serves TLS that the site CA
verifies and enrolls a node; a wrong secret or another CA in its pki/ is refused at start
(issue 11, item 1: the CA key no longer lives on one controller's disk); an image uploaded
through one controller is served to a node of the other from the store's copy.

PostgreSQL only; skipped like the other PostgreSQL tests.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import text

from edgecloud.controller.site import Controller, ControllerConfig
from edgecloud.errors import Conflict
from edgecloud.pki.authority import CertificateAuthority
from edgecloud.pki.identity import fingerprint_of, verify_signed_by
from edgecloud.store.database import make_engine, session_factory
from edgecloud.store.models import ImageBlob, SiteCa
from tests.integration.harness import (
    HEARTBEAT,
    eventually,
    running_site,
    second_controller,
)

SECRET = "correct horse battery staple"


@pytest.fixture
def pg_url(db_url: str | None) -> str:
    if db_url is None:
        pytest.skip("two controllers share a store only on PostgreSQL")
    return db_url


def config(state_dir: Path, db_url: str, secret: str) -> ControllerConfig:
    return ControllerConfig(
        state_dir=state_dir,
        db_url=db_url,
        api_port=0,
        gateway_port=0,
        heartbeat_interval=HEARTBEAT,
        site_secret=secret,
    )


async def test_a_controller_with_only_the_database_url_and_secret_serves_tls_and_enrollment(
    tmp_path: Path, pg_url: str
) -> None:
    async with running_site(tmp_path / "a", pg_url, site_secret=SECRET) as a:
        engine = make_engine(pg_url)
        try:
            async with session_factory(engine)() as s:
                row = await s.get(SiteCa, 1)
        finally:
            await engine.dispose()
        assert row is not None and row.fingerprint == a.info["ca_fingerprint"]
        assert row.key_encrypted.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")

        async with second_controller(
            tmp_path / "b", a, pg_url, copy_pki=False, site_secret=SECRET
        ) as b:
            pki_a, pki_b = (s.root / "controller" / "pki" for s in (a, b))
            assert b.info["ca_fingerprint"] == a.info["ca_fingerprint"]
            server_b = (pki_b / "server.crt").read_bytes()
            assert server_b != (pki_a / "server.crt").read_bytes()  # its own certificate
            assert verify_signed_by(server_b, (pki_a / "ca.crt").read_bytes())
            assert x509.load_pem_x509_certificate(server_b).serial_number > 0
            # TLS verified with the first controller's CA file (the client built above)
            assert (await b.api.get("/v1/health")).status_code == 200
            # a node enrolls with a token from b (b's gateway first) and runs there
            await b.join("n1")
            n1 = (await b.host("n1"))["id"]
            assert b.controller.gateway is not None and n1 in b.controller.gateway.sessions
            cert = (b.root / "agents" / "n1" / "host.crt").read_bytes()
            assert verify_signed_by(cert, (pki_a / "ca.crt").read_bytes())


async def test_a_wrong_secret_or_another_ca_is_refused_at_start(
    tmp_path: Path, pg_url: str
) -> None:
    async with running_site(tmp_path / "a", pg_url, site_secret=SECRET):
        wrong = Controller(config(tmp_path / "w" / "controller", pg_url, "x" * 16 + "wrong"))
        with pytest.raises(Conflict, match="site secret does not open the site CA key"):
            await asyncio.wait_for(wrong.run(), 30)

        other_dir = tmp_path / "o" / "controller"
        other = CertificateAuthority.load_or_create(other_dir / "pki", "edge")
        assert fingerprint_of(other.cert_pem) != ""
        foreign = Controller(config(other_dir, pg_url, SECRET))
        with pytest.raises(Conflict, match="is not the site CA held in the store"):
            await asyncio.wait_for(foreign.run(), 30)


async def test_an_image_uploaded_through_one_controller_reaches_a_node_of_the_other(
    tmp_path: Path, pg_url: str
) -> None:
    """The blob's copy in the store (a large object) is what the second controller serves;
    deleting the image removes it."""
    async with (
        running_site(tmp_path / "a", pg_url, site_secret=SECRET) as a,
        second_controller(tmp_path / "b", a, pg_url, copy_pki=False, site_secret=SECRET) as b,
    ):
        await a.catalogue(("lan",))  # image 'img' uploaded through a
        digest = (await a.api.get("/v1/images/img")).json()["sha256"]
        blob_b = b.root / "controller" / "images" / digest
        assert not blob_b.exists()
        await b.join("n1")  # connected to b, which has no copy on its disk
        body = {"name": "v1", "image": "img", "flavor": "small", "nics": [{"network": "lan"}]}
        assert (await b.api.post("/v1/vnfs", json=body)).status_code == 201
        await b.wait_vnf("v1", "running")
        assert blob_b.exists()  # copied from the store, sha256 checked, then served
        blob_a = a.root / "controller" / "images" / digest
        assert blob_b.read_bytes() == blob_a.read_bytes()

        engine = make_engine(pg_url)
        try:
            async with session_factory(engine)() as s:
                copy = await s.get(ImageBlob, digest)
                assert copy is not None and copy.size == blob_a.stat().st_size
                oid = copy.oid

            assert (await b.api.delete("/v1/vnfs/v1")).status_code in (202, 204)

            async def vnf_gone() -> bool:
                return (await b.api.get("/v1/vnfs/v1")).status_code == 404

            await eventually(vnf_gone, 15, "v1 deleted")
            assert (await a.api.delete("/v1/images/img")).status_code == 204
            async with session_factory(engine)() as s:
                assert await s.get(ImageBlob, digest) is None
                query = text("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = :oid")
                assert await s.scalar(query, {"oid": oid}) == 0
        finally:
            await engine.dispose()
