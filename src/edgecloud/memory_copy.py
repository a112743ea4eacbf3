"""How a live migration copies a guest's memory: the modes the API, the services and the
compute drivers share (like pci.py, vocabulary with no home of its own).

- ``pre-copy``: QEMU's live pre-copy, memory copied while the guest runs, the guest paused
  only for the last round (the short downtime live migration is known for);
- ``paused``: the guest paused for the whole copy, then resumed on the destination; its memory
  moves intact whatever the hypervisor's dirty-page tracking does, the pause lasts the copy;
- ``auto``: pre-copy where the hypervisor tracks guest writes soundly (KVM, and QEMU's TCG
  emulator from 9.0 on), paused under an older TCG, whose tracking loses writes
  (docs/host-notes.md, "Live migration under TCG").
"""

from __future__ import annotations

from typing import Literal

CopyMode = Literal["auto", "pre-copy", "paused"]
COPY_MODES: tuple[CopyMode, ...] = ("auto", "pre-copy", "paused")

# The longest the guest may be paused at the end of a pre-copy move (QEMU's downtime limit):
# QEMU copies further rounds until what is left fits in it. Lower: a shorter gap on the
# wire, more rounds (a guest that dirties memory faster than it is sent may not converge; the
# move is aborted after the driver's time limit and the VNF stays where it was). 50 ms: under
# TCG here it cut the real pause (source STOP to destination RESUME) from 67-157 ms to 39-63 ms
# for about the same total time (docs/benchmarks.md, issue 10); QEMU's own default is 300 ms.
DEFAULT_MAX_DOWNTIME_MS = 50
MAX_DOWNTIME_RANGE = (10, 10_000)
