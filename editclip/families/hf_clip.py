"""Adapter for Hugging Face transformers CLIP (``CLIPModel``, ``CLIPVisionModelWithProjection``, ``CLIPVisionModel``).

Names (under ``vision_model.``): ``embeddings.patch_embedding.weight``, ``embeddings.class_embedding``,
``embeddings.position_embedding.weight``, ``pre_layrnorm``, ``encoder.layers.{i}.{layer_norm1,
self_attn.q_proj/k_proj/v_proj/out_proj, layer_norm2, mlp.fc1, mlp.fc2}``, ``post_layernorm``; and
``visual_projection.weight`` (a bias-free Linear, so ``proj`` is its transpose). The shape comes from
``config.vision_config`` (heads, image size, ``hidden_act``), each norm's eps from its own module.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._pool_params import norm_of
from ..errors import EditclipError, UnsupportedModelError
from ..tower import Block, Tower

NAME = "transformers-clip"
PREPROCESS_ATTR = "editclip_preprocess_cfg"  # where the loader records the preprocessing (open_clip keys)
PROCESSOR_ATTR = "editclip_processor_settings"  # ... and the image processor's own settings, to write back
ACTIVATIONS = {"quick_gelu": "quickgelu", "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_CLASSES = ("CLIPModel", "CLIPVisionModelWithProjection", "CLIPVisionModel")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def owns(model: nn.Module) -> bool:
    return type(model).__module__.startswith("transformers.models.clip.") and type(model).__name__ in _CLASSES


def tower_module(model: nn.Module) -> nn.Module:
    """The whole model: the projection lives beside ``vision_model``, not in it."""
    return model


def vision_config(model: nn.Module) -> Any:
    """The vision part of a transformers config (the whole config for vision-only models)."""
    config = model.config
    return getattr(config, "vision_config", config)


def check(model: nn.Module, model_id: str) -> None:
    """Refuse variants the description cannot follow (e.g. a non-default attention scale or extra parameters)."""
    known = ("self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj.", "self_attn.out_proj.", "layer_norm1.",
             "layer_norm2.", "mlp.fc1.", "mlp.fc2.")  # fmt: skip
    layers = model.vision_model.encoder.layers
    for i, layer in enumerate(layers):
        unknown = [n for n, _ in layer.named_parameters() if not n.startswith(known)]
        if unknown:
            raise UnsupportedModelError(
                f"model {model_id!r}: layer {i} has parameters editclip cannot place: {unknown}"
            )
        attn = layer.self_attn
        if abs(float(attn.scale) - attn.head_dim**-0.5) > 1e-12:
            raise UnsupportedModelError(
                f"model {model_id!r}: layer {i} scales attention by {attn.scale}, not 1/sqrt(head_dim)"
            )


def describe(model: nn.Module) -> Tower:
    """The family-neutral description of an HF CLIP image tower."""
    cfg = vision_config(model)
    p = dict(model.named_parameters())
    v = "vision_model."
    tower = model.vision_model
    proj = p.get("visual_projection.weight")
    size = cfg.image_size
    return Tower(
        family=NAME,
        module=model,
        image_size=tuple(size) if isinstance(size, (tuple, list)) else (size, size),
        patch_weight=p[v + "embeddings.patch_embedding.weight"],
        patch_bias=p.get(v + "embeddings.patch_embedding.bias"),
        class_embedding=p[v + "embeddings.class_embedding"],
        pos_embedding=p[v + "embeddings.position_embedding.weight"],
        ln_pre=norm_of(tower.pre_layrnorm, "pre_layrnorm"),
        blocks=encoder_blocks(tower, v, cfg),
        ln_post=norm_of(tower.post_layernorm, "post_layernorm"),
        proj=proj.t() if proj is not None else None,
        pool="cls",
    )


def encoder_blocks(tower: nn.Module, prefix: str, cfg: Any) -> list[Block]:
    """The Blocks of a transformers vision tower's encoder (CLIP and SigLIP name their layers alike).

    ``prefix`` is the tower's path in the model ("vision_model."), so that the parameter names the
    weights target patches are the model's own.
    """
    p = dict(tower.named_parameters())
    patched = {"out_weight": "self_attn.out_proj.weight", "out_bias": "self_attn.out_proj.bias",
               "fc2_weight": "mlp.fc2.weight", "fc2_bias": "mlp.fc2.bias"}  # fmt: skip
    blocks = []
    for i, layer in enumerate(tower.encoder.layers):
        b = f"encoder.layers.{i}."
        blocks.append(
            Block(
                heads=cfg.num_attention_heads,
                ln_1=norm_of(layer.layer_norm1, f"layer {i} layer_norm1"),
                q_weight=p[b + "self_attn.q_proj.weight"],
                q_bias=p.get(b + "self_attn.q_proj.bias"),
                k_weight=p[b + "self_attn.k_proj.weight"],
                k_bias=p.get(b + "self_attn.k_proj.bias"),
                v_weight=p[b + "self_attn.v_proj.weight"],
                v_bias=p.get(b + "self_attn.v_proj.bias"),
                out_weight=p[b + "self_attn.out_proj.weight"],
                out_bias=p.get(b + "self_attn.out_proj.bias"),
                ln_2=norm_of(layer.layer_norm2, f"layer {i} layer_norm2"),
                fc1_weight=p[b + "mlp.fc1.weight"],
                fc1_bias=p.get(b + "mlp.fc1.bias"),
                act=ACTIVATIONS.get(cfg.hidden_act, str(cfg.hidden_act)),
                fc2_weight=p[b + "mlp.fc2.weight"],
                fc2_bias=p.get(b + "mlp.fc2.bias"),
                names={k: prefix + b + n for k, n in patched.items() if (b + n) in p},
            )
        )
    return blocks


def model_output_features(out: Any) -> Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected feature; 4.x a tensor."""
    return out if isinstance(out, Tensor) else out.pooler_output


def encode_image(model: nn.Module, images: Tensor) -> Tensor:
    """[N, D] ``get_image_features`` (CLIPModel), ``image_embeds`` (vision with projection) or the pooled output."""
    kind = type(model).__name__
    if kind == "CLIPModel":
        return model_output_features(model.get_image_features(pixel_values=images))
    out = model(pixel_values=images)
    return out.image_embeds if kind == "CLIPVisionModelWithProjection" else out.pooler_output


def encode_text(model: nn.Module, tokens: Tensor) -> Tensor:
    """[M, D] ``get_text_features`` of padded input ids (causal attention: the padding is never attended to)."""
    if type(model).__name__ != "CLIPModel":
        raise EditclipError(f"{type(model).__name__} is an image tower only; text embeddings need a CLIPModel")
    return model_output_features(model.get_text_features(input_ids=tokens))


def logit_scale(model: nn.Module) -> Tensor:
    if not hasattr(model, "logit_scale"):
        raise EditclipError(f"{type(model).__name__} is an image tower only; it has no logit scale")
    return model.logit_scale


def preprocess_cfg(model: nn.Module) -> dict[str, Any]:
    """The image processor's settings as recorded by the loader, else CLIPImageProcessor's defaults at the
    model's image size (the record of :mod:`editclip._hf_preprocess`)."""
    return recorded_or_default(model, NAME)


def recorded_or_default(model: nn.Module, family: str) -> dict[str, Any]:
    """The preprocessing recorded on a transformers model, else that of ``family``'s default image processor."""
    recorded = getattr(model, PREPROCESS_ATTR, None)
    if recorded:
        return dict(recorded)
    from .._hf_preprocess import default_settings, record_from_settings

    size = vision_config(model).image_size
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    return record_from_settings(default_settings(family, size), size, type(model).__name__)


def set_preprocess_cfg(model: nn.Module, cfg: dict[str, Any]) -> None:
    setattr(model, PREPROCESS_ATTR, dict(cfg))


def device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    weight = model.vision_model.embeddings.patch_embedding.weight
    return weight.device, weight.dtype


def save_weights(bb: Any, model: nn.Module, folder: Path, metadata: dict[str, Any]) -> Path:  # shared by hf_siglip
    """The weights target as ``folder/patched/``: a transformers folder (config.json, model.safetensors, the
    image processor's settings and the tokenizer) that stock ``from_pretrained`` and ``local-dir:`` load;
    editclip's metadata goes to ``editclip.json`` beside them. Written whole or not at all."""
    target = folder / "patched"
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".patched.", dir=folder))
    try:
        model.save_pretrained(str(work), safe_serialization=True)
        settings = getattr(model, PROCESSOR_ATTR, None)
        if settings:
            (work / "preprocessor_config.json").write_text(json.dumps(settings, indent=2) + "\n")
        tokenizer = getattr(bb.tokenizer, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(work))
        from ..artifacts import CHECKPOINT_FORMAT

        record = {**metadata, "format": CHECKPOINT_FORMAT}
        (work / "editclip.json").write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
