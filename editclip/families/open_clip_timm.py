"""Adapter for open_clip models whose image tower is a timm VisionTransformer (SigLIP, SigLIP2, ...).

Names (under ``visual.trunk.``): ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm_pre``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm``,
``fc_norm``, ``attn_pool.{latent, q, kv, proj, norm, mlp.fc1, mlp.fc2}``; open_clip's ``visual.head.proj``.
The pool is SigLIP's attention pool (``timm_pool: map``), a mean over tokens (``avg``) or the class
token (``token``). EVA towers (timm ``Eva``) are refused: their rotary embeddings keep heads linear in
the values, but their SwiGLU MLPs and per-block norms are not written yet.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from .._pool_params import module_activation, norm_of, timm_pooled_head
from ..errors import UnsupportedModelError
from ..tower import Block, Tower
from . import open_clip_vit

NAME = "open_clip_timm"
_POOLS = {"map": "attn", "avg": "mean", "token": "cls"}
_BLOCK_PARAMS = {
    "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
    "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
    "mlp.fc2.bias", "ls2.gamma",
}  # fmt: skip
_IDENTITY_PARTS = {
    "attn.q_norm": "qk-norm attention",
    "attn.k_norm": "qk-norm attention",
    "attn.norm": "a LayerNorm after attention, which mixes the heads",
    "mlp.norm": "an inner MLP LayerNorm",
    "patch_drop": "patch dropout",
}
_EVA = "EVA towers (timm Eva: rotary position embeddings, SwiGLU MLPs) are not supported yet"


def owns(model: nn.Module) -> bool:
    """An open_clip model (or its ``visual``) whose image tower wraps a timm model (``visual.trunk``)."""
    visual = getattr(model, "visual", model)
    return type(model).__module__.startswith("open_clip.") and hasattr(visual, "trunk")


def tower_module(model: nn.Module) -> nn.Module:
    return model.visual if hasattr(model, "visual") else model


def check_config(model_cfg: dict[str, Any], model_id: str) -> None:
    """Refuse, before building anything, timm towers that this adapter cannot describe."""
    vision = model_cfg.get("vision_cfg", {})
    name = vision.get("timm_model_name", "")
    if name.startswith("eva"):
        raise UnsupportedModelError(f"model {model_id!r}: {_EVA}")
    if not name.startswith("vit_"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the timm image tower {name!r} is not a timm VisionTransformer (vit_*); "
            "editclip splits ViTs only"
        )
    pool = vision.get("timm_pool", "avg")
    if pool not in _POOLS:
        raise UnsupportedModelError(
            f"model {model_id!r}: timm_pool {pool!r}; editclip splits {sorted(_POOLS)} pools of timm towers"
        )
    if vision.get("timm_proj", "linear") not in ("none", "linear", None, ""):
        raise UnsupportedModelError(f"model {model_id!r}: timm_proj {vision['timm_proj']!r} is not linear")


def check(model: nn.Module, model_id: str) -> None:
    """Raise UnsupportedModelError unless the timm trunk is a plain pre-LN ViT with a supported pool."""
    trunk = tower_module(model).trunk
    kind = type(trunk).__name__
    if kind == "Eva":
        raise UnsupportedModelError(f"model {model_id!r}: {_EVA}")
    if kind != "VisionTransformer":
        raise UnsupportedModelError(f"model {model_id!r}: the timm tower {kind} is not a timm VisionTransformer")
    if getattr(trunk, "reg_token", None) is not None:
        raise UnsupportedModelError(f"model {model_id!r}: register tokens")
    if getattr(trunk, "dynamic_img_size", False):
        raise UnsupportedModelError(f"model {model_id!r}: dynamic image size (resampled position embeddings)")
    if not isinstance(trunk.patch_embed.norm, nn.Identity):
        raise UnsupportedModelError(f"model {model_id!r}: a norm inside the patch embedding")
    for i, block in enumerate(trunk.blocks):
        if type(block).__name__ != "Block":
            raise UnsupportedModelError(f"model {model_id!r}: block {i} is a timm {type(block).__name__}")
        for part, reason in _IDENTITY_PARTS.items():
            module = _submodule(block, part)
            if module is not None and not isinstance(module, nn.Identity):
                raise UnsupportedModelError(f"model {model_id!r}: block {i} uses {reason}")
        unknown = {n for n, _ in block.named_parameters()} - _BLOCK_PARAMS
        if unknown:
            raise UnsupportedModelError(
                f"model {model_id!r}: block {i} has parameters editclip cannot place: {sorted(unknown)}"
            )
        module_activation(block.mlp.act, f"model {model_id!r}: block {i}")
    _pool(trunk, tower_module(model), model_id)


def _pool(trunk: nn.Module, visual: nn.Module, model_id: str) -> tuple[str, Any]:
    """(pool kind, readout or None) of the trunk with open_clip's head."""
    if trunk.attn_pool is None and trunk.global_pool == "token":
        if trunk.cls_token is None or not isinstance(trunk.fc_norm, nn.Identity):
            raise UnsupportedModelError(f"model {model_id!r}: token pooling without a class token, or with fc_norm")
        return "cls", None
    head = timm_pooled_head(trunk, visual.head, model_id)
    return head.kind, head


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def describe(model: nn.Module) -> Tower:
    """The family-neutral description of an open_clip model's timm VisionTransformer tower."""
    visual = tower_module(model)
    trunk = visual.trunk
    prefix = ("visual." if visual is not model else "") + "trunk."
    p = dict(trunk.named_parameters())
    blocks = []
    for i, block in enumerate(trunk.blocks):
        b = f"blocks.{i}."
        names = {"out_weight": "attn.proj.weight", "out_bias": "attn.proj.bias", "fc2_weight": "mlp.fc2.weight",
                 "fc2_bias": "mlp.fc2.bias", "ls_2": "ls2.gamma"}  # fmt: skip
        blocks.append(
            Block(
                heads=block.attn.num_heads,
                ln_1=norm_of(block.norm1, f"block {i} norm1"),
                qkv_weight=p[b + "attn.qkv.weight"],
                qkv_bias=p.get(b + "attn.qkv.bias"),
                out_weight=p[b + "attn.proj.weight"],
                out_bias=p.get(b + "attn.proj.bias"),
                ls_1=p.get(b + "ls1.gamma"),
                ln_2=norm_of(block.norm2, f"block {i} norm2"),
                fc1_weight=p[b + "mlp.fc1.weight"],
                fc1_bias=p.get(b + "mlp.fc1.bias"),
                act=module_activation(block.mlp.act, f"block {i}"),
                fc2_weight=p[b + "mlp.fc2.weight"],
                fc2_bias=p.get(b + "mlp.fc2.bias"),
                ls_2=p.get(b + "ls2.gamma"),
                names={k: prefix + b + v for k, v in names.items() if (b + v) in p},
            )
        )
    pool, head = _pool(trunk, visual, "model")
    if head is not None and head.kind == "attn":
        mlp = prefix + "attn_pool.mlp.fc2."
        head = replace(head, names={"fc2_weight": mlp + "weight", "fc2_bias": mlp + "bias"})
    if head is not None:
        ln_post, proj = head.norm, head.proj
    else:
        ln_post, proj = norm_of(trunk.norm, "final norm"), _cls_proj(visual)
    cls = p["cls_token"].reshape(-1) if "cls_token" in p else None
    return Tower(
        family=NAME,
        module=visual,
        image_size=tuple(trunk.patch_embed.img_size),
        patch_weight=p["patch_embed.proj.weight"],
        patch_bias=p.get("patch_embed.proj.bias"),
        class_embedding=cls,
        pos_embedding=_positions(trunk, cls is not None),
        ln_pre=norm_of(trunk.norm_pre, "norm_pre") if isinstance(trunk.norm_pre, nn.LayerNorm) else None,
        blocks=blocks,
        ln_post=ln_post,
        proj=proj,
        pool=pool,
        readout=head,
    )


def _positions(trunk: nn.Module, has_cls: bool) -> Tensor:
    """[T, W] position embedding of every token (zero on the class token when timm adds none there)."""
    pos = trunk.pos_embed
    width = trunk.patch_embed.proj.weight.shape[0]
    n_patches = trunk.patch_embed.num_patches
    if pos is None:
        return torch.zeros(n_patches + int(has_cls), width, device=trunk.patch_embed.proj.weight.device)
    pos = pos[0]
    if has_cls and trunk.no_embed_class:
        return torch.cat([pos.new_zeros(1, width), pos])
    return pos


def _cls_proj(visual: nn.Module) -> Tensor | None:
    from .._pool_params import open_clip_head_proj

    proj, bias = open_clip_head_proj(visual.head, "model")
    if bias is not None:
        raise UnsupportedModelError("a class-token timm tower with a projection bias")
    return proj


encode_image = open_clip_vit.encode_image
encode_text = open_clip_vit.encode_text
logit_scale = open_clip_vit.logit_scale
preprocess_cfg = open_clip_vit.preprocess_cfg
set_preprocess_cfg = open_clip_vit.set_preprocess_cfg
save_weights = open_clip_vit.save_weights


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    weight = tower_module(model).trunk.patch_embed.proj.weight
    return weight.device, weight.dtype
