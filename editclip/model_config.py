"""Reading an open_clip model-config JSON strictly: every key must be one editclip reads, every value of
the type open_clip expects, so a misspelt key (``preprocess`` for ``preprocess_cfg``) cannot be ignored
and silently change the numbers.

The key tables mirror open_clip's ``CLIP`` arguments and its ``CLIPVisionCfg``, ``CLIPTextCfg`` and
``PreprocessCfg`` dataclasses (a test keeps them equal). This module imports neither torch nor open_clip,
so edit specs use it too.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from .errors import EditclipError


class _Kind(NamedTuple):
    """What a value must be: a phrase for messages and a check."""

    phrase: str
    check: Callable[[Any], bool]


def _optional(kind: _Kind) -> _Kind:
    return _Kind(f"{kind.phrase} or null", lambda v: v is None or kind.check(v))


def _is_int(value: Any) -> bool:
    return type(value) is int


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _int_list(n: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) == n and all(_is_int(x) for x in v)


_INT = _Kind("an integer", _is_int)
_POSITIVE = _Kind("a positive integer", lambda v: _is_int(v) and v > 0)
_NUMBER = _Kind("a number", _is_number)
_BOOL = _Kind("true or false", lambda v: type(v) is bool)
_STR = _Kind("a string", lambda v: isinstance(v, str))
_DICT = _Kind("a mapping", lambda v: isinstance(v, dict))
_SIZE = _Kind("a positive integer or [height, width]", lambda v: (_is_int(v) and v > 0) or _int_list(2)(v))
_LAYERS = _Kind("a positive integer (or 4 integers for a ResNet)", lambda v: (_is_int(v) and v > 0) or _int_list(4)(v))
_FLOATS = _Kind("a list of numbers", lambda v: isinstance(v, list) and bool(v) and all(_is_number(x) for x in v))
_STDS = _Kind("a list of positive numbers", lambda v: _FLOATS.check(v) and all(x > 0 for x in v))


def _choice(*options: str) -> _Kind:
    return _Kind("one of " + ", ".join(repr(o) for o in options), lambda v: v in options)


TOP_LEVEL: dict[str, _Kind] = {
    "embed_dim": _POSITIVE,
    "vision_cfg": _DICT,
    "text_cfg": _DICT,
    "quick_gelu": _BOOL,
    "init_logit_scale": _NUMBER,
    "init_logit_bias": _optional(_NUMBER),
    "nonscalar_logit_scale": _BOOL,
    "output_dict": _BOOL,
    "custom_text": _BOOL,
    "multimodal_cfg": _DICT,  # read to refuse CoCa models by name
    "preprocess_cfg": _optional(_DICT),
}

# Keys that open_clip's vision and text tower configs both have.
_TOWER_COMMON: dict[str, _Kind] = {
    "final_ln_after_pool": _BOOL,
    "pool_type": _STR,
    "output_tokens": _BOOL,
    "act_kwargs": _optional(_DICT),
    "norm_kwargs": _optional(_DICT),
    "block_type": _optional(_STR),
    "qk_norm": _BOOL,
    "scaled_cosine_attn": _BOOL,
    "scale_heads": _BOOL,
    "scale_attn_inner": _BOOL,
    "scale_attn": _BOOL,
    "scale_fc": _BOOL,
}
VISION: dict[str, _Kind] = {
    **_TOWER_COMMON,
    "layers": _LAYERS,
    "width": _POSITIVE,
    "head_width": _POSITIVE,
    "mlp_ratio": _NUMBER,
    "patch_size": _optional(_POSITIVE),  # null in ResNet configs
    "image_size": _SIZE,
    "ls_init_value": _optional(_NUMBER),
    "patch_dropout": _NUMBER,
    "attentional_pool": _BOOL,
    "attn_pooler_queries": _INT,
    "attn_pooler_heads": _INT,
    "no_ln_pre": _BOOL,
    "pos_embed_type": _STR,
    "timm_model_name": _optional(_STR),
    "timm_model_pretrained": _BOOL,
    "timm_pool": _optional(_STR),
    "timm_proj": _optional(_STR),
    "timm_proj_bias": _BOOL,
    "timm_drop": _NUMBER,
    "timm_drop_path": _optional(_NUMBER),
}
TEXT: dict[str, _Kind] = {
    **_TOWER_COMMON,
    "context_length": _POSITIVE,
    "vocab_size": _POSITIVE,
    "hf_tokenizer_name": _optional(_STR),
    "tokenizer_mode": _optional(_STR),
    "tokenizer_kwargs": _optional(_DICT),
    "width": _POSITIVE,
    "heads": _POSITIVE,
    "layers": _POSITIVE,
    "mlp_ratio": _NUMBER,
    "ls_init_value": _optional(_NUMBER),
    "embed_cls": _BOOL,
    "pad_id": _INT,
    "eos_id": _INT,
    "no_causal_mask": _BOOL,
    "proj_bias": _BOOL,
    "proj_type": _STR,
    "hf_model_name": _optional(_STR),
    "hf_model_pretrained": _BOOL,
    "hf_proj_type": _STR,
    "hf_pooler_type": _STR,
}
PREPROCESS: dict[str, _Kind] = {
    "size": _SIZE,
    "mode": _choice("RGB"),
    "mean": _FLOATS,
    "std": _STDS,
    "interpolation": _choice("bicubic", "bilinear"),
    "resize_mode": _choice("shortest", "longest", "squash"),
    "fill_color": _INT,
}
WRAPPER: dict[str, _Kind] = {"model_cfg": _DICT, "preprocess_cfg": _optional(_DICT)}
"""The open_clip_config.json layout of hub and local-dir models."""

_SECTIONS = {"vision_cfg": VISION, "text_cfg": TEXT, "preprocess_cfg": PREPROCESS}
_REQUIRED = ("embed_dim", "vision_cfg", "text_cfg")


def read_model_config(config: str | Path | dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_cfg, preprocess_cfg)`` of a model-config JSON file (or dict), checked by
    :func:`check_model_config`; the file is named in every error."""
    if isinstance(config, dict):
        raw, where = config, "the config dict"
    else:
        path = Path(config)
        where = repr(str(path))
        if not path.is_file():
            raise EditclipError(f"model config {where} does not exist")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EditclipError(f"model config {where} is not a readable JSON file: {err}") from None
    return check_model_config(raw, where)


def check_model_config(raw: Any, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a config into ``(model_cfg, preprocess_cfg)`` (copies), or raise naming `where` and every
    unknown key (with the keys that are read, and a close match) or value of the wrong type."""
    if not isinstance(raw, dict):
        raise EditclipError(f"model config {where}: expected a JSON object, got {type(raw).__name__}")
    problems: list[str] = []
    if "model_cfg" in raw:
        problems += _section_problems(raw, WRAPPER, "")
        model = raw.get("model_cfg") if isinstance(raw.get("model_cfg"), dict) else {}
        if "preprocess_cfg" in model:
            problems.append("preprocess_cfg goes beside model_cfg, not inside it")
        model = {**model, "preprocess_cfg": raw.get("preprocess_cfg", {})}
    else:
        model = dict(raw)
    problems += _section_problems(model, TOP_LEVEL, "")
    for key, table in _SECTIONS.items():
        if isinstance(model.get(key), dict):
            problems += _section_problems(model[key], table, f"{key}.")
    missing = [k for k in _REQUIRED if k not in model]
    if missing:
        problems.append(f"lacks {', '.join(missing)} (an open_clip config has embed_dim, vision_cfg, text_cfg)")
    if problems:
        raise EditclipError(f"model config {where}: " + "; ".join(problems))
    model = json.loads(json.dumps(model))  # a deep copy
    preprocess = model.pop("preprocess_cfg", None) or {}
    return model, preprocess


def _section_problems(section: dict[str, Any], table: dict[str, _Kind], prefix: str) -> list[str]:
    problems = []
    for key, value in section.items():
        kind = table.get(key)
        if kind is None:
            close = difflib.get_close_matches(str(key), list(table), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            problems.append(
                f"unknown key {prefix}{key}{hint}; editclip reads only {', '.join(prefix + k for k in table)}"
            )
        elif not kind.check(value):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            problems.append(f"{prefix}{key} must be {kind.phrase}, got {shown}")
    return problems
