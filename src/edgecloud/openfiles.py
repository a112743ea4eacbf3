"""The process's open-files limit: raised to what the system allows, once, at start.

Every connection is a file descriptor. Debian's default soft RLIMIT_NOFILE is 1024 (the hard
limit is usually 524288 or more): a controller held at 1024 runs out of descriptors with
about a thousand agents, or a thousand anonymous peers holding sockets open, and then
refuses everyone, agents too (accept fails with EMFILE). The soft limit is a default for
programs that use select(); edgecloud uses epoll (asyncio), so it takes the hard limit, as
systemd's services, nginx (worker_rlimit_nofile) and Go programs (since 1.19) do.

Called by the controller (controller/site.py), the agent command (cli/daemons.py) and the
simulator's processes (sim/worker.py, sim/anonymous.py).
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_limit() -> int:
    """Set the soft open-files limit to the hard limit; return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. a hard limit above the kernel's nr_open
        log.warning("could not raise the open-files limit from %d to %d: %s", soft, hard, exc)
        return soft
    log.info("open-files limit raised from %d to %d", soft, hard)
    return hard
