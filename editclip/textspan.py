"""TextSpan (PAPER.md section 3): name what a head writes by greedily choosing texts whose directions
explain the most variance of the head's direct contributions.

All heads are processed as one batched torch computation (in chunks of heads that fit in memory,
on the GPU when there is one). Instead of deflating the [N, D] data at every step, the algorithm
works on each head's D x D scatter matrix S = Xc^T Xc: the variance of the deflated data along a
deflated text q is q^T S q (q is orthogonal to everything already removed), so one step costs
O(M D) per head instead of O(N M D).

Two variants:

- ``paper``: Algorithm 1 as stated. Data centred; pick the text whose direction carries the most
  variance; deflate data and texts by it. Texts are renormalised after deflation (our reading:
  the paper scores unit text directions, and with renormalisation every step picks the text that
  adds the most explained variance). Texts left with (almost) no component outside the chosen span
  (squared residual norm below ``_MIN_RESIDUAL`` of the original) are no longer candidates.
- ``official``: the official code (``replace_with_iterative_removal`` in
  yossigandelsman/clip_text_span): texts first projected onto the span of the top-k right singular
  vectors of the uncentred data, data centred, argmax of the standard deviation of the projections
  onto the (unnormalised) deflated texts, no renormalisation, so a text's score also depends on its
  residual norm.

The basis is the Gram-Schmidt orthonormalisation of the chosen directions (for ``official``, of the
projected texts), in order; ``explained[i]`` is the fraction of the head's total variance that the
first i+1 basis vectors capture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .errors import EditclipError

Variant = Literal["paper", "official"]
VARIANTS: tuple[str, ...] = ("paper", "official")

# A text whose squared residual norm (after removing the chosen directions) falls below this
# fraction of its original squared norm lies in the chosen span up to rounding: not a candidate.
_MIN_RESIDUAL = {torch.float64: 1e-10, torch.float32: 1e-5}


@dataclass
class TextSpanResult:
    """TextSpan output for one head (no leading K axis) or K heads (leading K axis).

    indices: [m] | [K, m] chosen rows of R, in order.
    explained: [m] | [K, m] fraction of the head's total variance captured by the first i+1 texts.
    basis: [m, D] | [K, m, D] orthonormal (Gram-Schmidt of the chosen directions, in order).
    mean: [D] | [K, D] the head's mean contribution.
    total_variance: [] | [K] the head's total variance (trace of the covariance).
    texts: the chosen texts ([m] or K lists of m) when texts were given.
    """

    indices: Tensor
    explained: Tensor
    basis: Tensor
    mean: Tensor
    total_variance: Tensor
    variant: str
    texts: list[str] | list[list[str]] | None = None

    def reconstruct(self, C: Tensor | np.ndarray) -> Tensor:
        """mean + projection of the centred data onto the basis.

        C: [N, D] (one head) or [K, N, D] (K heads, same K as the result) -> same shape, float32.
        """
        x = torch.as_tensor(np.asarray(C) if not isinstance(C, Tensor) else C).to(self.basis)
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
    device: str | torch.device | None = None,
    precision: Literal["float64", "float32"] = "float64",
    head_chunk: int | None = None,
    progress: bool = False,
) -> TextSpanResult:
    """Run TextSpan on one head ([N, D]) or K heads at once ([K, N, D]) against texts R [M, D].

    R holds unit text embeddings (e.g. from ``editclip.text.encode_texts``); `texts` names its rows.
    `k` is the official variant's rank of the text projection. `device` defaults to CUDA when
    available. `precision` is the dtype of the selection arithmetic (float64 keeps the choice of
    near-tied texts stable; float32 halves memory and CPU time). `head_chunk` bounds how many heads
    are processed together (default: as many as fit in a memory budget).
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
    rank = min(k, n_img, dim)
    if variant == "official":
        if k < 1:
            raise EditclipError(f"k={k}: the official variant's text projection rank must be >= 1")
        if m > rank:
            raise EditclipError(
                f"m={m} is larger than the official variant's text projection rank min(k, N, D) = {rank}"
            )

    dev = torch.device(device) if device is not None else _default_device()
    dtype = torch.float64 if precision == "float64" else torch.float32
    heads = C[None] if single else C
    n_heads = np.shape(heads)[0]
    chunk = head_chunk or _auto_chunk(n_img, n_txt, dim, dtype, dev)
    r = torch.as_tensor(np.asarray(R) if not isinstance(R, Tensor) else R).to(dev, dtype)

    parts = []
    bar = tqdm(total=n_heads, desc="TextSpan", unit="head", disable=not progress)
    for start in range(0, n_heads, chunk):
        x = heads[start : start + chunk]
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
        parts.append(_textspan_chunk(x.to(dev, dtype, copy=True), r, m, variant, rank, start))
        bar.update(x.shape[0])
    bar.close()

    idx, expl, basis, mean, total = (torch.cat(p, 0) for p in zip(*parts, strict=True))
    chosen: list[list[str]] | None = None
    if texts is not None:
        chosen = [[texts[j] for j in row] for row in idx.tolist()]
    result = TextSpanResult(idx, expl, basis, mean, total, variant, chosen)
    if single:
        result = TextSpanResult(
            idx[0], expl[0], basis[0], mean[0], total[0], variant, chosen[0] if chosen is not None else None
        )
    return result


def _textspan_chunk(
    x: Tensor, r: Tensor, m: int, variant: str, rank: int, first_head: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Greedy selection for a chunk of heads. x: [B, N, D] (consumed), r: [M, D].

    Returns indices [B, m], explained [B, m], basis [B, m, D], mean [B, D], total variance [B].
    """
    n_img, dim = x.shape[1:]
    mean = x.mean(1)  # [B, D]
    x -= mean[:, None]
    scatter = x.transpose(1, 2) @ x  # [B, D, D] S = Xc^T Xc
    del x
    total = scatter.diagonal(dim1=1, dim2=2).sum(-1)  # [B]

    if variant == "official" and rank < dim:
        gram = scatter + n_img * mean[:, :, None] * mean[:, None, :]  # uncentred X^T X
        top = torch.linalg.eigh(gram).eigenvectors[..., -rank:]  # [B, D, rank] top right singular vectors
        q = (r @ top) @ top.transpose(1, 2)  # [B, M, D] texts projected onto their span
    else:
        q = r.expand(scatter.shape[0], -1, -1).clone()
    ref = r.square().sum(-1)  # [M] original squared norms
    var = ((q @ scatter) * q).sum(-1)  # [B, M] q^T S q: variance (times N-1) of the data along q
    norm2 = q.square().sum(-1)  # [B, M]
    rows = torch.arange(q.shape[0], device=q.device)
    taken = torch.zeros(q.shape[:2], dtype=torch.bool, device=q.device)
    tol = _MIN_RESIDUAL[q.dtype]

    indices, gains, basis = [], [], []
    for step in range(m):
        score = var / norm2 if variant == "paper" else var
        score = score.masked_fill(taken | (norm2 <= tol * ref), -torch.inf)
        best = score.argmax(-1)  # [B]
        stuck = torch.isinf(score[rows, best])
        if stuck.any():
            head = first_head + int(stuck.nonzero()[0])
            raise EditclipError(
                f"TextSpan head {head}: after {step} texts no text has a direction left outside the chosen "
                f"span; m={m} is larger than this pool supports"
            )
        u = q[rows, best]
        u = u / u.norm(dim=-1, keepdim=True)  # [B, D] next basis vector
        su = (scatter @ u[..., None])[..., 0]  # [B, D]
        gain = (u * su).sum(-1)  # [B] u^T S u
        qu, qsu = (q @ torch.stack((u, su), -1)).unbind(-1)  # [B, M] each: q.u and q.Su
        # Deflating q by u: (q - (q.u) u)^T S (q - (q.u) u) and |q - (q.u) u|^2, without another pass.
        var += qu * (qu * gain[:, None] - 2 * qsu)
        norm2 -= qu.square()
        q.baddbmm_(qu[..., None], u[:, None, :], alpha=-1)
        taken[rows, best] = True
        indices.append(best)
        gains.append(gain)
        basis.append(u)

    gained = torch.stack(gains, 1).clamp_min(0).cumsum(1)
    explained = gained / total[:, None].clamp_min(torch.finfo(q.dtype).tiny)
    return (
        torch.stack(indices, 1).cpu(),
        explained.float().cpu(),
        torch.stack(basis, 1).float().cpu(),
        mean.float().cpu(),
        (total / (n_img - 1)).float().cpu(),
    )


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _auto_chunk(n_img: int, n_txt: int, dim: int, dtype: torch.dtype, device: torch.device) -> int:
    """How many heads fit together: the data copy, then the deflated texts (and one temporary) per head."""
    per_head = (max(n_img, 2 * n_txt) * dim + 4 * dim * dim) * torch.finfo(dtype).bits // 8
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 2 << 30
    return max(1, int(budget // per_head))
