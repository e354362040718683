"""``editclip bench ...``: benchmarks that print ratios measured in one run."""

from __future__ import annotations

import argparse

from ..names import parse_layers
from ._bench_controls import register_controls
from ._bench_export import register_export
from ._bench_segment import register_segment
from ._bench_startup import register_startup
from ._bench_textspan import register_textspan
from ._common import add_model_args, backbone_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (throughput ratios measured in one run)")
    bench = parser.add_subparsers(dest="bench", metavar="WHAT", required=True)
    p = bench.add_parser("decompose", help="decomposition throughput vs the model's own image forward")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--token-layers", default="last:4", help="layers with per-token parts (default last:4)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (the median is shown)")
    p.set_defaults(func=run_decompose)
    register_textspan(bench)
    register_segment(bench)
    register_export(bench)
    register_startup(bench)
    register_controls(bench)


def run_decompose(args: argparse.Namespace) -> int:
    import torch

    from .._bench import format_table, measure
    from ..vit import run as run_vit

    bb = backbone_from_args(args)
    torch.manual_seed(0)
    size = bb.shape.image_size
    images = torch.randn(args.batch_size, 3, *size, device=bb.device, dtype=bb.dtype)
    token_layers = parse_layers(args.token_layers, bb.shape.layers)
    baseline = f"{bb.family} encode_image"  # the model's own image forward
    variants = {
        baseline: lambda: bb.encode_image(images),
        f"decompose: {'CLS' if bb.shape.pool == 'cls' else 'pooled'} parts": lambda: run_vit(bb.tower, images),
        f"decompose: + tokens of {len(token_layers)} layers": lambda: run_vit(
            bb.tower, images, token_layers=token_layers
        ),
    }
    with torch.no_grad():
        timings = measure(variants, args.batch_size, bb.device, repeats=args.repeats)
    print(f"{bb.model_id} batch {args.batch_size} on {bb.device} ({torch.get_num_threads()} threads), "
          f"median of {args.repeats}:")  # fmt: skip
    print(format_table(timings, baseline=baseline))
    return 0
