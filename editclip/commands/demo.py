"""``editclip demo``: find and remove the toy world's background heads, end to end, offline."""

from __future__ import annotations

import argparse

from .._constants import DEMO_COUNTS
from ..errors import EditclipError
from ._common import add_overwrite_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="the whole method on the shipped toy world: find background heads, edit, evaluate, export",
        description="Generate a small toy-world dataset, decompose its calibration split with the shipped toy "
        "CLIP, rank the heads whose direct part follows the background rather than the shape, choose how many "
        "to mean-ablate on the calibration split, write the spec, compile it, evaluate baseline vs edited on "
        "the test split, export ONNX and report whether worst-group accuracy rose by 10 points with the "
        "average at most 5 points lower. Offline; 10-20 s on a 2-core CPU.",
    )
    parser.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    add_overwrite_arg(parser, "a non-empty --out")
    parser.add_argument("--counts", nargs=3, type=int, metavar=("TRAIN", "VAL", "TEST"), default=DEMO_COUNTS,
                        help="images per split (default %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated world (default 0)")
    parser.add_argument("--max-heads", type=int, default=8, help="most heads to ablate (default 8)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if min(args.counts[1:]) < 8 or args.counts[0] < 0:
        raise EditclipError(f"--counts {' '.join(map(str, args.counts))}: val and test need at least 8 images each")
    if args.max_heads < 1:
        raise EditclipError("--max-heads must be positive")
    from ..demo import run_demo

    result = run_demo(args.out, overwrite=args.overwrite, counts=tuple(args.counts), seed=args.seed,
                      max_heads=args.max_heads)  # fmt: skip
    return 0 if result.run.reports else 1
