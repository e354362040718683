"""Outputs: checked before any work, written atomically, never replaced without ``overwrite``.

- :func:`prepare_output` checks that a file or folder can be created and written *before* a command
  works (a file where a folder is needed, a read-only or full file system, an existing output).
- :func:`atomic_path`, :func:`write_text`, :func:`write_json`, :func:`save_figure`: a file appears
  whole or not at all.
- :func:`staged_dir`: a folder's files are made in a temporary sibling and moved into place at the end.
- Every temporary is named ``.editclip-tmp-<pid>@<host>-...``; :func:`clean_stale_temporaries`
  removes those left by dead processes of this host (a killed run), so nothing trips a rerun.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from .errors import EditclipError

TMP_PREFIX = ".editclip-tmp-"
_TMP_RE = re.compile(r"^\.editclip-tmp-(?P<pid>\d+)@(?P<host>[A-Za-z0-9_.]+)-")


def host_name() -> str:
    """This machine's name as it appears in temporaries and lock files."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "localhost"


def temp_prefix(name: str) -> str:
    """The recognisable prefix of a temporary for ``name`` made by this process."""
    return f"{TMP_PREFIX}{os.getpid()}@{host_name()}-{name}."


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the editclip temporaries in ``folder`` whose process (on this host) is gone; return them."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TMP_RE.match(entry.name)
        if not match or match["host"] != host_name() or pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
    return removed


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is an editclip temporary (of any process)."""
    return path.name.startswith(TMP_PREFIX)


def prepare_output(
    path: str | os.PathLike[str],
    overwrite: bool = False,
    kind: Literal["file", "dir"] = "file",
    what: str = "--out",
    allow: tuple[str, ...] = (),
) -> Path:
    """Check, before any work, that the output ``path`` can be created and written; create nothing.

    Refuses: a file where a folder is needed (or the reverse), a parent that is a file, a location that
    cannot be written (permissions, read-only file system), an existing file (``kind="file"``) or a
    non-empty folder (``kind="dir"``) unless ``overwrite``. Entries named in ``allow`` and editclip
    temporaries do not count as content. Stale temporaries of dead processes are removed.
    """
    out = Path(path)
    if kind == "file" and out.is_dir():
        raise EditclipError(f"{what} {str(out)!r} is a folder; give a file name")
    if kind == "dir" and out.exists() and not out.is_dir():
        raise EditclipError(f"{what} {str(out)!r} exists and is not a folder; choose a folder")
    base = out.parent if kind == "file" else out
    existing = base
    while not existing.exists():  # the first ancestor that exists must be a folder we can write into
        if existing.is_symlink():
            raise EditclipError(f"{what} {str(out)!r}: {str(existing)!r} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        raise EditclipError(
            f"{what} {str(out)!r} cannot be created: {str(existing)!r} is a file, not a folder; choose another path"
        )
    _probe_writable(existing, out, what)
    clean_stale_temporaries(out.parent)  # staged siblings of a killed run
    if kind == "dir":
        clean_stale_temporaries(out)
    if kind == "file" and out.exists() and not overwrite:
        raise EditclipError(f"{what} {str(out)!r} exists; pass --overwrite to replace it")
    if kind == "dir" and out.is_dir() and not overwrite:
        content = [p.name for p in out.iterdir() if p.name not in allow and not is_temporary(p)]
        if content:
            raise EditclipError(
                f"{what} {str(out)!r} exists and is not empty ({len(content)} entries, e.g. {sorted(content)[0]!r}); "
                "pass --overwrite to write over it, or choose a new folder"
            )
    return out


def _probe_writable(folder: Path, out: Path, what: str) -> None:
    """Create and remove a temporary file in ``folder``: the only test that read-only mounts and ACLs pass."""
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix("probe"), dir=folder)
    except OSError as err:
        raise EditclipError(f"{what} {str(out)!r} cannot be written: {os_reason(err, folder)}") from None
    os.close(fd)
    os.unlink(probe)


def os_reason(err: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """An OSError as a short reason naming the path and what to do."""
    where = str(path if path is not None else (err.filename or "?"))
    advice = {
        errno.ENOSPC: "the disk is full; free some space or write elsewhere",
        errno.EDQUOT: "the disk quota is exceeded; free some space or write elsewhere",
        errno.EROFS: "the file system is read-only; write elsewhere",
        errno.EACCES: "permission denied; write elsewhere or change the folder's permissions",
        errno.EPERM: "operation not permitted; write elsewhere or change the folder's permissions",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EEXIST: "it already exists; pass --overwrite or choose another path",
        errno.ENOTEMPTY: "the folder is not empty; pass --overwrite or choose another folder",
        errno.EISDIR: "it is a folder; give a file name",
        errno.ENOENT: "no such file or folder",
        errno.ENAMETOOLONG: "the name is too long",
    }.get(err.errno or -1, err.strerror or str(err))
    return f"{where!r}: {advice}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600 files; give the result the user's usual mode
            tmp_path.chmod(0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def temp_dir(beside: str | os.PathLike[str]) -> Path:
    """A new, recognisably named temporary folder next to ``beside`` (the user's usual mode)."""
    target = Path(beside)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target.name), dir=target.parent))
    tmp.chmod(0o777 & ~_umask())
    return tmp


@contextlib.contextmanager
def staged_dir(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of ``folder`` to write into; when the block succeeds, move its entries into
    ``folder`` (created, existing entries of the same names replaced). On failure nothing reaches ``folder``."""
    target = Path(folder)
    stage = temp_dir(target)
    try:
        yield stage
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(stage.iterdir()):
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink() and entry.is_dir():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
