"""Adapter for open_clip's own VisionTransformer (CLS-pooled), read by parameter name.

Names: ``conv1.weight``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks.{i}.{ln_1, attn.in_proj_weight/bias, attn.out_proj, ls_1.gamma, ln_2,
mlp.c_fc, mlp.c_proj, ls_2.gamma}``, ``ln_post``, ``proj``. Never module classes, so the adapter keeps
working when open_clip swaps ``nn.MultiheadAttention`` for its own attention module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..pooling import PooledHead
from ..tower import Block, Norm, Tower

NAME = "open_clip"

# Per-block parameter names (relative to ``resblocks.{i}.``) that a plain pre-LN ViT block has.
_BLOCK_PARAMS = {
    "ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
    "attn.out_proj.weight", "attn.out_proj.bias", "ls_1.gamma",
    "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
    "mlp.c_proj.weight", "mlp.c_proj.bias", "ls_2.gamma",
}  # fmt: skip
# Why a block variant cannot be split into per-head direct effects, keyed by how it shows up:
# as a vision_cfg flag (checked before building) and as a block submodule (checked after).
_QK_NORM = "qk-norm attention (its attention logits are not a plain softmax of q.k)"
_SCALED_COSINE = "scaled-cosine attention"
_HEAD_SCALE = "per-head output scaling"
_INNER_ATTN_LN = "an inner LayerNorm after attention, which mixes the heads"
_POST_ATTN_LN = "a LayerNorm after attention, which mixes the heads"
_MLP_LN = "an inner MLP LayerNorm"
_CFG_REASONS = {
    "qk_norm": _QK_NORM,
    "scaled_cosine_attn": _SCALED_COSINE,
    "scale_heads": _HEAD_SCALE,
    "scale_attn_inner": _INNER_ATTN_LN,
    "scale_attn": _POST_ATTN_LN,
    "scale_fc": _MLP_LN,
}
_BLOCK_EXTRAS = {
    "attn.ln_q": _QK_NORM,
    "attn.ln_k": _QK_NORM,
    "attn.logit_scale": _SCALED_COSINE,
    "attn.head_scale": _HEAD_SCALE,
    "attn.ln_inner": _INNER_ATTN_LN,
    "ln_attn": _POST_ATTN_LN,
    "mlp.ln": _MLP_LN,
    "ln_1_kv": "cross-attention",
}


def owns(model: nn.Module) -> bool:
    """An open_clip CLIP / CustomTextCLIP, or its ``visual`` tower."""
    return type(model).__module__.startswith("open_clip.") and (hasattr(model, "visual") or hasattr(model, "conv1"))


def tower_module(model: nn.Module) -> nn.Module:
    """The module that owns the image tower's parameters."""
    return model.visual if hasattr(model, "visual") else model


def check_config(model_cfg: dict[str, Any], model_id: str) -> None:
    """Refuse, before building or downloading anything, configs whose image tower editclip cannot split."""
    vision = model_cfg.get("vision_cfg", {})
    if "multimodal_cfg" in model_cfg:
        raise UnsupportedModelError(f"model {model_id!r}: CoCa models have an attention-pooled image tower")
    if vision.get("timm_model_name"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower is the timm model {vision['timm_model_name']!r} (EVA, SigLIP, "
            "ConvNeXt, ...); editclip decomposes open_clip's own VisionTransformer, whose parameter names it reads"
        )
    if isinstance(vision.get("layers"), (list, tuple)):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower is a ResNet; it has no attention heads to split"
        )
    if vision.get("attentional_pool"):
        raise UnsupportedModelError(f"model {model_id!r}: the image tower is attention-pooled, not CLS-pooled")
    if vision.get("pool_type", "tok") not in ("tok", "avg"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower pools with {vision['pool_type']!r}; editclip splits 'tok' and 'avg'"
        )
    for key, reason in _CFG_REASONS.items():
        if vision.get(key):
            raise UnsupportedModelError(f"model {model_id!r}: the image tower uses {reason}")


def check(model: nn.Module, model_id: str) -> None:
    """Raise UnsupportedModelError unless the image tower is a CLS-pooled open_clip ViT of plain blocks."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise UnsupportedModelError(f"model {model_id!r} has no image tower (no .visual)")
    kind = type(visual).__name__
    if hasattr(visual, "trunk"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower is a timm model ({kind}); editclip decomposes open_clip's own "
            "VisionTransformer, whose parameter names it reads"
        )
    if not hasattr(visual, "transformer") or not hasattr(visual, "class_embedding"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower ({kind}) is not a vision transformer with a class token "
            "(ResNets and other towers have no per-head decomposition)"
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise UnsupportedModelError(f"model {model_id!r}: the image tower is attention-pooled, not CLS-pooled")
    if getattr(visual, "pool_type", "tok") not in ("tok", "avg"):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower pools with {visual.pool_type!r}; editclip splits 'tok' and 'avg'"
        )
    for i, block in enumerate(visual.transformer.resblocks):
        names = {n for n, _ in block.named_parameters()}
        for prefix, reason in _BLOCK_EXTRAS.items():
            module = _submodule(block, prefix)
            if any(n.startswith(prefix + ".") or n == prefix for n in names) or (
                module is not None and not isinstance(module, nn.Identity)
            ):
                raise UnsupportedModelError(f"model {model_id!r}: block {i} uses {reason}")
        unknown = names - _BLOCK_PARAMS
        if unknown:
            raise UnsupportedModelError(
                f"model {model_id!r}: block {i} has parameters editclip cannot place: {sorted(unknown)}"
            )
        if getattr(block.attn, "scaled_cosine", False):
            raise UnsupportedModelError(f"model {model_id!r}: block {i} uses {_SCALED_COSINE}")


def describe(model: nn.Module) -> Tower:
    """The family-neutral description of an open_clip CLIP's (or a bare VisionTransformer's) image tower."""
    visual = tower_module(model)
    prefix = "visual." if visual is not model else ""
    p = dict(visual.named_parameters())
    blocks = []
    for i in range(len(visual.transformer.resblocks)):
        b = f"transformer.resblocks.{i}."
        names = {"out_weight": "attn.out_proj.weight", "out_bias": "attn.out_proj.bias",
                 "fc2_weight": "mlp.c_proj.weight", "fc2_bias": "mlp.c_proj.bias", "ls_2": "ls_2.gamma"}  # fmt: skip
        blocks.append(
            Block(
                heads=visual.get_submodule(b + "attn").num_heads,
                ln_1=_norm(visual, p, b + "ln_1"),
                qkv_weight=p[b + "attn.in_proj_weight"],
                qkv_bias=p.get(b + "attn.in_proj_bias"),
                out_weight=p[b + "attn.out_proj.weight"],
                out_bias=p.get(b + "attn.out_proj.bias"),
                ls_1=p.get(b + "ls_1.gamma"),
                ln_2=_norm(visual, p, b + "ln_2"),
                fc1_weight=p[b + "mlp.c_fc.weight"],
                fc1_bias=p.get(b + "mlp.c_fc.bias"),
                act=_activation(visual, i),
                fc2_weight=p[b + "mlp.c_proj.weight"],
                fc2_bias=p.get(b + "mlp.c_proj.bias"),
                ls_2=p.get(b + "ls_2.gamma"),
                names={k: prefix + b + v for k, v in names.items() if (b + v) in p},
            )
        )
    size = visual.image_size
    ln_post, readout = _norm(visual, p, "ln_post"), None
    if getattr(visual, "pool_type", "tok") == "avg":  # the mean of the patch tokens (the class token left out)
        readout = PooledHead("mean", ln_post, mean_start=1, norm_after_mean=bool(visual.final_ln_after_pool),
                             proj=p.get("proj"))  # fmt: skip
    return Tower(
        family=NAME,
        module=visual,
        image_size=tuple(size) if isinstance(size, (tuple, list)) else (size, size),
        patch_weight=p["conv1.weight"],
        patch_bias=p.get("conv1.bias"),
        class_embedding=p["class_embedding"],
        pos_embedding=p["positional_embedding"],
        ln_pre=_norm(visual, p, "ln_pre") if isinstance(visual.ln_pre, nn.LayerNorm) else None,
        blocks=blocks,
        ln_post=ln_post,
        proj=p.get("proj"),
        pool="cls" if readout is None else "mean",
        readout=readout,
    )


def _norm(visual: nn.Module, params: dict[str, Tensor], name: str) -> Norm:
    module = visual.get_submodule(name)
    weight, bias = params.get(name + ".weight"), params.get(name + ".bias")
    return Norm(weight, bias, float(module.eps), module.normalized_shape[-1])


def _activation(visual: nn.Module, layer: int) -> str:
    """The activation's name in :data:`editclip.tower.ACTIVATIONS`, else its class name (refused later)."""
    act = visual.get_submodule(f"transformer.resblocks.{layer}.mlp.gelu")
    if type(act).__name__ == "QuickGELU":
        return "quickgelu"
    if isinstance(act, nn.GELU):
        return "gelu_tanh" if act.approximate == "tanh" else "gelu"
    return type(act).__name__


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def encode_image(model: nn.Module, images: Tensor) -> Tensor:
    """[N, D] unnormalised image embeddings from open_clip's own forward."""
    return model.encode_image(images)


def encode_text(model: nn.Module, tokens: Tensor) -> Tensor:
    """[M, D] unnormalised text embeddings of tokenizer output."""
    return model.encode_text(tokens)


def logit_scale(model: nn.Module) -> Tensor:
    return model.logit_scale


def preprocess_cfg(model: nn.Module) -> dict[str, Any]:
    """open_clip's preprocess config stored on the model (size, mean, std, interpolation, resize_mode...)."""
    from open_clip.model import get_model_preprocess_cfg

    return dict(get_model_preprocess_cfg(model))


def set_preprocess_cfg(model: nn.Module, cfg: dict[str, Any]) -> None:
    from open_clip.model import set_model_preprocess_cfg

    set_model_preprocess_cfg(model, cfg)


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    weight = tower_module(model).conv1.weight
    return weight.device, weight.dtype


def save_weights(bb: Any, model: nn.Module, folder: Path, metadata: dict[str, Any]) -> Path:
    """The weights target as ``folder/patched.safetensors``: a full state dict that stock open_clip loads with
    ``open_clip.create_model(name, pretrained=path)``."""
    from ..artifacts import save_patched_checkpoint

    return save_patched_checkpoint(folder / "patched.safetensors", model.state_dict(), metadata)
