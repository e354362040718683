"""TextSpan (docs/method.md section 3): name what a head writes by greedily choosing texts whose directions
explain the most variance of the head's direct contributions.

All heads are processed as batched torch computations (in chunks of heads that fit in memory, on the
GPU when there is one). The data enters only through each head's D x D scatter matrix S = Xc^T Xc:
the variance of the deflated data along a deflated text q is q^T S q (q is orthogonal to everything
already removed). Nothing of size M x D is deflated either: with U the chosen orthonormal directions,
the scores follow from R U, R S U and U^T S U (the texts R as given), so a step costs O(M (D + t))
per head after one M x D x D product (``paper``) or one M x D x k product (``official``).

Two variants:

- ``paper``: Algorithm 1 as stated. Data centred; pick the text whose direction carries the most
  variance; deflate data and texts by it. Texts are renormalised after deflation (our reading of
  the paper, which scores unit text directions; docs/method.md section 3). Every step then adds the most
  explained variance, even when the new direction is a small residual of the chosen text (see
  ``residual``). Texts left with (almost) no component outside the chosen span (squared residual
  norm below ``_MIN_RESIDUAL`` of the original, in :mod:`editclip._textspan_select`) are no longer candidates.
- ``official``: the official code (``replace_with_iterative_removal`` in
  yossigandelsman/clip_text_span): texts first projected onto the span of the top-k right singular
  vectors of the uncentred data, data centred, argmax of the standard deviation of the projections
  onto the (unnormalised) deflated texts, no renormalisation, so a text's score also depends on its
  residual norm. The selection runs in the coordinates of those k directions.

Rank rule: a head's numerical rank is the number of singular values of its uncentred data [N, D]
above ``rank_tol`` (default ``RANK_TOL`` = 1e-6) times the largest. Head parts are computed in
float32, so their rounding noise sits near eps(float32) ~ 1e-7 of the largest singular value
(measured: 1.5e-8 to 3e-8 on random-weight ViT-B-32 and toy-world heads, whose genuine singular
values stay above 1e-4); 1e-6 sits between the two with a margin of 30x or more on both sides. When
the official k exceeds the rank, the projection would include noise directions, and its picks
change when the data moves by 1e-6: k is capped at the rank with a warning (``strict_k=True``
keeps k, as the official code does; its picks are then not reproducible).

The basis is the Gram-Schmidt orthonormalisation of the chosen directions (for ``official``, of the
projected texts), in order; ``explained[i]`` is the fraction of the head's total variance that the
first i+1 basis vectors capture.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._constants import VARIANTS
from ._textspan_report import (
    head_report,
    plot_head_overview,
    report_markdown,
    stats_heads,
    store_heads,
    store_pool_heads,
    write_head_report,
)
from ._textspan_select import HeadMoments, auto_chunk, data_moments, select
from .errors import EditclipError

__all__ = [
    "RANK_TOL", "HeadMoments", "TextSpanResult", "Variant", "head_report", "plot_head_overview", "report_markdown",
    "stats_heads", "store_heads", "store_pool_heads", "textspan", "write_head_report",
]  # fmt: skip

Variant = Literal["paper", "official"]

# Singular values at or below RANK_TOL times the largest count as rounding noise (see the module doc).
RANK_TOL = 1e-6
_PRECISIONS = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class TextSpanResult:
    """TextSpan output for one head (no leading K axis) or K heads (leading K axis).

    indices: [m] | [K, m] chosen rows of R, in order.
    explained: [m] | [K, m] fraction of the head's total variance captured by the first i+1 texts.
    basis: [m, D] | [K, m, D] orthonormal (Gram-Schmidt of the chosen directions, in order).
    mean: [D] | [K, D] the head's mean contribution.
    total_variance: [] | [K] the head's total variance (trace of the covariance).
    residual: [m] | [K, m] norm of the part of each chosen text (as scored: projected, for
      ``official``) outside the span of the texts before it, relative to the text's norm: how much
      of the text was new when it was chosen.
    rank: [] | [K] numerical rank of each head's data (see the module doc); None in float32.
    k: the official variant's k as asked (None for ``paper``).
    k_used: [] | [K] the projection rank each head used (official; None for ``paper``).
    texts: the chosen texts ([m] or K lists of m) when texts were given.
    """

    indices: Tensor
    explained: Tensor
    basis: Tensor
    mean: Tensor
    total_variance: Tensor
    residual: Tensor
    variant: str
    rank: Tensor | None
    k: int | None = None
    k_used: Tensor | None = None
    texts: list[str] | list[list[str]] | None = None

    def __repr__(self) -> str:
        m, dim = self.basis.shape[-2:]
        final = self.explained[..., -1].reshape(-1) if m else self.explained.new_zeros(1)
        if final.numel() == 1:
            heads, explained = "one head", f"explained {100 * float(final[0]):.1f}%"
        else:
            heads = f"{final.numel()} heads"
            explained = (f"explained {100 * float(final.min()):.1f}..{100 * float(final.max()):.1f}% "
                         f"(mean {100 * float(final.mean()):.1f}%)")  # fmt: skip
        first = ""
        if self.texts:
            names = self.texts if isinstance(self.texts[0], str) else self.texts[0]
            shown = ", ".join(repr(t) for t in names[:3]) + (", ..." if len(names) > 3 else "")
            first = f"; {'texts' if final.numel() == 1 else 'first head'}: {shown}"
        return f"TextSpanResult({self.variant}, {heads}, m={m}, D={dim}, {explained}{first})"

    def reconstruct(self, C: Tensor | np.ndarray) -> Tensor:
        """mean + projection of the centred data onto the basis.

        C: [N, D] (one head) or [K, N, D] (K heads, same K as the result) -> same shape, float32.
        """
        x = _tensor(C).to(self.basis)
        mean = self.mean.unsqueeze(-2)  # [1, D] | [K, 1, D]
        coords = (x - mean) @ self.basis.transpose(-1, -2)  # [(K,) N, m]
        return mean + coords @ self.basis


def textspan(
    C: Tensor | np.ndarray | HeadMoments,
    R: Tensor | np.ndarray,
    m: int = 20,
    variant: Variant = "paper",
    k: int = 80,
    *,
    texts: Sequence[str] | None = None,
    strict_k: bool = False,
    rank_tol: float = RANK_TOL,
    device: str | torch.device | None = None,
    precision: Literal["float64", "float32"] = "float64",
    head_chunk: int | None = None,
    progress: bool = False,
) -> TextSpanResult:
    """Run TextSpan on one head ([N, D]) or K heads at once ([K, N, D]) against texts R [M, D].

    C may instead be the heads' :class:`HeadMoments` (mean, centred scatter, image count, e.g. from a
    statistics file): the data enters TextSpan only through them, so the result is the same up to rounding,
    the numerical rank included (it is read from the uncentred Gram matrix S + N mean mean^T either way).

    R holds unit text embeddings (e.g. from ``editclip.text.encode_texts``); `texts` names its rows.
    `k` is the official variant's rank of the text projection; it is capped at each head's numerical
    rank (singular values above `rank_tol` times the largest) with a warning, since directions beyond
    it are rounding noise. ``strict_k=True`` keeps k as the official code does (picks from noise
    directions are not reproducible). `device` defaults to CUDA when available. `precision` is the
    dtype of the scatter matrix (the one product with the data); the greedy selection always runs in
    float64. ``"float32"`` is about twice as fast and, for the paper variant, gave the same picks as
    float64 at m = 20, 40 and 60 on toy-world and ViT-B-32 heads; it reports no rank (a float32
    scatter cannot resolve it) and the official variant refuses it (its projection needs float64).
    `head_chunk` bounds how many heads are processed together (default: as fit in a memory budget).
    """
    if variant not in VARIANTS:
        raise EditclipError(f"unknown TextSpan variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    moments = C if isinstance(C, HeadMoments) else None
    if moments is not None:
        single, n_img, dim = moments.single, moments.count, moments.dim
        if precision == "float32":
            raise EditclipError("precision='float32' applies to per-image head data; head moments are float64")
    else:
        single = np.ndim(C) == 2
        if np.ndim(C) not in (2, 3):
            raise EditclipError(f"head data must be [N, D] or [K, N, D]; got shape {tuple(np.shape(C))}")
        n_img, dim = np.shape(C)[-2:]
    if np.ndim(R) != 2:
        raise EditclipError(f"text embeddings must be [M, D]; got shape {tuple(np.shape(R))}")
    n_txt = np.shape(R)[0]
    if np.shape(R)[1] != dim:
        raise EditclipError(f"text embeddings have width {np.shape(R)[1]} but the head data has width {dim}")
    if texts is not None and len(texts) != n_txt:
        raise EditclipError(f"{len(texts)} texts given for {n_txt} text embeddings")
    if n_img < 2:
        raise EditclipError(f"TextSpan needs at least 2 images to measure variance; got {n_img}")
    if not 1 <= m <= n_txt:
        raise EditclipError(f"m={m} is out of range: the pool has {n_txt} texts (m must be in 1..{n_txt})")
    if variant == "official":
        if k < 1:
            raise EditclipError(f"k={k}: the official variant's text projection rank must be >= 1")
        if m > min(k, n_img, dim):
            raise EditclipError(
                f"m={m} is larger than the official variant's text projection rank min(k, N, D) = "
                f"{min(k, n_img, dim)}"
            )
    if not 0 < rank_tol < 1:
        raise EditclipError(f"rank_tol={rank_tol} must be in (0, 1): it is relative to the largest singular value")
    if precision not in _PRECISIONS:
        raise EditclipError(f"precision {precision!r} is not supported; choose one of {', '.join(_PRECISIONS)}")
    if precision == "float32" and variant == "official":
        raise EditclipError(
            "precision='float32' is not supported by the official variant: its projection on the top-k singular "
            "directions needs float64 (a float32 Gram matrix loses directions below ~3e-4 of the largest singular "
            "value; picks then agreed with float64 on 15-47% of positions on ViT-B-32 and toy-world heads)"
        )

    dev = torch.device(device) if device is not None else _default_device()
    dtype = _PRECISIONS[precision]
    heads: Tensor | np.ndarray | HeadMoments = C
    if single:
        heads = HeadMoments(C.mean[None], C.scatter[None], n_img) if moments is not None else C[None]
    n_heads = heads.mean.shape[0] if isinstance(heads, HeadMoments) else np.shape(heads)[0]
    chunk = head_chunk or auto_chunk(0 if moments is not None else n_img, n_txt, dim, m, dtype, dev)
    r = _tensor(R).to(dev, torch.float64)
    k_cap = None if variant == "paper" else min(k, n_img, dim)

    parts = []
    bar = tqdm(total=n_heads, desc="TextSpan", unit="head", disable=not progress)
    for start in range(0, n_heads, chunk):
        if isinstance(heads, HeadMoments):
            part = heads[start : start + chunk]
            mean, scatter = part.mean.to(dev, torch.float64), part.scatter.to(dev, torch.float64)
        else:
            mean, scatter = data_moments(_tensor(heads[start : start + chunk]).to(dev), dtype)
        parts.append(select(mean, scatter, n_img, r, m, k_cap, strict_k, rank_tol, dtype == torch.float64, start))
        bar.update(mean.shape[0])
    bar.close()

    idx, expl, basis, mean, total, residual, rank, k_used = (torch.cat(p, 0) for p in zip(*parts, strict=True))
    if k_cap is not None and not strict_k and bool((rank < k_cap).any()):
        _warn_rank(k, rank, k_cap)
    chosen: list[list[str]] | None = None
    if texts is not None:
        chosen = [[texts[j] for j in row] for row in idx.tolist()]
    fields = [idx, expl, basis, mean, total, residual, rank if dtype == torch.float64 else None,
              k_used if k_cap is not None else None]  # fmt: skip
    if single:
        fields = [f[0] if f is not None else None for f in fields]
        chosen = chosen[0] if chosen is not None else None
    idx, expl, basis, mean, total, residual, rank, k_used = fields
    return TextSpanResult(idx, expl, basis, mean, total, residual, variant, rank,
                          k if k_cap is not None else None, k_used, chosen)  # fmt: skip


def _warn_rank(k: int, rank: Tensor, k_cap: int) -> None:
    low = rank[rank < k_cap]
    ranks = str(int(low.min())) if int(low.min()) == int(low.max()) else f"{int(low.min())} to {int(low.max())}"
    warnings.warn(
        f"TextSpan: k={k} exceeds the numerical rank ({ranks}) of {low.numel()} of {rank.numel()} heads; "
        "their texts were projected on the rank's directions instead, because the directions beyond it "
        "are rounding noise and picks made from them are not reproducible (strict_k=True keeps k)",
        UserWarning,
        stacklevel=3,
    )


def _tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
