"""``editclip decompose``: decompose a dataset into a store on disk."""

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
    backbone_from_args,
    dataset_from_args,
    estimate_inputs,
    parse_shard,
    require_data,
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "decompose",
        help="split a dataset's image embeddings into per-head / MLP direct parts, stored on disk",
        description="Decompose every image of a dataset into a resumable store (safetensors chunks + meta.json).",
    )
    add_model_args(parser)
    add_data_args(parser, required=False)
    parser.add_argument("--out", required=True, help="store folder (created; an interrupted run resumes)")
    parser.add_argument("--convention", default="exact", choices=CONVENTIONS,
                        help="post-LayerNorm split of the parts (docs/method.md section 1)")
    parser.add_argument("--layers", help="store head parts only for these layers (e.g. last:4; default all); "
                        "the others' heads are stored summed, one part L<l>.attn per layer")
    parser.add_argument("--token-layers", help="also store per-source-token parts of these layers (e.g. last:4)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--chunk-size", type=int, default=256, help="images per chunk file")
    parser.add_argument("--store-dtype", default="float32", choices=("float32", "float16"),
                        help="dtype the parts are stored in (the model runs in --precision)")
    parser.add_argument("--dtype", dest="store_dtype", choices=("float32", "float16"),
                        help=argparse.SUPPRESS)  # the old name of --store-dtype
    parser.add_argument("--shard", help="K/N: compute every N-th chunk starting at K (default: torchrun rank)")
    parser.add_argument("--workers", type=int, default=0, help="image-loading worker processes")
    parser.add_argument("--wait", action="store_true",
                        help="if another run is writing this store, wait for it instead of failing")  # fmt: skip
    add_estimate_args(parser, "decompose")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..store import decompose_dataset

    if args.batch_size <= 0 or args.chunk_size <= 0:
        raise EditclipError("--batch-size and --chunk-size must be positive")
    if args.estimate:
        return _estimate(args)
    require_data(args)
    out = prepare_output(args.out, overwrite=True, kind="dir")  # creatable, writable; a store in it is resumed
    shard = parse_shard(args.shard)
    dataset = dataset_from_args(args)
    bb = backbone_from_args(args)
    token_layers = parse_layers(args.token_layers, bb.shape.layers) if args.token_layers else []
    layers = parse_layers(args.layers, bb.shape.layers) if args.layers else None
    store = decompose_dataset(
        bb,
        dataset,
        out,
        convention=args.convention,
        token_layers=token_layers,
        layers=layers,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        dtype=args.store_dtype,
        shard=shard,
        workers=args.workers,
        wait=args.wait,
    )
    missing = store.missing_chunks()
    state = "complete" if not missing else f"{len(missing)} chunks left for other shards"
    print(f"{store.root}: {store.count} images of {dataset.name} ({dataset.split or 'all'}), "
          f"{bb.model_id}, convention {args.convention}: {state}")  # fmt: skip
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from .._cost import decompose_estimate
    from .._store_build import _head_layers

    dataset, images = estimate_inputs(args)
    bb = backbone_from_args(args)
    token_layers = parse_layers(args.token_layers, bb.shape.layers) if args.token_layers else []
    layers = _head_layers(bb, args.convention, parse_layers(args.layers, bb.shape.layers) if args.layers else None)
    lines = decompose_estimate(bb, images, dataset, args.out, convention=args.convention, token_layers=token_layers,
                               head_layers=layers, batch_size=args.batch_size, chunk_size=args.chunk_size,
                               dtype=args.store_dtype,
                               time_images=None if args.no_time else args.time_images)  # fmt: skip
    print("\n".join(lines))
    return 0
