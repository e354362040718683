"""Load Hugging Face transformers models (a folder or a model already built) into a :class:`Backbone`.

CLIP (``CLIPModel``, ``CLIPVisionModelWithProjection``, ``CLIPVisionModel``) and SigLIP (``SiglipModel``,
``SiglipVisionModel``). The image processor's settings (``preprocessor_config.json``) become the project's
preprocessing record and a transform that gives the processor's own pixel values
(:mod:`editclip._hf_preprocess`); the tokenizer (CLIP's BPE, SigLIP's sentencepiece) pads to the text tower's
context length. transformers is an optional dependency (``pip install editclip[hf]``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import families
from ._hf_preprocess import HFImageTransform, default_settings, record_from_settings
from ._sources import ModelFolder
from .errors import EditclipError, UnsupportedModelError
from .families import hf_clip

# model_type (and architectures) -> transformers class
MODEL_CLASSES = {
    "clip": "CLIPModel",
    "clip_vision_model": "CLIPVisionModelWithProjection",
    "siglip": "SiglipModel",
    "siglip_vision_model": "SiglipVisionModel",
}
_NO_SIGLIP2 = (
    "transformers SigLIP2 models (variable-resolution NaFlex patches with their own position interpolation) are not "
    "read yet; SigLIP (model_type siglip) and open_clip's timm SigLIP2 towers are"
)
UNSUPPORTED_TYPES = {kind: _NO_SIGLIP2 for kind in ("siglip2", "siglip2_vision_model")}
TEXT_CLASSES = ("CLIPModel", "SiglipModel")  # the classes with a text tower
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "spiece.model")
PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def transformers_module() -> Any:
    try:
        import transformers
    except ImportError as err:
        raise EditclipError(
            f"this is a Hugging Face transformers model; install the extra: pip install 'editclip[hf]' ({err})"
        ) from None
    return transformers


def model_class(config: dict[str, Any], name: str) -> Any:
    """The transformers class for a config.json, by ``model_type`` (and ``architectures`` for vision-only)."""
    kind = config.get("model_type")
    if kind in UNSUPPORTED_TYPES:
        raise UnsupportedModelError(f"model {name!r}: {UNSUPPORTED_TYPES[kind]}")
    if kind not in MODEL_CLASSES:
        raise UnsupportedModelError(f"model {name!r}: transformers model_type {kind!r} is not supported")
    class_name = MODEL_CLASSES[kind]
    if kind == "clip_vision_model" and "CLIPVisionModel" in (config.get("architectures") or []):
        class_name = "CLIPVisionModel"
    return getattr(transformers_module(), class_name)


def load_folder(source: ModelFolder, device: torch.device, precision: str) -> Any:
    """A Backbone from a transformers-format folder (config.json + model.safetensors [+ processor, tokenizer])."""
    cls = model_class(source.config, source.name)
    try:
        model, info = cls.from_pretrained(
            str(source.folder), dtype=PRECISION_DTYPES[precision], use_safetensors=True, output_loading_info=True
        )
    except (OSError, ValueError, RuntimeError) as err:
        raise EditclipError(f"could not load {source.name!r} with transformers.{cls.__name__}: {err}") from None
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if problems:
        raise EditclipError(f"{source.name!r}: the weights do not fit the config: {problems}")
    processor = _read_processor(source.folder, source.name)
    tokenizer = _tokenizer(source.folder, model, source.name)
    origin = "hub weights" if source.hub else "weights in the folder"
    return from_hf(model.to(device), processor, tokenizer, name=source.name, pretrained=origin,
                   source={"name": source.name, "pretrained": None})  # fmt: skip


def from_hf(
    model: nn.Module,
    image_processor: Any = None,
    tokenizer: Any = None,
    *,
    name: str | None = None,
    pretrained: str | None = None,
    source: dict[str, Any] | None = None,
) -> Any:
    """A Backbone for a transformers CLIP or SigLIP the user built; ``image_processor`` is its image processor
    (CLIPImageProcessor, SiglipImageProcessor) or its dict (default: the family's processor at the model's image
    size), ``tokenizer`` a transformers tokenizer."""
    from .backbone import Backbone, _check_supported, read_shape

    model_id = name or getattr(model.config, "name_or_path", "") or type(model).__name__
    _check_supported(model, model_id)
    settings = image_processor.to_dict() if hasattr(image_processor, "to_dict") else image_processor
    image_size = families.describe(model).image_size
    pp, transform = preprocess_from_processor(settings, image_size, model_id, families.family_of(model).NAME)
    families.set_preprocess_cfg(model, pp)
    setattr(model, hf_clip.PROCESSOR_ATTR, settings or {})
    model.eval()
    text = _wrap_tokenizer(tokenizer, model, model_id)
    record = {**(source or {"name": model_id, "in_memory": True}), "preprocess_cfg": pp}
    return Backbone(model, text, transform, read_shape(model, model_id), model_id, pretrained, record)


def preprocess_from_processor(
    settings: dict[str, Any] | None, image_size: tuple[int, int], model_id: str, family: str = hf_clip.NAME
) -> tuple[dict[str, Any], Callable[[Any], torch.Tensor]]:
    """(preprocessing record, transform) giving the pixel values of an image processor's settings (None: the
    ``family``'s processor at ``image_size``); EditclipError naming a setting editclip cannot reproduce."""
    record = record_from_settings(settings or default_settings(family, image_size), image_size, model_id)
    return record, HFImageTransform(record)


def _read_processor(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EditclipError(f"{name!r}: preprocessor_config.json is not readable JSON: {err}") from None


def _tokenizer(folder: Path, model: nn.Module, name: str) -> Any:
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES) or type(model).__name__ not in TEXT_CLASSES:
        return None
    try:
        return transformers_module().AutoTokenizer.from_pretrained(str(folder))
    except ImportError as err:  # SigLIP's sentencepiece tokenizer needs the sentencepiece package
        raise EditclipError(
            f"{name!r}: its tokenizer needs a package that is not installed ({err}); pip install 'editclip[hf]'"
        ) from None
    except (OSError, ValueError) as err:
        raise EditclipError(f"{name!r}: could not load its tokenizer: {err}") from None


class HFTokenizer:
    """texts -> input ids [M, context_length], padded and truncated to the text tower's context length."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        batch = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context_length,
                               return_tensors="pt")  # fmt: skip
        return batch["input_ids"]


class NoTokenizer:
    """Stands in where a model has no tokenizer (vision-only, or no tokenizer files): says so when called."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self, texts: list[str] | str) -> torch.Tensor:
        raise EditclipError(self.reason)


def _wrap_tokenizer(tokenizer: Any, model: nn.Module, model_id: str) -> Callable[..., torch.Tensor]:
    if type(model).__name__ not in TEXT_CLASSES:
        needs = " or ".join(TEXT_CLASSES)
        return NoTokenizer(f"model {model_id!r} is an image tower only; text embeddings need a {needs}")
    if tokenizer is None:
        return NoTokenizer(
            f"model {model_id!r} has no tokenizer (tokenizer.json, vocab.json + merges.txt or spiece.model beside "
            "config.json, or pass tokenizer=); text embeddings need one"
        )
    return HFTokenizer(tokenizer, int(model.config.text_config.max_position_embeddings))
