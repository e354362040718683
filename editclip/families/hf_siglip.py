"""Adapter for Hugging Face transformers SigLIP (``SiglipModel``, ``SiglipVisionModel``): attention-pooled.

Names (under ``vision_model.`` for SiglipModel): ``embeddings.patch_embedding``,
``embeddings.position_embedding.weight`` (no class token, no pre-norm), ``encoder.layers.{i}.{layer_norm1,
self_attn.q_proj/k_proj/v_proj/out_proj, layer_norm2, mlp.fc1, mlp.fc2}``, ``post_layernorm`` and the
pooling ``head.{probe, attention.in_proj_weight/in_proj_bias, attention.out_proj, layernorm, mlp.fc1,
mlp.fc2}``. The embedding is the pool's output (``pooler_output`` / ``get_image_features``); there is
no projection. SigLIP2 (``Siglip2Model``, variable-resolution patches) is a different model type.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from .._pool_params import hf_siglip_pooled_head
from ..errors import EditclipError, UnsupportedModelError
from ..tower import Tower
from . import hf_clip
from .hf_clip import ACTIVATIONS, model_output_features, recorded_or_default, vision_config

NAME = "transformers-siglip"
_CLASSES = ("SiglipModel", "SiglipVisionModel")
_LAYER_PARAMS = ("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.", "self_attn.out_proj.",
                 "layer_norm1.", "layer_norm2.", "mlp.fc1.", "mlp.fc2.")  # fmt: skip


def owns(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.models.siglip.") and type(model).__name__ in _CLASSES


def vision(model: nn.Module) -> nn.Module:
    """The vision tower (a SiglipVisionModel / SiglipVisionTransformer with embeddings, encoder, head)."""
    tower = getattr(model, "vision_model", model)
    return getattr(tower, "vision_model", tower)  # transformers 4.x nests SiglipVisionTransformer once more


def tower_module(model: nn.Module) -> nn.Module:
    return vision(model)


def check(model: nn.Module, model_id: str) -> None:
    """Refuse variants the description cannot follow: no pooling head, other parameters, other scales."""
    cfg = vision_config(model)
    if not getattr(cfg, "vision_use_head", True):
        raise UnsupportedModelError(f"model {model_id!r}: the SigLIP vision tower has no pooling head")
    if cfg.hidden_act not in ACTIVATIONS:
        raise UnsupportedModelError(f"model {model_id!r}: MLP activation {cfg.hidden_act!r} is not supported")
    for i, layer in enumerate(vision(model).encoder.layers):
        unknown = [n for n, _ in layer.named_parameters() if not n.startswith(_LAYER_PARAMS)]
        if unknown:
            raise UnsupportedModelError(
                f"model {model_id!r}: layer {i} has parameters editclip cannot place: {unknown}"
            )
        attn = layer.self_attn
        if abs(float(attn.scale) - attn.head_dim**-0.5) > 1e-12:
            raise UnsupportedModelError(f"model {model_id!r}: layer {i} scales attention by {attn.scale}")
    hf_siglip_pooled_head(vision(model), model_id)


def describe(model: nn.Module) -> Tower:
    """The family-neutral description of an HF SigLIP image tower."""
    cfg = vision_config(model)
    tower = vision(model)
    prefix = next(name for name, module in model.named_modules() if module is tower)
    prefix = prefix + "." if prefix else ""
    p = dict(tower.named_parameters())
    head = hf_siglip_pooled_head(tower, "model")
    mlp = prefix + "head.mlp.fc2."
    head = replace(head, names={"fc2_weight": mlp + "weight", "fc2_bias": mlp + "bias"})
    size = cfg.image_size
    return Tower(
        family=NAME,
        module=tower,
        image_size=tuple(size) if isinstance(size, (tuple, list)) else (size, size),
        patch_weight=p["embeddings.patch_embedding.weight"],
        patch_bias=p.get("embeddings.patch_embedding.bias"),
        class_embedding=None,
        pos_embedding=p["embeddings.position_embedding.weight"],
        ln_pre=None,
        blocks=hf_clip.encoder_blocks(tower, prefix, cfg),
        ln_post=head.norm,
        proj=None,
        pool="attn",
        readout=head,
    )


def encode_image(model: nn.Module, images: Tensor) -> Tensor:
    """[N, D] ``get_image_features`` (SiglipModel) or the vision model's ``pooler_output``."""
    if type(model).__name__ == "SiglipModel":
        return model_output_features(model.get_image_features(pixel_values=images))
    return model(pixel_values=images).pooler_output


def encode_text(model: nn.Module, tokens: Tensor) -> Tensor:
    """[M, D] ``get_text_features`` of input ids padded to the model's length (as SigLIP was trained)."""
    if type(model).__name__ != "SiglipModel":
        raise EditclipError(f"{type(model).__name__} is an image tower only; text embeddings need a SiglipModel")
    return model_output_features(model.get_text_features(input_ids=tokens))


def preprocess_cfg(model: nn.Module) -> dict[str, Any]:
    """The image processor's settings as recorded by the loader, else SiglipImageProcessor's defaults
    (resize to the model's size without cropping, mean = std = 0.5)."""
    return recorded_or_default(model, NAME)


# the same on every transformers model: the logit scale, the recorded preprocessing, the weights target
logit_scale = hf_clip.logit_scale
set_preprocess_cfg = hf_clip.set_preprocess_cfg
save_weights = hf_clip.save_weights


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    weight = vision(model).embeddings.patch_embedding.weight
    return weight.device, weight.dtype
