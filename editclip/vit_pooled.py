"""The instrumented forward of pooled towers (attention pool, mean pool); :func:`editclip.vit.run` calls it.

The blocks run as in :mod:`editclip.vit` (fused attention). Because the pool reads every token, and its
attention weights and LayerNorm scales are known only at the end, each layer's attention output
(before out_proj, [N, H, T, hd]) and MLP output ([N, T, W]) are kept until then; the parts are the
pool-weighted sums of them mapped through the linearised readout (:mod:`editclip.pooling`). Per-token
parts need the layer's attention matrix, recomputed from q and k for the layers asked for only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .pooling import Readout, readout
from .tower import Block, Tower

if TYPE_CHECKING:
    from ._capture import Recorder
    from .vit import FoldedWeights, VitOutput


def run_pooled(
    tower: Tower,
    x: Tensor,
    out: VitOutput,
    folded: FoldedWeights | None,
    *,
    parts: bool,
    token_layers: Sequence[int],
    token_reduce: str,
    token_head_mask: Tensor | None,
    cls_raw: bool,
    recorder: Recorder,
) -> None:
    """Run the blocks on the embedded tokens ``x`` [N, T, W] and fill ``out`` (see :func:`editclip.vit.run`)."""
    n, t, width = x.shape
    keep = parts or cls_raw
    embed_field = x if parts else None
    attn_outs, mlp_outs, token_qkv = [], [], {}
    for layer, block in enumerate(tower.blocks):
        recorder.resid(layer, "pre", x)
        q, k, v = block.qkv(block.ln_1(x))  # [N, H, T, hd]
        recorder.attention(layer, block, q, k, v)
        attn = F.scaled_dot_product_attention(q, k, v)
        attn_out = block.out(attn.transpose(1, 2).reshape(n, t, width))
        recorder.attn_out(layer, attn_out)
        x = x + attn_out
        recorder.resid(layer, "mid", x)
        if layer in token_layers:
            token_qkv[layer] = (q, k, v)
        m = recorder.mlp(layer, block, x)
        x = x + m
        recorder.resid(layer, "post", x)
        if keep:
            attn_outs.append(attn)
            mlp_outs.append(m)
    r = readout(tower.readout, x)
    recorder.pool(r.attn)
    out.embedding = r.embedding
    out.readout = r
    out.folded = folded
    if cls_raw:  # the mean token the pool reads (pool weights averaged over pool heads, sigma left out)
        share = r.share  # [N, T]
        out.head_outputs = torch.stack([torch.einsum("nt,nhtk->nhk", share, a.float()) for a in attn_outs], 1)
        out.mlp_outputs = torch.stack([torch.einsum("nt,ntw->nw", share, m.float()) for m in mlp_outs], 1)
    if parts:
        out.embed = r.field(embed_field)
        out.heads = torch.stack(
            [r.heads(a, b.out_weight, b.ls_1) for a, b in zip(attn_outs, tower.blocks, strict=True)], 1
        )
        out.mlps = torch.stack([r.field(m) for m in mlp_outs], 1)
        out.attn_bias = torch.stack([_bias_part(r, b, x.device) for b in tower.blocks], 1)
        out.pool_mlp = r.pool_mlp
        out.const = r.const
    if token_reduce == "sum" and token_layers:
        out.token_sum = torch.zeros(n, t, r.write.shape[-1], device=x.device)
    for layer, (q, k, v) in token_qkv.items():
        block = tower.blocks[layer]
        probs = torch.softmax((q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5, dim=-1)
        if token_reduce == "sum":
            if token_head_mask is not None:
                probs = probs * token_head_mask[layer].to(probs)[None, :, None, None]
            out.token_sum += r.head_tokens(probs, v, block.out_weight, block.ls_1, reduce=True)
        else:
            out.tokens[layer] = r.head_tokens(probs, v, block.out_weight, block.ls_1)


def _bias_part(r: Readout, block: Block, device: torch.device) -> Tensor:
    """[N, D] the direct effect of a layer's out_proj bias (LayerScale applied), added at every token."""
    if block.out_bias is None:
        return torch.zeros(r.embedding.shape, device=device)
    bias = block.out_bias.float() * (block.ls_1.float() if block.ls_1 is not None else 1.0)
    return r.constant(bias)
