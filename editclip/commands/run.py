"""``editclip run SPEC``: compile an edit spec, evaluate baseline vs edited, export, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_overwrite_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="compile an edit spec, evaluate baseline vs edited per group, export, write a report",
        description="Load the spec's model, compile its edits on the calibration images, evaluate the baseline "
        "and the edited model on the evaluation images (per group, worst group, adjusted average), export as "
        "the spec asks, and write report.json, report.md, groups.png and spec.yaml into --out. A bad spec "
        "exits 2 and writes nothing.",
    )
    parser.add_argument("spec", help="the edit spec (YAML)")
    parser.add_argument("--out", help="report folder (default out/<spec file name>)")
    add_overwrite_arg(parser, "the files of a non-empty --out and export folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--cache", help="folder for decomposition stores (default: editclip's cache)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-exact-check", action="store_true",
                        help="skip running the wrapper on the evaluation images (the fast path's check)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runner import run_spec
    from ..spec import EditSpec

    spec = EditSpec.from_yaml(args.spec)
    out = Path(args.out) if args.out else Path("out") / Path(args.spec).stem
    result = run_spec(spec, out, overwrite=args.overwrite, device=args.device, cache_dir=args.cache,
                      batch_size=args.batch_size, exact_check=not args.no_exact_check, spec_path=args.spec)  # fmt: skip
    if result.reports:
        print(result.table)
        delta = result.report["evaluation"]["delta"]
        print(f"edited - baseline: average {100 * delta['acc_avg']:+.1f}, worst group {100 * delta['acc_wg']:+.1f} "
              "points")  # fmt: skip
    print(f"wrote {', '.join(str(out / name) for name in sorted(p.name for p in out.iterdir()))}")
    return 0
