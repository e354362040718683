"""One instrumented forward of a ViT image tower, written from its family-neutral description.

The tower is a :class:`~editclip.tower.Tower` (or a model, described by its family's adapter in
:mod:`editclip.families`). The forward returns the pooled image embedding (equal to the model's own
image forward) and, on request, the direct
contribution of every part of the CLS residual stream, mapped to the output space through the
linearised ln_post: a residual-space vector ``c`` becomes ``c @ G / sigma`` with
``G = P diag(gamma) proj`` (``P`` centres over the width), ``sigma`` the per-image ln_post scale. These
are the parts of the ``exact`` convention; :mod:`editclip._decompose` derives the ``official`` one from
them and the raw means that are returned alongside.

Cost: the layers run with fused scaled-dot-product attention as usual. A head's CLS part needs only
the CLS row of the attention *output* (already computed); per-source-token parts, and each layer's
CLS-source part (``cls_source``: what the CLS query reads from the CLS token itself, the official
ablation's "cls->cls attention"), need the CLS row of the attention *weights* ([N, H, T]), never the
full [N, H, T, T] matrix.
The weighted values ``a_t v_t`` ([N, H, T, hd], hd/D of the parts' size) are kept until ln_post's
sigma is known, then mapped to the output space once, already divided by sigma, so the [N, H, T, D]
parts are written once.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._capture import Recorder
from .errors import EditclipError
from .families import describe
from .pooling import Readout, linear_map
from .tower import Tower
from .vit_pooled import run_pooled


@dataclass
class FoldedWeights:
    """Per-layer matrices that map a head's attention output straight to the output space (fp32)."""

    G: Tensor  # [W, D]   P diag(gamma) proj
    g: Tensor  # [D]      gamma @ proj  (output direction of a constant shift of the residual)
    b: Tensor  # [D]      beta @ proj   (the ln_post bias term)
    head_maps: list[Tensor]  # per layer [H, hd, D]: W_O^h^T diag(ls_1) G
    head_mean_vecs: list[Tensor]  # per layer [H, hd]: (W_O^h^T ls_1) / W, so o_h . it = mean of the head's output
    attn_bias: Tensor  # [L, W]  ls_1 * b_O, the out_proj bias in the residual stream
    ln_post_eps: float
    versions: tuple[int, ...] = field(default=(), repr=False)


@dataclass
class VitOutput:
    """What one instrumented forward returns. Parts are fp32, in the `exact` convention.

    ``*_mean`` are the means over the width of the same parts in the residual stream (before ln_post),
    which the `official` convention needs.
    """

    embedding: Tensor  # [N, D]  == model.encode_image(images)
    ln_mean: Tensor | None = None  # [N]  ln_post mean mu of the final CLS residual
    ln_std: Tensor | None = None  # [N]  ln_post scale sigma = sqrt(var + eps)
    heads: Tensor | None = None  # [N, L, H, D]
    head_means: Tensor | None = None  # [N, L, H]
    mlps: Tensor | None = None  # [N, L, D]
    mlp_means: Tensor | None = None  # [N, L]
    embed: Tensor | None = None  # [N, D]  ln_pre(r_0)[CLS]
    embed_mean: Tensor | None = None  # [N]
    attn_bias: Tensor | None = None  # [N, L, D]  out_proj bias of each layer
    attn_bias_mean: Tensor | None = None  # [L]
    cls_source: Tensor | None = None  # [N, L, D]  each layer's heads at the CLS token as source, summed over heads
    cls_source_means: Tensor | None = None  # [N, L]
    n_tokens: int = 0  # T, the tokens attention reads (the official split spreads b_O over them)
    tokens: dict[int, Tensor] = field(default_factory=dict)  # {layer: [N, H, T, D]} per source token
    token_means: dict[int, Tensor] = field(default_factory=dict)  # {layer: [N, H, T]}
    token_sum: Tensor | None = None  # [N, T, D]  sum over chosen layers and heads (token_reduce="sum")
    token_sum_mean: Tensor | None = None  # [N, T]
    head_outputs: Tensor | None = None  # [N, L, H, hd]  raw CLS attention outputs before out_proj (cls_raw)
    mlp_outputs: Tensor | None = None  # [N, L, W]  raw CLS MLP outputs in the residual stream (cls_raw)
    folded: FoldedWeights | None = None
    pool_mlp: Tensor | None = None  # [N, D]  the pool MLP's part (attention-pooled towers)
    const: Tensor | None = None  # [D]  the readout's constant term (pooled towers)
    readout: Readout | None = None  # the pooled readout of this batch (pooled towers), for the official split


_FOLD_CACHE: weakref.WeakKeyDictionary[nn.Module, FoldedWeights] = weakref.WeakKeyDictionary()


def _param_versions(module: nn.Module) -> tuple[int, ...]:
    params = list(module.parameters())
    return tuple(p._version for p in params) + tuple(p.data_ptr() for p in params)


@torch.no_grad()
def fold_weights(tower: Tower | nn.Module) -> FoldedWeights:
    """Precompute (and cache per tower, until its parameters change) the output-space maps of every head."""
    tower = describe(tower)
    versions = _param_versions(tower.module)
    cached = _FOLD_CACHE.get(tower.module)
    if cached is not None and cached.versions == versions:
        return cached
    width = tower.width
    device = tower.patch_weight.device
    gamma = _or_ones(tower.ln_post.weight, width, device)
    beta = tower.ln_post.bias.detach().float() if tower.ln_post.bias is not None else torch.zeros(width, device=device)
    proj = tower.proj.detach().float() if tower.proj is not None else torch.eye(width, device=device)
    offset = torch.zeros(proj.shape[1], device=device)
    if tower.readout is not None:  # the pool's linear map of a token it reads (attention spread evenly)
        proj, offset = linear_map(tower.readout, width, device)
    centred = proj * gamma[:, None]
    G = centred - centred.mean(dim=0, keepdim=True)  # P diag(gamma) proj, P = I - 11^T / W
    head_maps, head_mean_vecs, biases = [], [], []
    for block in tower.blocks:
        heads = block.heads
        w_o = block.out_weight.detach().float()  # [W, W]: output rows, head-major input columns
        ls_1 = _or_ones(block.ls_1, width, device)
        head_maps.append((w_o.t() @ (ls_1[:, None] * G)).reshape(heads, width // heads, -1))
        head_mean_vecs.append((w_o.t() @ ls_1 / width).reshape(heads, width // heads))
        bias = block.out_bias
        biases.append(ls_1 * bias.detach().float() if bias is not None else torch.zeros(width, device=device))
    folded = FoldedWeights(
        G=G,
        g=gamma @ proj,
        b=beta @ proj + offset,
        head_maps=head_maps,
        head_mean_vecs=head_mean_vecs,
        attn_bias=torch.stack(biases),
        ln_post_eps=tower.ln_post.eps,
        versions=versions,
    )
    _FOLD_CACHE[tower.module] = folded
    return folded


def _or_ones(param: Tensor | None, width: int, device: torch.device) -> Tensor:
    return param.detach().float() if param is not None else torch.ones(width, device=device)


def embed(tower: Tower, images: Tensor) -> Tensor:
    """The tokens [N, T, W] entering the first block, after checking the image shape."""
    expected = tower.image_size
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != tuple(expected):
        raise EditclipError(
            f"images must be [N, 3, {expected[0]}, {expected[1]}] for this model; got {list(images.shape)}"
        )
    return tower.embed(images)


@torch.no_grad()
def run(
    tower: Tower | nn.Module,
    images: Tensor,
    *,
    parts: bool = True,
    token_layers: Sequence[int] = (),
    token_reduce: str = "none",
    token_head_mask: Tensor | None = None,
    cls_raw: bool = False,
    recorder: Recorder | None = None,
) -> VitOutput:
    """Run the image tower on ``images`` [N, 3, H, W], capturing direct parts when asked.

    Args:
        tower: a Tower, or a model (or its image tower) that :func:`editclip.families.describe` reads.
        parts: capture per-head, MLP, embedding and bias parts at CLS, and the ln_post statistics.
        token_layers: layers whose heads' CLS outputs are also split over source tokens.
        token_reduce: ``"none"`` keeps ``tokens[layer]`` [N, H, T, D]; ``"sum"`` only accumulates
            ``token_sum`` [N, T, D] over the chosen layers and heads, so memory stays O(N T D).
        token_head_mask: [L, H] bool, the heads summed when ``token_reduce="sum"`` (default all).
        cls_raw: also return the raw CLS head outputs (before out_proj) and MLP outputs, which the
            weights target of an edit needs to patch out_proj and c_proj.
        recorder: keeps the named capture points of its plan (:mod:`editclip._capture`); none by default.
    """
    if token_reduce not in ("none", "sum"):
        raise EditclipError(f"token_reduce must be 'none' or 'sum', got {token_reduce!r}")
    tower = describe(tower)
    blocks = tower.blocks
    n_layers = len(blocks)
    token_layers = sorted(set(token_layers))
    for layer in token_layers:
        if not 0 <= layer < n_layers:
            raise EditclipError(f"token layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
    capture = parts or bool(token_layers)
    folded = fold_weights(tower) if capture else None
    recorder = recorder or Recorder()

    x = embed(tower, images)
    n, t, width = x.shape
    out = VitOutput(embedding=torch.empty(0))
    if tower.pool != "cls":
        run_pooled(tower, x, out, folded, parts=parts, token_layers=token_layers, token_reduce=token_reduce,
                   token_head_mask=token_head_mask, cls_raw=cls_raw, recorder=recorder)  # fmt: skip
        return out
    if parts:
        out.embed = x[:, 0].float() @ folded.G
        out.embed_mean = x[:, 0].float().mean(-1)
        heads_acc, head_means, mlps_acc, mlp_means, cls_acc, cls_means = [], [], [], [], [], []
    raw_heads, raw_mlps = [], []
    token_values: dict[int, Tensor] = {}  # layer -> a_t v_t [N, H, T, hd] (token_reduce="none")
    if token_reduce == "sum" and token_layers:
        out.token_sum = torch.zeros(n, t, folded.G.shape[1], device=x.device)
        out.token_sum_mean = torch.zeros(n, t, device=x.device)

    for layer, block in enumerate(blocks):
        recorder.resid(layer, "pre", x)
        q, k, v = block.qkv(block.ln_1(x))  # [N, H, T, hd]
        recorder.attention(layer, block, q, k, v)
        attn = F.scaled_dot_product_attention(q, k, v)  # [N, H, T, hd]
        attn_out = block.out(attn.transpose(1, 2).reshape(n, t, width))
        recorder.attn_out(layer, attn_out)
        x = x + attn_out
        recorder.resid(layer, "mid", x)
        row = _cls_row(q, k) if parts or layer in token_layers else None  # [N, H, T]
        if parts:
            cls_heads = attn[:, :, 0].float()  # [N, H, hd]
            heads_acc.append(torch.einsum("nhk,hkd->nhd", cls_heads, folded.head_maps[layer]))
            head_means.append(torch.einsum("nhk,hk->nh", cls_heads, folded.head_mean_vecs[layer]))
            from_cls = v[:, :, 0].float() * row[:, :, :1]  # [N, H, hd]: a(CLS, CLS) v_CLS
            cls_acc.append(torch.einsum("nhk,hkd->nd", from_cls, folded.head_maps[layer]))
            cls_means.append(torch.einsum("nhk,hk->n", from_cls, folded.head_mean_vecs[layer]))
        if cls_raw:
            raw_heads.append(attn[:, :, 0].float())
        if layer in token_layers:
            weighted = _capture_tokens(out, layer, row, v, folded, token_reduce, token_head_mask)
            if token_reduce == "none":
                token_values[layer] = weighted
        m = recorder.mlp(layer, block, x)
        x = x + m
        recorder.resid(layer, "post", x)
        if cls_raw:
            raw_mlps.append(m[:, 0].float())
        if parts:
            mlps_acc.append(m[:, 0].float() @ folded.G)
            mlp_means.append(m[:, 0].float().mean(-1))

    cls = x[:, 0]
    out.embedding = tower.head(cls)
    if cls_raw:
        out.head_outputs, out.mlp_outputs = torch.stack(raw_heads, 1), torch.stack(raw_mlps, 1)
    if not capture:
        return out
    r = cls.float()
    out.ln_mean = r.mean(-1)
    out.ln_std = torch.sqrt(r.var(-1, unbiased=False) + folded.ln_post_eps)
    inv = (1.0 / out.ln_std)[:, None]
    out.folded = folded
    out.n_tokens = t
    if parts:
        out.embed = out.embed * inv
        out.heads = torch.stack(heads_acc, 1) * inv[:, :, None, None]
        out.head_means = torch.stack(head_means, 1)
        out.mlps = torch.stack(mlps_acc, 1) * inv[:, :, None]
        out.mlp_means = torch.stack(mlp_means, 1)
        out.cls_source = torch.stack(cls_acc, 1) * inv[:, :, None]
        out.cls_source_means = torch.stack(cls_means, 1)
        out.attn_bias = (folded.attn_bias @ folded.G)[None] * inv[:, :, None]
        out.attn_bias_mean = folded.attn_bias.mean(-1)
    for layer, weighted in token_values.items():  # scaled before the map: hd/D of the work of scaling after
        out.tokens[layer] = _map_tokens(weighted.mul_(inv[:, :, None, None]), folded.head_maps[layer])
    if out.token_sum is not None:
        out.token_sum = out.token_sum * inv[:, :, None]
    return out


def _cls_row(q: Tensor, k: Tensor) -> Tensor:
    """[N, H, T] the CLS query's attention weights over the source tokens (fp32), never the whole matrix."""
    logits = torch.einsum("nhk,nhtk->nht", q[:, :, 0].float(), k.float()) * q.shape[-1] ** -0.5
    return logits.softmax(-1)


def _map_tokens(weighted: Tensor, head_maps: Tensor) -> Tensor:
    """[N, H, T, hd] weighted values -> [N, H, T, D] parts, one batched product per image written in place
    (broadcasting ``head_maps`` [H, hd, D] over images would copy it N times)."""
    n, heads, t, _ = weighted.shape
    parts = weighted.new_empty(n, heads, t, head_maps.shape[-1])
    for i in range(n):
        torch.bmm(weighted[i], head_maps, out=parts[i])
    return parts


def _capture_tokens(
    out: VitOutput,
    layer: int,
    weights: Tensor,
    v: Tensor,
    folded: FoldedWeights,
    token_reduce: str,
    head_mask: Tensor | None,
) -> Tensor:
    """Split each head's CLS output over source tokens: a[h, t] * W_O^h v_t^h (unscaled by sigma), with
    ``weights`` [N, H, T] the CLS row of the layer's attention.

    Records the residual-space means in ``out``; adds to ``out.token_sum`` (``token_reduce="sum"``) or
    returns the weighted values ``a[h, t] v_t^h`` [N, H, T, hd] that :func:`run` maps once sigma is known.
    """
    if token_reduce == "sum" and head_mask is not None:
        weights = weights * head_mask[layer].to(weights)[None, :, None]
    weighted_v = v.float() * weights[..., None]  # [N, H, T, hd]
    means = torch.einsum("nhtk,hk->nht", weighted_v, folded.head_mean_vecs[layer])
    if token_reduce == "sum":
        out.token_sum += torch.einsum("nhtk,hkd->ntd", weighted_v, folded.head_maps[layer])
        out.token_sum_mean += means.sum(1)
    else:
        out.token_means[layer] = means
    return weighted_v
