"""The ``editclip`` command: one sub-command module per job, errors as one clear line and exit 2."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

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
    "capture",
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


class HelpFormatter(argparse.HelpFormatter):
    """Every command's help: each option's default is shown, unless its text already names it (or it has none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or not action.option_strings or default in (None, False, argparse.SUPPRESS):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """An argument parser with :class:`HelpFormatter`, for the command and every sub-command."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every sub-command."""
    parser = Parser(
        prog="editclip",
        description="Interpret and edit CLIP image encoders through the direct effects of their heads.",
    )
    parser.add_argument("--version", action="version", version=f"editclip {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars (what is printed stays)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"editclip.commands.{name}").register(sub)
    return parser


@contextlib.contextmanager
def _no_progress(quiet: bool) -> Iterator[None]:
    """With ``quiet``, every tqdm bar made meanwhile is disabled (whatever ``disable`` its caller passes)."""
    if not quiet:
        yield
        return
    from tqdm import std

    original = std.tqdm.__init__

    def disabled(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "disable": True})

    std.tqdm.__init__ = disabled  # type: ignore[method-assign]
    try:
        yield
    finally:
        std.tqdm.__init__ = original  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _no_progress(args.quiet):
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
