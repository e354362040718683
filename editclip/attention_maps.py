"""Attention-based explanation maps, the baselines of the segmentation table (PAPER.md section 6).

- raw attention: the last layer's CLS row of attention weights to the patches, averaged over heads;
- attention rollout (Abnar & Zuidema 2020, as in Chefer et al.'s code): per layer the head-averaged
  attention plus the identity (the residual), rows renormalised, multiplied over all layers
  (``A_L ... A_1``); the CLS row to the patches.

The forward is written from the parameters with :mod:`editclip.vit`'s helpers, with explicit softmax
attention so that the weights exist; its embedding equals ``encode_image``. It holds one [N, H, T, T]
weight tensor and the [N, T, T] rollout at a time, which is fine for baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from .backbone import Backbone
from .errors import EditclipError
from .vit import _activation, _blocks, _embed, _layer_norm


@dataclass
class AttentionMaps:
    """Patch-grid maps of the two attention baselines."""

    raw: Tensor  # [N, gh, gw]  last-layer CLS attention to patches, mean over heads
    rollout: Tensor  # [N, gh, gw]  CLS row of the attention rollout, patches only
    embedding: Tensor  # [N, D]  the image embedding of the same forward (== encode_image)


@torch.no_grad()
def _forward(visual: torch.nn.Module, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One forward with explicit attention: (last-layer CLS attention [N, H, T], rollout [N, T, T], embedding)."""
    x = _embed(visual, images)
    n, t, width = x.shape
    eye = torch.eye(t, device=x.device)
    rollout = eye.expand(n, t, t)
    cls_attn = torch.empty(0)
    for block in _blocks(visual):
        heads = block.attn.num_heads
        head_dim = width // heads
        qkv = F.linear(_layer_norm(x, block.ln_1), block.attn.in_proj_weight, block.attn.in_proj_bias)
        q, k, v = qkv.view(n, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [N, H, T, hd]
        weights = ((q @ k.transpose(-1, -2)) * head_dim**-0.5).float().softmax(-1)  # [N, H, T, T]
        attn = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(n, t, width)
        o = F.linear(attn, block.attn.out_proj.weight, block.attn.out_proj.bias)
        if hasattr(block, "ls_1") and not isinstance(block.ls_1, torch.nn.Identity):
            o = o * block.ls_1.gamma
        x = x + o
        layer = weights.mean(1) + eye
        rollout = (layer / layer.sum(-1, keepdim=True)) @ rollout
        cls_attn = weights[:, :, 0]
        hidden = F.linear(_layer_norm(x, block.ln_2), block.mlp.c_fc.weight, block.mlp.c_fc.bias)
        m = F.linear(_activation(block, hidden), block.mlp.c_proj.weight, block.mlp.c_proj.bias)
        if hasattr(block, "ls_2") and not isinstance(block.ls_2, torch.nn.Identity):
            m = m * block.ls_2.gamma
        x = x + m
    pooled = _layer_norm(x[:, 0], visual.ln_post)
    embedding = (pooled @ visual.proj if visual.proj is not None else pooled).float()
    return cls_attn, rollout, embedding


def attention_maps(bb: Backbone, images: Tensor, *, batch_size: int = 32, progress: bool = True) -> AttentionMaps:
    """Raw last-layer attention and rollout maps of `images` [N, 3, H, W] on the patch grid."""
    if images.ndim != 4:
        raise EditclipError(f"images must be a [N, 3, H, W] tensor; got {list(images.shape)}")
    if batch_size < 1:
        raise EditclipError(f"batch_size must be >= 1; got {batch_size}")
    grid = bb.shape.grid
    raw, roll, emb = [], [], []
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc="attention maps", unit="batch", disable=not progress or len(starts) < 2):
        batch = images[start : start + batch_size].to(bb.device, bb.dtype)
        cls_attn, rollout, embedding = _forward(bb.visual, batch)
        raw.append(cls_attn.mean(1)[:, 1:].reshape(-1, *grid).cpu())
        roll.append(rollout[:, 0, 1:].reshape(-1, *grid).cpu())
        emb.append(embedding.cpu())
    return AttentionMaps(raw=torch.cat(raw), rollout=torch.cat(roll), embedding=torch.cat(emb))
