"""The ``editclip`` command: one sub-command module per job, errors as one clear line and exit 2."""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from collections.abc import Sequence

from ._io import os_reason
from ._version import __version__
from .errors import EditclipError

# OS errors that an ordinary user meets (disk full, read-only or missing locations, permissions): one line, exit 2.
EXPECTED_OS_ERRORS = frozenset({
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST,
    errno.ENOTEMPTY, errno.EISDIR, errno.ENOENT, errno.ENAMETOOLONG,
})  # fmt: skip

# Each module in editclip/commands/ defines ``register(subparsers)``, which adds its parser(s) and
# sets ``func`` (called with the parsed namespace, returns an exit code or None).
COMMAND_MODULES: tuple[str, ...] = (
    "decompose",
    "stats",
    "bench",
    "spec",
    "specs",
    "segment",
    "textspan",
    "curves",
    "retrieve",
    "suggest",
    "sweep",
    "export",
    "run",
    "demo",
    "toyworld",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="editclip",
        description="Interpret and edit CLIP image encoders through the direct effects of their heads.",
    )
    parser.add_argument("--version", action="version", version=f"editclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"editclip.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except EditclipError as err:
        print(f"editclip {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in EXPECTED_OS_ERRORS:
            raise  # an unexpected OS error is a bug: keep its traceback
        where = err.filename or getattr(args, "out", None) or getattr(args, "json", None)  # name the output
        print(f"editclip {args.command}: error: {os_reason(err, where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"editclip {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
