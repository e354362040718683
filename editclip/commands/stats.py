"""``editclip stats``: one streaming pass over a dataset -> a fixed-size statistics file (no per-image store)."""

from __future__ import annotations

import argparse

from .._constants import CONVENTIONS
from .._io import prepare_output
from ..errors import EditclipError
from ..names import parse_layers
from ._common import (
    add_data_args,
    add_estimate_args,
    add_model_args,
    add_overwrite_arg,
    backbone_from_args,
    dataset_from_args,
    estimate_inputs,
    require_data,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "stats",
        help="streaming statistics of a dataset's parts (means, head scatters, group means) in one file",
        description="One pass over a dataset: per-part counts and means, the centred scatter of each head of "
        "--layers, per-group/per-class means. Memory and file size do not grow with the number of images. "
        "Under torchrun the ranks share the images and the sums are all-reduced into one file.",
    )
    add_model_args(parser)
    add_data_args(parser, required=False)
    parser.add_argument("--out", required=True, help="statistics file (.safetensors)")
    parser.add_argument("--layers", help="layers whose heads get scatter matrices (e.g. last:4; default all)")
    parser.add_argument("--convention", default="exact", choices=CONVENTIONS, help="how the parts are split")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--save-every", type=int, default=50, help="save partial sums every K batches (resume)")
    parser.add_argument("--workers", type=int, default=0, help="image-loading worker processes")
    add_overwrite_arg(parser, "an existing statistics file")
    add_estimate_args(parser, "stats")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..stats import accumulate_stats

    if args.batch_size <= 0 or args.save_every <= 0:
        raise EditclipError("--batch-size and --save-every must be positive")
    if args.estimate:
        return _estimate(args)
    require_data(args)
    out = prepare_output(args.out, overwrite=args.overwrite)
    dataset = dataset_from_args(args)
    bb = backbone_from_args(args)
    layers = parse_layers(args.layers, bb.shape.layers) if args.layers else None
    stats = accumulate_stats(bb, dataset, out, convention=args.convention, layers=layers,
                             batch_size=args.batch_size, save_every=args.save_every, workers=args.workers)  # fmt: skip
    if stats is not None:
        print(f"{out}: statistics of {stats.count} images of {dataset.name} ({dataset.split or 'all'}), "
              f"{bb.model_id}, convention {args.convention}, scatters for layers {stats.layers}")  # fmt: skip
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from .._cost import stats_estimate

    dataset, images = estimate_inputs(args)
    bb = backbone_from_args(args)
    layers = parse_layers(args.layers, bb.shape.layers) if args.layers else list(range(bb.shape.layers))
    lines = stats_estimate(bb, images, dataset, args.out, convention=args.convention, layers=layers,
                           batch_size=args.batch_size, time_images=None if args.no_time else args.time_images)
    print("\n".join(lines))
    return 0
