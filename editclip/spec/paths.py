"""Where a spec's relative paths point, and ``--set`` overrides.

A spec file is portable: every relative path in it (model checkpoint and config, a pretrained tag that is a
checkpoint file, data roots, pool files, the export folder) is read from the spec file's own folder, so
``editclip run path/to/spec.yaml`` means the same from any working folder. Overrides given on the command
line (``--set calibration.data.root=data/wb``) are the user's own words: their relative paths are read
from the working folder. Both happen on the raw data, before validation, so overridden values are checked
exactly like the file's.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .._constants import POOLS
from ..errors import EditclipError
from .model import CHECKPOINT_SUFFIXES

# Fields that hold paths, as key paths into the spec ("*" = every item of a list).
PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    ("model", "checkpoint"),
    ("model", "config"),
    ("model", "pretrained"),
    ("calibration", "data", "root"),
    ("evaluate", "data", "root"),
    ("export", "dir"),
    ("edits", "*", "project", "onto", "textspan", "pool"),
    ("edits", "*", "project", "away_from", "textspan", "pool"),
)


def _is_path(field: tuple[str, ...], value: str) -> bool:
    """Whether ``value`` of ``field`` names a file or folder (not a pretrained tag or a shipped pool)."""
    if field[-1] == "pretrained":
        return value.endswith(CHECKPOINT_SUFFIXES)
    if field[-1] == "pool":
        return value not in POOLS
    return True


def _matches(field: tuple[str, ...], keys: tuple[str, ...]) -> bool:
    return len(field) == len(keys) and all(f in ("*", k) for f, k in zip(field, keys, strict=True))


def _resolve(value: Any, keys: tuple[str, ...], folder: Path) -> Any:
    if not isinstance(value, str) or not value.strip() or Path(value).expanduser().is_absolute():
        return value
    if any(_matches(f, keys) and _is_path(f, value) for f in PATH_FIELDS):
        # lexically: `specs/../data` is `data` even when `specs` is a link to a folder elsewhere
        return os.path.normpath(folder / value)
    return value


def anchor_paths(data: Any, folder: str | Path) -> Any:
    """A copy of raw spec data with its relative paths joined to ``folder`` (the spec file's folder)."""
    folder = Path(folder)

    def walk(node: Any, keys: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*keys, str(k))) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*keys, str(i))) for i, v in enumerate(node)]
        return _resolve(node, keys, folder)

    return walk(data, ())


def apply_overrides(data: Any, overrides: Sequence[str]) -> tuple[Any, dict[str, Any]]:
    """``data`` with each ``key.path=value`` set (value read as YAML, list items by index: ``edits.0``);
    relative paths in the values are read from the working folder. Returns the new data and the overrides
    as ``{key.path: value}`` for the report."""
    data = copy.deepcopy(data) if data is not None else {}
    if not isinstance(data, dict):
        raise EditclipError("the spec is not a mapping; --set needs one")
    applied: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        keys = tuple(k.strip() for k in key.split("."))
        if not sep or not all(keys):
            raise EditclipError(f"--set {item!r}: expected FIELD.PATH=VALUE, e.g. model.pretrained=laion2b_s34b_b88k")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError as err:
            raise EditclipError(f"--set {item!r}: the value is not valid YAML ({err})") from None
        value = _resolve(value, keys, Path.cwd())
        node = data
        for depth, k in enumerate(keys[:-1]):
            node = _child(node, k, keys[: depth + 1], item)
        _assign(node, keys[-1], value, item)
        applied[".".join(keys)] = value
    return data, applied


def _child(node: Any, key: str, where: tuple[str, ...], item: str) -> Any:
    if isinstance(node, list):
        index = _index(node, key, where, item)
        return node[index]
    if not isinstance(node, dict):
        raise EditclipError(f"--set {item!r}: {'.'.join(where[:-1])} is not a section")
    return node.setdefault(key, {})


def _assign(node: Any, key: str, value: Any, item: str) -> None:
    if isinstance(node, list):
        node[_index(node, key, (key,), item)] = value
    elif isinstance(node, dict):
        node[key] = value
    else:
        raise EditclipError(f"--set {item!r}: the field above {key!r} is not a section")


def _index(node: list[Any], key: str, where: tuple[str, ...], item: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise EditclipError(f"--set {item!r}: {'.'.join(where)} is not an item of a {len(node)}-item list")
    return int(key)
