"""Private state on disk: folders only their owner enters, files written whole or not at all.

The one way edgecloud writes its state and secrets (controller: pki/, admin-token, the SQLite
store, controller.json; agent: its key, certificate, agent.json, desired.json, the TLS files of
its hypervisor, config drives; the all-in-one supervisor: site.json; the client config):

- ``private_dir``: created 0700, and put back to 0700 when it already existed wider;
- ``write_atomic``: a temporary file in the same folder, written, fsynced, given its mode
  (0600 unless said: the umask never widens or narrows it), renamed over the old file, and the
  folder fsynced, so a crash leaves the old content or the new, never a torn file; a file
  that existed with a wider mode has the new mode afterwards (it is a new inode);
- ``restrict``: an existing file (one another program created, e.g. SQLite's) set to 0600;
- ``read_tolerant``: a state file that is missing, empty, or not what it should be (torn by
  an older writer, a full disk, a hand edit) is logged and treated as absent: the caller
  starts from nothing and the controller resends what it needs, instead of a crash loop.

Nothing here knows what the files mean; it is used by controller/, agent/, pki/, allinone/,
drivers/compute/configdrive.py and client/.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner may enter (created with its parents if missing;
    the parents keep the usual mode: they may be shared, e.g. ~/.local/state)."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR)  # mkdir's mode is narrowed by the umask; an old one may be wide
    return path


def write_atomic(
    path: Path, data: bytes | str, mode: int = PRIVATE_FILE, durable: bool = True
) -> None:
    """Replace ``path`` with ``data`` (text is UTF-8), atomically, with ``mode``; durably
    (fsynced) unless ``durable`` is False (the scale simulator's thousands of fake nodes on
    one machine, whose files need not survive a power loss)."""
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def restrict(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Set an existing file's mode (a missing one is left missing)."""
    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, mode)


def create_private(path: Path) -> None:
    """Make sure ``path`` exists as a file with mode 0600 (created empty if missing), before
    another program opens it: SQLite gives its -wal and -shm files the database file's mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE)


def read_tolerant(path: Path, parse: Callable[[bytes], T], what: str) -> T | None:
    """``parse`` of the file's bytes, or None when the file is missing; a file that is empty
    or that ``parse`` refuses (any exception) is logged as ``what`` and treated as missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s %s (%s): starting without it", what, path, exc.strerror)
        return None
    if not raw.strip():
        log.warning("%s %s is empty (torn write?): starting without it", what, path)
        return None
    try:
        return parse(raw)
    except Exception as exc:
        log.warning("%s %s is unreadable (%s): starting without it", what, path, exc)
        return None


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (flock) on ``path``, created if missing, for the block.

    Serialises processes (and threads: each call opens its own file description) that change
    a set of files together. Not re-entrant: a holder must not take it again."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
