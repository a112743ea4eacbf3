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
