"""Named capture points of the instrumented forward: intermediate tensors keyed by ``L{layer}.{kind}``.

A request is a list of names ``<layers>.<kind>`` (``L3.attn.pattern``, ``L0-5.mlp.post``, ``last:4.attn.q``,
``all.resid.post``, ``L*.attn.pattern.cls``; layer selections as in :mod:`editclip.names`) and
``pool.attn.pattern`` on attention-pooled towers. :func:`plan_capture` checks it against the tower once,
before any work; a :class:`Recorder` made from the plan is passed down :func:`editclip.vit.run`, which
hands it each tensor as the forward computes it. Captured tensors are fp32 and keyed by one name per layer
(``L3.attn.pattern``). A recorder without a plan keeps nothing and computes nothing: the forward then runs
exactly the model's own operations.

Points the forward computes anyway (residuals, q, k, v, the branch outputs, the MLP activations) are kept
as they are. ``attn.scores`` / ``attn.pattern`` are recomputed from q and k (the fused attention does not
expose them) and ``attn.ov`` from v and out_proj, only for the layers asked for.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .errors import EditclipError
from .names import parse_layers
from .tower import Block, Tower

if TYPE_CHECKING:
    from .backbone import Backbone

# kind -> shape and meaning (T tokens, W width, H heads, hd head width, M MLP width, G pool heads)
LAYER_KINDS: dict[str, str] = {
    "resid.pre": "[N, T, W] the residual stream entering the block",
    "attn.q": "[N, H, T, hd] queries (q_proj and its bias, per head)",
    "attn.k": "[N, H, T, hd] keys",
    "attn.v": "[N, H, T, hd] values",
    "attn.scores": "[N, H, T, T] q k^T / sqrt(hd) (query, source), before the softmax",
    "attn.pattern": "[N, H, T, T] attention weights (query, source), after the softmax",
    "attn.pattern.cls": "[N, H, T] the class token's row of attn.pattern (towers with a class token)",
    "attn.ov": "[N, H, T, W] each head's OV output of each source token, v W_O^h (layer scale, no bias)",
    "attn.ov.cls": "[N, H, T, W] attn.ov weighted by the class token's attention: the CLS output per source",
    "attn.out": "[N, T, W] the attention branch added to the residual (out_proj bias and layer scale included)",
    "resid.mid": "[N, T, W] the residual stream after the attention branch",
    "mlp.pre": "[N, T, M] fc1 outputs before the activation",
    "mlp.post": "[N, T, M] neuron activations (after the activation)",
    "mlp.out": "[N, T, W] the MLP branch added to the residual (layer scale included)",
    "resid.post": "[N, T, W] the residual stream leaving the block",
}
POOL_KINDS: dict[str, str] = {
    "pool.attn.pattern": "[N, G, T] the attention pool's weights over the final tokens (attention pools)",
}
ATTENTION_KINDS = frozenset(k for k in LAYER_KINDS if k.startswith("attn.") and k != "attn.out")
_CLS_KINDS = frozenset({"attn.pattern.cls", "attn.ov.cls"})
_MLP_HIDDEN = frozenset({"mlp.pre", "mlp.post"})


@dataclass(frozen=True)
class CapturePlan:
    """A checked request: the kinds wanted per layer, the pool points, and the names in request order."""

    layers: dict[int, frozenset[str]] = field(default_factory=dict)
    pool: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.names)


def capture_name(layer: int, kind: str) -> str:
    """``L{layer}.{kind}``."""
    return f"L{layer}.{kind}"


def plan_capture(request: str | Iterable[str] | CapturePlan | None, tower: Tower) -> CapturePlan:
    """Check ``request`` against ``tower`` and expand its layer selections; an empty plan for None/[]."""
    if isinstance(request, CapturePlan):
        return request
    if request is None:
        return CapturePlan()
    if isinstance(request, str):
        request = [request]
    n_layers = len(tower.blocks)
    layers: dict[int, set[str]] = {}
    pool: set[str] = set()
    names: list[str] = []
    for text in request:
        if not isinstance(text, str):
            raise EditclipError(f"capture names must be strings like 'L3.attn.pattern'; got {text!r}")
        name = text.strip()
        if name in POOL_KINDS:
            _check_pool(name, tower)
            pool.add(name)
            names.append(name)
            continue
        selection, kind = _split(name)
        _check_kind(name, kind, tower)
        try:
            chosen = parse_layers("all" if selection == "L*" else selection, n_layers)
        except EditclipError as err:
            raise EditclipError(f"capture point {name!r}: {err}") from None
        for layer in chosen:
            layers.setdefault(layer, set()).add(kind)
            names.append(capture_name(layer, kind))
    per_layer = {layer: frozenset(kinds) for layer, kinds in sorted(layers.items())}
    return CapturePlan(per_layer, frozenset(pool), tuple(dict.fromkeys(names)))


def _split(name: str) -> tuple[str, str]:
    if name in LAYER_KINDS:
        raise EditclipError(f"capture point {name!r} names no layer: write e.g. 'L3.{name}', 'last:2.{name}' "
                            f"or 'L*.{name}'")  # fmt: skip
    selection, dot, kind = name.partition(".")
    if not dot or not selection or kind not in LAYER_KINDS:
        raise EditclipError(_unknown(name, selection, kind))
    return selection, kind


def _unknown(name: str, selection: str, kind: str) -> str:
    if "," in kind:
        return f"capture point {name!r}: give several capture points as separate names, not joined by commas"
    close = [f"{selection}.{k}" for k in difflib.get_close_matches(kind, list(LAYER_KINDS), n=1)] if kind else []
    close = close or difflib.get_close_matches(name, list(POOL_KINDS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (f"unknown capture point {name!r}{hint}: expected '<layers>.<kind>' with layers L3, L0-5, last:4, "
            f"all or L*, and kind one of {', '.join(LAYER_KINDS)}; or {', '.join(POOL_KINDS)}")  # fmt: skip


def _check_kind(name: str, kind: str, tower: Tower) -> None:
    if kind in _CLS_KINDS and tower.class_embedding is None:
        full = kind.removesuffix(".cls")
        raise EditclipError(f"capture point {name!r}: this tower has no class token (it pools with "
                            f"{tower.pool!r}); capture {full!r} (every query row) instead")  # fmt: skip


def _check_pool(name: str, tower: Tower) -> None:
    if tower.readout is None or tower.readout.attention is None:
        how = "its class token" if tower.readout is None else "a mean over tokens"
        raise EditclipError(f"capture point {name!r} needs an attention-pooled tower (SigLIP); this one reads {how}")


def point_shape(name: str, tower: Tower) -> tuple[int, ...]:
    """The shape of one image's tensor of the (expanded, checked) capture point ``name``, e.g. (H, T, T)."""
    tokens, width = tower.pos_embedding.shape[0], tower.width
    if name in POOL_KINDS:
        return tower.readout.attention.heads, tokens
    layer, kind = name.split(".", 1)
    block = tower.blocks[int(layer[1:])]
    heads = block.heads
    shapes = {"attn.q": (heads, tokens, width // heads), "attn.scores": (heads, tokens, tokens),
              "attn.pattern.cls": (heads, tokens), "attn.ov": (heads, tokens, width),
              "mlp.pre": (tokens, block.fc1_weight.shape[0])}  # fmt: skip
    same = {"attn.k": "attn.q", "attn.v": "attn.q", "attn.pattern": "attn.scores", "attn.ov.cls": "attn.ov",
            "mlp.post": "mlp.pre"}  # fmt: skip
    return shapes.get(same.get(kind, kind), (tokens, width))


def capture_bytes(plan: CapturePlan, tower: Tower) -> int:
    """Bytes one image's captured tensors take (fp32)."""
    return sum(4 * math.prod(point_shape(name, tower)) for name in plan.names)


class Recorder:
    """Keeps the tensors a :class:`CapturePlan` asks for as the forward hands them over (``captured``).

    The forward calls it at every capture site; with an empty plan each call returns at once and the MLP
    runs as :meth:`Block.mlp` does.
    """

    def __init__(self, plan: CapturePlan | None = None) -> None:
        self.plan = plan or CapturePlan()
        self.captured: dict[str, Tensor] = {}

    def _wants(self, layer: int) -> frozenset[str]:
        return self.plan.layers.get(layer, frozenset())

    def _keep(self, layer: int, kind: str, tensor: Tensor) -> None:
        self.captured[capture_name(layer, kind)] = tensor.float()

    def resid(self, layer: int, stage: str, x: Tensor) -> None:
        """The residual stream [N, T, W] at ``stage`` ("pre", "mid", "post") of block ``layer``."""
        if f"resid.{stage}" in self._wants(layer):
            self._keep(layer, f"resid.{stage}", x)

    def attention(self, layer: int, block: Block, q: Tensor, k: Tensor, v: Tensor) -> None:
        """q, k, v [N, H, T, hd] of block ``layer``, and what is recomputed from them."""
        wants = self._wants(layer) & ATTENTION_KINDS
        if not wants:
            return
        for kind, tensor in (("attn.q", q), ("attn.k", k), ("attn.v", v)):
            if kind in wants:
                self._keep(layer, kind, tensor)
        if wants & {"attn.scores", "attn.pattern", *_CLS_KINDS}:
            rows = q if wants & {"attn.scores", "attn.pattern"} else q[:, :, :1]  # the CLS row is enough for .cls
            scores = (rows.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
            pattern = scores.softmax(-1)
            if "attn.scores" in wants:
                self.captured[capture_name(layer, "attn.scores")] = scores
            if "attn.pattern" in wants:
                self.captured[capture_name(layer, "attn.pattern")] = pattern
            if "attn.pattern.cls" in wants:
                self.captured[capture_name(layer, "attn.pattern.cls")] = pattern[:, :, 0]
        if wants & {"attn.ov", "attn.ov.cls"}:
            ov = head_ov(block, v)
            if "attn.ov" in wants:
                self.captured[capture_name(layer, "attn.ov")] = ov
            if "attn.ov.cls" in wants:
                self.captured[capture_name(layer, "attn.ov.cls")] = ov * pattern[:, :, 0, :, None]

    def attn_out(self, layer: int, out: Tensor) -> None:
        """The attention branch [N, T, W] of block ``layer``."""
        if "attn.out" in self._wants(layer):
            self._keep(layer, "attn.out", out)

    def mlp(self, layer: int, block: Block, x: Tensor) -> Tensor:
        """The MLP branch of block ``layer`` on the stream ``x`` (as :meth:`Block.mlp`), keeping its points."""
        wants = self._wants(layer)
        if not wants & _MLP_HIDDEN:
            m = block.mlp(x)
        else:
            pre, post = block.mlp_hidden(x)
            for kind, tensor in (("mlp.pre", pre), ("mlp.post", post)):
                if kind in wants:
                    self._keep(layer, kind, tensor)
            m = block.mlp_out(post)
        if "mlp.out" in wants:
            self._keep(layer, "mlp.out", m)
        return m

    def pool(self, attn: Tensor | None) -> None:
        """The attention pool's weights [N, G, T] (None for mean pools)."""
        if "pool.attn.pattern" in self.plan.pool and attn is not None:
            self.captured["pool.attn.pattern"] = attn.float()

    def result(self) -> dict[str, Tensor]:
        """The captured tensors in request order."""
        return {name: self.captured[name] for name in self.plan.names}


def head_ov(block: Block, v: Tensor) -> Tensor:
    """[N, H, T, W] each head's out_proj image of each token's value (LayerScale applied, bias left out)."""
    n_heads, head_dim = v.shape[1], v.shape[3]
    w_o = block.out_weight.float().t().reshape(n_heads, head_dim, -1)  # [H, hd, W]
    if block.ls_1 is not None:
        w_o = w_o * block.ls_1.float()
    return torch.einsum("nhtk,hkw->nhtw", v.float(), w_o)


def concat_captured(parts: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Join the captures of consecutive batches."""
    if not parts or not parts[0]:
        return {}
    return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}


@torch.no_grad()
def capture_images(bb: Backbone, images: Tensor, names: Iterable[str], batch_size: int = 64) -> dict[str, Tensor]:
    """The capture points ``names`` of ``bb``'s image tower on ``images`` [N, 3, H, W], in batches (no parts)."""
    from .vit import run  # vit hands its forward's tensors to a Recorder, so it imports this module

    if images.ndim != 4:
        raise EditclipError(f"images must be a [N, 3, H, W] tensor; got shape {list(images.shape)}")
    if batch_size <= 0:
        raise EditclipError(f"batch_size must be positive, got {batch_size}")
    tower = bb.tower
    plan = plan_capture(names, tower)
    if not plan:
        raise EditclipError("nothing to capture: name at least one capture point, e.g. 'L0.attn.pattern'")
    batches = []
    for start in range(0, images.shape[0], batch_size):
        recorder = Recorder(plan)
        run(tower, images[start : start + batch_size].to(bb.device), parts=False, recorder=recorder)
        batches.append(recorder.result())
    return concat_captured(batches)
