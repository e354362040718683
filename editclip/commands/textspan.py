"""``editclip textspan``: name what each head of the chosen layers writes, as a head report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .._constants import VARIANTS
from .._io import prepare_output, staged_dir
from ..errors import EditclipError
from ..names import parse_layers
from ._common import add_overwrite_arg

if TYPE_CHECKING:
    from ..stats import PartStats
    from ..store import DecompositionStore


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "textspan",
        help="TextSpan head reports: the texts that explain each head's direct contributions",
        description="Run TextSpan on every head of the chosen layers of a stored decomposition, or of a "
        "statistics file (`editclip stats`: TextSpan needs only each head's mean and scatter, so the report is "
        "the same), and write report.json, report.md and overview.png.",
    )
    add_store_arg(parser, stats=True)
    parser.add_argument("--pool", default="general", help="description pool: general, toyworld, or a text file")
    parser.add_argument("--m", type=int, default=20, help="texts per head")
    parser.add_argument("--layers", default="last:4",
                        help="layers: last:4, L8-11, all ..., or 'pool' for the attention pool's heads pool.H* "
                        "(an official-convention store of a SigLIP tower)")  # fmt: skip
    add_textspan_args(parser)
    parser.add_argument("--device", default="cpu", help="device for the text tower and TextSpan")
    parser.add_argument("--out", required=True, help="report folder")
    add_overwrite_arg(parser, "the files of a non-empty --out")
    parser.set_defaults(func=run)


def add_store_arg(parser: argparse.ArgumentParser, stats: bool = False) -> None:
    what = "decomposition store folder written by `editclip decompose`"
    if stats:
        what += ", or a statistics file written by `editclip stats`"
    parser.add_argument("--store", help=f"{what} (required)")
    parser.add_argument("--decomposition", dest="store", help=argparse.SUPPRESS)  # the old name, still read


def add_textspan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", default="paper", choices=VARIANTS, help="TextSpan variant")
    parser.add_argument("--k", type=int, default=80, help="official variant: rank of the text projection, capped "
                        "at each head's numerical rank")  # fmt: skip
    parser.add_argument("--insist-k", action="store_true", help="official variant: keep --k even above a head's "
                        "numerical rank, as the official code does (picks from noise directions: not reproducible)")
    parser.add_argument("--textspan-precision", default="float64", choices=("float64", "float32"),
                        help="arithmetic precision of TextSpan (not the model's: that is --precision elsewhere)")
    parser.add_argument("--precision", dest="textspan_precision", choices=("float64", "float32"),
                        help=argparse.SUPPRESS)  # the old name of --textspan-precision  # fmt: skip


def open_store(path: str | None, command: str | None = None, why: str = "") -> DecompositionStore:
    """Open a complete store, or say why not; a statistics file is refused naming `command` and `why` it needs
    per-image parts."""
    from ..store import DecompositionStore

    if path is None:
        raise EditclipError("give the decomposition store: --store DIR (written by `editclip decompose`)")
    if command is not None and Path(path).is_file():
        raise EditclipError(
            f"`editclip {command}` needs per-image parts ({why}), which a statistics file does not hold: {path!r} "
            "is a file; give a decomposition store folder (`editclip decompose`)"
        )
    store = DecompositionStore.open(path)
    if not store.complete:
        raise EditclipError(
            f"store {path!r} is incomplete ({len(store.missing_chunks())} chunks missing); "
            "run the same `editclip decompose` command again to finish it"
        )
    return store


def open_store_or_stats(path: str | None) -> DecompositionStore | PartStats:
    """A complete store (a folder) or a statistics file (a file), told apart by what the path is."""
    from ..stats import PartStats

    if path is not None and Path(path).is_file():
        return PartStats.load(path)
    return open_store(path)


def check_out(args: argparse.Namespace) -> Path:
    """The --out folder, checked before any work: creatable, writable, and empty unless --overwrite."""
    return prepare_output(args.out, args.overwrite, "dir")


def run(args: argparse.Namespace) -> int:
    from .._textspan import head_report, stats_heads, store_heads, store_pool_heads, textspan, write_head_report
    from ..stats import PartStats
    from ..store import backbone_for_store
    from ..text import encode_texts, load_pool

    out = check_out(args)
    store = open_store_or_stats(args.store)
    from_stats = isinstance(store, PartStats)
    pool_heads = args.layers.strip() == "pool"
    if from_stats and pool_heads:
        raise EditclipError(
            f"statistics {args.store!r} hold no scatters of the attention pool's heads (pool.H*); give an "
            "official-convention decomposition store of the pooled tower"
        )
    if pool_heads:
        layers = []
    elif from_stats:
        layers = parse_layers(args.layers, store.meta["shape"]["layers"])
    else:
        layers = store.layer_subset(args.layers, f"--layers {args.layers}")
    pool = load_pool(args.pool)
    if not 1 <= args.m <= len(pool):
        raise EditclipError(f"--m {args.m} is out of range: pool {args.pool!r} has {len(pool)} texts")
    if args.variant == "official" and not 1 <= args.m <= args.k:
        raise EditclipError(f"--m {args.m} must be at most --k {args.k} with the official variant")

    if from_stats:
        data, heads = stats_heads(store, layers)
    else:
        data, heads = store_pool_heads(store) if pool_heads else store_heads(store, layers)
    bb = backbone_for_store(store, args.device)
    texts = encode_texts(bb, pool)
    result = textspan(data, texts, m=args.m, variant=args.variant, k=args.k, texts=pool, strict_k=args.insist_k,
                      device=args.device, precision=args.textspan_precision, progress=True)  # fmt: skip
    source = {"stats" if from_stats else "store": store.describe()}
    report = head_report(result, heads, **source, pool=args.pool, pool_size=len(pool),
                         m=args.m, k=args.k if args.variant == "official" else None,
                         layers="pool" if pool_heads else layers)  # fmt: skip
    with staged_dir(out) as stage:
        paths = [out / p.name for p in write_head_report(report, stage)]
    for row in report["heads"]:
        print(f"{row['head']:>8} {100 * row['explained']:5.1f}%  " + " | ".join(t["text"] for t in row["texts"][:3]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
