"""Software packages through the real API over HTTPS (issue 12): the wheel of a release is
uploaded, read, kept and signed with the site's software-signing key; the signature verifies
against the CA a node trusts for its session, and a node fetches the package's bytes over its
mTLS port and checks them against the signed manifest. Refusals say what is wrong and leave
no package and no file."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from edgecloud.agent.image_fetching import ImageFetcher
from edgecloud.client.config import ClientConfig, save_config
from edgecloud.errors import Untrusted
from edgecloud.pki import software as signing
from tests.integration.cli_support import Cli
from tests.integration.harness import Site, running_site
from tests.integration.wheels import wheel


async def post(site: Site, data: bytes, filename: str, **params: str) -> tuple[int, Any]:
    response = await site.api.post(
        "/v1/software", params={"filename": filename, **params}, content=data
    )
    return response.status_code, response.json()


def store_files(site: Site) -> set[str]:
    root = site.controller.state_dir / "images"
    return {p.name for p in root.iterdir() if p.is_file()} | {
        f".incoming/{p.name}" for p in (root / ".incoming").iterdir()
    }


async def test_a_release_is_kept_signed_and_fetched_by_a_node(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        data = wheel("0.3.0", payload=b"# " + b"x" * 100_000)
        status, package = await post(site, data, "edgecloud-0.3.0-py3-none-any.whl")
        assert status == 201, package
        digest = hashlib.sha256(data).hexdigest()
        assert (package["release"], package["kind"], package["applies_to"]) == (
            "0.3.0",
            "release",
            None,
        )
        assert (package["size"], package["sha256"], package["reboot_required"]) == (
            len(data),
            digest,
            False,
        )
        assert store_files(site) == {digest}
        node = await site.join("edge-1")
        # the node trusts the site CA for its session: that is what it checks the signer by
        trust = node.agent.identity.ca.read_bytes()
        manifest = signing.verify(package, trust)
        assert manifest == package["manifest"]
        assert manifest["sha256"] == digest and manifest["kind"] == "release"
        fetched = tmp_path / "fetched.whl"
        await ImageFetcher(node.agent.identity).fetch(digest, len(data), fetched)
        signing.check_blob(manifest, fetched)  # raises if the bytes are not the manifest's
        # a manifest changed after signing is refused
        forged = {**package, "manifest": {**package["manifest"], "reboot_required": True}}
        with pytest.raises(Untrusted, match="signature does not hold"):
            signing.verify(forged, trust)
        listed = (await site.api.get("/v1/software")).json()
        assert [p["release"] for p in listed] == ["0.3.0"]
        shown = (await site.api.get("/v1/software/0.3.0")).json()
        assert shown["signature"] == package["signature"]
        # one package per release
        status, again = await post(site, data, "edgecloud-0.3.0-py3-none-any.whl")
        assert status == 409 and "uploaded already" in again["error"]["message"]
        assert (await site.api.delete("/v1/software/0.3.0")).status_code == 204
        assert store_files(site) == set()  # the blob went with the last package naming it
        assert (await site.api.get("/v1/software/0.3.0")).status_code == 404


async def test_a_patch_is_known_by_its_version_and_says_whether_hosts_reboot(
    tmp_path: Path,
) -> None:
    async with running_site(tmp_path) as site:
        status, package = await post(
            site, wheel("0.2.1"), "edgecloud-0.2.1-py3-none-any.whl", reboot_required="true"
        )
        assert status == 201, package
        assert (package["kind"], package["applies_to"], package["reboot_required"]) == (
            "patch",
            "0.2",
            True,
        )
        assert package["manifest"]["reboot_required"] is True  # signed with it


def _not_a_zip() -> bytes:
    return b"#!/bin/sh\necho not a wheel\n" * 50


def _zip_without_metadata() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("edgecloud/__init__.py", "")
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (_not_a_zip(), "edgecloud-0.3.0-py3-none-any.whl", "not a zip file, so not a wheel"),
        (_zip_without_metadata(), "edgecloud-0.3.0-py3-none-any.whl", "not a wheel"),
        (wheel("2.31.0", "requests"), "requests-2.31.0-py3-none-any.whl", "not 'edgecloud'"),
        (wheel("0.3.0rc1"), "edgecloud-0.3.0rc1-py3-none-any.whl", "not a release of the form"),
        (wheel("0.3.0"), "edgecloud-0.3.0.tar.gz", "not a wheel's file name"),
    ],
    ids=["not a zip", "no METADATA", "another project", "a pre-release", "not a .whl name"],
)
async def test_refused_uploads_say_why_and_leave_nothing(
    tmp_path: Path, data: bytes, filename: str, message: str
) -> None:
    async with running_site(tmp_path) as site:
        status, body = await post(site, data, filename)
        assert status == 422, body
        assert message in str(body), body
        assert (await site.api.get("/v1/software")).json() == []
        assert store_files(site) == set()
        status, body = await post(
            site,
            wheel("0.3.0"),
            "edgecloud-0.3.0-py3-none-any.whl",
        )
        assert status == 201  # the site takes the next good upload


async def test_damaged_bytes_are_refused(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        response = await site.api.post(
            "/v1/software",
            params={"filename": "edgecloud-0.3.0-py3-none-any.whl"},
            content=wheel("0.3.0"),
            headers={"X-Package-Sha256": "0" * 64},
        )
        assert response.status_code == 422
        assert "damaged on the way" in response.json()["error"]["message"]
        assert store_files(site) == set()


def _admin_cli(site: Site, tmp_path: Path) -> Any:
    """`edgecloud` as the site's admin, run in a thread (the site runs in this loop)."""
    ca, url = site.info["ca_cert"], site.info["api_url"]
    token = site.api.headers["Authorization"].removeprefix("Bearer ")
    cli = Cli(save_config(ClientConfig(url, token, ca), tmp_path / "admin.json"))

    async def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(cli.run, *args, check=check)

    return run


async def test_software_commands(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        run = _admin_cli(site, tmp_path)

        path = tmp_path / "edgecloud-0.3.0-py3-none-any.whl"
        path.write_bytes(wheel("0.3.0"))
        done = await run("software", "upload", str(path), "--reboot-required")
        assert "software 0.3.0 uploaded (release" in done.stderr
        listed = json.loads((await run("software", "list", "--json")).stdout)
        assert [(p["release"], p["reboot_required"]) for p in listed] == [("0.3.0", True)]
        table = (await run("software", "list")).stdout
        assert "0.3.0" in table and "release" in table
        shown = json.loads((await run("software", "show", "0.3.0", "--json")).stdout)
        assert shown["manifest"]["release"] == "0.3.0"
        text = tmp_path / "edgecloud-0.4.0-py3-none-any.whl"
        text.write_text("not a wheel\n")
        bad = await run("software", "upload", str(text), check=False)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
        assert "package: not a zip file, so not a wheel" in bad.stderr
        missing = await run("software", "show", "0.9.0", check=False)
        assert (
            missing.returncode == 1 and "no software package of release '0.9.0'" in missing.stderr
        )
        assert "deleted" in (await run("software", "delete", "0.3.0")).stdout
        assert json.loads((await run("software", "list", "--json")).stdout) == []


async def test_patch_commands(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        run = _admin_cli(site, tmp_path)

        release = tmp_path / "edgecloud-0.3.0-py3-none-any.whl"
        release.write_bytes(wheel("0.3.0"))
        refused = await run("patch", "upload", str(release), check=False)
        assert refused.returncode == 1 and "0.3.0 is a release, not a patch" in refused.stderr
        assert json.loads((await run("software", "list", "--json")).stdout) == []
        fix = tmp_path / "edgecloud-0.2.7-py3-none-any.whl"
        fix.write_bytes(wheel("0.2.7"))
        await run("patch", "upload", str(fix), "--reboot-required")
        await run("software", "upload", str(release))
        listed = json.loads((await run("patch", "list", "--json")).stdout)
        assert [(p["release"], p["applies_to"], p["reboot_required"]) for p in listed] == [
            ("0.2.7", "0.2", True)
        ]
        not_patch = await run("patch", "apply", "0.3.0", check=False)
        assert "0.3.0 is a release, not a patch" in not_patch.stderr
        nothing = await run("patch", "remove", "0.2.7", check=False)
        assert nothing.returncode == 1 and "no upgrade has been started" in nothing.stderr
