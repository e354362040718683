"""One naming scheme for the parts of an image embedding, shared by specs, reports, stores and the API.

Heads are ``L{layer}.H{head}`` (0-based, as in the paper: ``L21.H11``), MLPs ``L{layer}.mlp``, the
ln_pre term ``embed``, the part of a layer's heads read from the CLS token itself ``L{layer}.attn.cls``
(the CLS-source attention); ``L{layer}.attn`` is the sum of a layer's heads (what a layer-subset store
keeps of the layers outside its ``--layers``). Attention-pooled towers (SigLIP) add the pool's MLP
``pool.mlp`` and, in the official convention, the pool's heads ``pool.H{head}``. Layer selections are ``L8``, ``L0-19``,
``last:4`` or ``all``, or several of those joined by commas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import EditclipError

# ASCII digits only: in a str pattern \d would also match full-width and other Unicode digits.
_HEAD_RE = re.compile(r"^L([0-9]+)\.H([0-9]+)$")
_MLP_RE = re.compile(r"^L([0-9]+)\.mlp$")
_CLS_SOURCE_RE = re.compile(r"^L([0-9]+)\.attn\.cls$")
_LAYER_RE = re.compile(r"^L([0-9]+)(?:-([0-9]+))?$")
_LAST_RE = re.compile(r"^last:([0-9]+)$")
_POOL_HEAD_RE = re.compile(r"^pool\.H([0-9]+)$")
POOL_MLP = "pool.mlp"
MAX_LAYERS = 10_000
"""No model has more layers; bounds layer indices when the model's layer count is not known."""
MAX_HEADS = 10_000
"""No layer has more heads; bounds head indices when the model's head count is not known."""


@dataclass(frozen=True, order=True)
class HeadRef:
    """One attention head, 0-based."""

    layer: int
    head: int

    def __str__(self) -> str:
        return head_name(self.layer, self.head)


@dataclass(frozen=True, order=True)
class PoolHeadRef:
    """One head of a tower's attention pool, 0-based."""

    head: int

    def __str__(self) -> str:
        return pool_head_name(self.head)


def pool_head_name(head: int) -> str:
    """``pool.H{head}``."""
    return f"pool.H{head}"


def parse_pool_head(text: str, n_heads: int | None = None) -> PoolHeadRef:
    """Parse ``pool.H3``; check it against the pool's head count when given."""
    match = _POOL_HEAD_RE.match(str(text).strip())
    if not match:
        raise EditclipError(f"bad pool head name {text!r}: expected 'pool.H<head>', e.g. 'pool.H3' (0-based)")
    ref = PoolHeadRef(int(match.group(1)))
    if n_heads is not None and not 0 <= ref.head < n_heads:
        raise EditclipError(f"pool head {ref}: head {ref.head} is out of range; this pool has heads 0..{n_heads - 1}")
    return ref


def head_name(layer: int, head: int) -> str:
    """``L{layer}.H{head}``."""
    return f"L{layer}.H{head}"


def mlp_name(layer: int) -> str:
    """``L{layer}.mlp``."""
    return f"L{layer}.mlp"


def cls_source_name(layer: int) -> str:
    """``L{layer}.attn.cls``: what the layer's heads read from the CLS token itself."""
    return f"L{layer}.attn.cls"


def parse_cls_source(text: str, n_layers: int | None = None) -> int | None:
    """The layer of a CLS-source part name ``L3.attn.cls``; None for any other name."""
    match = _CLS_SOURCE_RE.match(str(text).strip())
    if not match:
        return None
    layer = _index(match.group(1), text)
    _check_layer(layer, n_layers, repr(text))
    return layer


def parse_head(text: str, n_layers: int | None = None, n_heads: int | None = None) -> HeadRef:
    """Parse ``L21.H11``; check it against the model's shape when the shape is given."""
    match = _HEAD_RE.match(str(text).strip())
    if not match:
        raise EditclipError(f"bad head name {text!r}: expected 'L<layer>.H<head>', e.g. 'L11.H3' (0-based)")
    ref = HeadRef(_index(match.group(1), text), _index(match.group(2), text))
    check_head(ref, n_layers, n_heads)
    return ref


def check_head(ref: HeadRef, n_layers: int | None, n_heads: int | None) -> None:
    """Raise unless `ref` exists in a model with `n_layers` layers of `n_heads` heads (or, for an unknown
    count, within :data:`MAX_LAYERS` / :data:`MAX_HEADS`)."""
    _check_layer(ref.layer, n_layers, f"head {ref}")
    if n_heads is not None and not 0 <= ref.head < n_heads:
        raise EditclipError(f"head {ref}: head {ref.head} is out of range; this model has heads 0..{n_heads - 1}")
    if n_heads is None and ref.head >= MAX_HEADS:
        raise EditclipError(f"head {ref}: head {ref.head} is out of range; no model has {MAX_HEADS} heads a layer")


def parse_mlp(text: str, n_layers: int | None = None) -> int:
    """Parse ``L3.mlp`` into its layer index."""
    match = _MLP_RE.match(str(text).strip())
    if not match:
        raise EditclipError(f"bad MLP name {text!r}: expected 'L<layer>.mlp', e.g. 'L3.mlp'")
    layer = _index(match.group(1), text)
    _check_layer(layer, n_layers, repr(text))
    return layer


def layer_ranges(text: str | int, n_layers: int | None = None) -> list[tuple[int, int]]:
    """The ``(start, stop)`` ranges (stop exclusive) of a layer selection, checked against `n_layers` (or
    :data:`MAX_LAYERS` when the count is not known) before any index list is built.

    ``last:k`` and ``all`` need `n_layers`.
    """
    if isinstance(text, int):
        text = f"L{text}"
    ranges: list[tuple[int, int]] = []
    for piece in str(text).split(","):
        piece = piece.strip()
        if piece == "all" or (last := _LAST_RE.match(piece)):
            if n_layers is None:
                raise EditclipError(f"layer selection {piece!r} needs the model's layer count")
            k = n_layers if piece == "all" else _index(last.group(1), piece)
            if not 1 <= k <= n_layers:
                raise EditclipError(f"layer selection {piece!r}: k must be in 1..{n_layers} for this model")
            ranges.append((n_layers - k, n_layers))
            continue
        match = _LAYER_RE.match(piece)
        if not match:
            raise EditclipError(
                f"bad layer selection {piece!r}: expected 'L<i>', 'L<i>-<j>', 'last:<k>' or 'all' (e.g. 'L0-19')"
            )
        start = _index(match.group(1), piece)
        stop = _index(match.group(2), piece) if match.group(2) is not None else start
        if stop < start:
            raise EditclipError(f"bad layer range {piece!r}: the end {stop} is before the start {start}")
        for layer in (start, stop):
            _check_layer(layer, n_layers, repr(piece))
        ranges.append((start, stop + 1))
    return ranges


def parse_layers(text: str | int, n_layers: int | None = None) -> list[int]:
    """Parse a layer selection (``L8``, ``L0-19``, ``last:4``, ``all``, comma-joined) into sorted indices.

    ``last:k`` and ``all`` need `n_layers`; every index is checked before the list is built.
    """
    return sorted({layer for start, stop in layer_ranges(text, n_layers) for layer in range(start, stop)})


def format_layers(layers: list[int] | tuple[int, ...]) -> str:
    """A sorted layer list as a selection: ``[0, 1, 2, 5]`` -> ``L0-2,L5`` (``parse_layers`` reads it back)."""
    pieces: list[str] = []
    ordered = sorted(set(layers))
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            a, b = ordered[start], ordered[i - 1]
            pieces.append(f"L{a}" if a == b else f"L{a}-{b}")
            start = i
    return ",".join(pieces) or "(none)"


def _index(digits: str, text: object) -> int:
    """A layer or head index from ASCII digits; more digits than any model needs are refused before
    conversion (Python refuses to convert very long digit strings)."""
    if len(digits) > 9:
        shown = digits if len(digits) <= 12 else digits[:12] + "..."
        raise EditclipError(f"{text!r}: index {shown} is far out of range for any model")
    return int(digits)


def _check_layer(layer: int, n_layers: int | None, what: str) -> None:
    if n_layers is not None and not 0 <= layer < n_layers:
        raise EditclipError(f"{what}: layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
    if n_layers is None and layer >= MAX_LAYERS:
        raise EditclipError(f"{what}: layer {layer} is out of range; no model has {MAX_LAYERS} layers")
