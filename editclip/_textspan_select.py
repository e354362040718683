"""TextSpan's greedy selection from each head's mean and centred scatter (docs/method.md section 3).

The data enters only through the scatter S = Xc^T Xc [D, D] and the mean: :func:`data_moments` makes
them from per-image head data, a statistics file (:mod:`editclip.stats`) holds them, and
:func:`select` runs the greedy steps in float64 from either (see :mod:`editclip._textspan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import EditclipError

# A text whose squared residual norm (after removing the chosen directions) falls below this
# fraction of its original squared norm lies in the chosen span up to rounding: not a candidate.
_MIN_RESIDUAL = 1e-10


@dataclass
class HeadMoments:
    """What TextSpan reads of one head ([D], [D, D]) or K heads ([K, D], [K, D, D]): the mean contribution,
    the centred scatter S = sum (x - mean)(x - mean)^T (float64) and the number of images. A statistics
    file holds them (:func:`editclip._textspan_report.stats_heads`); ``textspan`` takes them instead of
    per-image data and gives the same result up to rounding."""

    mean: Tensor
    scatter: Tensor
    count: int

    def __post_init__(self) -> None:
        self.count = int(self.count)
        mean, scatter = self.mean, self.scatter
        if mean.ndim not in (1, 2) or scatter.shape != (*mean.shape, mean.shape[-1]):
            raise EditclipError(
                f"head moments need a mean [D] or [K, D] and a scatter [D, D] or [K, D, D]; got "
                f"{tuple(mean.shape)} and {tuple(scatter.shape)}"
            )
        if not bool(torch.isfinite(scatter).all() and torch.isfinite(mean).all()):
            raise EditclipError("head moments hold non-finite values (NaN or inf): the statistics are corrupt")

    @property
    def single(self) -> bool:
        return self.mean.ndim == 1

    @property
    def dim(self) -> int:
        return int(self.mean.shape[-1])

    def __getitem__(self, index: slice) -> HeadMoments:
        """The moments of a slice of the heads (K heads only)."""
        return HeadMoments(self.mean[index], self.scatter[index], self.count)


def data_moments(x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Per head of x [B, N, D]: the mean [B, D] (float64) and the centred scatter Xc^T Xc [B, D, D], the
    product taken in ``dtype`` and returned in float64."""
    x = x.to(dtype)
    mean = x.mean(1, dtype=torch.float64)
    xc = x - mean.to(dtype)[:, None]
    del x
    return mean, _symmetric_product(xc).double()


def select(
    mean: Tensor,
    scatter: Tensor,
    n_img: int,
    r: Tensor,
    m: int,
    k: int | None,
    strict_k: bool,
    rank_tol: float,
    resolve_rank: bool,
    first_head: int,
) -> tuple[Tensor, ...]:
    """Greedy selection for a chunk of heads from their moments: mean [B, D] and centred scatter [B, D, D]
    (float64, on r's device) of n_img images; r: [M, D] float64; k: the official variant's min(k, N, D)
    (None: the paper variant); ``resolve_rank``: whether the scatter is precise enough (float64) to count
    each head's numerical rank.

    Returns indices [B, m], explained [B, m], basis [B, m, D], mean [B, D], total variance [B],
    residual [B, m], numerical rank [B] (-1 when not resolved), k used [B] (the rank for ``paper``).
    """
    total = scatter.diagonal(dim1=1, dim2=2).sum(-1)  # [B]
    if resolve_rank:
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


def auto_chunk(n_img: int, n_txt: int, dim: int, m: int, dtype: torch.dtype, device: torch.device) -> int:
    """How many heads fit together: the data copy (twice, while centring; none when n_img is 0: moments
    given), the D x D matrices, and the per-head text coordinates and coefficients (float64)."""
    per_head = 2 * n_img * dim * torch.finfo(dtype).bits // 8 + 8 * (4 * dim * dim + n_txt * (dim + m))
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 1 << 30
    return max(1, int(budget // per_head))
