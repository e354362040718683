"""What a ``decompose`` or ``stats`` run will cost before it runs: bytes per image, total on disk, peak memory
and time, and the refusal of a run whose output would not fit in the free space of its filesystem.

Sizes are exact: the field shapes come from one forward of one image through the same code that writes the
chunks (or sums the statistics). Time comes from a short timed batch; peak memory is the model's weights, the
forward's measured memory growth scaled to the batch size, and the buffers a run holds (one chunk of parts,
or the float64 statistics with their per-batch scatter temporaries).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ._bench import PeakMemory
from ._decompose import Decomposition, from_vit_output
from .backbone import Backbone
from .data import ImageDataset
from .errors import EditclipError
from .names import format_layers
from .vit import run

_META_BYTES_PER_IMAGE = 120  # meta.json without the data: id, resolved path and columns, about this much an image


def one_image(bb: Backbone, convention: str, token_layers: Sequence[int] = ()) -> tuple[Decomposition, torch.Tensor]:
    """The decomposition and embedding of one random image: the shapes every stored or summed field has."""
    d, embedding, _ = _measured_image(bb, convention, token_layers)
    return d, embedding


def _measured_image(
    bb: Backbone, convention: str, token_layers: Sequence[int] = ()
) -> tuple[Decomposition, torch.Tensor, int]:
    """:func:`one_image` and the memory growth of its forward (the first of the process: nothing cached yet)."""
    height, width = bb.shape.image_size
    pixels = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), PeakMemory(bb.device) as peak:
        out = run(bb.tower, pixels.to(bb.device), token_layers=token_layers)
        d = from_vit_output(out, convention)
    return d, out.embedding, peak.peak


def store_bytes_per_image(
    bb: Backbone, convention: str, head_layers: Sequence[int], token_layers: Sequence[int], dtype: str,
    image: tuple[Decomposition, torch.Tensor] | None = None,
) -> int:  # fmt: skip
    """Bytes of one image's tensors in a store's chunks (exactly what ``write_chunk`` saves); ``image`` is
    :func:`one_image`'s result when already computed."""
    from ._store_folder import chunk_tensors

    d, embedding = image or one_image(bb, convention, token_layers)
    return sum(t.numel() * t.element_size() for t in chunk_tensors(d, embedding, head_layers, dtype).values())


def stats_bytes(
    bb: Backbone, convention: str, layers: Sequence[int], group_values: int, d: Decomposition | None = None
) -> tuple[int, int]:
    """(file bytes of the tensors, bytes of the scatter) of statistics with ``group_values`` group values in all
    (every label/group column and pair of columns): count, part sums, group counts and sums, head scatters,
    and the paper-scale head sums (overall and per group value) that ``suggest`` reads.
    ``d`` is :func:`one_image`'s decomposition when already computed."""
    from .stats import PART_FIELDS

    d = d if d is not None else one_image(bb, convention)[0]
    per_set = sum(t[0].numel() for name in PART_FIELDS if (t := getattr(d, name)) is not None)
    scatter = len(layers) * bb.shape.heads * bb.shape.embed_dim**2
    n_layers, n_heads, dim = d.heads.shape[1:]
    heads = n_layers * n_heads * dim
    paper = heads + n_layers * n_heads + dim + 1 + group_values * heads  # paper.sum/sumsq.*, group.*.paper.heads
    return 8 * (1 + per_set * (1 + group_values) + group_values + scatter + paper), 8 * scatter


def meta_bytes(dataset: ImageDataset | None, images: int) -> int:
    """Bytes of a store's meta.json image lists (ids, paths, columns): measured, or estimated without the data."""
    if dataset is None:
        return _META_BYTES_PER_IMAGE * images
    lists = {"ids": dataset.ids, "paths": [str(p) for p in dataset.paths],
             "columns": {k: v.tolist() for k, v in dataset.columns.items()}}  # fmt: skip
    return len(json.dumps(lists)) * 2  # ids also in the statistics; train counts, indent: within twice


@dataclass(frozen=True)
class Timing:
    """Seconds per image of the forward, from one timed batch of ``images``."""

    seconds_per_image: float
    images: int


def time_forward(
    bb: Backbone, images: int, convention: str, token_layers: Sequence[int] = (), warm: bool = False
) -> Timing:
    """Time one batch of ``images`` random images through the instrumented forward and the decomposition,
    after a one-image warm-up unless ``warm`` (the shape pass just ran)."""
    height, width = bb.shape.image_size
    pixels = torch.randn(images, 3, height, width, generator=torch.Generator().manual_seed(1))
    pixels = pixels.to(bb.device)
    if not warm:
        one_image(bb, convention, token_layers)
    with torch.no_grad():
        start = time.perf_counter()
        from_vit_output(run(bb.tower, pixels, token_layers=token_layers), convention)
        if bb.device.type == "cuda":
            torch.cuda.synchronize(bb.device)
        seconds = time.perf_counter() - start
    return Timing(seconds / images, images)


def weights_bytes(bb: Backbone) -> int:
    return sum(p.numel() * p.element_size() for p in bb.model.parameters())


def free_bytes(path: str | os.PathLike[str]) -> tuple[int, Path]:
    """Free bytes of the filesystem that holds ``path`` (or would: its nearest existing parent)."""
    where = Path(path).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    return shutil.disk_usage(where).free, where


def check_free_space(path: str | os.PathLike[str], needed: int, what: str) -> None:
    """Refuse, before anything is written, a run whose output needs more than the free space at ``path``."""
    free, where = free_bytes(path)
    if needed > free:
        raise EditclipError(
            f"{what} needs {format_bytes(needed)} ({needed:,} bytes) on disk but the filesystem of {str(where)!r} "
            f"has {format_bytes(free)} ({free:,} bytes) free; free space, choose another --out or fewer images "
            "(nothing was written)"
        )


def format_bytes(n: float) -> str:
    """``1500`` -> ``1.5 kB`` (decimal units, three significant digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_seconds(s: float) -> str:
    """``5400`` -> ``1.5 h``."""
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 172800:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} days"



def time_scatter(bb: Backbone, layers: int, batch_size: int) -> float:
    """Seconds an image that the statistics' scatter updates of ``layers`` layers cost: one layer's batch
    scatter and Chan's merge term timed on a batch of ``batch_size`` images, scaled to ``layers``."""
    heads, dim = bb.shape.heads, bb.shape.embed_dim
    x = torch.randn(batch_size, 1, heads, dim, dtype=torch.float64)
    start = time.perf_counter()
    centred = x - x.mean(0)
    scatter = torch.einsum("nlhd,nlhe->lhde", centred, centred)
    delta = x.mean(0)
    scatter += delta[..., :, None] * delta[..., None, :]
    return layers * (time.perf_counter() - start) / batch_size


def decompose_estimate(
    bb: Backbone, images: int, dataset: ImageDataset | None, out: str | os.PathLike[str], *, convention: str,
    token_layers: Sequence[int], head_layers: Sequence[int], batch_size: int, chunk_size: int, dtype: str,
    time_images: int | None,
) -> list[str]:  # fmt: skip
    """The report of ``decompose --estimate``: what the run would write, hold and take (nothing is written)."""
    d, embedding, forward_one = _measured_image(bb, convention, token_layers)
    image = d, embedding
    per_image = store_bytes_per_image(bb, convention, head_layers, token_layers, dtype, image)
    parts = store_bytes_per_image(bb, convention, range(bb.shape.layers), token_layers, "float32", image)
    meta = meta_bytes(dataset, images)
    total = per_image * images + meta + 4 * bb.shape.embed_dim
    timing = time_forward(bb, time_images, convention, token_layers, warm=True) if time_images else None
    weights, chunk = weights_bytes(bb), min(chunk_size, images) * (parts + per_image)
    forward = forward_one * min(batch_size, images)
    held = (f"heads of {format_layers(head_layers)}, the other layers' summed" if len(head_layers) < bb.shape.layers
            else f"heads of all {bb.shape.layers} layers")  # fmt: skip
    lines = [
        f"decompose estimate: {bb.model_id}, {images:,} images, {held}, {dtype}, {convention} convention",
        f"  per image:   {format_bytes(per_image)} ({per_image:,} bytes)",
        f"  on disk:     {format_bytes(total)} (chunks {format_bytes(per_image * images)}, meta.json "
        f"{format_bytes(meta)}{'' if dataset is not None else ' estimated: no data given'}); {_fits(out, total)}",
        f"  peak memory: {format_bytes(weights + chunk + forward)}: weights {format_bytes(weights)}, one chunk of "
        f"{min(chunk_size, images)} images' parts {format_bytes(chunk)}, forward of a batch of "
        f"{min(batch_size, images)} {format_bytes(forward)} (one image's, measured, x {min(batch_size, images)})",
    ]
    lines.append(_time_line(timing, images, bb, 0.0))
    return [*lines, "nothing was written"]


def stats_estimate(
    bb: Backbone, images: int, dataset: ImageDataset | None, out: str | os.PathLike[str], *, convention: str,
    layers: Sequence[int], batch_size: int, time_images: int | None,
) -> list[str]:  # fmt: skip
    """The report of ``stats --estimate``: file size, disk while running, peak memory, time (nothing is written)."""
    groups = 0 if dataset is None else group_value_count(dataset)
    d, _, forward_one = _measured_image(bb, convention)
    file, scatter = stats_bytes(bb, convention, layers, groups, d)
    sums, _ = stats_bytes(bb, convention, [], 0, d)
    timing = time_forward(bb, time_images, convention, warm=True) if time_images else None
    extra = time_scatter(bb, len(layers), batch_size) if timing and layers else 0.0
    weights = weights_bytes(bb)
    forward = forward_one * min(batch_size, images)
    temporaries = 2 * scatter  # the batch's scatter and Chan's merge term, each the size of the scatters
    group_note = (f"{groups} group values" if dataset is not None
                  else "no data given: each group value adds one more set of part sums")  # fmt: skip
    lines = [
        f"stats estimate: {bb.model_id}, {images:,} images, scatters of the heads of "
        f"{format_layers(layers)} ({len(layers) * bb.shape.heads} heads), {convention} convention",
        f"  file:        {format_bytes(file)}: part sums {format_bytes(sums)}, scatters {format_bytes(scatter)}, "
        f"{group_note}; the same for any number of images (per image: 0 bytes)",
        f"  on disk:     {format_bytes(2 * file)} while running (the partial sums beside the output); "
        f"{_fits(out, 2 * file)}",
        f"  peak memory: {format_bytes(weights + file + temporaries + forward)}: weights {format_bytes(weights)}, "
        f"statistics {format_bytes(file)}, scatter temporaries {format_bytes(temporaries)}, forward of a batch "
        f"of {min(batch_size, images)} {format_bytes(forward)} (one image's, measured, x {min(batch_size, images)})",
        _time_line(timing, images, bb, extra),
    ]  # fmt: skip
    return [*lines, "nothing was written"]


def group_value_count(dataset: ImageDataset) -> int:
    """How many group values statistics of ``dataset`` sum separately (every column and pair of columns)."""
    from .stats import group_keys

    return sum(len(set(v.tolist())) for v in group_keys(dataset).values())


def _fits(out: str | os.PathLike[str], needed: int) -> str:
    free, where = free_bytes(out)
    verdict = "fits" if needed <= free else "does NOT fit"
    return f"{format_bytes(free)} free on the filesystem of {str(where)!r}: {verdict}"


def _time_line(timing: Timing | None, images: int, bb: Backbone, extra: float) -> str:
    if timing is None:
        return "  time:        not measured (--no-time)"
    per_image = timing.seconds_per_image + extra
    return (f"  time:        {format_seconds(per_image * images)} on {bb.device} ({per_image:.3g} s an image, from a "
            f"timed batch of {timing.images} image{'s' if timing.images != 1 else ''}; "
            f"{torch.get_num_threads()} threads)")  # fmt: skip
