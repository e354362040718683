"""Load Hugging Face transformers models (a folder or a model already built) into a :class:`Backbone`.

The image processor's settings (``preprocessor_config.json``: resize to the shortest edge or to a fixed
size, centre crop, resample, rescale, mean/std) become the project's preprocessing record (open_clip's
``preprocess_cfg`` keys) and a torchvision transform; the tokenizer pads to the text tower's context length.
transformers is an optional dependency (``pip install editclip[hf]``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._sources import ModelFolder
from .errors import EditclipError, UnsupportedModelError
from .families import hf_clip

# model_type (and architectures) -> transformers class; the SigLIP families add theirs here.
MODEL_CLASSES = {
    "clip": "CLIPModel",
    "clip_vision_model": "CLIPVisionModelWithProjection",
}
_NO_HF_SIGLIP = "transformers SigLIP models are not read yet (open_clip's timm SigLIP towers are)"
UNSUPPORTED_TYPES = {kind: _NO_HF_SIGLIP for kind in ("siglip", "siglip_vision_model", "siglip2",
                                                       "siglip2_vision_model")}  # fmt: skip
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
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
    """A Backbone for a transformers model the user built; ``image_processor`` is a CLIPImageProcessor or its
    dict (default: CLIPImageProcessor's defaults at the model's image size), ``tokenizer`` a transformers tokenizer."""
    from .backbone import Backbone, _check_supported, read_shape

    model_id = name or getattr(model.config, "name_or_path", "") or type(model).__name__
    _check_supported(model, model_id)
    settings = image_processor.to_dict() if hasattr(image_processor, "to_dict") else image_processor
    image_size = hf_clip.describe(model).image_size
    pp, transform = preprocess_from_processor(settings, image_size, model_id)
    setattr(model, hf_clip.PREPROCESS_ATTR, pp)
    setattr(model, hf_clip.PROCESSOR_ATTR, settings or {})
    model.eval()
    text = _wrap_tokenizer(tokenizer, model, model_id)
    record = {**(source or {"name": model_id, "in_memory": True}), "preprocess_cfg": pp}
    return Backbone(model, text, transform, read_shape(model, model_id), model_id, pretrained, record)


def preprocess_from_processor(
    settings: dict[str, Any] | None, image_size: tuple[int, int], model_id: str
) -> tuple[dict[str, Any], Callable[[Any], torch.Tensor]]:
    """(open_clip-style preprocess record, torchvision transform) equivalent to a CLIPImageProcessor's settings."""
    from torchvision import transforms as T

    s = dict(settings or {})
    factor = float(s.get("rescale_factor", 1 / 255))
    if s.get("do_rescale", True) and abs(factor - 1 / 255) > 1e-9:
        raise EditclipError(f"model {model_id!r}: image processor rescale_factor {factor} is not 1/255")
    resample = int(s.get("resample", 3))
    if resample not in _RESAMPLE:
        raise EditclipError(f"model {model_id!r}: image processor resample {resample} is not one of {_RESAMPLE}")
    interpolation = _RESAMPLE[resample]
    normalize = s.get("do_normalize", True)
    mean = tuple(s.get("image_mean", hf_clip.OPENAI_MEAN)) if normalize else (0.0, 0.0, 0.0)
    std = tuple(s.get("image_std", hf_clip.OPENAI_STD)) if normalize else (1.0, 1.0, 1.0)
    size = s.get("size", {"shortest_edge": image_size[0]})
    size = {"shortest_edge": size} if isinstance(size, int) else dict(size)
    crop = s.get("crop_size", {"height": image_size[0], "width": image_size[1]})
    crop = {"height": crop, "width": crop} if isinstance(crop, int) else dict(crop)
    do_crop, do_resize = s.get("do_center_crop", True), s.get("do_resize", True)
    out_size = (crop["height"], crop["width"]) if do_crop else (size.get("height"), size.get("width"))
    if tuple(out_size) != tuple(image_size):
        raise EditclipError(
            f"model {model_id!r}: the image processor makes {out_size} images but the model takes {image_size}"
        )
    mode = T.InterpolationMode(interpolation)
    steps: list[Any] = []
    if do_resize and "shortest_edge" in size:
        if do_crop and size["shortest_edge"] != min(out_size):
            raise EditclipError(
                f"model {model_id!r}: the image processor resizes the shortest edge to {size['shortest_edge']} and "
                f"then crops {out_size}; editclip's preprocessing record resizes to the crop size (shortest edge "
                f"{min(out_size)}), so it cannot reproduce this processor"
            )
        steps.append(T.Resize(size["shortest_edge"], interpolation=mode))
        resize_mode = "shortest"
    elif do_resize:
        steps.append(T.Resize((size["height"], size["width"]), interpolation=mode))
        resize_mode = "squash"
    else:
        raise EditclipError(f"model {model_id!r}: image processors without resizing are not supported")
    if do_crop:
        steps.append(T.CenterCrop(out_size))
    steps += [_to_rgb, T.ToTensor(), T.Normalize(mean, std)]
    pp = {"size": tuple(out_size), "mode": "RGB", "mean": mean, "std": std, "interpolation": interpolation,
          "resize_mode": resize_mode, "fill_color": 0}  # fmt: skip
    return pp, T.Compose(steps)


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB") if hasattr(image, "convert") else image


def _read_processor(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise EditclipError(f"{name!r}: preprocessor_config.json is not readable JSON: {err}") from None


def _tokenizer(folder: Path, model: nn.Module, name: str) -> Any:
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES) or type(model).__name__ != "CLIPModel":
        return None
    try:
        return transformers_module().AutoTokenizer.from_pretrained(str(folder))
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
    if type(model).__name__ != "CLIPModel":
        return NoTokenizer(f"model {model_id!r} is an image tower only; text embeddings need a CLIPModel")
    if tokenizer is None:
        return NoTokenizer(
            f"model {model_id!r} has no tokenizer (tokenizer.json or vocab.json + merges.txt beside config.json, "
            "or pass tokenizer=); text embeddings need one"
        )
    return HFTokenizer(tokenizer, int(model.config.text_config.max_position_embeddings))
