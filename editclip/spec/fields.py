"""The field types specs share: head names, layer selections, existing paths, texts, templates, and the
strict base model every spec section derives from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)

from .._constants import TEMPLATE_SETS
from ..errors import EditclipError
from ..names import MAX_LAYERS, layer_ranges, parse_head

SPEC_VERSION = 1
_LAYER_PIECE_RE = re.compile(r"^(all|last:[1-9][0-9]*|L[0-9]+(-[0-9]+)?)$")  # ASCII digits only
HEAD_PATTERN = r"^L\d+\.H\d+$"  # JSON Schema (ECMA-262) \d is ASCII


def _head(value: str) -> str:
    try:
        return str(parse_head(value))
    except EditclipError as err:
        raise ValueError(str(err)) from None


def _layer_selection(value: str) -> str:
    pieces = [p.strip() for p in value.split(",")]
    for piece in pieces:
        if not _LAYER_PIECE_RE.match(piece):
            raise ValueError(
                f"bad layer selection {piece!r}: expected 'L<i>', 'L<i>-<j>', 'last:<k>' or 'all' (e.g. 'L0-19')"
            )
        if piece.startswith("last:") and (len(piece) > len("last:") + 9 or int(piece[5:]) > MAX_LAYERS):
            shown = piece if len(piece) <= 20 else piece[:20] + "..."
            raise ValueError(f"layer selection {shown!r}: k is out of range; no model has {MAX_LAYERS} layers")
        if piece.startswith("L"):
            try:
                layer_ranges(piece)
            except EditclipError as err:
                raise ValueError(str(err)) from None
    return ",".join(pieces)


def _int_layer(value: Any) -> Any:
    return f"L{value}" if type(value) is int else value


def _existing_path(value: str) -> str:
    if not value.strip():
        raise ValueError("empty path")
    if not Path(value).exists():
        raise ValueError(f"{value} does not exist (a spec file's relative paths are read from its folder)")
    return value


def _nonempty_text(value: str) -> str:
    if not value.strip():
        raise ValueError("empty text")
    return value


HeadName = Annotated[
    str,
    AfterValidator(_head),
    WithJsonSchema({"type": "string", "pattern": HEAD_PATTERN, "examples": ["L21.H11"]}),
]
LayerSelection = Annotated[
    str,
    BeforeValidator(_int_layer),
    AfterValidator(_layer_selection),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "examples": ["L0-19", "last:4", "all"],
        }
    ),
]
ExistingPath = Annotated[str, AfterValidator(_existing_path)]
Text = Annotated[str, AfterValidator(_nonempty_text)]
PositiveInt = Annotated[int, Field(gt=0)]


def _class_list(value: Any, handler: ValidatorFunctionWrapHandler) -> list[str]:
    """Class names, or a class-source string (``imagenet``, ``imagefolder:PATH``, ``cub:PATH``) read into its
    names. Names written in the spec must be distinct; a source's names are kept as the source has them
    (open_clip's ImageNet list repeats two names), so label i is always its i-th name."""
    if isinstance(value, str):
        from ..classnames import resolve_classes

        try:
            return list(handler(resolve_classes(value)))
        except EditclipError as err:
            raise ValueError(str(err)) from None
    names = list(handler(value))
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"repeated class names: {', '.join(repeated)}")
    return names


ClassList = Annotated[
    list[Text],
    WrapValidator(_class_list),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 2},
                {"type": "string", "examples": ["imagenet", "imagefolder:data/train", "cub:CUB_200_2011"]},
            ]
        }
    ),
]


def _templates(value: Any) -> str | list[str]:
    """A template-set name, or a non-empty list of templates each with one ``{}`` for the class name."""
    if isinstance(value, str):
        if value not in TEMPLATE_SETS:
            raise ValueError(
                f"unknown template set {value!r}: use one of {', '.join(TEMPLATE_SETS)} "
                "or a list of templates such as ['a photo of a {}.']"
            )
        return value
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a template-set name ({', '.join(TEMPLATE_SETS)}) or a non-empty list of templates")
    for i, template in enumerate(value):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template [{i}] {template!r} must be a string with exactly one '{{}}' for the class name")
    return list(value)


Templates = Annotated[
    str | list[str],
    PlainValidator(_templates),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(TEMPLATE_SETS)},
                {"type": "array", "items": {"type": "string", "pattern": r"\{\}"}, "minItems": 1},
            ]
        }
    ),
]


class StrictModel(BaseModel):
    """A spec section: unknown keys refused, no type coercion, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
