"""``editclip run SPEC``: compile an edit spec, evaluate baseline vs edited, export, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EditclipError
from ._common import add_overwrite_arg

if TYPE_CHECKING:
    from ..controls import ControlSettings
    from ..spec import EditSpec


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
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--cache", help="folder for decomposition stores (default: editclip's cache)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                        help="replace a spec field, e.g. --set model.pretrained=laion2b_s34b_b88k --set "
                        "calibration.data.root=data/wb (validated like the file, recorded in the report; "
                        "relative paths here are read from the working folder, the file's from its folder)")
    controls = parser.add_argument_group("random-head controls (override the spec's evaluate.controls)")
    controls.add_argument("--controls", type=int, metavar="R", help="score R random sets of the edit's number of "
                          "heads beside it (0: none)")  # fmt: skip
    controls.add_argument("--controls-seed", type=int, help="seed of the random sets (default 0)")
    controls.add_argument("--controls-layers", help="layers to draw from: same (the edit's, default), all, "
                          "last:4, L8-11 ...")  # fmt: skip
    parser.add_argument("--baseline-texts", nargs="+", metavar="TEXT", help="also evaluate projecting the whole "
                        "embedding away from these spurious-attribute texts (Chuang et al. 2023) beside the "
                        "edit")  # fmt: skip
    parser.add_argument("--no-exact-check", action="store_true",
                        help="skip running the wrapper on the evaluation images (the fast path's check)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runner import run_spec
    from ..spec import EditSpec

    spec = EditSpec.from_yaml(args.spec, args.overrides)
    out = Path(args.out) if args.out else Path("out") / Path(args.spec).stem
    result = run_spec(spec, out, overwrite=args.overwrite, device=args.device, cache_dir=args.cache,
                      batch_size=args.batch_size, exact_check=not args.no_exact_check, spec_path=args.spec,
                      controls=control_settings(spec, args), baseline_texts=args.baseline_texts)  # fmt: skip
    if result.reports:
        print(result.table)
        delta = result.report["evaluation"]["delta"]
        print(f"edited - baseline: average {100 * delta['acc_avg']:+.1f}, worst group {100 * delta['acc_wg']:+.1f} "
              "points")  # fmt: skip
    print(f"wrote {', '.join(str(out / name) for name in sorted(p.name for p in out.iterdir()))}")
    return 0


def control_settings(spec: EditSpec, args: argparse.Namespace) -> ControlSettings | bool:
    """The spec's ``evaluate.controls`` with the command line's overrides; False for no controls."""
    from ..controls import ControlSettings
    from ..runner import spec_controls

    base = spec_controls(spec)
    if args.controls == 0 or (base is None and args.controls is None):
        if args.controls_seed is not None or args.controls_layers is not None:
            raise EditclipError("--controls-seed and --controls-layers need random-head controls (--controls R)")
        return False
    base = base or ControlSettings()
    return ControlSettings(
        args.controls if args.controls is not None else base.random_heads,
        args.controls_seed if args.controls_seed is not None else base.seed,
        args.controls_layers if args.controls_layers is not None else base.layers,
    )
