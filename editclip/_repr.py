"""One-line reprs for result dataclasses: tensors and arrays by shape, never by value."""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def shapes_repr(obj: Any) -> str:
    """``Name(field=[N, D] float32, other=value, ...)`` for a dataclass instance."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and hasattr(value, "dtype"):
            dtype = str(value.dtype).removeprefix("torch.")
            parts.append(f"{f.name}=[{', '.join(map(str, shape))}] {dtype}")
        else:
            parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"
