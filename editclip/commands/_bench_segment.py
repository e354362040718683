"""``editclip bench segment``: throughput and peak memory of decomposition heatmaps against encode_image.

Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_segment``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import EditclipError

if TYPE_CHECKING:
    import torch


def register_segment(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "segment",
        help="heatmap throughput and peak memory vs plain encode_image (random weights)",
        description="Time zero-shot segmentation heatmaps (per-token parts summed over layers and heads, never "
        "per-head token tensors), a one-head map and the attention-rollout baseline against open_clip's "
        "encode_image, on random images with a random-weight model. Peak memory is the rise above the level "
        "before each call (RSS on CPU, allocator peak on CUDA).",
    )
    p.add_argument("--model", default="ViT-L-14", help="open_clip model name (default ViT-L-14)")
    p.add_argument("--batch-size", type=int, default=4, help="images per call")
    p.add_argument("--classes", type=int, default=10, help="number of candidate class directions (random)")
    p.add_argument("--layers", default="all", help="layers summed in the heatmaps (default all)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant (the median is shown)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.set_defaults(func=run_segment_bench)


def run_segment_bench(args: argparse.Namespace) -> int:
    """Load the random-weight model, time the variants interleaved, print the table."""
    import torch
    import torch.nn.functional as F

    from .._bench import format_table, measure
    from ..attention_maps import attention_maps
    from ..backbone import load
    from ..spatial import head_map, head_mask, heatmaps

    if args.batch_size < 1 or args.repeats < 1 or args.classes < 2:
        raise EditclipError("--batch-size and --repeats must be >= 1 and --classes >= 2")
    bb = load(args.model, device=args.device)
    head_mask(bb, args.layers)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, *bb.shape.image_size, generator=gen).to(bb.device, bb.dtype)
    classes = F.normalize(torch.randn(args.classes, bb.shape.embed_dim, generator=gen), dim=-1)
    last = bb.shape.layers - 1
    n = args.batch_size
    variants = {
        "open_clip encode_image": lambda: bb.encode_image(images),
        f"heatmaps (layers {args.layers})": lambda: heatmaps(bb, images, classes, layers=args.layers, batch_size=n,
                                                             progress=False),
        f"head map L{last}.H0": lambda: head_map(bb, images, f"L{last}.H0", classes[0], batch_size=n, progress=False),
        "baselines: attention + rollout": lambda: attention_maps(bb, images, batch_size=n, progress=False),
    }  # fmt: skip
    with torch.no_grad():
        timings = measure(variants, n, bb.device, repeats=args.repeats)
        for timing in timings:
            timing.peak_bytes = peak_bytes(variants[timing.name], bb.device)
    s = bb.shape
    print(f"{args.model} (random weights, {s.layers} layers x {s.heads} heads, {s.n_tokens} tokens) batch {n} on "
          f"{bb.device} ({torch.get_num_threads()} threads), median of {args.repeats}:")  # fmt: skip
    print(format_table(timings, baseline="open_clip encode_image"))
    dense = s.n_tokens * s.n_tokens * s.heads * bb.shape.embed_dim * 4
    print(f"(a dense per-layer [query, source, head, dim] fp32 tensor would take {dense / 2**30:.1f} GiB per image)")
    return 0


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        return int(next(line for line in handle if line.startswith(field)).split()[1])


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak memory rise during one call of `fn`.

    CUDA: the allocator's peak. CPU: freed heap is first handed back to the OS (glibc ``malloc_trim``), so
    that the call has to grow the process again; then the kernel's RSS high-water mark, reset through
    ``/proc/self/clear_refs``, minus the RSS before the call (sampled RSS where that file is not writable).
    """
    from .._bench import PeakMemory

    if device.type != "cpu":
        with PeakMemory(device) as mem:
            fn()
        return mem.peak
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        with PeakMemory(device) as mem:
            fn()
        return mem.peak
    base = _status_kib("VmRSS:")
    fn()
    return (_status_kib("VmHWM:") - base) * 1024
