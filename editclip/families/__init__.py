"""Model families: one adapter module each, which reads a model's parameters by name into a
:class:`~editclip.tower.Tower` and knows the family's own forward (encode_image / encode_text), logit
scale and stored preprocessing. Everything above this package calls the functions here and never
branches on the family.

An adapter module provides ``NAME``, ``owns(model)``, ``tower_module(model)``, ``check(model, model_id)``,
``describe(model) -> Tower``, ``encode_image(model, images)``, ``encode_text(model, tokens)``,
``logit_scale(model)``, ``preprocess_cfg(model)``, ``device_dtype(model)`` and
``save_weights(bb, model, folder, metadata)`` (the weights target in the family's own stock format).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..tower import Tower
from . import hf_clip, hf_siglip, open_clip_timm, open_clip_vit

FAMILIES: tuple[ModuleType, ...] = (open_clip_timm, open_clip_vit, hf_clip, hf_siglip)  # first owner wins


def family_of(model: nn.Module) -> ModuleType:
    """The adapter module of ``model``'s family; UnsupportedModelError when no adapter owns it."""
    for family in FAMILIES:
        if family.owns(model):
            return family
    raise UnsupportedModelError(
        f"no editclip adapter for a {type(model).__module__}.{type(model).__name__}; supported: "
        f"{', '.join(f.NAME for f in FAMILIES)}"
    )


def describe(model: nn.Module | Tower) -> Tower:
    """The family-neutral description of ``model``'s image tower (a Tower is returned as is)."""
    return model if isinstance(model, Tower) else family_of(model).describe(model)


def check(model: nn.Module, model_id: str) -> None:
    """Raise UnsupportedModelError unless editclip can decompose ``model``'s image tower exactly."""
    family_of(model).check(model, model_id)


def encode_image(model: nn.Module, images: Tensor) -> Tensor:
    """[N, D] unnormalised image embeddings from the family's own forward."""
    return family_of(model).encode_image(model, images)


def encode_text(model: nn.Module, tokens: Any) -> Tensor:
    """[M, D] unnormalised text embeddings from the family's own forward, given its tokenizer's output."""
    return family_of(model).encode_text(model, tokens)


def logit_scale(model: nn.Module) -> Tensor:
    """The model's learned logit scale (log space)."""
    return family_of(model).logit_scale(model)


def preprocess_cfg(model: nn.Module) -> dict[str, Any]:
    """The preprocessing stored with the model (open_clip's preprocess_cfg keys: size, mean, std, ...)."""
    return family_of(model).preprocess_cfg(model)


def set_preprocess_cfg(model: nn.Module, cfg: dict[str, Any]) -> None:
    """Store the preprocessing ``cfg`` (open_clip's preprocess_cfg keys) with the model."""
    family_of(model).set_preprocess_cfg(model, cfg)


def tower_module(model: nn.Module) -> nn.Module:
    """The submodule that owns the image tower's parameters."""
    return family_of(model).tower_module(model)


def device_dtype(model: nn.Module) -> tuple[Any, Any]:
    """(device, dtype) of the image tower's weights."""
    return family_of(model).device_dtype(model)


def save_weights(bb: Any, model: nn.Module, folder: Path, metadata: dict[str, Any]) -> Path:
    """Write weights-target ``model`` (a patched copy of ``bb.model``) into ``folder`` in the family's stock format."""
    return family_of(model).save_weights(bb, model, Path(folder), metadata)
