"""Load models into a family-neutral :class:`Backbone` and read the shape of their image tower.

The family adapters (:mod:`editclip.families`) attach to parameter *names*, never to module classes.
Towers editclip cannot decompose exactly get an :class:`~editclip.errors.UnsupportedModelError` that
names the model and the reason.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import families
from ._sources import has_schema
from ._sources import resolve as resolve_source
from .checkpoints import check_readable, read_error
from .errors import EditclipError, UnsupportedModelError
from .families import open_clip_timm, open_clip_vit
from .model_config import read_model_config
from .tower import Tower, VitShape, tower_shape

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


@dataclass
class Backbone:
    """A CLIP-like model with its tokenizer, preprocess and the shape of its image tower.

    Family-neutral: ``encode_image``, ``encode_text``, ``tokenizer``, ``preprocess``, ``shape``, ``tower``,
    ``fingerprint`` and ``source`` work the same whichever family (:mod:`editclip.families`) ``model`` is.
    """

    model: nn.Module
    tokenizer: Callable[..., torch.Tensor]
    preprocess: Callable[[Any], torch.Tensor]
    shape: VitShape
    model_id: str
    pretrained: str | None
    source: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.shape
        weights = f"pretrained {self.pretrained}" if self.pretrained else "random weights"
        known = self.__dict__.get("fingerprint")  # hashing the weights is not a repr's job; shown once computed
        dtype = str(self.dtype).removeprefix("torch.")
        return (f"Backbone({self.model_id}, {weights}, {s.layers} layers x {s.heads} heads, width {s.width}, "
                f"D={s.embed_dim}, {s.image_size[0]}x{s.image_size[1]}, {self.device} {dtype}"
                f"{f' [{known}]' if known else ''})")  # fmt: skip

    @classmethod
    def from_open_clip(
        cls,
        model: nn.Module,
        preprocess: Callable[[Any], torch.Tensor],
        tokenizer: Callable[..., torch.Tensor],
        name: str | None = None,
    ) -> Backbone:
        """A Backbone for an open_clip model the user already built (e.g. ``open_clip.create_model_and_transforms``)."""
        model_id = name or "open_clip model"
        _check_supported(model, model_id)
        model.eval()
        from open_clip.model import get_model_preprocess_cfg

        source = {"name": model_id, "in_memory": True, "preprocess_cfg": dict(get_model_preprocess_cfg(model))}
        shape = read_shape(model, model_id)
        return cls(model, tokenizer, preprocess, shape, model_id, "weights given in memory", source)

    @classmethod
    def from_hf(
        cls, model: nn.Module, image_processor: Any = None, tokenizer: Any = None, name: str | None = None
    ) -> Backbone:
        """A Backbone for a transformers CLIP or SigLIP the user built (``CLIPModel.from_pretrained(...)``,
        ``SiglipModel``, their vision-only classes); the image processor (or its dict) defaults to the family's
        (CLIPImageProcessor, SiglipImageProcessor) at the model's image size, the tokenizer to none."""
        from ._hf_load import from_hf

        return from_hf(model, image_processor, tokenizer, name=name, pretrained="weights given in memory")

    @property
    def family(self) -> str:
        """The model family's adapter name (``open_clip``, ...)."""
        return families.family_of(self.model).NAME

    @property
    def tower(self) -> Tower:
        """The family-neutral description of the image tower (its parameters read by name)."""
        return families.describe(self.model)

    @property
    def visual(self) -> nn.Module:
        """The module that owns the image tower's parameters."""
        return families.tower_module(self.model)

    @property
    def device(self) -> torch.device:
        return families.device_dtype(self.model)[0]

    @property
    def dtype(self) -> torch.dtype:
        return families.device_dtype(self.model)[1]

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of every tensor of the state dict, names included."""
        return state_dict_fingerprint(self.model.state_dict())

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The effective preprocessing of images for this model (see :func:`preprocessing_record`)."""
        return preprocessing_record(self.model)

    @property
    def precision(self) -> str:
        """fp32, fp16 or bf16: the dtype of the image tower's weights."""
        return {v: k for k, v in PRECISIONS.items()}[self.dtype]

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """[M, D] unnormalised text embeddings."""
        tokens = self.tokenizer(texts).to(self.device)
        return families.encode_text(self.model, tokens).float()

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """[N, D] unnormalised image embeddings from the model's own forward."""
        return families.encode_image(self.model, images.to(self.device, self.dtype)).float()

    def capture(self, images: torch.Tensor, names: Iterable[str], batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Named intermediate tensors of the image tower on ``images`` [N, 3, H, W] (already preprocessed).

        ``names``: capture points such as ``L3.attn.pattern``, ``L0-5.mlp.post``, ``last:4.attn.q``,
        ``L*.resid.post`` or ``pool.attn.pattern``; the result has one fp32 tensor per layer and kind, keyed
        ``L3.attn.pattern`` (shapes in docs/INTERFACES.md).
        """
        from ._capture import capture_images

        return capture_images(self, images, names, batch_size)


def preprocessing_record(model: nn.Module) -> dict[str, Any]:
    """Everything of open_clip's PreprocessCfg that changes pixels, in one JSON-friendly dict.

    ``size`` [H, W], ``mode``, ``mean``, ``std``, ``interpolation``, ``resize_mode``, ``fill_color``: the values
    the model's own ``preprocess`` transform uses (open_clip's defaults filled in). transformers models add
    ``pipeline: transformers`` (their image processor's own operations) and, when it resizes the shortest edge
    before a centre crop, ``resize_size`` (see :mod:`editclip._hf_preprocess`). Stores, reports, edit
    artifacts and ONNX files record it, and every cache key and compatibility check compares it.
    """
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    raw = families.preprocess_cfg(model)
    cfg = merge_preprocess_dict(PreprocessCfg(), raw)
    size = cfg["size"]
    size = [int(size), int(size)] if isinstance(size, (int, float)) else [int(v) for v in size]
    extra = {k: raw[k] for k in ("pipeline", "resize_size") if raw.get(k) is not None}
    return {
        "size": size,
        "mode": str(cfg["mode"]),
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "interpolation": str(cfg["interpolation"]),
        "resize_mode": str(cfg["resize_mode"]),
        "fill_color": int(cfg["fill_color"]),
        **extra,
    }


def describe_preprocessing(record: dict[str, Any] | None) -> str:
    """One line for messages and reports: ``48x48 RGB, mean [...], std [...], bicubic, shortest, fill 0``."""
    if not record:
        return "not recorded"

    def vec(values: Any) -> str:
        return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"

    size = record.get("size") or ["?", "?"]
    resize = record.get("resize_mode")
    if record.get("resize_size"):
        resize = f"shortest edge {record['resize_size']} + centre crop"
    pipeline = f" ({record['pipeline']} image processor)" if record.get("pipeline") else ""
    return (
        f"{size[0]}x{size[1]} {record.get('mode', 'RGB')}, mean {vec(record.get('mean', []))}, "
        f"std {vec(record.get('std', []))}, {record.get('interpolation')}, resize {resize}, "
        f"fill {record.get('fill_color')}{pipeline}"
    )


def with_preprocessing(bb: Backbone, record: dict[str, Any]) -> Backbone:
    """``bb`` with the preprocessing ``record`` (as :func:`preprocessing_record` writes it) set on its model."""
    image_size = list(bb.shape.image_size)
    if list(record["size"]) != image_size:
        raise EditclipError(
            f"the recorded preprocessing resizes to {record['size']}, but model {bb.model_id!r} takes {image_size} px"
        )
    pp = {**record, "size": tuple(record["size"]), "mean": tuple(record["mean"]), "std": tuple(record["std"])}
    families.set_preprocess_cfg(bb.model, pp)
    preprocess = transform_of(pp)
    return Backbone(bb.model, bb.tokenizer, preprocess, bb.shape, bb.model_id, bb.pretrained,
                    {**bb.source, "preprocess_cfg": pp})  # fmt: skip


def transform_of(record: dict[str, Any]) -> Callable[[Any], torch.Tensor]:
    """The image transform of a preprocessing record: open_clip's, or a transformers image processor's."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from ._hf_preprocess import PIPELINE, HFImageTransform

    if record.get("pipeline") == PIPELINE:
        return HFImageTransform(record)
    if record.get("pipeline") is not None:
        raise EditclipError(f"preprocessing pipeline {record['pipeline']!r} is not known to this editclip")
    keys = ("size", "mode", "mean", "std", "interpolation", "resize_mode", "fill_color")
    return image_transform_v2(PreprocessCfg(**{k: record[k] for k in keys if k in record}), is_train=False)


def state_dict_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A content hash of a state dict that does not depend on dtype-preserving copies or devices."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load(
    name: str | None = None,
    pretrained: str | None = None,
    *,
    checkpoint: str | Path | None = None,
    config: str | Path | dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Backbone:
    """Load a model for decomposition.

    - ``load("ViT-B-16", pretrained="laion2b_s34b_b88k")``: a built-in config with a pretrained tag
      (downloads when online) or a checkpoint path; ``pretrained=None`` gives random weights.
    - ``load("hf-hub:ORG/NAME")`` / ``load("local-dir:DIR")``: an open_clip-format repo or folder
      (``open_clip_config.json``, resolved by open_clip itself) or a transformers-format one (``config.json``
      with ``model_type`` clip + ``model.safetensors``), told apart by the files; the weights are the repo's.
    - ``load(config="config.json")`` with a transformers config (``model_type`` clip): random weights.
    - ``load(checkpoint="tiny.safetensors", config="tiny.json")``: a local checkpoint (``.safetensors``,
      ``.pt``, ``.bin``) with an open_clip model-config JSON (embed_dim, vision_cfg, text_cfg and an
      optional preprocess_cfg); ``load("ViT-B-32", checkpoint=...)`` takes a built-in config instead.
    """
    import open_clip

    if precision not in PRECISIONS:
        raise EditclipError(f"precision {precision!r} is not supported; choose one of {sorted(PRECISIONS)}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EditclipError("device 'cuda' was asked for, but torch sees no CUDA device on this machine")

    if has_schema(name):
        if pretrained is not None or checkpoint is not None or config is not None:
            raise EditclipError(
                f"{name!r} names its own weights and config; it takes no pretrained=, checkpoint= or config="
            )
        return _load_schema(name, device, precision)
    if config is not None and _is_transformers_config(config):
        return _load_transformers_config(name, config, device, precision, checkpoint)
    if checkpoint is not None:
        return _load_checkpoint(name, checkpoint, config, device, precision)
    if config is not None:
        model_cfg, preprocess_cfg = read_model_config(config)
        return _build_from_config(name or "custom", model_cfg, preprocess_cfg, None, device, precision)
    if name is None:
        raise EditclipError("give a model name (e.g. 'ViT-B-16'), or checkpoint= with config=")
    if name not in open_clip.list_models():
        raise EditclipError(f"unknown open_clip model {name!r}; known ones include {_some_models()}")
    check_config(open_clip.get_model_config(name), name)
    _warn_quickgelu_mismatch(name, pretrained)
    local = pretrained is not None and Path(pretrained).suffix in CHECKPOINT_SUFFIXES
    if local:
        check_readable(pretrained)
    try:
        model = open_clip.create_model(name, pretrained=pretrained, device=device, precision=precision)
    except Exception as err:
        clear = read_error(pretrained, err) if local else None
        if clear is not None:
            raise clear from None
        if not isinstance(err, RuntimeError):
            raise
        raise EditclipError(f"could not load {name!r} with pretrained={pretrained!r}: {err}") from err
    _check_supported(model, name)
    return _finish(model, _LazyTokenizer(name), name, pretrained, {"name": name, "pretrained": pretrained})


class _LazyTokenizer:
    """open_clip's tokenizer of a built-in model, made on first use: SigLIP's is a Hugging Face tokenizer
    that may need a download, which image-only work (decompose, bench) should not wait for."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tokenizer: Callable[..., torch.Tensor] | None = None

    def __call__(self, texts: list[str], *args: Any, **kwargs: Any) -> torch.Tensor:
        if self._tokenizer is None:
            import open_clip

            try:
                self._tokenizer = open_clip.get_tokenizer(self.name)
            except OSError as err:
                raise EditclipError(f"the tokenizer of {self.name!r} could not be loaded: {err}") from err
        return self._tokenizer(texts, *args, **kwargs)


def supported_models() -> list[str]:
    """open_clip's built-in model names whose configs editclip can decompose."""
    import open_clip

    names = []
    for name in open_clip.list_models():
        try:
            check_config(open_clip.get_model_config(name) or {}, name)
        except UnsupportedModelError:
            continue
        names.append(name)
    return names


def _some_models() -> str:
    names = supported_models()
    return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "") + " (or hf-hub:ORG/NAME, local-dir:DIR)"


def _load_schema(name: str, device: torch.device, precision: str) -> Backbone:
    """An hf-hub: or local-dir: id: open_clip resolves open_clip-format ones, transformers the others."""
    import open_clip

    source = resolve_source(name)
    if source.format == "transformers":
        from ._hf_load import load_folder

        return load_folder(source, device, precision)
    check_config(source.config.get("model_cfg", source.config), name)
    try:
        model = open_clip.create_model(name, device=device, precision=precision, require_pretrained=True)
    except (RuntimeError, ValueError, OSError) as err:
        raise EditclipError(f"could not load {name!r} with open_clip: {err}") from err
    _check_supported(model, name)
    origin = "hub weights" if source.hub else "weights in the folder"
    return _finish(model, _LazyTokenizer(name), name, origin, {"name": name, "pretrained": None})


def _is_transformers_config(config: str | Path | dict[str, Any]) -> bool:
    if isinstance(config, dict):
        return "model_type" in config
    try:
        return "model_type" in json.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False  # _read_config says what is wrong with it


def _load_transformers_config(
    name: str | None,
    config: str | Path | dict[str, Any],
    device: torch.device,
    precision: str,
    checkpoint: str | Path | None = None,
) -> Backbone:
    """A transformers model built from its config.json: random weights, or a safetensors ``checkpoint``."""
    from safetensors.torch import load_file

    from ._hf_load import PRECISION_DTYPES, from_hf, model_class

    raw = config if isinstance(config, dict) else json.loads(Path(config).read_text(encoding="utf-8"))
    model_id = name or (Path(config).stem if not isinstance(config, dict) else "custom")
    cls = model_class(raw, model_id)
    try:
        model = cls(cls.config_class.from_dict(raw))
    except (TypeError, ValueError) as err:
        raise EditclipError(f"config for {model_id!r} is not a valid {cls.config_class.__name__}: {err}") from err
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file() or path.suffix != ".safetensors":
            raise EditclipError(
                f"checkpoint {str(path)!r}: a transformers config takes an existing .safetensors checkpoint"
            )
        try:
            model.load_state_dict(load_file(str(path)), strict=True)
        except RuntimeError as err:
            raise EditclipError(f"checkpoint {str(path)!r} does not fit the config of {model_id!r}: {err}") from err
    model = model.to(device=device, dtype=PRECISION_DTYPES[precision])
    source = {"name": model_id, "config": raw, "checkpoint": str(checkpoint) if checkpoint else None}
    return from_hf(model, name=model_id, pretrained=str(checkpoint) if checkpoint else None, source=source)


def _warn_quickgelu_mismatch(name: str, pretrained: str | None) -> None:
    """open_clip only notes it; a wrong activation silently degrades every embedding."""
    import open_clip

    if not pretrained:
        return
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    model_quick = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if (pretrained == "openai" or tag_cfg.get("quick_gelu", False)) and not model_quick:
        warnings.warn(
            f"pretrained={pretrained!r} was trained with QuickGELU but the config {name!r} uses GELU; "
            f"use {name + '-quickgelu'!r} for faithful embeddings",
            UserWarning,
            stacklevel=3,
        )


def _load_checkpoint(
    name: str | None,
    checkpoint: str | Path,
    config: str | Path | dict[str, Any] | None,
    device: torch.device,
    precision: str,
) -> Backbone:
    import open_clip

    path = check_readable(checkpoint)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise EditclipError(f"checkpoint {str(path)!r}: unsupported file type; use one of {CHECKPOINT_SUFFIXES}")
    if config is not None:
        model_cfg, preprocess_cfg = read_model_config(config)
        model_id = name or path.stem
    elif name is not None:
        if name not in open_clip.list_models():
            raise EditclipError(f"unknown open_clip model {name!r}; give config= for a custom architecture")
        model_cfg, preprocess_cfg, model_id = copy.deepcopy(open_clip.get_model_config(name)), {}, name
    else:
        raise EditclipError(f"checkpoint {str(path)!r} needs config= (an open_clip model-config JSON) or a model name")
    return _build_from_config(model_id, model_cfg, preprocess_cfg, path, device, precision)


def _build_from_config(
    model_id: str,
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any],
    checkpoint: Path | None,
    device: torch.device,
    precision: str,
) -> Backbone:
    """Build an open_clip CLIP from a config dict the way ``open_clip.create_model`` does."""
    import open_clip
    from open_clip.model import get_cast_dtype, set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        raise UnsupportedModelError(
            f"model {model_id!r}: CoCa models (multimodal_cfg) have an attention-pooled image tower"
        )
    model_class = open_clip.CustomTextCLIP if custom_text else open_clip.CLIP
    try:
        model = model_class(**cfg, cast_dtype=get_cast_dtype(precision))
    except TypeError as err:
        raise EditclipError(f"model config for {model_id!r} is not a valid open_clip config: {err}") from err
    _check_supported(model, model_id)
    if checkpoint is not None:
        try:
            open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
        except Exception as err:
            clear = read_error(checkpoint, err)
            if clear is not None:
                raise clear from None
            if not isinstance(err, (RuntimeError, KeyError, ValueError)):
                raise
            raise EditclipError(
                f"checkpoint {str(checkpoint)!r} does not fit the config of {model_id!r}: {err}"
            ) from err
    model.to(device)
    if precision in ("fp16", "bf16"):
        open_clip.model.convert_weights_to_lp(model, dtype=PRECISIONS[precision])
    pp = merge_preprocess_dict(PreprocessCfg(), preprocess_cfg)
    pp["size"] = model.visual.image_size
    set_model_preprocess_cfg(model, pp)
    context_length = cfg["text_cfg"].get("context_length", 77)
    tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
    source = {"name": model_id, "checkpoint": str(checkpoint) if checkpoint else None, "config": model_cfg}
    return _finish(model, tokenizer, model_id, str(checkpoint) if checkpoint else None, source)


def _finish(
    model: nn.Module, tokenizer: Callable[..., torch.Tensor], model_id: str, pretrained: str | None, source: dict
) -> Backbone:
    from open_clip.model import get_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg, image_transform_v2

    model.eval()
    pp = get_model_preprocess_cfg(model)
    preprocess = image_transform_v2(PreprocessCfg(**pp), is_train=False)
    source = {**source, "preprocess_cfg": pp}
    return Backbone(model, tokenizer, preprocess, read_shape(model, model_id), model_id, pretrained, source)


def check_config(model_cfg: dict[str, Any], model_id: str) -> None:
    """Refuse, before building or downloading anything, open_clip configs whose image tower editclip cannot split."""
    if model_cfg.get("vision_cfg", {}).get("timm_model_name"):
        open_clip_timm.check_config(model_cfg, model_id)
    else:
        open_clip_vit.check_config(model_cfg, model_id)


def _check_supported(model: nn.Module, model_id: str) -> None:
    """Raise UnsupportedModelError unless editclip can decompose the model's image tower exactly."""
    families.check(model, model_id)
    read_shape(model, model_id)


def read_shape(model: nn.Module, model_id: str = "model") -> VitShape:
    """Read the tower's dimensions from its family-neutral description."""
    return tower_shape(families.describe(model), model_id)
