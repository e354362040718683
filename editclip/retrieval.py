"""Property-based retrieval (docs/method.md section 6): rank images by what one head writes for them.

A "colour" head ranks by colour and a "counting" head by count, because its direct contribution
varies with that property only. Contributions are centred by the head's mean over the store before
the cosine, so the ranking reflects what varies between images rather than what the head writes
for every image (for a text query, centring leaves the order of plain dot products unchanged).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ._io import save_figure
from .errors import EditclipError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def rank_by_head(
    contributions: Tensor, query: Tensor, *, centre: bool = True, exclude: int | None = None
) -> tuple[Tensor, Tensor]:
    """Images ordered by cosine similarity of their contribution to `query`, best first.

    contributions: [N, D] one head's direct contributions; query: [D] (a text embedding, or one
    image's contribution to the same head, which is centred like the others). `exclude` drops one
    image (the query image). Returns (indices [N'], scores [N']).
    """
    if contributions.ndim != 2 or query.shape != contributions.shape[1:]:
        raise EditclipError(
            f"query of shape {tuple(query.shape)} does not fit contributions of shape {tuple(contributions.shape)}"
        )
    x = contributions.double()
    q = query.double()
    if centre:
        x = x - x.mean(0)
    if exclude is not None:
        q = x[exclude]
    scores = torch.nn.functional.cosine_similarity(x, q[None], dim=-1)
    order = torch.argsort(scores, descending=True, stable=True)
    if exclude is not None:
        order = order[order != exclude]
    return order, scores[order].float()


def contact_sheet(
    paths: Sequence[str | os.PathLike[str]],
    captions: Sequence[str],
    out: str | os.PathLike[str] | None = None,
    title: str = "",
    query: tuple[str | os.PathLike[str], str] | None = None,
    columns: int = 4,
) -> Figure:
    """Grid of images with captions, the query image (path, caption) first and framed when given. Returns
    the Figure; saves it as PNG to `out` only when given."""
    from matplotlib.figure import Figure

    tiles = [(query[0], query[1], True)] if query else []
    tiles += [(p, c, False) for p, c in zip(paths, captions, strict=True)]
    if not tiles:
        raise EditclipError("no images for the contact sheet")
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    fig = Figure(figsize=(2.6 * columns, 2.9 * rows + 0.5))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, (path, caption, is_query) in zip(axes, tiles, strict=False):
        ax.imshow(_thumbnail(path))
        ax.set_title(caption, fontsize=8, color="tab:red" if is_query else "black")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("tab:red" if is_query else "0.8")
            spine.set_linewidth(3 if is_query else 1)
    for ax in axes[len(tiles) :]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    if out is not None:
        save_figure(fig, out)
    return fig


def _thumbnail(path: str | os.PathLike[str], size: int = 224) -> np.ndarray:
    """The image as an RGB array at most `size` pixels wide; a grey tile when it cannot be read."""
    try:
        with Image.open(Path(path)) as image:
            image = image.convert("RGB")
            image.thumbnail((size, size))
            return np.asarray(image)
    except OSError:
        return np.full((size, size, 3), 200, dtype=np.uint8)
