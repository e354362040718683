"""``editclip capture``: save named capture points (attention patterns, activations, ...) of a dataset's images."""

from __future__ import annotations

import argparse

from .._io import prepare_output
from ..errors import EditclipError
from ._common import add_data_args, add_model_args, add_overwrite_arg, backbone_from_args, dataset_from_args

FORMAT = "editclip-capture-1"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "capture",
        help="save named intermediate tensors (attention patterns, q/k/v, MLP activations, residuals) to safetensors",
        description="Run the image tower on a dataset and save the capture points asked for, one tensor per layer "
        "and kind (L11.attn.pattern.cls [N, H, T], ...; docs/INTERFACES.md), with the image ids in the file's "
        "metadata.",
    )
    add_model_args(parser)
    add_data_args(parser)
    parser.add_argument("--points", nargs="+", required=True, metavar="NAME",
                        help="capture points <layers>.<kind>, e.g. L11.attn.pattern.cls last:2.mlp.post "
                             "'L*.resid.post' pool.attn.pattern")  # fmt: skip
    parser.add_argument("--out", required=True, help="safetensors file to write")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--max-gib", type=float, default=4.0,
                        help="refuse a capture that would hold more than this many GiB in memory")  # fmt: skip
    add_overwrite_arg(parser, "the output file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from safetensors.torch import save_file
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from .._capture import capture_bytes, capture_images, concat_captured, plan_capture
    from .._io import atomic_path

    if args.batch_size <= 0:
        raise EditclipError(f"--batch-size must be positive, got {args.batch_size}")
    out = prepare_output(args.out, overwrite=args.overwrite, kind="file")
    dataset = dataset_from_args(args)
    if len(dataset) == 0:
        raise EditclipError(f"--data {str(dataset.root)!r} has no images (split {dataset.split or 'all'})")
    bb = backbone_from_args(args)
    plan = plan_capture(args.points, bb.tower)
    total = capture_bytes(plan, bb.tower) * len(dataset)
    if total > args.max_gib * 2**30:
        raise EditclipError(f"--points would hold {total / 2**20:.1f} MiB for {len(dataset)} images (more than "
                            f"--max-gib {args.max_gib:g}): capture fewer points or layers, use --max-images, "
                            "or raise --max-gib")  # fmt: skip
    batches = []
    loader = DataLoader(dataset.with_transform(bb.preprocess), batch_size=args.batch_size)
    for images, _ in tqdm(loader, desc="capture", unit="batch"):
        got = capture_images(bb, images, plan, batch_size=args.batch_size)
        batches.append({name: t.cpu() for name, t in got.items()})
    captured = {name: t.contiguous() for name, t in concat_captured(batches).items()}
    metadata = {"format": FORMAT, "model": bb.model_id, "fingerprint": bb.fingerprint,
                "points": json.dumps(list(plan.names)), "ids": json.dumps(dataset.ids)}  # fmt: skip
    with atomic_path(out) as tmp:
        save_file(captured, str(tmp), metadata=metadata)
    print(f"{out}: {len(captured)} tensors ({total / 2**20:.1f} MiB) of {len(dataset)} images of {dataset.name}, "
          f"{bb.model_id}")  # fmt: skip
    return 0
