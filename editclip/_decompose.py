"""The image embedding split into the direct contributions of its parts, in two conventions.

``exact`` (default): each part is centred by its own mean (ln_post linearised with the image's own
mu and sigma); the out_proj bias of every layer is its own part (``biases``) and ln_post's beta is the
constant ``const``. Parts sum to ``model.encode_image`` exactly.

``official``: the split of the paper's code, so that published numbers can be reproduced: mu/K and
beta/K given to each of the K = 2L+1 components, the out_proj bias spread evenly over the heads (and
over source tokens in the per-token parts), everything divided by |z|, so parts sum to z/|z|.

``cls_source`` [N, L, D] (CLS towers) is the part of each layer's heads read from the CLS token itself,
summed over heads: the per-token split at source token 0, in either convention (official: with 1/T of
b_O and 1/(K T) of mu and beta, as the official code's ``cls_attn``). It lies inside ``heads`` and is
not a term of :meth:`Decomposition.total`.

Pooled towers (:mod:`editclip.pooling`): in ``exact`` the layer parts are direct effects through the
pool and the pool MLP is one more part (``pool_mlp``, named ``pool.mlp``); ``const`` holds the LayerNorm
betas and pool biases. ``official`` (attention pools) is the official SigLIP code's split: the pool's
heads (``pool_heads`` [N, G, D], named ``pool.H{g}``), ``pool_mlp`` and the pool's out_proj bias as
``const``, not divided by |z| (that code does not), so parts sum to z; it has no layer parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ._capture import Recorder, concat_captured, plan_capture
from ._constants import CONVENTIONS
from .backbone import Backbone
from .errors import EditclipError
from .pooling import official_const
from .tower import Tower
from .vit import VitOutput, fold_weights, run


@dataclass
class Decomposition:
    """Direct parts of N image embeddings (shapes below; D = embed_dim)."""

    heads: Tensor  # [N, L, H, D]  per-head direct parts at CLS, summed over source tokens
    mlps: Tensor  # [N, L, D]
    embed: Tensor  # [N, D]  the ln_pre term r_0[CLS]
    biases: Tensor  # [N, L, D]  out_proj bias of each layer (zero in the official convention)
    const: Tensor  # [D]  ln_post beta @ proj (zero in the official convention)
    norms: Tensor  # [N]  |z| of the unnormalised embedding
    convention: str = "exact"
    tokens: dict[int, Tensor] = field(default_factory=dict)  # {layer: [N, H, T, D]}
    pool_mlp: Tensor | None = None  # [N, D]  the attention pool's MLP (pooled towers)
    pool_heads: Tensor | None = None  # [N, G, D]  the attention pool's heads (official convention, pooled)
    pool_tokens: Tensor | None = None  # [N, G, T, D]  pool heads per source token (official, when asked)
    cls_source: Tensor | None = None  # [N, L, D]  the part of each layer's heads read from the CLS token itself
    captured: dict[str, Tensor] = field(default_factory=dict)  # named capture points (editclip._capture)

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise EditclipError(f"convention {self.convention!r} is unknown; choose one of {CONVENTIONS}")

    def __len__(self) -> int:
        return self.heads.shape[0]

    def __repr__(self) -> str:
        n, layers, heads, dim = self.heads.shape
        tokens = ""
        if self.tokens:
            first = next(iter(self.tokens.values()))
            tokens = f", tokens of {', '.join(f'L{layer}' for layer in sorted(self.tokens))} [{first.shape[2]} each]"
        if self.captured:
            tokens += f", {len(self.captured)} captured"
        return (f"Decomposition({n} images, {layers} layers x {heads} heads, D={dim}, {self.convention}, "
                f"{str(self.heads.dtype).removeprefix('torch.')}{tokens})")  # fmt: skip

    @property
    def n_layers(self) -> int:
        return self.heads.shape[1]

    @property
    def n_heads(self) -> int:
        return self.heads.shape[2]

    def total(self) -> Tensor:
        """[N, D] sum of all parts: ``encode_image`` (exact) or its unit-normalised version (official)."""
        total = self.embed + self.heads.sum((1, 2)) + self.mlps.sum(1) + self.biases.sum(1) + self.const
        for extra in (self.pool_mlp, None if self.pool_heads is None else self.pool_heads.sum(1)):
            if extra is not None:
                total = total + extra
        return total

    def __getitem__(self, index: slice | Tensor | Sequence[int]) -> Decomposition:
        """The decomposition of a subset of images."""
        return Decomposition(
            heads=self.heads[index],
            mlps=self.mlps[index],
            embed=self.embed[index],
            biases=self.biases[index],
            const=self.const,
            norms=self.norms[index],
            convention=self.convention,
            tokens={layer: t[index] for layer, t in self.tokens.items()},
            pool_mlp=_pick(self.pool_mlp, index),
            pool_heads=_pick(self.pool_heads, index),
            pool_tokens=_pick(self.pool_tokens, index),
            cls_source=_pick(self.cls_source, index),
            captured={name: t[index] for name, t in self.captured.items()},
        )

    @staticmethod
    def concat(parts: Sequence[Decomposition]) -> Decomposition:
        """Join decompositions of consecutive batches (a single one is returned as it is, not copied)."""
        if not parts:
            raise EditclipError("nothing to concatenate")
        first = parts[0]
        if len(parts) == 1:
            return first
        return Decomposition(
            heads=torch.cat([p.heads for p in parts]),
            mlps=torch.cat([p.mlps for p in parts]),
            embed=torch.cat([p.embed for p in parts]),
            biases=torch.cat([p.biases for p in parts]),
            const=first.const,
            norms=torch.cat([p.norms for p in parts]),
            convention=first.convention,
            tokens={layer: torch.cat([p.tokens[layer] for p in parts]) for layer in first.tokens},
            pool_mlp=_cat([p.pool_mlp for p in parts]),
            pool_heads=_cat([p.pool_heads for p in parts]),
            pool_tokens=_cat([p.pool_tokens for p in parts]),
            cls_source=_cat([p.cls_source for p in parts]),
            captured=concat_captured([p.captured for p in parts]),
        )


def _pick(tensor: Tensor | None, index: slice | Tensor | Sequence[int]) -> Tensor | None:
    return None if tensor is None else tensor[index]


def _cat(tensors: list[Tensor | None]) -> Tensor | None:
    return None if tensors[0] is None else torch.cat(tensors)


def from_vit_output(out: VitOutput, convention: str = "exact") -> Decomposition:
    """Build a Decomposition in the given convention from one instrumented forward."""
    if convention not in CONVENTIONS:
        raise EditclipError(f"convention {convention!r} is unknown; choose one of {CONVENTIONS}")
    folded = out.folded
    norms = out.embedding.norm(dim=-1)
    if out.readout is not None:
        return _pooled(out, convention, norms)
    if convention == "exact":
        return Decomposition(
            heads=out.heads,
            mlps=out.mlps,
            embed=out.embed,
            biases=out.attn_bias,
            const=folded.b.clone(),
            norms=norms,
            convention="exact",
            tokens=dict(out.tokens),
            cls_source=out.cls_source,
        )
    return _official(out, norms)


def _pooled(out: VitOutput, convention: str, norms: Tensor) -> Decomposition:
    """A pooled tower's decomposition: parts through the pool (exact) or the official SigLIP split."""
    if convention == "exact":
        return Decomposition(heads=out.heads, mlps=out.mlps, embed=out.embed, biases=out.attn_bias,
                             const=out.const, norms=norms, convention="exact", tokens=dict(out.tokens),
                             pool_mlp=out.pool_mlp)  # fmt: skip
    pool_heads, pool_tokens, const = out.readout.official(tokens=bool(out.tokens) or out.token_sum is not None)
    n, dim = out.embedding.shape
    empty = out.embedding.new_zeros(n, 0, dim)
    return Decomposition(
        heads=out.embedding.new_zeros(n, 0, pool_heads.shape[1], dim),
        mlps=empty,
        embed=torch.zeros_like(out.embedding),
        biases=empty,
        const=const,
        norms=norms,
        convention="official",
        pool_mlp=out.readout.pool_mlp,
        pool_heads=pool_heads,
        pool_tokens=pool_tokens,
    )


def _official(out: VitOutput, norms: Tensor) -> Decomposition:
    """The official code's split (docs/method.md section 1), divided by |z|.

    A component with exact part e and residual-space mean m that is given the share s of the
    ln_post mean and bias becomes e + (m - s mu) g / sigma + s b.
    """
    folded = out.folded
    n_layers, n_heads = out.heads.shape[1], out.heads.shape[2]
    k = 2 * n_layers + 1
    mu = out.ln_mean[:, None]
    g_over_sigma = folded.g[None, :] / out.ln_std[:, None]  # [N, D]

    def shift(mean: Tensor, share: float) -> Tensor:  # mean [N, ...] -> [N, ..., D]
        centred = mean - share * mu.view(-1, *([1] * (mean.ndim - 1)))
        return (
            centred[..., None] * g_over_sigma.view(-1, *([1] * (mean.ndim - 1)), g_over_sigma.shape[-1])
            + share * folded.b
        )

    embed = out.embed + shift(out.embed_mean, 1 / k)
    mlps = out.mlps + shift(out.mlp_means, 1 / k)
    bias_exact = out.attn_bias[:, :, None, :] / n_heads  # [N, L, 1, D]: each head's share of b_O
    bias_mean = out.attn_bias_mean[None, :, None] / n_heads  # [1, L, 1]
    heads = out.heads + bias_exact + shift(out.head_means + bias_mean, 1 / (k * n_heads))
    tokens = {layer: _official_tokens(out, layer, k, mu, g_over_sigma, norms) for layer in out.tokens}
    cls_source = None
    if out.cls_source is not None:  # the CLS-source token of every head: 1/T of b_O, 1/(K T) of mu and beta
        n_tokens = out.n_tokens
        cls_mean = out.cls_source_means + out.attn_bias_mean[None] / n_tokens
        cls_source = out.cls_source + out.attn_bias / n_tokens + shift(cls_mean, 1 / (k * n_tokens))
    scale = norms[:, None]
    zeros = torch.zeros_like(out.attn_bias)
    return Decomposition(
        heads=heads / scale[:, :, None, None],
        mlps=mlps / scale[:, :, None],
        embed=embed / scale,
        biases=zeros,
        const=torch.zeros_like(folded.b),
        norms=norms,
        convention="official",
        tokens=tokens,
        cls_source=None if cls_source is None else cls_source / scale[:, :, None],
    )


def _official_tokens(out: VitOutput, layer: int, k: int, mu: Tensor, g_over_sigma: Tensor, norms: Tensor) -> Tensor:
    """One layer's per-token parts in the official split: the same e + (m - s mu) g / sigma + s b with the
    bias spread over heads and tokens, over |z|; one pass over [N, H, T, D] per image (a rank-2 update)."""
    tok = out.tokens[layer]
    n, n_heads, n_tokens, dim = tok.shape
    share = n_heads * n_tokens
    s = 1 / (k * share)
    coef = out.token_means[layer] + out.attn_bias_mean[layer] / share - s * mu[:, :, None]  # [N, H, T]
    const = out.attn_bias[:, layer] / share + s * out.folded.b  # [N, D]
    left = torch.stack([coef, torch.ones_like(coef)], -1)  # [N, H, T, 2]
    right = torch.stack([g_over_sigma, const], 1) / norms[:, None, None]  # [N, 2, D]
    parts = torch.empty_like(tok)
    for i in range(n):
        torch.baddbmm(tok[i], left[i], right[i].expand(n_heads, 2, dim), beta=1 / float(norms[i]), out=parts[i])
    return parts


def constant_term(tower: Tower, convention: str) -> Tensor:
    """The image-independent term ``const`` [D] of a decomposition in ``convention``."""
    folded = fold_weights(tower)
    if convention == "exact":
        return folded.b
    if tower.readout is None:
        return torch.zeros_like(folded.b)  # spread over the parts in the official convention
    return official_const(tower.readout, tower.width, folded.b.device)


def decompose(
    bb: Backbone,
    images: Tensor,
    convention: str = "exact",
    token_layers: Sequence[int] | None = None,
    batch_size: int = 64,
    capture: Iterable[str] | None = None,
) -> Decomposition:
    """Decompose the embeddings of ``images`` [N, 3, H, W] (already preprocessed) into direct parts.

    ``capture`` names intermediate tensors to keep as well (``["L3.attn.pattern", "last:2.mlp.post"]``,
    docs/INTERFACES.md), returned in ``Decomposition.captured``.
    """
    if convention not in CONVENTIONS:
        raise EditclipError(f"convention {convention!r} is unknown; choose one of {CONVENTIONS}")
    if images.ndim != 4:
        raise EditclipError(f"images must be a [N, 3, H, W] tensor; got shape {list(images.shape)}")
    tower = bb.tower
    plan = plan_capture(capture, tower)
    chunks = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(bb.device)
        recorder = Recorder(plan)
        out = run(tower, batch, token_layers=token_layers or (), recorder=recorder)
        chunk = from_vit_output(out, convention)
        chunk.captured = recorder.result()
        chunks.append(chunk)
    return Decomposition.concat(chunks)
