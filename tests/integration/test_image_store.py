"""The image store through the real API over HTTPS, and nodes fetching images over mTLS.

Uploads are checked (qemu-img for disks), all-or-nothing (an interrupted or refused upload
leaves no image and no file), deduplicated by sha256; images in use cannot be deleted; a node
fetches what its VNFs need over the gateway's port, verifies it, caches it by checksum, and
evicts it when no VNF on the node uses it any more.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from edgecloud.agent.image_fetching import ImageFetcher
from edgecloud.errors import DriverError
from edgecloud.gateway.image_serving import TransferLimits
from tests.integration.harness import Site, eventually, running_site

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "qemu-img"], capture_output=True).returncode != 0,
    reason="qemu-img is not installed (scripts/bootstrap-host)",
)


def qcow2(path: Path, size: str = "64M", backing: Path | None = None) -> Path:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing is not None:
        argv += ["-F", "raw", "-b", str(backing)]
    subprocess.run([*argv, str(path), size], check=True)
    return path


def raw_disk(path: Path, size: int) -> Path:
    """A raw disk with an MBR signature (what a partitioned disk image starts with)."""
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(510)
        f.write(b"\x55\xaa")
    return path


def store_files(site: Site) -> set[str]:
    root = site.controller.state_dir / "images"
    return {p.name for p in root.iterdir() if p.is_file()} | {
        f".incoming/{p.name}" for p in (root / ".incoming").iterdir()
    }


async def put(
    site: Site, name: str, data: bytes, disk_format: str, **params: str
) -> tuple[int, dict[str, Any]]:
    response = await site.api.put(
        f"/v1/images/{name}", params={"disk_format": disk_format, **params}, content=data
    )
    return response.status_code, response.json()


async def test_upload_checks_and_stores_by_checksum(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        data = qcow2(tmp_path / "a.qcow2").read_bytes()
        status, image = await put(site, "a", data, "qcow2")
        assert status == 201, image
        digest = hashlib.sha256(data).hexdigest()
        assert image["sha256"] == digest
        assert (image["disk_format"], image["status"]) == ("qcow2", "active")
        assert (image["size"], image["virtual_size"]) == (len(data), 64 * 2**20)
        stored = site.controller.state_dir / "images" / digest
        assert stored.read_bytes() == data
        assert stored.stat().st_mode & 0o777 == 0o444
        # the same bytes under another name: one blob
        assert (await put(site, "a2", data, "qcow2"))[0] == 201
        assert store_files(site) == {digest}
        listed = (await site.api.get("/v1/images")).json()
        assert [i["name"] for i in listed] == ["a", "a2"]
        assert (await site.api.delete("/v1/images/a")).status_code == 204
        assert store_files(site) == {digest}  # a2 still names it
        assert (await site.api.delete("/v1/images/a2")).status_code == 204
        assert store_files(site) == set()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("text as raw", "not a disk image"),
        ("qcow2 declared raw", "is a qcow2 image, not raw"),
        ("raw declared qcow2", "is a raw image, not qcow2"),
        ("qcow2 with a backing file", "backing file"),
        ("text as kernel", "not a Linux kernel"),
        ("text as ramdisk", "not a ramdisk"),
        ("wrong checksum", "not " + "0" * 64),
    ],
)
async def test_refused_uploads_leave_nothing(tmp_path: Path, case: str, message: str) -> None:
    headers: dict[str, str] = {}
    if case == "text as raw":
        data, fmt = b"#!/bin/sh\necho not a disk\n" * 100, "raw"
    elif case == "qcow2 declared raw":
        data, fmt = qcow2(tmp_path / "q.qcow2").read_bytes(), "raw"
    elif case == "raw declared qcow2":
        data, fmt = raw_disk(tmp_path / "r.img", 1 << 20).read_bytes(), "qcow2"
    elif case == "qcow2 with a backing file":
        secret = raw_disk(tmp_path / "host-file", 1 << 20)
        data, fmt = qcow2(tmp_path / "b.qcow2", "1M", backing=secret).read_bytes(), "qcow2"
    elif case == "text as kernel":
        data, fmt = b"hello" * 200, "kernel"
    elif case == "text as ramdisk":
        data, fmt = b"hello" * 200, "ramdisk"
    else:
        data, fmt = qcow2(tmp_path / "c.qcow2").read_bytes(), "qcow2"
        headers = {"X-Image-Sha256": "0" * 64}
    async with running_site(tmp_path) as site:
        response = await site.api.put(
            "/v1/images/x", params={"disk_format": fmt}, content=data, headers=headers
        )
        assert response.status_code == 422, response.text
        assert message in response.json()["error"]["message"]
        assert (await site.api.get("/v1/images/x")).status_code == 404
        assert store_files(site) == set()


async def test_interrupted_upload_leaves_no_image_and_no_file(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        host, port = site.info["api_url"].removeprefix("https://").rsplit(":", 1)
        tls = ssl.create_default_context(cafile=site.info["ca_cert"])
        reader, writer = await asyncio.open_connection(host, int(port), ssl=tls)
        token = site.api.headers["Authorization"]
        head = (
            "PUT /v1/images/cut?disk_format=raw HTTP/1.1\r\n"
            f"Host: {host}\r\nAuthorization: {token}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10485760\r\n\r\n"
        )
        writer.write(head.encode() + b"\0" * (3 << 20))  # 3 of the announced 10 MiB
        await writer.drain()

        async def receiving() -> bool:
            return any(name.startswith(".incoming/") for name in store_files(site))

        await eventually(receiving, 10, "the upload to start")
        writer.transport.abort()  # the client vanishes mid-upload

        async def cleaned() -> bool:
            return store_files(site) == set()

        await eventually(cleaned, 10, "the partial upload to be removed")
        assert (await site.api.get("/v1/images/cut")).status_code == 404
        del reader


async def test_no_host_paths_and_clear_errors(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        response = await site.api.post(
            "/v1/images", json={"name": "x", "disk_path": "/etc/shadow", "disk_format": "raw"}
        )
        assert response.status_code == 405  # there is no way to name a host file
        response = await site.api.put("/v1/images/x", params={"disk_format": "vmdk"}, content=b"x")
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "disk_format"
        data = qcow2(tmp_path / "a.qcow2").read_bytes()
        assert (await put(site, "a", data, "qcow2"))[0] == 201
        status, body = await put(site, "a", data, "qcow2")
        assert status == 409 and "already exists" in body["error"]["message"]
        status, body = await put(site, "k", b"x" * 600, "kernel", ramdisk="a")
        assert status == 422 and "not a ramdisk" in body["error"]["message"]
        status, body = await put(site, "d", data, "qcow2", cmdline="quiet")
        assert status == 422 and "kernel image only" in body["error"]["message"]
        openapi = (await site.api.get("/openapi.json")).json()
        put_op = openapi["paths"]["/v1/images/{name}"]["put"]
        assert "application/octet-stream" in put_op["requestBody"]["content"]
        disk_format = next(p for p in put_op["parameters"] if p["name"] == "disk_format")
        assert disk_format["schema"]["enum"] == ["qcow2", "raw", "kernel", "ramdisk"]


async def test_images_in_use_cannot_be_deleted(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await site.catalogue()
        initrd = b"070701" + b"0" * 2000
        kernel = bytearray(4096)
        kernel[0x202:0x206] = b"HdrS"
        assert (await put(site, "rd", initrd, "ramdisk"))[0] == 201
        status, image = await put(site, "k", bytes(kernel), "kernel", ramdisk="rd", cmdline="q")
        assert status == 201 and (image["ramdisk"], image["cmdline"]) == ("rd", "q")
        assert (await put(site, "rd2", initrd, "ramdisk"))[0] == 201  # equal bytes: one blob
        response = await site.api.delete("/v1/images/rd")
        assert response.status_code == 409
        assert "ramdisk of kernel image(s): k" in response.json()["error"]["message"]
        vnf = {"name": "v1", "image": "img", "flavor": "small", "nics": [{"network": "lan"}]}
        assert (await site.api.post("/v1/vnfs", json=vnf)).status_code == 201
        response = await site.api.delete("/v1/images/img")
        assert response.status_code == 409
        assert "used by VNF(s): v1" in response.json()["error"]["message"]
        node = await site.join("edge-1")
        booted = {
            **vnf,
            "name": "vk",
            "image": "k",
        }  # a kernel: the node fetches it and its ramdisk
        assert (await site.api.post("/v1/vnfs", json=booted)).status_code == 201
        await site.wait_vnf("vk", "running")
        cached = {p.name for p in (node.state_dir / "images").iterdir() if p.is_file()}
        assert cached == {image["sha256"], hashlib.sha256(initrd).hexdigest()} | {
            (await site.api.get("/v1/images/img")).json()["sha256"]
        }
        bad = {**vnf, "name": "v2", "image": "rd"}
        response = await site.api.post("/v1/vnfs", json=bad)
        assert response.status_code == 422
        assert "is a ramdisk" in response.json()["error"]["message"]


async def test_node_fetches_verifies_caches_and_evicts(tmp_path: Path) -> None:
    async with running_site(tmp_path) as site:
        await site.catalogue()
        node = await site.join("edge-1")
        image = (await site.api.get("/v1/images/img")).json()
        cache = node.state_dir / "images" / image["sha256"]
        vnf = {"name": "v1", "image": "img", "flavor": "small", "nics": [{"network": "lan"}]}
        assert (await site.api.post("/v1/vnfs", json=vnf)).status_code == 201
        await site.wait_vnf("v1", "running")
        stored = site.controller.state_dir / "images" / image["sha256"]
        assert cache.read_bytes() == stored.read_bytes()
        assert cache.stat().st_mode & 0o777 == 0o444
        assert node.agent.images.fetched == 1
        vnf2 = {**vnf, "name": "v2"}
        assert (await site.api.post("/v1/vnfs", json=vnf2)).status_code == 201
        await site.wait_vnf("v2", "running")
        assert node.agent.images.fetched == 1  # the cached copy served the second VNF
        for name in ("v1", "v2"):
            assert (await site.api.delete(f"/v1/vnfs/{name}")).status_code in (202, 204)

        async def evicted() -> bool:
            return not cache.exists()

        await eventually(evicted, 15, "the unused image to be evicted from the node")


async def test_many_nodes_fetching_one_image_are_throttled(tmp_path: Path) -> None:
    limits = TransferLimits(max_transfers=1, max_waiting=1, retry_after=(0.05, 0.1))
    async with running_site(tmp_path, image_transfers=limits) as site:
        assert site.controller.gateway is not None
        serving = site.controller.gateway.image_serving
        await site.catalogue()
        disk = raw_disk(tmp_path / "big.img", 8 << 20)
        assert (await put(site, "big", disk.read_bytes(), "raw"))[0] == 201
        nodes = [await site.join(f"edge-{i}") for i in range(4)]
        for i in range(4):
            vnf = {"name": f"v{i}", "image": "big", "flavor": "small", "nics": []}
            vnf["anti_affinity_group"] = "spread"
            assert (await site.api.post("/v1/vnfs", json=vnf)).status_code == 201
        for i in range(4):
            await site.wait_vnf(f"v{i}", "running", timeout=30)
        assert all(n.agent.images.fetched == 1 for n in nodes)
        assert serving.stats.active_peak == 1  # never more than the limit at once
        assert serving.stats.finished == 4  # nodes told to retry came back and got it


async def test_upload_memory_stays_bounded(tmp_path: Path) -> None:
    """256 MiB through the API (benchmarks/images.py measures 1 GiB): the controller (this process) grows by far less."""
    size = 256 << 20
    disk = raw_disk(tmp_path / "big.img", size)
    async with running_site(tmp_path) as site:
        process = psutil.Process(os.getpid())
        base = process.memory_info().rss
        peak = [base]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                peak[0] = max(peak[0], process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def chunks() -> Any:
            with disk.open("rb") as f:
                while data := f.read(1 << 20):
                    yield data

        try:
            response = await site.api.put(
                "/v1/images/big",
                params={"disk_format": "raw"},
                content=_aiter(chunks()),
                headers={"Content-Length": str(size)},
                timeout=120,
            )
        finally:
            done.set()
            sampler.join()
        assert response.status_code == 201, response.text
        growth = (peak[0] - base) / 2**20
        assert growth < 64, f"RSS grew by {growth:.0f} MiB during a 256 MiB upload"


async def _aiter(items: Any) -> Any:
    for item in items:
        yield item


@pytest.mark.parametrize("damaged", [False, True])
async def test_a_broken_fetch_resumes_and_damaged_bytes_are_fetched_again(
    tmp_path: Path, damaged: bool
) -> None:
    async with running_site(tmp_path) as site:
        assert site.controller.gateway is not None
        serving = site.controller.gateway.image_serving
        data = raw_disk(tmp_path / "d.img", 4 << 20).read_bytes()
        status, image = await put(site, "d", data, "raw")
        assert status == 201
        node = await site.join("edge-1")
        partial = tmp_path / "partial"
        prefix = bytearray(data[: 1 << 20])  # what a transfer that broke had received
        if damaged:
            prefix[100] ^= 0xFF
        partial.write_bytes(bytes(prefix))
        fetcher = ImageFetcher(node.agent.identity, backoff=(0.01, 0.05))
        if damaged:  # resumed, found wrong, dropped: the caller (the cache) fetches again
            with pytest.raises(DriverError, match="arrived damaged"):
                await fetcher.fetch(image["sha256"], len(data), partial)
            assert not partial.exists()
            await fetcher.fetch(image["sha256"], len(data), partial)
            assert serving.stats.bytes_sent == len(data) - len(prefix) + len(data)
        else:
            await fetcher.fetch(image["sha256"], len(data), partial)
            assert serving.stats.bytes_sent == len(data) - len(prefix)
        assert hashlib.sha256(partial.read_bytes()).hexdigest() == image["sha256"]
