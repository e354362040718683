"""One naming scheme for the parts of an image embedding, shared by specs, reports, stores and the API.

Heads are ``L{layer}.H{head}`` (0-based, as in the paper: ``L21.H11``), MLPs ``L{layer}.mlp``, the
ln_pre term ``embed``. Layer selections are ``L8``, ``L0-19``, ``last:4`` or ``all``, or several of
those joined by commas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import EditclipError

_HEAD_RE = re.compile(r"^L(\d+)\.H(\d+)$")
_MLP_RE = re.compile(r"^L(\d+)\.mlp$")
_LAYER_RE = re.compile(r"^L(\d+)(?:-(\d+))?$")
_LAST_RE = re.compile(r"^last:(\d+)$")


@dataclass(frozen=True, order=True)
class HeadRef:
    """One attention head, 0-based."""

    layer: int
    head: int

    def __str__(self) -> str:
        return head_name(self.layer, self.head)


def head_name(layer: int, head: int) -> str:
    """``L{layer}.H{head}``."""
    return f"L{layer}.H{head}"


def mlp_name(layer: int) -> str:
    """``L{layer}.mlp``."""
    return f"L{layer}.mlp"


def parse_head(text: str, n_layers: int | None = None, n_heads: int | None = None) -> HeadRef:
    """Parse ``L21.H11``; check it against the model's shape when the shape is given."""
    match = _HEAD_RE.match(str(text).strip())
    if not match:
        raise EditclipError(f"bad head name {text!r}: expected 'L<layer>.H<head>', e.g. 'L11.H3' (0-based)")
    ref = HeadRef(int(match.group(1)), int(match.group(2)))
    check_head(ref, n_layers, n_heads)
    return ref


def check_head(ref: HeadRef, n_layers: int | None, n_heads: int | None) -> None:
    """Raise unless `ref` exists in a model with `n_layers` layers of `n_heads` heads."""
    if n_layers is not None and not 0 <= ref.layer < n_layers:
        raise EditclipError(f"head {ref}: layer {ref.layer} is out of range; this model has layers 0..{n_layers - 1}")
    if n_heads is not None and not 0 <= ref.head < n_heads:
        raise EditclipError(f"head {ref}: head {ref.head} is out of range; this model has heads 0..{n_heads - 1}")


def parse_mlp(text: str, n_layers: int | None = None) -> int:
    """Parse ``L3.mlp`` into its layer index."""
    match = _MLP_RE.match(str(text).strip())
    if not match:
        raise EditclipError(f"bad MLP name {text!r}: expected 'L<layer>.mlp', e.g. 'L3.mlp'")
    layer = int(match.group(1))
    _check_layer(layer, n_layers, text)
    return layer


def parse_layers(text: str | int, n_layers: int | None = None) -> list[int]:
    """Parse a layer selection (``L8``, ``L0-19``, ``last:4``, ``all``, comma-joined) into sorted indices.

    ``last:k`` and ``all`` need `n_layers`.
    """
    if isinstance(text, int):
        text = f"L{text}"
    layers: set[int] = set()
    for piece in str(text).split(","):
        piece = piece.strip()
        if piece == "all" or (last := _LAST_RE.match(piece)):
            if n_layers is None:
                raise EditclipError(f"layer selection {piece!r} needs the model's layer count")
            k = n_layers if piece == "all" else int(last.group(1))
            if not 1 <= k <= n_layers:
                raise EditclipError(f"layer selection {piece!r}: k must be in 1..{n_layers} for this model")
            layers.update(range(n_layers - k, n_layers))
            continue
        match = _LAYER_RE.match(piece)
        if not match:
            raise EditclipError(
                f"bad layer selection {piece!r}: expected 'L<i>', 'L<i>-<j>', 'last:<k>' or 'all' (e.g. 'L0-19')"
            )
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise EditclipError(f"bad layer range {piece!r}: the end {stop} is before the start {start}")
        for layer in (start, stop):
            _check_layer(layer, n_layers, piece)
        layers.update(range(start, stop + 1))
    return sorted(layers)


def _check_layer(layer: int, n_layers: int | None, text: str) -> None:
    if n_layers is not None and not 0 <= layer < n_layers:
        raise EditclipError(f"{text!r}: layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
