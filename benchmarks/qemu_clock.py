"""QEMU's own events (QMP, with QEMU's timestamps) from several nodes' libvirtd, on the
probe's clock: where a live migration's gap on the wire goes.

Role: a measuring aid of benchmarks/migration.py (no product code uses it). Each node of a
`edgecloud up --nodes N` site runs its own libvirtd; this opens one connection to each and
registers for every QMP event of every domain (libvirt_qemu.qemuMonitorEventRegister), which
libvirt passes on with the time QEMU stamped it (the host's real-time clock). ``monotonic``
turns those into time.monotonic() seconds, the clock the probe's receiver stamps arrivals and
its sender stamps packets with (one clock for every namespace and process of this machine),
so a source's STOP, a destination's RESUME and the probe's last/first packet around the gap
line up. ``breakdown`` splits a probe's longest gap with them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

_LOOP_STARTED = threading.Event()


@dataclass(frozen=True)
class QemuEvent:
    node: str
    domain: str
    name: str  # STOP, RESUME, MIGRATION, ...
    at_s: float  # time.monotonic() seconds
    details: dict[str, Any]


def realtime_offset() -> float:
    """time.time() - time.monotonic(), the tightest of a few samples."""
    best: tuple[float, float] | None = None
    for _ in range(5):
        before = time.monotonic()
        real = time.time()
        after = time.monotonic()
        if best is None or after - before < best[0]:
            best = (after - before, real - (before + after) / 2)
    assert best is not None
    return best[1]


def _run_loop() -> None:
    libvirt.virEventRegisterDefaultImpl()
    libvirt.virEventAddTimeout(100, lambda *_: None, None)  # wake up now and then
    _LOOP_STARTED.set()
    while True:
        libvirt.virEventRunDefaultImpl()


def _ensure_loop() -> None:
    if not _LOOP_STARTED.is_set():
        threading.Thread(target=_run_loop, name="libvirt-events", daemon=True).start()
        _LOOP_STARTED.wait(5.0)


class QemuClock:
    """Records every QMP event of the given nodes ({node name: libvirt URI})."""

    def __init__(self, uris: dict[str, str]) -> None:
        _ensure_loop()
        self._offset = realtime_offset()
        self._lock = threading.Lock()
        self._events: list[QemuEvent] = []
        self._conns: list[tuple[Any, int]] = []
        for node, uri in uris.items():
            conn = libvirt.open(uri)
            callback_id = libvirt_qemu.qemuMonitorEventRegister(
                conn, None, None, self._on_event, node, 0
            )
            self._conns.append((conn, callback_id))

    def _on_event(
        self,
        _conn: Any,
        dom: Any,
        event: str,
        seconds: int,
        micros: int,
        details: str | None,
        node: str,
    ) -> None:

        at = seconds + micros / 1e6 - self._offset
        parsed = json.loads(details) if details else {}
        with self._lock:
            self._events.append(QemuEvent(node, dom.name(), event, at, parsed))

    def take(self) -> list[QemuEvent]:
        """The events recorded since the last take, oldest first."""
        with self._lock:
            events, self._events = self._events, []
        return sorted(events, key=lambda e: e.at_s)

    def close(self) -> None:
        for conn, callback_id in self._conns:
            with contextlib.suppress(libvirt.libvirtError):
                libvirt_qemu.qemuMonitorEventDeregister(conn, callback_id)
            conn.close()


class TapWatch:
    """Polls every tap's rx_packets (what a guest sent out of its vNIC) about every
    millisecond in a thread and keeps each change as (monotonic time, tap, packets since the
    last poll): when a guest first sends after it resumed, to the poll's resolution (QEMU's
    own announce after a migration counts too: one packet a vNIC)."""

    def __init__(self, period_s: float = 0.001) -> None:
        self._period = period_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changes: list[tuple[float, str, int]] = []  # time, tap, packets since last poll
        self._thread = threading.Thread(target=self._run, name="tap-watch", daemon=True)
        self._thread.start()

    def _taps(self) -> list[str]:
        root = Path("/sys/class/net")
        return [p.name for p in root.iterdir() if (p / "tun_flags").exists()]

    def _run(self) -> None:
        last: dict[str, int] = {}
        taps: list[str] = []
        listed = 0.0
        while not self._stop.wait(self._period):
            now = time.monotonic()
            if now - listed > 0.2:
                taps, listed = self._taps(), now
            for tap in taps:
                try:
                    count = int(Path(f"/sys/class/net/{tap}/statistics/rx_packets").read_text())
                except (OSError, ValueError):
                    continue
                if tap in last and count != last[tap]:
                    with self._lock:
                        self._changes.append((now, tap, count - last[tap]))
                last[tap] = count

    def take(self) -> list[tuple[float, str, int]]:
        with self._lock:
            changes, self._changes = self._changes, []
        return changes

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


def _first(
    events: list[QemuEvent], node: str, name: str, status: str | None = None
) -> float | None:
    for e in events:
        wanted = status is None or e.details.get("status") == status
        if e.node == node and e.name == name and wanted:
            return e.at_s
    return None


def breakdown(
    events: list[QemuEvent],
    source: str,
    target: str,
    stats: Any,
    taps: list[tuple[float, str, int]] | None = None,
) -> dict[str, Any]:
    """The probe's longest gap (``stats``: a StatsReport) split on one clock, in ms:

    - ``sent_gap``: between the send times of the packets around the gap (the lost ones at
      1/rate each, plus any pause of the sender itself);
    - ``delay_before`` / ``delay_after``: each of those two packets' time on the path (the
      gap is sent_gap + delay_after - delay_before);
    - ``last_to_stop``: from the last arrival before the gap to the source's STOP;
    - ``final_copy``: source STOP to the source's migration completed (QEMU's downtime);
    - ``handover``: source completed to the destination's RESUME (libvirt's finish: the
      destination is told, then resumes the guest);
    - ``stop_to_resume``: source STOP to destination RESUME (the real pause);
    - ``resume_to_first``: destination RESUME to the first arrival after the gap;
    - ``resume_to_guest_out``: destination RESUME to the first packet any guest sent on its
      tap after it (``taps``: TapWatch changes; only this VNF runs in the benchmark). Seen
      here: one packet a vNIC 0-4 ms after RESUME (the announce after a migration), the
      guest's forwarded burst 30-45 ms later, so read the taps' log for the forwarding;
    - ``guest_out_to_first``: from that first packet to the probe's first arrival.
    """
    stop = _first(events, source, "STOP")
    src_done = _first(events, source, "MIGRATION", "completed")
    dst_done = _first(events, target, "MIGRATION", "completed")
    resume = _first(events, target, "RESUME")
    before = stats.longest_gap_at_s
    after = before + stats.longest_gap_ms / 1000 if before is not None else None

    def ms(a: float | None, b: float | None) -> float | None:
        return round((b - a) * 1000, 1) if a is not None and b is not None else None

    out = next((t for t, _tap, _n in taps or () if resume is not None and t > resume), None)
    return {
        "resume_to_guest_out": ms(resume, out),
        "guest_out_to_first": ms(out, after),
        "sent_gap": ms(stats.longest_gap_sent_after_s, stats.longest_gap_sent_before_s),
        "delay_before": ms(stats.longest_gap_sent_after_s, before),
        "delay_after": ms(stats.longest_gap_sent_before_s, after),
        "last_to_stop": ms(before, stop),
        "final_copy": ms(stop, src_done),
        "dest_received": ms(stop, dst_done),
        "handover": ms(src_done, resume),
        "stop_to_resume": ms(stop, resume),
        "resume_to_first": ms(resume, after),
    }
