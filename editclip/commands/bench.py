"""``editclip bench ...``: benchmarks that print ratios measured in one run."""

from __future__ import annotations

import argparse

from .._constants import CONVENTIONS
from ..errors import EditclipError
from ..names import parse_layers
from ._bench_controls import register_controls
from ._bench_export import register_export
from ._bench_segment import register_segment
from ._bench_startup import register_startup
from ._bench_stats import register_stats
from ._bench_textspan import register_textspan
from ._common import add_model_args, backbone_from_args


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="benchmarks (throughput ratios measured in one run)")
    bench = parser.add_subparsers(dest="bench", metavar="WHAT", required=True)
    p = bench.add_parser("decompose", help="decomposition throughput vs the model's own image forward")
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--token-layers", default="last:4",
                   help="layers with per-token parts (default last:4; `all` for every layer)")  # fmt: skip
    p.add_argument("--convention", default="exact", choices=CONVENTIONS, help="how the parts are split")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (the median is shown)")
    p.add_argument("--capture", nargs="+", default=None, metavar="NAME",
                   help="capture points timed on the plain forward (beside the same forward capturing nothing); "
                        "default all.attn.pattern.cls last:1.mlp.post (towers without a class token: "
                        "last:1.attn.pattern last:1.mlp.post)")  # fmt: skip
    p.set_defaults(func=run_decompose)
    register_textspan(bench)
    register_segment(bench)
    register_export(bench)
    register_startup(bench)
    register_controls(bench)
    register_stats(bench)


def run_decompose(args: argparse.Namespace) -> int:
    import torch

    from .._bench import format_table, measure
    from .._capture import Recorder, plan_capture
    from .._decompose import decompose
    from ..vit import run as run_vit

    if args.batch_size <= 0 or args.repeats <= 0:
        raise EditclipError("--batch-size and --repeats must be positive")
    bb = backbone_from_args(args)
    torch.manual_seed(0)
    size = bb.shape.image_size
    images = torch.randn(args.batch_size, 3, *size, device=bb.device, dtype=bb.dtype)
    token_layers = parse_layers(args.token_layers, bb.shape.layers)
    pattern = "all.attn.pattern.cls" if bb.tower.class_embedding is not None else "last:1.attn.pattern"
    plan = plan_capture(args.capture or [pattern, "last:1.mlp.post"], bb.tower)
    baseline = f"{bb.family} encode_image"  # the model's own image forward
    with_tokens = f"decompose: + tokens of {len(token_layers)} layers"
    variants = {
        baseline: lambda: bb.encode_image(images),
        f"decompose: {'CLS' if bb.shape.pool == 'cls' else 'pooled'} parts": lambda: decompose(
            bb, images, args.convention, batch_size=args.batch_size
        ),
        with_tokens: lambda: decompose(bb, images, args.convention, token_layers, batch_size=args.batch_size),
        "forward: nothing captured": lambda: run_vit(bb.tower, images, parts=False),
        f"forward: + capture {len(plan.names)} points": lambda: run_vit(
            bb.tower, images, parts=False, recorder=Recorder(plan)
        ),
    }
    with torch.no_grad():
        timings = measure(variants, args.batch_size, bb.device, repeats=args.repeats)
    print(f"{bb.model_id} batch {args.batch_size} on {bb.device} ({torch.get_num_threads()} threads), "
          f"{args.convention} convention, median of {args.repeats}:")  # fmt: skip
    print(format_table(timings, baseline=baseline))
    s = bb.shape
    held = args.batch_size * len(token_layers) * s.heads * s.n_tokens * s.embed_dim * 4
    base, tokens = timings[0], timings[2]
    print(f"per-token parts: {tokens.throughput / base.throughput:.3f}x {baseline}, peak "
          f"{tokens.peak_bytes / 2**20:.0f} MiB above the start ({base.peak_bytes / 2**20:.0f} MiB for the baseline), "
          f"of which the parts returned take {held / 2**20:.0f} MiB")  # fmt: skip
    return 0
