"""``editclip bench textspan``: batched TextSpan against a straightforward per-head loop, in one run.

Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_textspan``.
"""

from __future__ import annotations

import argparse
import time
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
        help="time batched TextSpan against a per-head loop on synthetic head data",
        description="Time TextSpan on synthetic head data (a few text directions plus noise per head): "
        "the batched implementation and a straightforward per-head loop of the same algorithm, in one run. "
        "Defaults are the issue's reference size (64 heads, N=10,000, M=3,500, D=768, m=20).",
    )
    p.add_argument("--heads", type=int, default=64, help="number of heads K")
    p.add_argument("--images", type=int, default=10_000, help="images per head N")
    p.add_argument("--texts", type=int, default=3_500, help="pool size M")
    p.add_argument("--dim", type=int, default=768, help="embedding width D")
    p.add_argument("--m", type=int, default=20, help="texts chosen per head")
    p.add_argument("--variant", choices=VARIANTS, default="official")
    p.add_argument("--k", type=int, default=80, help="official variant: rank of the text projection")
    p.add_argument(
        "--loop-heads",
        type=int,
        default=None,
        help="run the per-head loop on only this many heads and scale its time linearly to all heads "
        "(heads are independent); default: all heads",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--precision", choices=("float64", "float32"), default="float64")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_textspan)


def run_textspan(args: argparse.Namespace) -> int:
    """Build the synthetic data, time both implementations, print the figures and the ratio."""
    import torch

    from .._textspan import textspan

    for name in ("heads", "images", "texts", "dim", "m"):
        if getattr(args, name) < 1:
            raise EditclipError(f"--{name} must be >= 1; got {getattr(args, name)}")
    loop_heads = args.heads if args.loop_heads is None else args.loop_heads
    if not 1 <= loop_heads <= args.heads:
        raise EditclipError(f"--loop-heads must be in 1..{args.heads}; got {args.loop_heads}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float64 if args.precision == "float64" else torch.float32
    c, r = synthetic_heads(args.heads, args.images, args.texts, args.dim, seed=args.seed)

    # warm up both paths (library initialisation is not part of either algorithm's cost)
    textspan(c[:1, :100], r, m=1, variant=args.variant, k=2, device=device, precision=args.precision)
    textspan_loop(c[:1, :100], r, 1, args.variant, 2, device, dtype, progress=False)

    start = _clock(device)
    batched = textspan(c, r, m=args.m, variant=args.variant, k=args.k, device=device, precision=args.precision)
    t_batched = _clock(device) - start

    start = _clock(device)
    looped = textspan_loop(c[:loop_heads], r, args.m, args.variant, args.k, device, dtype)
    t_loop_measured = _clock(device) - start
    t_loop = t_loop_measured * args.heads / loop_heads

    same = torch.equal(looped, batched.indices[:loop_heads])
    print(
        f"TextSpan ({args.variant}{f', k={args.k}' if args.variant == 'official' else ''}): "
        f"{args.heads} heads, N={args.images}, M={args.texts}, D={args.dim}, m={args.m}, "
        f"device {device}, {args.precision}"
    )
    print(f"  batched        {t_batched:10.2f} s")
    scaled = (
        ""
        if loop_heads == args.heads
        else (f"  (measured {t_loop_measured:.2f} s on {loop_heads} heads, scaled to {args.heads})")
    )
    print(f"  per-head loop  {t_loop:10.2f} s{scaled}")
    print(f"  speed-up       {t_loop / t_batched:10.1f}x  (target >= 10x)")
    print(f"  same texts in the same order on the {loop_heads} looped heads: {'yes' if same else 'NO'}")
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


def textspan_loop(
    c: Tensor,
    r: Tensor,
    m: int,
    variant: str,
    k: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: bool = True,
) -> Tensor:
    """The same algorithm written the straightforward way: per head, a full SVD (official variant),
    then per step project all the data on all texts and deflate both. c: [K, N, D] -> indices [K, m]."""
    import torch
    from tqdm.auto import tqdm

    picks = []
    for head in tqdm(c, desc="per-head loop", unit="head", disable=not progress):
        x = head.to(device, dtype)
        t = r.to(device, dtype)
        if variant == "official":
            vh = torch.linalg.svd(x, full_matrices=False).Vh[:k]
            t = t @ vh.T @ vh
        x = x - x.mean(0)
        chosen: list[int] = []
        for _ in range(m):
            projection = x @ t.T
            if variant == "official":
                score = projection.std(0)
            else:
                score = projection.var(0)
                score[chosen] = -torch.inf
            best = int(score.argmax())
            chosen.append(best)
            u = t[best] / t[best].norm()
            x = x - (x @ u)[:, None] * u
            t = t - (t @ u)[:, None] * u
            if variant == "paper":
                norms = t.norm(dim=1, keepdim=True)
                t = torch.where(norms > 1e-5, t / norms, torch.zeros_like(t))
        picks.append(chosen)
    return torch.tensor(picks)


def _clock(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
