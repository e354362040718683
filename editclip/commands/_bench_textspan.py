"""``editclip bench textspan``: TextSpan against the previous batched implementation, in one run.

The previous implementation (``textspan_before``, kept here only as the benchmark's reference) deflated
every head's [M, D] texts at every step; the library's computes the scores from R U, R S U and
U^T S U. Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_textspan``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import TYPE_CHECKING

from .._constants import VARIANTS
from ..errors import EditclipError

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def register_textspan(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``textspan`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "textspan",
        help="time TextSpan against the previous batched implementation on synthetic head data",
        description="Time TextSpan on synthetic head data (a few text directions plus noise per head): the "
        "library's implementation and the previous batched one (which deflated every head's texts at every "
        "step), in one run, and check that they choose the same texts. Defaults: 64 heads "
        "(the last 4 layers of ViT-L-14), N=10,000 images, M=3,500 texts, D=768, m=20.",
    )
    p.add_argument("--n-heads", type=int, default=64, help="number of heads K")
    p.add_argument("--heads", dest="n_heads", type=int, help=argparse.SUPPRESS)  # the old name of --n-heads
    p.add_argument("--images", type=int, default=10_000, help="images per head N")
    p.add_argument("--texts", type=int, default=3_500, help="pool size M")
    p.add_argument("--dim", type=int, default=768, help="embedding width D")
    p.add_argument("--m", type=int, default=20, help="texts chosen per head")
    p.add_argument("--variant", choices=VARIANTS, default="official", help="TextSpan variant")
    p.add_argument("--k", type=int, default=80, help="official variant: rank of the text projection")
    p.add_argument(
        "--old-heads",
        type=int,
        default=None,
        help="run the previous implementation on only this many heads and scale its time linearly to all heads "
        "(heads are independent); default: all heads",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--textspan-precision", choices=("float64", "float32"), default="float64",
                   help="float32: the paper variant only (the official variant needs float64)")  # fmt: skip
    p.add_argument("--precision", dest="textspan_precision", choices=("float64", "float32"),
                   help=argparse.SUPPRESS)  # the old name of --textspan-precision
    p.add_argument("--seed", type=int, default=0, help="seed of the random data")
    p.set_defaults(func=run_textspan)


def run_textspan(args: argparse.Namespace) -> int:
    """Build the synthetic data, time both implementations, print the figures and the ratio."""
    import torch

    from .._textspan import textspan

    for name in ("n_heads", "images", "texts", "dim", "m"):
        if getattr(args, name) < 1:
            raise EditclipError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    old_heads = args.n_heads if args.old_heads is None else args.old_heads
    if not 1 <= old_heads <= args.n_heads:
        raise EditclipError(f"--old-heads must be in 1..{args.n_heads}; got {args.old_heads}")
    if args.textspan_precision == "float32" and args.variant == "official":
        raise EditclipError("--precision float32 is for the paper variant only: the official variant needs float64")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float64 if args.textspan_precision == "float64" else torch.float32
    c, r = synthetic_heads(args.n_heads, args.images, args.texts, args.dim, seed=args.seed)
    options = {"variant": args.variant, "k": args.k, "device": device, "precision": args.textspan_precision}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warm-up's k exceeds its 100-image rank
        # warm up both paths (library initialisation is not part of either algorithm's cost)
        textspan(c[:1, :100], r, m=1, **{**options, "k": 2})
        textspan_before(c[:1, :100], r, 1, args.variant, 2, device, dtype, progress=False)

    start = _clock(device)
    new = textspan(c, r, m=args.m, **options)
    t_new = _clock(device) - start

    start = _clock(device)
    old = textspan_before(c[:old_heads], r, args.m, args.variant, args.k, device, dtype)
    t_old_measured = _clock(device) - start
    t_old = t_old_measured * args.n_heads / old_heads

    same = torch.equal(old, new.indices[:old_heads])
    print(
        f"TextSpan ({args.variant}{f', k={args.k}' if args.variant == 'official' else ''}): "
        f"{args.n_heads} heads, N={args.images}, M={args.texts}, D={args.dim}, m={args.m}, "
        f"device {device} ({torch.get_num_threads()} threads), {args.textspan_precision}"
    )
    print(f"  textspan (R U, R S U, U^T S U)   {t_new:10.2f} s")
    scaled = "" if old_heads == args.n_heads else f"  (measured {t_old_measured:.2f} s on {old_heads} heads, scaled)"
    print(f"  previous (deflates the texts)    {t_old:10.2f} s{scaled}")
    print(f"  speed-up                         {t_old / t_new:10.1f}x  (target >= 5x at the reference size)")
    print(f"  same texts in the same order on the {old_heads} heads run by both: {'yes' if same else 'NO'}")
    return 0 if same else 1


def synthetic_heads(n_heads: int, n: int, m_texts: int, d: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Head data with structure: each head mixes 10 pool texts (decreasing scales) plus noise and an offset.

    Returns C [K, N, D] float32 and unit texts R [M, D] float32.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(m_texts, d, generator=gen)
    r /= r.norm(dim=1, keepdim=True)
    scales = torch.linspace(4.0, 1.0, 10)
    c = torch.empty(n_heads, n, d)
    for head in range(n_heads):
        idx = torch.randperm(m_texts, generator=gen)[:10]
        coef = torch.randn(n, 10, generator=gen) * scales
        torch.randn(n, d, generator=gen, out=c[head])
        c[head].mul_(0.5).add_(coef @ r[idx]).add_(torch.randn(d, generator=gen))
    return c, r


def textspan_before(
    c: Tensor,
    r: Tensor,
    m: int,
    variant: str,
    k: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: bool = True,
) -> Tensor:
    """The previous batched implementation (same greedy, no rank rule): per chunk of heads, the scatter
    matrix, the texts (official: projected on the top-k eigenvectors of the uncentred Gram matrix) as a
    [B, M, D] tensor deflated at every step, scores updated by a rank-one formula, all in `dtype`.
    c: [K, N, D] -> indices [K, m]."""
    import torch
    from tqdm.auto import tqdm

    n_img, dim = c.shape[1:]
    rank = min(k, n_img, dim)
    per_head = (max(n_img, 2 * r.shape[0]) * dim + 4 * dim * dim) * torch.finfo(dtype).bits // 8
    budget = torch.cuda.mem_get_info(device)[0] // 2 if device.type == "cuda" else 2 << 30
    chunk = max(1, int(budget // per_head))
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    r = r.to(device, dtype)
    ref = r.square().sum(-1)
    picks = []
    for start in tqdm(range(0, c.shape[0], chunk), desc="previous", unit="chunk", disable=not progress):
        x = c[start : start + chunk].to(device, dtype, copy=True)
        mean = x.mean(1)
        x -= mean[:, None]
        scatter = x.transpose(1, 2) @ x
        del x
        if variant == "official" and rank < dim:
            gram = scatter + n_img * mean[:, :, None] * mean[:, None, :]
            top = torch.linalg.eigh(gram).eigenvectors[..., -rank:]
            q = (r @ top) @ top.transpose(1, 2)
        else:
            q = r.expand(scatter.shape[0], -1, -1).clone()
        var = ((q @ scatter) * q).sum(-1)
        norm2 = q.square().sum(-1)
        rows = torch.arange(q.shape[0], device=device)
        taken = torch.zeros(q.shape[:2], dtype=torch.bool, device=device)
        chosen = []
        for _ in range(m):
            score = var / norm2 if variant == "paper" else var
            best = score.masked_fill(taken | (norm2 <= tol * ref), -torch.inf).argmax(-1)
            u = q[rows, best]
            u = u / u.norm(dim=-1, keepdim=True)
            su = (scatter @ u[..., None])[..., 0]
            gain = (u * su).sum(-1)
            qu, qsu = (q @ torch.stack((u, su), -1)).unbind(-1)
            var += qu * (qu * gain[:, None] - 2 * qsu)
            norm2 -= qu.square()
            q.baddbmm_(qu[..., None], u[:, None, :], alpha=-1)
            taken[rows, best] = True
            chosen.append(best)
        picks.append(torch.stack(chosen, 1).cpu())
    return torch.cat(picks)


def _clock(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
