"""Image transfers to nodes are bounded: a few stream, a few wait, the rest are told to retry."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from edgecloud.gateway import image_serving
from edgecloud.gateway.image_serving import ImageServing, TransferLimits
from edgecloud.images.blobs import BlobStore
from edgecloud.protocol.framing import encode_frame
from edgecloud.services.context import ServiceContext

DATA = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(DATA).hexdigest()


class SlowPeer:
    """A StreamWriter whose peer reads only when ``reading`` is set."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.reading = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False

    async def drain(self) -> None:
        await self.reading.wait()


@pytest.fixture
def serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ImageServing:
    store = BlobStore(tmp_path)
    store.prepare()
    partial = store.incoming("x")
    partial.write_bytes(DATA)
    store.commit(partial, DIGEST)

    async def size_on_site(_ctx: Any, digest: str) -> int | None:
        return len(DATA) if digest == DIGEST else None

    monkeypatch.setattr(image_serving.blobs, "size_on_site", size_on_site)
    ctx = ServiceContext(sessions=None, images=store)  # type: ignore[arg-type]
    return ImageServing(ctx, TransferLimits(max_transfers=1, max_waiting=1, retry_after=(2, 3)))


async def until(predicate: Any) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_one_streams_one_waits_the_next_is_told_to_retry(serving: ImageServing) -> None:
    peers = [SlowPeer() for _ in range(3)]
    request = {"v": 1, "t": "fetch_image", "sha256": DIGEST, "offset": 0}
    first = asyncio.create_task(serving.serve(request, peers[0], "n0"))  # type: ignore[arg-type]
    await until(lambda: serving.stats.active == 1)
    second = asyncio.create_task(serving.serve(request, peers[1], "n1"))  # type: ignore[arg-type]
    await until(lambda: serving.stats.waiting == 1)
    peers[2].reading.set()
    await serving.serve(request, peers[2], "n2")  # type: ignore[arg-type]
    assert serving.stats.retried == 1
    assert bytes(peers[2].data[4:]).startswith(b'{"v":1,"t":"retry","retry_after":')
    assert peers[1].data == b""  # still waiting for the slot
    for peer in peers[:2]:
        peer.reading.set()
    await asyncio.gather(first, second)
    header = encode_frame({"v": 1, "t": "image", "sha256": DIGEST, "size": len(DATA), "offset": 0})
    for peer in peers[:2]:
        assert bytes(peer.data) == header + DATA
    assert (serving.stats.finished, serving.stats.active_peak) == (2, 1)


async def test_resume_from_an_offset_and_refuse_unknown_blobs(serving: ImageServing) -> None:
    peer = SlowPeer()
    peer.reading.set()
    request = {"v": 1, "t": "fetch_image", "sha256": DIGEST, "offset": 1000}
    await serving.serve(request, peer, "n0")  # type: ignore[arg-type]
    assert bytes(peer.data).endswith(DATA[1000:])
    assert len(peer.data) - len(DATA[1000:]) < 200  # only the header before the bytes
    other = SlowPeer()
    other.reading.set()
    await serving.serve({**request, "sha256": "a" * 64}, other, "n0")  # type: ignore[arg-type]
    assert b"no image with sha256" in other.data
