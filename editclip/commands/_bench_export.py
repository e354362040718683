"""``editclip bench export``: torch eager vs onnxruntime, base vs EditedCLIP, measured in one run.

Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_export``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EditclipError
from ._common import add_model_args, backbone_from_args

if TYPE_CHECKING:
    from .._bench import Timing
    from ..backbone import Backbone
    from ..edited import EditedCLIP, EditTensors
    from ..export import OnnxImageEncoder


def register_export(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "export",
        help="latency and throughput: torch eager vs onnxruntime, base vs EditedCLIP",
        description="Export the base model and an edited one to ONNX (in a temporary folder, parity-checked), "
        "then time torch eager base, torch EditedCLIP, onnxruntime base and onnxruntime edited on the same "
        "inputs, interleaved: latency at batch 1 and throughput at --batch-size. Without --edit the edit is "
        "synthetic: half the heads of the last 4 layers and every MLP mean-ablated, two last-layer heads "
        "projected onto a random 32-dimensional span.",
    )
    add_model_args(p)
    p.add_argument("--edit", help="edit artifact to time instead of the synthetic edit")
    p.add_argument("--batch-size", type=int, default=16, help="throughput batch size (default 16)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (the median is shown)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime (default: torch's)")
    p.add_argument("--fp16", action="store_true", help="time fp16 ONNX files (torch stays fp32)")
    p.add_argument("--providers", default="cpu", help="onnxruntime providers: cpu (default), cuda, tensorrt, auto")
    p.set_defaults(func=run_export)


def synthetic_edit(bb: Backbone, seed: int = 0) -> EditTensors:
    """A representative edit with random statistics (timing only)."""
    import torch

    from ..edited import EditTensors

    shape = bb.shape
    gen = torch.Generator().manual_seed(seed)
    dim, heads = shape.embed_dim, shape.heads
    late = range(max(0, shape.layers - 4), shape.layers)
    ablate = [layer * heads + h for layer in late for h in range(0, heads, 2)]
    last = (shape.layers - 1) * heads
    project = [last + 1, last + 3] if heads > 3 else [last]
    rank = min(32, dim)
    linear = []
    for _ in project:
        basis = torch.linalg.qr(torch.randn(dim, rank, generator=gen))[0]
        linear.append(basis @ basis.t())
    edit = EditTensors.empty(dim)
    edit.ablate_heads = torch.tensor(ablate)
    edit.ablate_head_means = torch.randn(len(ablate), dim, generator=gen) * 0.01
    edit.project_heads = torch.tensor(project)
    edit.project_linear = torch.stack(linear)
    edit.project_offset = torch.randn(len(project), dim, generator=gen) * 0.01
    edit.ablate_mlps = torch.arange(shape.layers)
    edit.ablate_mlp_means = torch.randn(shape.layers, dim, generator=gen) * 0.01
    return edit


def run_export(args: argparse.Namespace) -> int:
    """Export both models, time the four variants at batch 1 and --batch-size, print tables and ratios."""
    import torch

    from .._bench import format_table
    from ..edited import EditedCLIP
    from ..export import OnnxImageEncoder, check_base, export_onnx, read_edit

    if args.batch_size < 1 or args.repeats < 1:
        raise EditclipError("--batch-size and --repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    bb = backbone_from_args(args)
    if bb.device.type != "cpu":
        raise EditclipError("bench export times torch on the CPU; use scripts/gpu_check.sh for GPUs")
    if args.edit:
        tensors, meta = read_edit(args.edit)
        check_base(meta, bb, args.edit)
    else:
        tensors = synthetic_edit(bb)
    edited = EditedCLIP(bb.model, tensors)
    with tempfile.TemporaryDirectory(prefix="editclip-bench-") as tmp:
        reports = {
            name: export_onnx(model, Path(tmp) / f"{name}.onnx", fp16=args.fp16, batch_sizes=(1, 2))
            for name, model in (("base", bb.model), ("edited", edited))
        }
        sessions = {
            name: OnnxImageEncoder(r.path, providers=args.providers, threads=threads) for name, r in reports.items()
        }
        results = {batch: _time(bb, edited, sessions, batch, args.repeats) for batch in sorted({1, args.batch_size})}
    print(
        f"{bb.model_id} on {bb.device}, {threads} threads, onnxruntime {sessions['base'].providers[0]}, "
        f"{'fp16' if args.fp16 else 'fp32'} ONNX, median of {args.repeats}"
    )
    for name, r in reports.items():
        print(f"  parity {name}: {r.parity.describe()}")
    for batch, timings in results.items():
        print(f"\nbatch {batch}:")
        print(format_table(list(timings.values()), baseline="torch eager base"))
    t = {name: timing.seconds for name, timing in results[1].items()}
    print("\nlatency ratios at batch 1 (lower is better):")
    print(
        f"  onnxruntime base / torch eager base     {t['onnxruntime base'] / t['torch eager base']:6.3f}  "
        "(target <= 1.0)"
    )
    print(f"  onnxruntime edited / torch EditedCLIP   {t['onnxruntime edited'] / t['torch EditedCLIP']:6.3f}")
    print(
        f"  torch EditedCLIP / torch eager base     {t['torch EditedCLIP'] / t['torch eager base']:6.3f}  "
        "(target <= 1.10)"
    )
    if args.batch_size != 1:
        tb = {name: timing.seconds for name, timing in results[args.batch_size].items()}
        print(f"time ratios at batch {args.batch_size}:")
        print(f"  onnxruntime base / torch eager base     {tb['onnxruntime base'] / tb['torch eager base']:6.3f}")
        print(f"  torch EditedCLIP / torch eager base     {tb['torch EditedCLIP'] / tb['torch eager base']:6.3f}")
    return 0


def _time(
    bb: Backbone, edited: EditedCLIP, sessions: dict[str, OnnxImageEncoder], batch: int, repeats: int
) -> dict[str, Timing]:
    import torch

    from .._bench import measure

    images = torch.randn(batch, 3, *bb.shape.image_size, generator=torch.Generator().manual_seed(batch))
    array = images.numpy()
    variants = {
        "torch eager base": lambda: bb.encode_image(images),
        "torch EditedCLIP": lambda: edited.encode_image(images),
        "onnxruntime base": lambda: sessions["base"].run(array),
        "onnxruntime edited": lambda: sessions["edited"].run(array),
    }
    with torch.no_grad():
        timings = measure(variants, batch, bb.device, repeats=repeats)
    return {t.name: t for t in timings}
