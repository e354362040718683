"""``editclip bench stats``: streaming statistics vs the model's own image forward, and their memory in N."""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EditclipError
from ._common import add_model_args, backbone_from_args

if TYPE_CHECKING:
    from torch import Tensor

    from .._decompose import Decomposition
    from ..backbone import Backbone
    from ..stats import PartStats

TINY_MODEL = {  # an open_clip config: 32 px images, 4 layers x 4 heads
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
BATCH = 64  # images per forward pass of the memory runs
GROUPS = {"y": ["0", "1"], "place": ["0", "1"], "y,place": ["0,0", "0,1", "1,0", "1,1"]}  # as for Waterbirds


def register_stats(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stats`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "stats",
        help="statistics throughput vs encode_image on the same batches; peak memory for N images",
        description="Throughput: the model's own image forward against what `editclip stats` does per batch "
        "(instrumented forward, parts, float64 sums, head scatters, group sums) on the same random batches. "
        "Memory: one `editclip stats` pass over N random images for each --sizes N with a tiny random-weight "
        "CLIP (32 px images), and the spread of the peaks.",
    )
    add_model_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16)")
    p.add_argument("--batches", type=int, default=2, help="batches per timed call (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant (the median is shown)")
    p.add_argument("--sizes", default="1000,4000,16000", help="image counts N of the memory runs ('' for none)")
    p.set_defaults(func=run_stats_bench)


def run_stats_bench(args: argparse.Namespace) -> int:
    """Time both sides interleaved, then the memory runs; print the tables and the ratios."""
    import torch

    from .._bench import format_table, measure

    sizes = _sizes(args.sizes)
    if min(args.batch_size, args.batches, args.repeats) <= 0:
        raise EditclipError("--batch-size, --batches and --repeats must be positive")
    bb = backbone_from_args(args)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(args.batch_size, 3, *bb.shape.image_size, generator=gen).to(bb.device, bb.dtype)
               for _ in range(args.batches)]  # fmt: skip
    groups = _batch_groups(args.batch_size)
    stats = _empty_stats(bb, batches[0])
    baseline = f"{bb.family} encode_image"

    def plain() -> None:
        for batch in batches:
            bb.encode_image(batch)

    def streaming() -> None:
        for batch in batches:
            stats.add(_parts(bb, batch), groups)

    items = args.batch_size * args.batches
    with torch.no_grad():
        timings = measure({baseline: plain, "stats: parts, sums, scatters": streaming}, items, bb.device,
                          repeats=args.repeats)  # fmt: skip
    print(f"{bb.model_id} batch {args.batch_size} x {args.batches} on {bb.device} ({torch.get_num_threads()} threads), "
          f"scatters of all {bb.shape.layers} layers, median of {args.repeats}:")  # fmt: skip
    print(format_table(timings, baseline=baseline))
    print(f"stats throughput: {timings[1].throughput / timings[0].throughput:.3f}x {baseline} (target >= 0.9)")
    if sizes:
        _memory_in_n(sizes)
    return 0


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EditclipError(f"--sizes {text!r}: expected image counts such as 1000,4000,16000") from None
    if any(n <= 0 for n in sizes):
        raise EditclipError(f"--sizes {text!r}: every image count must be positive")
    return sizes


def _batch_groups(n: int) -> dict[str, Tensor]:
    import torch

    index = torch.arange(n)
    y, place = index % 2, index // 2 % 2
    return {"y": y, "place": place, "y,place": 2 * y + place}


def _parts(bb: Backbone, batch: Tensor) -> Decomposition:
    from .._decompose import from_vit_output
    from ..vit import run

    return from_vit_output(run(bb.tower, batch))


def _empty_stats(bb: Backbone, batch: Tensor) -> PartStats:
    """Statistics with no images yet, for the parts of ``bb`` and the Waterbirds-like groups."""
    import torch

    from ..stats import PART_FIELDS, PartStats

    with torch.no_grad():
        d = _parts(bb, batch[:1])
    shapes = {name: tuple(t.shape[1:]) for name in PART_FIELDS if (t := getattr(d, name)) is not None}
    return PartStats.empty({"convention": "exact", "groups": GROUPS}, shapes, range(bb.shape.layers))


def _memory_in_n(sizes: list[int]) -> None:
    """One statistics pass per N over random images with a tiny random-weight CLIP, after a warm-up pass;
    each pass's peak above its start."""
    import json

    import numpy as np
    import torch
    from PIL import Image

    from .._bench import PeakMemory
    from ..backbone import load
    from ..data import load_dataset
    from ..stats import accumulate_stats

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="editclip-bench-stats-") as tmp:
        root = Path(tmp)
        (root / "tiny.json").write_text(json.dumps(TINY_MODEL))
        torch.manual_seed(0)
        bb = load(config=root / "tiny.json")
        side = bb.shape.image_size[0]
        (root / "img").mkdir()
        rows = []
        for i in range(max(sizes)):
            name = f"img/{i:06d}.png"
            Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / name)
            rows.append({"path": name, "y": i % 2, "place": i // 2 % 2})
        with (root / "data.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["path", "y", "place"])
            writer.writeheader()
            writer.writerows(rows)
        dataset = load_dataset(root / "data.csv", format="csv")
        peaks = []
        for i, n in enumerate([min(sizes), *sizes]):  # the first pass warms up (imports, allocator, loader)
            images = dataset.subset(range(n))  # the input, made before the measurement
            with PeakMemory(torch.device("cpu")) as mem:
                accumulate_stats(bb, images, root / f"stats-{i}.safetensors", batch_size=BATCH)
            peaks.append(mem.peak)
            del images
    print(f"peak memory of one `editclip stats` pass (tiny random CLIP, {side} px, batch {BATCH}, after a warm-up):")
    for n, peak in zip(sizes, peaks[1:], strict=True):
        print(f"  N = {n:>7,}: {peak / 2**20:8.2f} MiB")
    if len(sizes) > 1:
        spread = max(peaks[1:]) / max(min(peaks[1:]), 1) - 1
        print(f"  largest / smallest - 1: {spread:.1%} (target < 10%)")
