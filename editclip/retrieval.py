"""Property-based retrieval (docs/method.md section 6): rank images by what one head writes for them.

A "colour" head ranks by colour and a "counting" head by count, because its direct contribution
varies with that property only. Contributions are centred by the head's mean over the store before
the cosine, so the ranking reflects what varies between images rather than what the head writes
for every image (for a text query, centring leaves the order of plain dot products unchanged).
``score="dot"`` ranks by the plain dot product instead, as the official notebook does (with
``centre=False`` the raw contributions, exactly its computation). A query image need not be in the
store: :func:`image_contribution` decomposes it with the store's own model and preprocessing.
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

    from .backbone import Backbone
    from .store import DecompositionStore


SCORES = ("cosine", "dot")


def rank_by_head(
    contributions: Tensor,
    query: Tensor,
    *,
    centre: bool = True,
    exclude: int | None = None,
    score: str = "cosine",
    image_query: bool = False,
) -> tuple[Tensor, Tensor]:
    """Images ordered by the similarity (``score``: cosine or dot) of their contribution to `query`, best first.

    contributions: [N, D] one head's direct contributions; query: [D], a text embedding, or with
    `image_query` an image's contribution to the same head (centred by the same mean as the others).
    `exclude` drops one stored image and uses its contribution as the query. Returns (indices [N'],
    scores [N']).
    """
    if contributions.ndim != 2 or query.shape != contributions.shape[1:]:
        raise EditclipError(
            f"query of shape {tuple(query.shape)} does not fit contributions of shape {tuple(contributions.shape)}"
        )
    if score not in SCORES:
        raise EditclipError(f"score {score!r} is unknown; choose one of {', '.join(SCORES)}")
    x = contributions.double()
    q = query.double()
    if centre:
        mean = x.mean(0)
        x = x - mean
        q = q - mean if image_query else q
    if exclude is not None:
        q = x[exclude]
    scores = x @ q if score == "dot" else torch.nn.functional.cosine_similarity(x, q[None], dim=-1)
    order = torch.argsort(scores, descending=True, stable=True)
    if exclude is not None:
        order = order[order != exclude]
    return order, scores[order].float()


def image_contribution(
    store: DecompositionStore, path: str | os.PathLike[str], layer: int, head: int, bb: Backbone | None = None
) -> Tensor:
    """One head's direct contribution [D] for an image file that need not be in `store`: the image goes
    through the store's model and preprocessing (``bb``, default :func:`backbone_for_store`) and is
    decomposed in the store's convention, then rounded to the store's dtype like the stored rows."""
    from ._decompose import decompose
    from .store import backbone_for_store

    file = Path(path)
    if not file.is_file():
        raise EditclipError(f"query image {str(file)!r} does not exist")
    if bb is None:
        bb = backbone_for_store(store)
    else:
        store.check_backbone(bb)
    try:
        with Image.open(file) as image:
            pixels = bb.preprocess(image.convert("RGB"))
    except OSError as err:
        raise EditclipError(f"cannot read query image {str(file)!r}: {err}") from None
    parts = decompose(bb, pixels[None], store.convention)
    dtype = {"float32": torch.float32, "float16": torch.float16}[store.meta["dtype"]]
    return parts.heads[0, layer, head].detach().cpu().to(dtype).float()


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
