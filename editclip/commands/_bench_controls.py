"""``editclip bench controls``: R random-head controls against one fast-path evaluation of the edit.

Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_controls``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EditclipError
from ..names import parse_head
from ._common import list_item

if TYPE_CHECKING:
    from ..edited import EditTensors
    from ..store import DecompositionStore

DEMO_HEADS = ("L3.H3", "L3.H1", "L3.H2", "L2.H1")  # what `editclip demo` finds in the shipped toy CLIP


def register_controls(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``controls`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "controls",
        help="R random-head controls vs one fast-path evaluation of the edit (toy world, stored decomposition)",
        description="Generate a toy world of --images images, decompose them with the shipped toy CLIP, then time "
        "one fast-path evaluation of a mean-ablation edit (edited embeddings from the stored parts, predictions, "
        "group metrics) against the edit and R random head sets of its size scored in one pass, and against R "
        "separate fast-path evaluations. The store serves as calibration and evaluation data (timing only); the "
        "calibration means are computed once beforehand, as for a compiled edit.",
    )
    p.add_argument("--images", type=int, default=2000, help="images in the stored decomposition (default 2000)")
    p.add_argument("--random-heads", type=int, default=20, help="R, the number of random head sets (default 20)")
    p.add_argument("--heads", nargs="+", type=list_item("head names"), default=list(DEMO_HEADS),
                   help="the edit's heads (default the demo's)")
    p.add_argument("--layers", default="same", help="layers the controls are drawn from (default same)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (the median is shown)")
    p.set_defaults(func=run_controls_bench)


def _ablation(store: DecompositionStore, heads: list[str]) -> EditTensors:
    import torch

    from ..edited import EditTensors

    n_layers, n_heads = int(store.meta["shape"]["layers"]), int(store.meta["shape"]["heads"])
    refs = [parse_head(h, n_layers, n_heads) for h in heads]
    means = store.mean("heads")
    edit = EditTensors.empty(int(store.meta["shape"]["embed_dim"]))
    edit.ablate_heads = torch.tensor([r.layer * n_heads + r.head for r in refs])
    edit.ablate_head_means = torch.stack([means[r.layer, r.head] for r in refs])
    return edit


def run_controls_bench(args: argparse.Namespace) -> int:
    """Build the store, time the variants interleaved, print the table and the ratio."""
    import torch

    from .._bench import format_table, measure
    from .._compile import calibration_store
    from ..controls import CalibrationMeans, ControlSettings, random_head_controls
    from ..data import load_dataset
    from ..evaluate import predict, zero_shot_classifier
    from ..evaluation_paths import Targets, fast_embeddings
    from ..toyworld import CLASSES, TEMPLATES
    from ..toyworld import load as load_toyworld
    from ..toyworld.write import write_dataset

    if args.images < 4 or args.random_heads < 1 or args.repeats < 1:
        raise EditclipError("--images must be >= 4, --random-heads and --repeats >= 1")
    bb = load_toyworld()
    with tempfile.TemporaryDirectory(prefix="editclip-bench-controls-") as tmp:
        data = write_dataset(Path(tmp) / "data", seed=0, counts=(0, args.images, 0), progress=False)
        store = calibration_store(bb, load_dataset(data, split="val"), Path(tmp) / "cache")
        edit = _ablation(store, args.heads)
        classifier = zero_shot_classifier(bb, list(CLASSES), list(TEMPLATES))
        tg = Targets(store.column("y"), {"y": store.column("y"), "place": store.column("place")}, None)
        settings = ControlSettings(args.random_heads, 0, args.layers)
        means = CalibrationMeans.of(store)  # calibration statistics, computed once like a compiled edit's
        result = random_head_controls(store, means, edit, classifier, tg, settings, progress=False)
        edits = [_ablation(store, list(s)) for s in result.sets]

        def one() -> object:
            return tg.report(predict(fast_embeddings(store, edit, progress=False), classifier))

        r = args.random_heads
        variants = {
            "one fast-path evaluation": one,
            f"edit + {r} controls, one pass": lambda: random_head_controls(store, means, edit, classifier, tg,
                                                                           settings, progress=False),
            f"edit + {r} fast-path evaluations": lambda: [one()] + [
                tg.report(predict(fast_embeddings(store, e, progress=False), classifier)) for e in edits
            ],
        }  # fmt: skip
        with torch.no_grad():
            timings = measure(variants, args.images, torch.device("cpu"), repeats=args.repeats)
    print(f"toy CLIP, stored decomposition of {args.images} images, edit: mean-ablate {', '.join(args.heads)}; "
          f"controls drawn from layers {','.join(map(str, result.layers))}; {torch.get_num_threads()} threads, "
          f"median of {args.repeats}:")  # fmt: skip
    print(format_table(timings, baseline="one fast-path evaluation"))
    base, ctrl, loop = (t.seconds for t in timings)
    print(f"time of the edit + {r} controls in one pass / one fast-path evaluation: {ctrl / base:.2f}x "
          f"(separate evaluations: {loop / base:.1f}x)")  # fmt: skip
    return 0
