"""Naive references for pooled towers (SigLIP's attention pool, mean pools), written head by head.

`naive_stream` runs a timm or transformers ViT with explicit per-head softmax and keeps every part's
contribution to every token of the residual stream; `naive_attention_pool_part` maps one such field
through the linearised final LayerNorm and attention pool with loops over the pool heads;
`official_siglip` transcribes the official code's SigLIP split (compute_siglip.py with its modified
modeling_siglip.py: ``MultiHeadAttention.forward_per_head`` hooked at ``out.post`` with
``collapse_spatial``, and ``pooling_head.mlp_output``) literally.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _heads(h: torch.Tensor, q_w, q_b, k_w, k_b, v_w, v_b, out_w, n_heads: int) -> tuple[list, list, list, list]:
    """Per head: contribution [N, T, W] (no out_proj bias), raw output [N, T, hd], attention, values."""
    w = h.shape[-1]
    hd = w // n_heads
    q, k, v = F.linear(h, q_w, q_b), F.linear(h, k_w, k_b), F.linear(h, v_w, v_b)
    out, raw, probs, values = [], [], [], []
    for head in range(n_heads):
        sl = slice(head * hd, (head + 1) * hd)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd), dim=-1)
        raw.append(a @ v[..., sl])
        out.append(raw[-1] @ out_w[:, sl].t())
        probs.append(a)
        values.append(v[..., sl])
    return out, raw, probs, values


@torch.no_grad()
def naive_stream(tower: torch.nn.Module, images: torch.Tensor) -> dict:
    """Per layer: heads (list of [N,T,W] per head), raw [N,H,T,hd], probs [N,H,T,T], values [N,H,T,hd],
    biases [W] (LayerScale applied), mlps [N,T,W], out_weight, ls1; plus embed [N,T,W] and final [N,T,W]."""
    hf = hasattr(tower, "encoder")
    if hf:
        x = tower.embeddings(images)
        layers = tower.encoder.layers
    else:
        x = tower.norm_pre(tower._pos_embed(tower.patch_embed(images)))
        layers = tower.blocks
    out = {"embed": x.clone(), "heads": [], "raw": [], "probs": [], "values": [], "biases": [], "mlps": [],
           "out_weight": [], "ls1": []}  # fmt: skip
    for layer in layers:
        if hf:
            attn, h = layer.self_attn, layer.layer_norm1(x)
            weights = (attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight, attn.k_proj.bias,
                       attn.v_proj.weight, attn.v_proj.bias)  # fmt: skip
            out_proj, n_heads, ls1, ls2 = attn.out_proj, attn.num_heads, 1.0, 1.0
            ln2, mlp = layer.layer_norm2, layer.mlp
        else:
            attn, h = layer.attn, layer.norm1(x)
            w = h.shape[-1]
            qw, qb = attn.qkv.weight, attn.qkv.bias if attn.qkv.bias is not None else torch.zeros(3 * w)
            weights = (qw[:w], qb[:w], qw[w : 2 * w], qb[w : 2 * w], qw[2 * w :], qb[2 * w :])
            out_proj, n_heads = attn.proj, attn.num_heads
            ls1 = layer.ls1.gamma if hasattr(layer.ls1, "gamma") else 1.0
            ls2 = layer.ls2.gamma if hasattr(layer.ls2, "gamma") else 1.0
            ln2, mlp = layer.norm2, layer.mlp
        contributions, raw, probs, values = _heads(h, *weights, out_proj.weight, n_heads)
        heads = [c * ls1 for c in contributions]
        bias = out_proj.bias * ls1
        out["raw"].append(torch.stack(raw, 1))
        out["probs"].append(torch.stack(probs, 1))
        out["values"].append(torch.stack(values, 1))
        out["out_weight"].append(out_proj.weight)
        out["ls1"].append(ls1 if torch.is_tensor(ls1) else None)
        x = x + sum(heads) + bias
        m = mlp(ln2(x)) * ls2
        x = x + m
        out["heads"].append(heads)
        out["biases"].append(bias)
        out["mlps"].append(m)
    out["final"] = x
    return out


def _pool_params(tower: torch.nn.Module) -> dict:
    """The final norm and attention-pool parameters of a timm or transformers SigLIP tower."""
    if hasattr(tower, "encoder"):
        head = tower.head
        w = head.attention.embed_dim
        iw, ib = head.attention.in_proj_weight, head.attention.in_proj_bias
        return {"norm": tower.post_layernorm, "probe": head.probe.reshape(-1), "q": (iw[:w], ib[:w]),
                "k": (iw[w : 2 * w], ib[w : 2 * w]), "v": (iw[2 * w :], ib[2 * w :]),
                "out": head.attention.out_proj, "heads": head.attention.num_heads}  # fmt: skip
    pool = tower.attn_pool
    w = pool.kv.weight.shape[1]
    return {"norm": tower.norm, "probe": pool.latent.reshape(-1), "q": (pool.q.weight, pool.q.bias),
            "k": (pool.kv.weight[:w], pool.kv.bias[:w]), "v": (pool.kv.weight[w:], pool.kv.bias[w:]),
            "out": pool.proj, "heads": pool.num_heads}  # fmt: skip


@torch.no_grad()
def naive_attention_pool_part(tower: torch.nn.Module, final: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """[N, W] direct effect of a residual field [N, T, W] through the linearised final LN and attention pool."""
    p = _pool_params(tower)
    norm = p["norm"]
    y = norm(final)
    sigma = torch.sqrt(final.var(-1, unbiased=False, keepdim=True) + norm.eps)
    y_field = norm.weight * (field - field.mean(-1, keepdim=True)) / sigma  # the field's share of y - beta
    w = final.shape[-1]
    hd = w // p["heads"]
    q = F.linear(p["probe"], *p["q"])
    k = F.linear(y, *p["k"])
    v_field = y_field @ p["v"][0].t()  # value of the field, no bias
    total = torch.zeros(final.shape[0], w)
    for g in range(p["heads"]):
        sl = slice(g * hd, (g + 1) * hd)
        a = torch.softmax(k[..., sl] @ q[sl] / math.sqrt(hd), dim=-1)  # [N, T]
        total += (a[..., None] * v_field[..., sl]).sum(1) @ p["out"].weight[:, sl].t()
    return total


@torch.no_grad()
def official_siglip(vision: torch.nn.Module, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official split of a transformers SiglipVisionTransformer, transcribed line by line.

    Returns attn_results[:, 0] [N, h, D] (pool heads), attn_spatial [N, T, h, D] (before collapse),
    mlp_results[:, 0] [N, D], constant_bias [D] and pooler_output.
    """
    hidden_state = vision(pixel_values=pixel_values).last_hidden_state  # post_layernorm applied
    head = vision.head
    batch_size = hidden_state.shape[0]
    probe = head.probe.repeat(batch_size, 1, 1)
    d_model, num_heads = head.attention.embed_dim, head.attention.num_heads
    d_k = d_model // num_heads
    in_proj_weight, in_proj_bias = head.attention.in_proj_weight, head.attention.in_proj_bias
    q = F.linear(probe, in_proj_weight[:d_model, :], in_proj_bias[:d_model])
    k = F.linear(hidden_state, in_proj_weight[d_model : 2 * d_model, :], in_proj_bias[d_model : 2 * d_model])
    v = F.linear(hidden_state, in_proj_weight[2 * d_model :, :], in_proj_bias[2 * d_model :])

    def split_heads(x: torch.Tensor) -> torch.Tensor:
        b, seq_length, _ = x.size()
        return x.view(b, seq_length, num_heads, d_k).transpose(1, 2)

    Q, K, V = split_heads(q), split_heads(k), split_heads(v)  # the official names
    attn_scores = torch.matmul(Q, K.transpose(-2, -1)) / math.sqrt(d_k)
    attn_probs = F.softmax(attn_scores, dim=-1)
    attn_output = torch.einsum("bhnm,bhmd->bhnmd", attn_probs, V)
    out_post = torch.einsum("bhnmc,dhc->bnmhd", attn_output,
                            head.attention.out_proj.weight.reshape(d_model, num_heads, d_k))  # fmt: skip
    x = out_post.sum(axis=[2, 3]) + head.attention.out_proj.bias
    mlp_output = head.mlp(head.layernorm(x))
    pooled = (x + mlp_output)[:, 0]
    attention_records = out_post.sum(axis=2)  # PRSHook(collapse_spatial=True).save_attention
    return {
        "attn_results": attention_records[:, 0],
        "attn_spatial": out_post[:, 0],
        "mlp_results": mlp_output[:, 0],
        "constant_bias": head.attention.out_proj.bias,
        "pooler_output": pooled,
    }
