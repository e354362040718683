"""Spec problems: each with the field's path (``edits[2].project.head``), its line in the YAML file when
known, and a message; all of them rendered as one :class:`~editclip.errors.EditclipError`."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel

from ..errors import EditclipError

Lines = dict[tuple[Any, ...], int]
"""The 1-based line of each mapping key and sequence item of a YAML file, by its path."""

_MISSING = object()
_MESSAGES = {
    "missing": "required field missing",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
}


class Problem(NamedTuple):
    """One problem at one place of a spec."""

    loc: tuple[Any, ...]
    msg: str
    value: Any = _MISSING
    line: int | None = None  # when the loc alone does not tell (a repeated key)

    @classmethod
    def from_pydantic(cls, error: Any, root: type[BaseModel]) -> Problem:
        """The problem of one pydantic error of validating `root`."""
        loc, kind = tuple(error["loc"]), error["type"]
        if kind == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model is not None else ""
            return cls(loc, f"unknown key{allowed}")
        msg = _MESSAGES.get(kind, error["msg"]).removeprefix("Value error, ")
        return cls(loc, msg, _MISSING if kind == "missing" else error.get("input", _MISSING))

    def line_in(self, lines: Lines) -> int | None:
        """The line of the problem's field (or of the nearest enclosing one)."""
        if self.line is not None:
            return self.line
        for end in range(len(self.loc), -1, -1):
            if self.loc[:end] in lines:
                return lines[self.loc[:end]]
        return None

    def render(self, lines: Lines) -> str:
        """``path (line N): message; got VALUE``."""
        where = _path_str(self.loc)
        line = self.line_in(lines)
        if line is not None:
            where += f" (line {line})"
        text = f"{where}: {self.msg}"
        if self.value is not _MISSING:
            shown = repr(self.value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            if shown not in self.msg and not isinstance(self.value, dict):
                text += f"; got {shown}"
        return text


def raise_problems(problems: list[Problem], source: str | None, lines: Lines) -> None:
    """Raise one error listing every problem, in file order when lines are known; nothing when none."""
    if not problems:
        return
    if lines:
        problems = sorted(problems, key=lambda p: p.line_in(lines) or 0)
    head = f"invalid edit spec{' ' + source if source else ''}"
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    body = "\n".join("  " + p.render(lines) for p in problems)
    raise EditclipError(f"{head} ({count}):\n{body}")


def _path_str(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "spec"


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model class that validates the value at `loc` (to list its allowed keys)."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int) and typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp
