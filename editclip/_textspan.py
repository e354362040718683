"""TextSpan (docs/method.md section 3): name what a head writes by greedily choosing texts whose directions
explain the most variance of the head's direct contributions.

All heads are processed as one batched torch computation (in chunks of heads that fit in memory,
on the GPU when there is one). Instead of deflating the [N, D] data at every step, the algorithm
works on each head's D x D scatter matrix S = Xc^T Xc: the variance of the deflated data along a
deflated text q is q^T S q (q is orthogonal to everything already removed), so one step costs
O(M D) per head instead of O(N M D).

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
  residual norm.

The basis is the Gram-Schmidt orthonormalisation of the chosen directions (for ``official``, of the
projected texts), in order; ``explained[i]`` is the fraction of the head's total variance that the
first i+1 basis vectors capture.
"""

from __future__ import annotations

import os
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
from .names import HeadRef

if TYPE_CHECKING:
    from .store import DecompositionStore

Variant = Literal["paper", "official"]

# A text whose squared residual norm (after removing the chosen directions) falls below this
# fraction of its original squared norm lies in the chosen span up to rounding: not a candidate.
_MIN_RESIDUAL = {torch.float64: 1e-10, torch.float32: 1e-5}
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
    texts: the chosen texts ([m] or K lists of m) when texts were given.
    """

    indices: Tensor
    explained: Tensor
    basis: Tensor
    mean: Tensor
    total_variance: Tensor
    residual: Tensor
    variant: str
    texts: list[str] | list[list[str]] | None = None

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

    if precision not in _PRECISIONS:
        raise EditclipError(f"precision {precision!r} is not supported; choose one of {', '.join(_PRECISIONS)}")
    dev = torch.device(device) if device is not None else _default_device()
    dtype = _PRECISIONS[precision]
    heads = C[None] if single else C
    n_heads = np.shape(heads)[0]
    chunk = head_chunk or _auto_chunk(n_img, n_txt, dim, dtype, dev)
    r = _tensor(R).to(dev, dtype)

    parts = []
    bar = tqdm(total=n_heads, desc="TextSpan", unit="head", disable=not progress)
    for start in range(0, n_heads, chunk):
        x = _tensor(heads[start : start + chunk])
        parts.append(_textspan_chunk(x.to(dev, dtype, copy=True), r, m, variant, rank, start))
        bar.update(x.shape[0])
    bar.close()

    idx, expl, basis, mean, total, residual = (torch.cat(p, 0) for p in zip(*parts, strict=True))
    chosen: list[list[str]] | None = None
    if texts is not None:
        chosen = [[texts[j] for j in row] for row in idx.tolist()]
    if single:
        return TextSpanResult(idx[0], expl[0], basis[0], mean[0], total[0], residual[0], variant,
                              chosen[0] if chosen is not None else None)  # fmt: skip
    return TextSpanResult(idx, expl, basis, mean, total, residual, variant, chosen)


def _textspan_chunk(
    x: Tensor, r: Tensor, m: int, variant: str, rank: int, first_head: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Greedy selection for a chunk of heads. x: [B, N, D] (consumed), r: [M, D].

    Returns indices [B, m], explained [B, m], basis [B, m, D], mean [B, D], total variance [B],
    residual [B, m].
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

    indices, gains, basis, residual = [], [], [], []
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
        residual.append((norm2[rows, best] / ref[best]).sqrt())
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
        torch.stack(residual, 1).float().cpu(),
    )


def _tensor(x: Tensor | np.ndarray) -> Tensor:
    return x if isinstance(x, Tensor) else torch.from_numpy(np.asarray(x))


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _auto_chunk(n_img: int, n_txt: int, dim: int, dtype: torch.dtype, device: torch.device) -> int:
    """How many heads fit together: the data copy, then the deflated texts (and one temporary) per head."""
    per_head = (max(n_img, 2 * n_txt) * dim + 4 * dim * dim) * torch.finfo(dtype).bits // 8
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 2 << 30
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


def head_report(result: TextSpanResult, heads: Sequence[HeadRef], **provenance: Any) -> dict[str, Any]:
    """A JSON-ready report of a K-head TextSpan result: per head the texts in order, each with the
    variance it adds and the cumulative fraction explained, and the total; `provenance` is copied in."""
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
                     "explained": cumulative[-1], "texts": texts})  # fmt: skip
    return {**provenance, "variant": result.variant, "heads": rows}


def report_markdown(report: dict[str, Any]) -> str:
    """The head report as Markdown: a summary table, then each head's texts in order."""
    m = len(report["heads"][0]["texts"])
    lines = ["# TextSpan head report", ""]
    lines += [f"- {key}: {_describe(value)}" for key, value in report.items() if key != "heads"]
    lines += ["", "| head | variance | explained by the texts | first texts |", "|---|---|---|---|"]
    for row in report["heads"]:
        first = "; ".join(t["text"] for t in row["texts"][:3])
        lines.append(f"| {row['head']} | {row['total_variance']:.4g} | {100 * row['explained']:.1f}% | {first} |")
    for row in report["heads"]:
        lines += ["", f"## {row['head']}", "",
                  f"Total variance {row['total_variance']:.4g}; the {m} texts explain {100 * row['explained']:.1f}%. "
                  "Per text: variance it adds, cumulative variance explained, and how much of the text's "
                  "direction was new (outside the texts before it).",
                  ""]  # fmt: skip
        lines += [f"{t['rank']}. {t['text']} — +{100 * t['gain']:.1f}%, total {100 * t['explained']:.1f}%, "
                  f"new {100 * t['new']:.0f}%" for t in row["texts"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_head_overview(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """PNG: per head, its share of the variance of all reported heads (left) and the variance
    explained by each successive text as a stacked bar (right), labelled with the first text."""
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
    save_figure(fig, path)


def _describe(value: Any) -> str:
    """One readable line for a report field; a store description becomes model, data and path."""
    if isinstance(value, dict) and "fingerprint" in value:
        data = value.get("dataset") or {}
        model = (value.get("model") or {}).get("name")
        images = f"{data.get('name')} split {data.get('split')}, {value.get('count')} images"
        return f"{value.get('path')} ({model}, weights {value['fingerprint']}; {images}; {value.get('convention')})"
    return str(value)


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
