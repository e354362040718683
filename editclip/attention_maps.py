"""Attention-based explanation maps, the baselines of the segmentation table (docs/method.md section 6).

- raw attention: the last layer's CLS row of attention weights to the patches, averaged over heads;
- attention rollout (Abnar & Zuidema 2020, as in Chefer et al.'s code): per layer the head-averaged
  attention plus the identity (the residual), rows renormalised, multiplied over all layers
  (``A_L ... A_1``); the CLS row to the patches.

The forward is written from the tower's description (:mod:`editclip.tower`), with explicit softmax
attention so that the weights exist; its embedding equals ``encode_image``. It holds one [N, H, T, T]
weight tensor and the [N, T, T] rollout at a time, which is fine for baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._repr import shapes_repr
from .backbone import Backbone
from .errors import EditclipError
from .tower import Tower
from .vit import embed


@dataclass
class AttentionMaps:
    """Patch-grid maps of the two attention baselines."""

    raw: Tensor  # [N, gh, gw]  last-layer CLS attention to patches, mean over heads
    rollout: Tensor  # [N, gh, gw]  CLS row of the attention rollout, patches only
    embedding: Tensor  # [N, D]  the image embedding of the same forward (== encode_image)

    __repr__ = shapes_repr


@torch.no_grad()
def _forward(tower: Tower, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One forward with explicit attention: (last-layer CLS attention [N, H, T], rollout [N, T, T], embedding)."""
    if tower.pool != "cls":
        raise EditclipError(
            f"the attention baselines read the class token's attention; this tower pools with {tower.pool!r}"
        )
    x = embed(tower, images)
    n, t, width = x.shape
    eye = torch.eye(t, device=x.device)
    rollout = eye.expand(n, t, t)
    cls_attn = torch.empty(0)
    for block in tower.blocks:
        q, k, v = block.qkv(block.ln_1(x))  # [N, H, T, hd]
        weights = ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).float().softmax(-1)  # [N, H, T, T]
        x = x + block.out((weights.to(v.dtype) @ v).transpose(1, 2).reshape(n, t, width))
        layer = weights.mean(1) + eye
        rollout = (layer / layer.sum(-1, keepdim=True)) @ rollout
        cls_attn = weights[:, :, 0]
        x = x + block.mlp(x)
    return cls_attn, rollout, tower.head(x[:, 0])


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
        cls_attn, rollout, embedding = _forward(bb.tower, batch)
        raw.append(cls_attn.mean(1)[:, 1:].reshape(-1, *grid).cpu())
        roll.append(rollout[:, 0, 1:].reshape(-1, *grid).cpu())
        emb.append(embedding.cpu())
    return AttentionMaps(raw=torch.cat(raw), rollout=torch.cat(roll), embedding=torch.cat(emb))
