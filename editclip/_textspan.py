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
  norm below ``_MIN_RESIDUAL`` of the original) are no longer candidates.
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

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._constants import VARIANTS
from ._io import save_figure, write_json, write_text
from .errors import EditclipError
from .names import HeadRef, PoolHeadRef

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .store import DecompositionStore

Variant = Literal["paper", "official"]

# Singular values at or below RANK_TOL times the largest count as rounding noise (see the module doc).
RANK_TOL = 1e-6
# A text whose squared residual norm (after removing the chosen directions) falls below this
# fraction of its original squared norm lies in the chosen span up to rounding: not a candidate.
_MIN_RESIDUAL = 1e-10
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
    C: Tensor | np.ndarray,
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
    single = np.ndim(C) == 2
    if np.ndim(C) not in (2, 3):
        raise EditclipError(f"head data must be [N, D] or [K, N, D]; got shape {tuple(np.shape(C))}")
    if np.ndim(R) != 2:
        raise EditclipError(f"text embeddings must be [M, D]; got shape {tuple(np.shape(R))}")
    n_img, dim = np.shape(C)[-2:]
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
    heads = C[None] if single else C
    n_heads = np.shape(heads)[0]
    chunk = head_chunk or _auto_chunk(n_img, n_txt, dim, m, dtype, dev)
    r = _tensor(R).to(dev, torch.float64)
    k_cap = None if variant == "paper" else min(k, n_img, dim)

    parts = []
    bar = tqdm(total=n_heads, desc="TextSpan", unit="head", disable=not progress)
    for start in range(0, n_heads, chunk):
        x = _tensor(heads[start : start + chunk]).to(dev)
        parts.append(_textspan_chunk(x, r, m, k_cap, strict_k, rank_tol, dtype, start))
        bar.update(x.shape[0])
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


def _textspan_chunk(
    x: Tensor,
    r: Tensor,
    m: int,
    k: int | None,
    strict_k: bool,
    rank_tol: float,
    dtype: torch.dtype,
    first_head: int,
) -> tuple[Tensor, ...]:
    """Greedy selection for a chunk of heads. x: [B, N, D]; r: [M, D] float64 on x's device;
    k: the official variant's min(k, N, D) (None: the paper variant).

    Returns indices [B, m], explained [B, m], basis [B, m, D], mean [B, D], total variance [B],
    residual [B, m], numerical rank [B] (-1 in float32), k used [B] (the rank for ``paper``).
    """
    n_img = x.shape[1]
    x = x.to(dtype)
    mean = x.mean(1, dtype=torch.float64)  # [B, D]
    xc = x - mean.to(dtype)[:, None]
    del x
    scatter = _symmetric_product(xc).double()  # [B, D, D] S = Xc^T Xc
    del xc
    total = scatter.diagonal(dim1=1, dim2=2).sum(-1)  # [B]
    if dtype == torch.float64:  # a float32 scatter cannot resolve the rank (see textspan's precision)
        gram = scatter + n_img * mean[:, :, None] * mean[:, None, :]  # uncentred X^T X
        if k is None:
            evals = torch.linalg.eigvalsh(gram)
        else:
            evals, evecs = torch.linalg.eigh(gram)
        del gram
        sing = evals.clamp_min(0).sqrt()  # ascending
        rank = (sing > rank_tol * sing[:, -1:]).sum(-1)  # [B]
    else:
        rank = torch.full((scatter.shape[0],), -1, device=scatter.device)

    if k is None:
        k_used = rank
        texts, shared = r, True  # [M, D], the same texts for every head
        ref = r.square().sum(-1)
        var = torch.stack([((r @ s) * r).sum(-1) for s in scatter])  # [B, M] r^T S r
    else:
        k_used = rank.clamp_max(k) if not strict_k else torch.full_like(rank, k)
        short = k_used < m
        if bool(short.any()):
            head = first_head + int(short.nonzero()[0])
            raise EditclipError(
                f"TextSpan head {head}: m={m} is larger than its numerical rank {int(k_used[short][0])}; the "
                f"official variant chooses at most that many texts (use m <= {int(k_used.min())}, or strict_k "
                "to project on noise directions too, whose picks are not reproducible)"
            )
        width = int(k_used.max())
        top = evecs[..., -width:]  # [B, D, width]: the head's top right singular vectors, ascending
        keep = torch.arange(width, device=top.device) >= (width - k_used)[:, None]  # [B, width]
        top = top * keep[:, None, :]
        texts, shared = r @ top, False  # [B, M, width] coordinates
        scatter = top.transpose(1, 2) @ scatter @ top  # [B, width, width]
        ref = r.square().sum(-1)
        var = ((texts @ scatter) * texts).sum(-1)  # [B, M]
        del evecs
    norm2 = texts.square().sum(-1).expand_as(var).clone()  # [B, M]
    indices, basis, residual, gains = _greedy(texts, shared, scatter, var, norm2, ref, m, k is None, first_head)
    if k is not None:
        basis = basis @ top.transpose(1, 2)  # back from the coordinates of the top directions to D
    gained = torch.stack(gains, 1).clamp_min(0).cumsum(1)
    explained = gained / total[:, None].clamp_min(torch.finfo(torch.float64).tiny)
    return (
        indices.cpu(),
        explained.float().cpu(),
        basis.float().cpu(),
        mean.float().cpu(),
        (total / (n_img - 1)).float().cpu(),
        residual.float().cpu(),
        rank.cpu(),
        k_used.cpu(),
    )


def _greedy(
    texts: Tensor,
    shared: bool,
    scatter: Tensor,
    var: Tensor,
    norm2: Tensor,
    ref: Tensor,
    m: int,
    normalise: bool,
    first_head: int,
) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """The greedy steps, in float64, without deflating the texts.

    texts: [M, W] (shared by all heads) or [B, M, W]; scatter [B, W, W]; var [B, M] = t^T S t and
    norm2 [B, M] = |t|^2 of the texts as given (updated in place); ref [M] the texts' original squared
    norms. With U the chosen orthonormal directions, A = T U, the deflated text t - U A^T has
    variance var - 2 A.(T S U) + A (U^T S U) A^T and squared norm norm2 - |A|^2: each step adds one
    column (two products of the texts with a vector per head) and updates both in O(M t).
    Returns indices [B, m], basis [B, m, W], residual [B, m] and the gains u^T S u per step.
    """
    n_heads, n_txt = var.shape
    rows = torch.arange(n_heads, device=var.device)
    coef = var.new_zeros(n_heads, n_txt, m)  # A = T U
    sgram = var.new_zeros(n_heads, m, m)  # U^T S U
    u_all = var.new_zeros(n_heads, m, scatter.shape[-1])  # U, row by row
    taken = torch.zeros(n_heads, n_txt, dtype=torch.bool, device=var.device)
    indices, residual, gains = [], [], []
    for step in range(m):
        score = var / norm2 if normalise else var
        score = score.masked_fill(taken | (norm2 <= _MIN_RESIDUAL * ref), -torch.inf)
        best = score.argmax(-1)  # [B]
        stuck = torch.isinf(score[rows, best])
        if stuck.any():
            head = first_head + int(stuck.nonzero()[0])
            raise EditclipError(
                f"TextSpan head {head}: after {step} texts no text has a direction left outside the chosen "
                f"span; m={m} is larger than this pool supports"
            )
        residual.append((norm2[rows, best] / ref[best]).sqrt())
        chosen = texts[best] if shared else texts[rows, best]  # [B, W]
        u_prev = u_all[:, :step]  # [B, t, W]
        for _ in range(2):  # Gram-Schmidt against the earlier directions, twice for orthogonality
            chosen = chosen - ((u_prev @ chosen[..., None]) * u_prev).sum(1)
        u = chosen / chosen.norm(dim=-1, keepdim=True)  # [B, W] next basis vector
        su = (scatter @ u[..., None])[..., 0]  # [B, W]
        gain = (u * su).sum(-1)  # [B] u^T S u
        pair = torch.stack((u, su), -1)  # [B, W, 2]
        if shared:
            tu, tsu = (texts @ pair.permute(1, 0, 2).reshape(pair.shape[1], -1)).view(n_txt, n_heads, 2).unbind(-1)
            tu, tsu = tu.T, tsu.T  # [B, M] each: t.u and t.Su
        else:
            tu, tsu = (texts @ pair).unbind(-1)
        sgram[:, :step, step] = (u_prev @ su[..., None])[..., 0]
        qsu = tsu - (coef[..., :step] @ sgram[:, :step, step, None])[..., 0]  # deflated text . S u
        # (deflated text).u = t.u, since u is orthogonal to the earlier directions
        var += tu * (tu * gain[:, None] - 2 * qsu)
        norm2 -= tu.square()
        coef[..., step] = tu
        u_all[:, step] = u
        taken[rows, best] = True
        indices.append(best)
        gains.append(gain)
    return torch.stack(indices, 1), u_all, torch.stack(residual, 1), gains


def _symmetric_product(x: Tensor, block: int = 192) -> Tensor:
    """x^T x for x [B, N, D], block-triangularly: each block row is multiplied only from the diagonal on
    and mirrored, which takes (b + 1) / 2b of the full product's work for b blocks (5/8 at D = 768)."""
    dim = x.shape[-1]
    if dim <= 2 * block:
        return x.transpose(1, 2) @ x
    out = x.new_empty(x.shape[0], dim, dim)
    for start in range(0, dim, block):
        stop = min(start + block, dim)
        rows = x[..., start:stop].transpose(1, 2) @ x[..., start:]  # [B, block, D - start]
        out[:, start:stop, start:] = rows
        out[:, stop:, start:stop] = rows[..., stop - start :].transpose(1, 2)
    return out


def _tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _auto_chunk(n_img: int, n_txt: int, dim: int, m: int, dtype: torch.dtype, device: torch.device) -> int:
    """How many heads fit together: the data copy (twice, while centring), the D x D matrices, and
    the per-head text coordinates and coefficients (float64)."""
    per_head = 2 * n_img * dim * torch.finfo(dtype).bits // 8 + 8 * (4 * dim * dim + n_txt * (dim + m))
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 1 << 30
    return max(1, int(budget // per_head))


# ---------------------------------------------------------------------------------------------------
# Head reports


def store_heads(store: DecompositionStore, layers: Sequence[int]) -> tuple[Tensor, list[HeadRef]]:
    """Every head of `layers` from a store, head-major: C [K, N, D] (K = len(layers) * H) and the heads."""
    layers = list(layers)
    data = store.read("heads", index=(layers,))  # [N, len(layers), H, D]
    n, n_layers, n_heads, dim = data.shape
    refs = [HeadRef(layer, head) for layer in layers for head in range(n_heads)]
    return data.reshape(n, n_layers * n_heads, dim).transpose(0, 1), refs


def store_pool_heads(store: DecompositionStore) -> tuple[Tensor, list[PoolHeadRef]]:
    """The attention pool's heads of an official-convention store of a pooled tower: C [G, N, D] and the heads."""
    if not store.has_field("pool_heads"):
        raise EditclipError(
            f"store {str(store.root)!r} has no pool heads (pool.H*); decompose an attention-pooled tower "
            "(SigLIP) with --convention official"
        )
    data = store.read("pool_heads")  # [N, G, D]
    return data.transpose(0, 1), [PoolHeadRef(g) for g in range(data.shape[1])]


def head_report(result: TextSpanResult, heads: Sequence[HeadRef | PoolHeadRef], **provenance: Any) -> dict[str, Any]:
    """A JSON-ready report of a K-head TextSpan result: per head the texts in order, each with the
    variance it adds and the cumulative fraction explained, the total, the head's numerical rank and
    (official) the k it used; `provenance` is copied in."""
    if result.indices.ndim != 2 or result.texts is None:
        raise EditclipError("a head report needs a K-head TextSpan result computed with texts=")
    explained = result.explained.tolist()
    rows = []
    for i, ref in enumerate(heads):
        cumulative = explained[i]
        gains = [c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
        columns = (result.texts[i], result.indices[i].tolist(), gains, cumulative, result.residual[i].tolist())
        texts = [
            {"rank": r + 1, "text": t, "index": j, "gain": g, "explained": c, "new": n}
            for r, (t, j, g, c, n) in enumerate(zip(*columns, strict=True))
        ]
        rows.append({"head": str(ref), "total_variance": float(result.total_variance[i]),
                     "explained": cumulative[-1],
                     "rank": int(result.rank[i]) if result.rank is not None else None,
                     "k_used": int(result.k_used[i]) if result.k_used is not None else None,
                     "texts": texts})  # fmt: skip
    return {**provenance, "variant": result.variant, "k": result.k, "heads": rows}


def report_markdown(report: dict[str, Any]) -> str:
    """The head report as Markdown: a summary table, then each head's texts in order."""
    m = len(report["heads"][0]["texts"])
    lines = ["# TextSpan head report", ""]
    lines += [f"- {key}: {_describe(value)}" for key, value in report.items() if key != "heads"]
    capped = [r for r in report["heads"] if r.get("k_used") is not None and r["k_used"] < report["k"]]
    if capped:
        lines += ["", f"k = {report['k']} exceeds the numerical rank of {len(capped)} heads: their texts were "
                  "projected on their rank's directions (column k used), since the directions beyond it are "
                  "rounding noise and picks made from them are not reproducible."]  # fmt: skip
    lines += ["", "| head | variance | explained by the texts | rank | k used | first texts |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["heads"]:
        first = "; ".join(t["text"] for t in row["texts"][:3])
        rank, k_used = (_or_dash(row.get(key)) for key in ("rank", "k_used"))
        lines.append(f"| {row['head']} | {row['total_variance']:.4g} | {100 * row['explained']:.1f}% | {rank} | "
                     f"{k_used} | {first} |")  # fmt: skip
    for row in report["heads"]:
        lines += ["", f"## {row['head']}", "",
                  f"Total variance {row['total_variance']:.4g}; the {m} texts explain {100 * row['explained']:.1f}%. "
                  "Per text: variance it adds, cumulative variance explained, and how much of the text's "
                  "direction was new (outside the texts before it).",
                  ""]  # fmt: skip
        lines += [f"{t['rank']}. {t['text']} — +{100 * t['gain']:.1f}%, total {100 * t['explained']:.1f}%, "
                  f"new {100 * t['new']:.0f}%" for t in row["texts"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_head_overview(report: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Figure:
    """Per head, its share of the variance of all reported heads (left) and the variance explained by
    each successive text as a stacked bar (right), labelled with the first text. Returns the Figure;
    saves it as PNG only when `path` is given."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = report["heads"]
    m = len(rows[0]["texts"])
    share = np.array([r["total_variance"] for r in rows])
    share = share / max(share.sum(), np.finfo(float).tiny)
    fig = Figure(figsize=(13, 1.6 + 0.3 * len(rows)))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 4], "wspace": 0.04})
    y = np.arange(len(rows))
    left.barh(y, 100 * share, color="0.55")
    left.set_xlabel("share of variance (%)")
    left.invert_xaxis()
    left.set_yticks(y, [f"{r['head']}  {_short(r['texts'][0]['text'])}" for r in rows], fontsize=8)
    colours = colormaps["viridis"](np.linspace(0.1, 0.95, m))
    start = np.zeros(len(rows))
    for step in range(m):
        gain = np.array([100 * r["texts"][step]["gain"] for r in rows])
        right.barh(y, gain, left=start, color=colours[step], edgecolor="white", linewidth=0.3,
                   label=f"text {step + 1}" if step in (0, m - 1) else None)  # fmt: skip
        start += gain
    for yi, total in zip(y, start, strict=True):
        right.text(total + 0.5, yi, f"{total:.0f}%", va="center", fontsize=7)
    right.set_xlim(0, 108)
    right.set_xlabel(f"variance explained by the first {m} texts (%), one segment per text in order")
    right.legend(loc="lower right", fontsize=8, frameon=False)
    left.set_ylim(len(rows) - 0.5, -0.5)
    left.set_title("head's share of the variance", fontsize=9)
    right.set_title(f"TextSpan ({report['variant']}) with pool {report.get('pool', '?')}: the first text of "
                    "each head is in its label", fontsize=9)  # fmt: skip
    if path is not None:
        save_figure(fig, path)
    return fig


def _describe(value: Any) -> str:
    """One readable line for a report field; a store description becomes model, data and path."""
    if isinstance(value, dict) and "fingerprint" in value:
        data = value.get("dataset") or {}
        model = (value.get("model") or {}).get("name")
        images = f"{data.get('name')} split {data.get('split')}, {value.get('count')} images"
        return f"{value.get('path')} ({model}, weights {value['fingerprint']}; {images}; {value.get('convention')})"
    return str(value)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _short(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write_head_report(report: dict[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """Write report.json, report.md and overview.png into `out` (each atomically)."""
    out = Path(out)
    paths = [out / "report.json", out / "report.md", out / "overview.png"]
    write_json(paths[0], report)
    write_text(paths[1], report_markdown(report))
    plot_head_overview(report, paths[2])
    return paths
