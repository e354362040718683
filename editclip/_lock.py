"""A lock file that keeps two processes from writing one output: owner pid, host and time, taken over when
its owner on this host is gone."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._io import host_name, pid_alive, temp_prefix
from .errors import EditclipError

POLL_SECONDS = 0.5


def read_lock(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file (None when there is no lock; {} when it cannot be read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _is_stale(owner: dict[str, Any]) -> bool:
    """Only a lock of a dead process on this machine is known to be stale (another host's pid means nothing here)."""
    return owner.get("host") == host_name() and isinstance(owner.get("pid"), int) and not pid_alive(owner["pid"])


def _try_create(path: Path, owner: dict[str, Any]) -> bool:
    """Create ``path`` holding ``owner``, atomically: written in a temporary, then hard-linked (fails if present).
    Where the file system has no hard links, an exclusive create (a reader may then briefly see it empty)."""
    text = json.dumps(owner)
    tmp = path.with_name(temp_prefix(path.name) + "tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network and FUSE file systems)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return True
    finally:
        tmp.unlink()


@contextlib.contextmanager
def hold_lock(
    path: str | os.PathLike[str], what: str, *, wait: bool = False, log: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the lock file ``path`` for the block; ``what`` names the locked output in messages.

    A lock held by a live process fails at once with "locked by pid N on HOST", or with ``wait`` is polled
    until it is released. A lock of a dead process on this host is taken over.
    """
    lock = Path(path)
    owner = {"pid": os.getpid(), "host": host_name(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    told = False
    while not _try_create(lock, owner):
        held = read_lock(lock)
        if held is None:
            continue  # released meanwhile
        if _is_stale(held):
            stale = lock.with_name(temp_prefix(lock.name) + "stale")
            with contextlib.suppress(FileNotFoundError):  # another process may take it over first
                os.replace(lock, stale)
                stale.unlink()
            continue
        by = f"pid {held.get('pid', '?')} on {held.get('host', '?')} since {held.get('time', '?')}"
        if not wait:
            raise EditclipError(
                f"{what} is locked by {by} (another editclip process is writing it); wait for it to finish, pass "
                f"--wait, or choose another output. If that process is gone, remove {str(lock)!r}"
            )
        if log is not None and not told:
            log(f"{what} is locked by {by}; waiting")
            told = True
        time.sleep(POLL_SECONDS)
    try:
        yield
    finally:
        if read_lock(lock) == owner:
            lock.unlink()
