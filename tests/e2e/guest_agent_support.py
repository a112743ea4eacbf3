"""Run commands and read files inside a running guest through its QEMU guest agent (e2e tests).

The guest needs qemu-guest-agent and the ``org.qemu.guest_agent.0`` channel (domain_xml.py
adds it to every disk-booted domain; the debian-cloud image, images/cloud_guest.py, runs the
agent). Nothing goes over the network. Every call runs libvirt in a worker thread (the tests'
event loop keeps running) and has a deadline; failures raise ``GuestAgentError`` with the
guest's own words.

    guest = GuestAgent("ec-e2e...-vm")
    waited = await guest.wait_until_answering(within=120)       # seconds until the first answer
    result = await guest.run("cloud-init", "status", "--wait", within=180)
    assert result.exit_code == 0, result.stderr
    text = await guest.read_file("/etc/hostname")
    nics = await guest.command("guest-network-get-interfaces")  # any raw agent command
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from typing import Any

POLL_SECONDS = 0.2
MAX_FILE_BYTES = 1 << 20


class GuestAgentError(AssertionError):
    """The guest agent did not answer in time, or refused or failed a command."""


@dataclass(frozen=True)
class GuestResult:
    """How a command run in the guest ended."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class GuestAgent:
    """The guest agent of one running libvirt domain."""

    def __init__(self, domain: str, uri: str = "qemu:///system") -> None:
        self.domain, self.uri = domain, uri

    async def command(self, execute: str, timeout: float = 10.0, **arguments: Any) -> Any:
        """One raw guest agent command (``guest-ping``, ``guest-get-osinfo``, ...): its
        ``return`` value. Argument names with dashes are given with underscores."""
        args = {key.replace("_", "-"): value for key, value in arguments.items()}
        return await asyncio.to_thread(self._command, execute, args, timeout)

    async def wait_until_answering(self, within: float) -> float:
        """Poll ``guest-ping`` until the agent answers; the seconds it took."""
        started = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < within:
            try:
                await self.command("guest-ping", timeout=2.0)
                return time.monotonic() - started
            except GuestAgentError as exc:
                last = exc
            await asyncio.sleep(POLL_SECONDS * 5)
        raise GuestAgentError(
            f"the guest agent of {self.domain} did not answer in {within} s: {last}"
        )

    async def run(
        self, *argv: str, within: float = 60.0, stdin: str | None = None, check: bool = False
    ) -> GuestResult:
        """Run ``argv`` in the guest (``guest-exec``, no shell: pass ``"sh", "-c", ...`` for
        one), wait for it to exit (at most ``within`` seconds) and return its exit code and
        output; ``check`` raises GuestAgentError when it exits non-zero."""
        request: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]), "capture_output": True}
        if stdin is not None:
            request["input_data"] = base64.b64encode(stdin.encode()).decode()
        pid = (await self.command("guest-exec", **request))["pid"]
        deadline = time.monotonic() + within
        while True:
            status = await self.command("guest-exec-status", pid=pid)
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise GuestAgentError(
                    f"{' '.join(argv)} did not exit within {within} s in {self.domain}"
                )
            await asyncio.sleep(POLL_SECONDS)
        result = GuestResult(
            exit_code=int(status.get("exitcode", -1 if "signal" in status else 0)),
            stdout=_text(status.get("out-data")),
            stderr=_text(status.get("err-data")),
        )
        if check and not result.ok:
            raise GuestAgentError(
                f"{' '.join(argv)} exited {result.exit_code} in {self.domain}: {result.stderr.strip()}"
            )
        return result

    async def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> str:
        """A (small) text file of the guest."""
        handle = await self.command("guest-file-open", path=path, mode="r")
        try:
            chunks: list[bytes] = []
            size = 0
            while size < max_bytes:
                read = await self.command("guest-file-read", handle=handle, count=65536)
                chunk = base64.b64decode(read.get("buf-b64", ""))
                chunks.append(chunk)
                size += len(chunk)
                if read.get("eof") or not chunk:
                    break
            return b"".join(chunks)[:max_bytes].decode(errors="replace")
        finally:
            await self.command("guest-file-close", handle=handle)

    def _command(self, execute: str, arguments: dict[str, Any], timeout: float) -> Any:
        import libvirt
        import libvirt_qemu

        libvirt.registerErrorHandler(lambda _c, _e: None, None)
        text = json.dumps({"execute": execute, "arguments": arguments})
        try:
            conn: Any = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise GuestAgentError(f"libvirt at {self.uri}: {exc.get_error_message()}") from exc
        try:
            dom = conn.lookupByName(self.domain)
            answer = libvirt_qemu.qemuAgentCommand(dom, text, max(1, round(timeout)), 0)
        except libvirt.libvirtError as exc:
            raise GuestAgentError(f"{execute} in {self.domain}: {exc.get_error_message()}") from exc
        finally:
            conn.close()
        return json.loads(answer).get("return")


def _text(data: str | None) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""
