"""``editclip specs list | show NAME``: the edit specs shipped with editclip."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._io import write_text
from ..errors import EditclipError


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``specs list`` and ``specs show``."""
    parser = sub.add_parser(
        "specs",
        help="the edit specs shipped with editclip: list them, print or copy one",
        description="The edit specs shipped inside the package (the paper's Waterbirds edits, a projection "
        "edit, the toy world's). Their data roots are relative: copy one into your project with "
        "`editclip specs show NAME --out FILE`, edit the roots, then `editclip run FILE`.",
    )
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)
    listing = jobs.add_parser("list", help="names and one-line summaries of the shipped specs")
    listing.set_defaults(func=run_list)
    show = jobs.add_parser("show", help="print a shipped spec, or copy it to --out")
    show.add_argument("name", help="spec name, as `editclip specs list` prints it (e.g. toyworld)")
    show.add_argument("--out", metavar="FILE", help="write the spec to FILE instead of printing it")
    show.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    show.set_defaults(func=run_show)


def run_list(args: argparse.Namespace) -> int:
    """Print every shipped spec's name and summary, and where they lie."""
    from ..spec.shipped import shipped_dir, shipped_spec, shipped_specs, summary

    names = shipped_specs()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {summary(shipped_spec(name))}")
    print(f"({len(names)} specs in {shipped_dir()})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Print the spec, or write it atomically to --out (refusing to replace a file without --overwrite)."""
    from ..spec.shipped import shipped_spec

    text = shipped_spec(args.name).read_text(encoding="utf-8")
    if args.out is None:
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.is_dir():
        raise EditclipError(f"--out {args.out!r} is a folder; give a file name such as {args.name}.yaml")
    if out.exists() and not args.overwrite:
        raise EditclipError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    write_text(out, text)
    print(f"wrote {out}")
    return 0
