"""Random-head controls: does the edit beat the same edit applied to k heads drawn at random?

For an edit that mean-ablates (or projects along the same texts) a set of k heads, R random sets of k heads
are drawn (seeded; by default from the layers of the edit's own heads; never the edit's own set; distinct),
the same action is applied to each, and every metric of the group report is summarised over them: best,
median, 90th percentile, and the edit's rank (1 = better than every control).

**Cost.** The zero-shot prediction is ``argmax_c z'.w_c`` (the classifier compares cosines, and dividing
z' by its norm, a positive number per image, changes no argmax, so no norm needs recomputing). The class
scores are linear in the parts: editing head j adds ``delta_j(x) = (c_j(x) (A - I) + beta_j) W^T`` (mean-
ablation: A = 0, beta_j = E[c_j]). So one pass over the stored decomposition computes ``z W^T`` and every
candidate head's [N, C] delta once; a head set's scores are the base scores plus the sum of its heads'
deltas (and, for mean-ablation, a fully ablated layer's out_proj bias delta, as :func:`compile_edit
<editclip.compile>` does). All R sets and the edit itself are scored from the same deltas in float64:
about the cost of one fast-path evaluation, not R.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .edited import EditTensors
from .errors import EditclipError
from .evaluate import GroupReport
from .evaluation_paths import Targets
from .names import format_layers, head_name, parse_layers
from .stats import PartStats
from .store import DecompositionStore

METRICS = ("acc_wg", "acc_avg", "acc_mean_group", "adj_acc_avg")
_SCORE_BYTES = 256 * 2**20  # memory for the class scores of the head sets scored together


@dataclass(frozen=True)
class ControlSettings:
    """How many random head sets, the seed, and the layers they are drawn from (``same``: the edit's layers,
    or a selection such as ``all``, ``last:4``, ``L8-11``)."""

    random_heads: int = 20
    seed: int = 0
    layers: str = "same"

    def __post_init__(self) -> None:
        if self.random_heads < 1:
            raise EditclipError(f"random_heads must be at least 1, got {self.random_heads}")


@dataclass(frozen=True)
class HeadAction:
    """What an edit does to each of its heads: mean-ablation (``linear`` None) or c' = mean + (c - mean) A."""

    kind: Literal["mean_ablate", "project"]
    linear: Tensor | None = None  # [D, D] in the row-vector convention of EditTensors


def head_action(edit: EditTensors) -> tuple[list[int], HeadAction]:
    """The edit's heads (flat indices) and the one action they all take; refuse edits a control cannot copy."""
    if (edit.ablate_mlps.numel() or bool(edit.ablate_embed) or edit.embedding_projector.numel()
            or edit.ablate_cls_source.numel()):  # fmt: skip
        raise EditclipError("random-head controls copy an edit of heads; this edit also changes MLPs, the "
                            "embedding term, the CLS-source attention or the whole embedding")  # fmt: skip
    ablated, projected = edit.ablate_heads.tolist(), edit.project_heads.tolist()
    if ablated and projected:
        raise EditclipError("random-head controls copy one action; this edit both mean-ablates and projects heads")
    if ablated:
        return ablated, HeadAction("mean_ablate")
    if not projected:
        raise EditclipError("the edit changes no head: nothing for a random-head control to copy")
    linear = edit.project_linear
    if not torch.allclose(linear, linear[:1].expand_as(linear), atol=1e-6):
        raise EditclipError("random-head controls need one projection for all heads (a basis of texts); this edit "
                            "projects heads onto bases of their own (TextSpan)")  # fmt: skip
    return projected, HeadAction("project", linear[0])


@dataclass(frozen=True)
class CalibrationMeans:
    """The calibration means a control needs: every head's [L, H, D] and every out_proj bias part's [L, D];
    ``head_layers`` are the layers of ``heads`` when it holds fewer than all (a layer-subset store)."""

    heads: Tensor
    biases: Tensor
    head_layers: tuple[int, ...] | None = None

    @classmethod
    def of(cls, store: DecompositionStore | PartStats) -> CalibrationMeans:
        """The means of an exact-convention store or statistics, as :func:`compile_edit <editclip.compile>` takes
        them (statistics sum every head)."""
        _check_exact(store)
        held = tuple(store.head_layers) if isinstance(store, DecompositionStore) and store.summed_layers else None
        return cls(store.mean("heads"), store.mean("biases"), held)

    def head_rows(self, heads: Sequence[int], n_heads: int) -> list[int]:
        """Rows of ``heads.flatten(0, 1)`` for flat model head indices; refuses heads these means do not hold."""
        if self.head_layers is None:
            return list(heads)
        missing = sorted({h // n_heads for h in heads} - set(self.head_layers))
        if missing:
            raise EditclipError(
                f"the calibration means hold the heads of layers {format_layers(self.head_layers)} only (a "
                f"layer-subset store); the controls need the heads of {format_layers(missing)}"
            )
        return [self.head_layers.index(h // n_heads) * n_heads + h % n_heads for h in heads]


def _check_exact(store: DecompositionStore) -> None:
    if store.convention != "exact":
        raise EditclipError(f"store {str(store.root)!r} uses the {store.convention!r} convention; controls need "
                            "'exact' parts")  # fmt: skip


def draw_head_sets(
    pool: Sequence[int], k: int, count: int, exclude: Sequence[int], seed: int
) -> tuple[list[tuple[int, ...]], int]:
    """Up to ``count`` distinct sorted sets of ``k`` heads from ``pool``, none equal to ``exclude``, seeded; and
    how many such sets exist (fewer than ``count`` are returned only when fewer exist)."""
    pool = sorted(set(pool))
    if k < 1 or k > len(pool):
        raise EditclipError(f"cannot draw sets of {k} heads from a pool of {len(pool)}")
    own = tuple(sorted(exclude))
    available = math.comb(len(pool), k) - (1 if set(own) <= set(pool) and len(own) == k else 0)
    if available < 1:
        raise EditclipError(f"every set of {k} heads from these {len(pool)} is the edit's own; draw from more layers "
                            "(controls layers: all)")  # fmt: skip
    rng = np.random.default_rng(seed)
    if available <= 4 * count:
        every = [s for s in itertools.combinations(pool, k) if s != own]
        chosen = sorted(rng.choice(len(every), size=min(count, len(every)), replace=False).tolist())
        return [every[i] for i in chosen], available
    sets: list[tuple[int, ...]] = []
    seen = {own}
    while len(sets) < count:
        s = tuple(sorted(int(h) for h in rng.choice(pool, size=k, replace=False)))
        if s not in seen:
            seen.add(s)
            sets.append(s)
    return sets, available


@torch.no_grad()
def head_set_scores(
    evaluation: DecompositionStore,
    calibration: DecompositionStore | CalibrationMeans,
    sets: Sequence[Sequence[int]],
    action: HeadAction,
    classifier: Tensor,
    *,
    progress: bool = True,
    keep_scores: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Predictions [S, N] (and, with ``keep_scores``, float64 class scores [S, N, C]) of the edit ``action``
    applied to each head set (flat indices), means from ``calibration``, on the images of ``evaluation``."""
    _check_exact(evaluation)
    means = calibration if isinstance(calibration, CalibrationMeans) else CalibrationMeans.of(calibration)
    n_layers, n_heads = int(evaluation.meta["shape"]["layers"]), int(evaluation.meta["shape"]["heads"])
    used = sorted({h for s in sets for h in s})
    column = {h: j for j, h in enumerate(used)}
    member = torch.zeros(len(sets), len(used), dtype=torch.float64)
    for i, s in enumerate(sets):
        member[i, [column[h] for h in s]] = 1.0
    w = classifier.double().t()  # [D, C]
    dim = w.shape[0]
    head_means = means.heads.flatten(0, 1)[means.head_rows(used, n_heads)].double()  # [J, D]
    stored = _stored_heads(evaluation, used, n_heads)
    a = torch.zeros(dim, dim, dtype=torch.float64) if action.linear is None else action.linear.double()
    to_delta = (a - torch.eye(dim, dtype=torch.float64)) @ w  # [D, C]
    offsets = (head_means - head_means @ a) @ w  # [J, C]
    full = torch.zeros(len(sets), n_layers, dtype=torch.float64)  # layers whose every head a set mean-ablates
    if action.kind == "mean_ablate":
        for i, s in enumerate(sets):
            for layer in range(n_layers):
                full[i, layer] = float(all(layer * n_heads + h in s for h in range(n_heads)))
    bias_offsets = means.biases.double() @ w if bool(full.any()) else None  # [L, C]

    preds, scores = [], []
    for chunk in tqdm(range(evaluation.n_chunks), desc="random-head controls", unit="chunk",
                      disable=not progress or evaluation.n_chunks < 2):  # fmt: skip
        rows = evaluation.chunk_range(chunk)
        base = evaluation.read("embedding", rows=rows).double() @ w  # [n, C]
        parts = evaluation.read("heads", rows=rows).flatten(1, 2)[:, stored].double()  # [n, J, D]
        deltas = parts @ to_delta + offsets  # [n, J, C]
        bias_deltas = None
        if bias_offsets is not None:
            bias_deltas = bias_offsets[None] - evaluation.read("biases", rows=rows).double() @ w  # [n, L, C]
        step = max(1, _SCORE_BYTES // (8 * base.numel()))  # sets scored at once: [step, n, C] float64 in budget
        chunk_preds, chunk_scores = [], []
        for first in range(0, len(sets), step):
            s = base[None] + torch.einsum("sj,njc->snc", member[first : first + step], deltas)
            if bias_deltas is not None:
                s = s + torch.einsum("sl,nlc->snc", full[first : first + step], bias_deltas)
            chunk_preds.append(s.argmax(-1))
            if keep_scores:
                chunk_scores.append(s)
        preds.append(torch.cat(chunk_preds))
        if keep_scores:
            scores.append(torch.cat(chunk_scores))
    return torch.cat(preds, dim=1), torch.cat(scores, dim=1) if keep_scores else None


def _stored_heads(store: DecompositionStore, heads: Sequence[int], n_heads: int) -> list[int]:
    """Where flat model head indices are in the store's flattened ``heads`` (a layer-subset store holds fewer)."""
    layers = store.head_positions(sorted({h // n_heads for h in heads}), "the controls")
    position = dict(zip(sorted({h // n_heads for h in heads}), layers, strict=True))
    return [position[h // n_heads] * n_heads + h % n_heads for h in heads]


@dataclass(frozen=True)
class ControlResult:
    """The edit's group report beside those of the random head sets, and the summary per metric."""

    settings: ControlSettings
    action: str
    k: int
    layers: tuple[int, ...]
    pool: int
    available: int
    edit_heads: tuple[str, ...]
    sets: tuple[tuple[str, ...], ...]
    edit: GroupReport
    controls: tuple[GroupReport, ...]

    def values(self, metric: str) -> list[float]:
        """The metric (a key of :meth:`GroupReport.as_dict`) over the random sets."""
        return [float(r.as_dict()[metric]) for r in self.controls if metric in r.as_dict()]

    def summary(self) -> dict[str, dict[str, float | int]]:
        """Per metric: the edit's value; best, median, 90th percentile and worst of the controls; the edit's
        rank among the edit and the controls (1 = best; ties counted in the edit's favour); and the share
        of controls at least as good as the edit, (1 + #controls >= edit) / (1 + R)."""
        flat = self.edit.as_dict()
        keys = [m for m in METRICS if m in flat] + [k for k in flat if k.startswith("acc_") and k not in METRICS]
        out = {}
        for key in keys:
            values = np.array(self.values(key))
            mine = float(flat[key])
            out[key] = {
                "edit": mine,
                "best": float(values.max()),
                "median": float(np.median(values)),
                "p90": float(np.percentile(values, 90)),
                "worst": float(values.min()),
                "rank": int(1 + (values > mine + 1e-12).sum()),
                "of": len(values) + 1,
                "p_value": float((1 + (values >= mine - 1e-12).sum()) / (len(values) + 1)),
            }
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON form (report.json ``evaluation.controls``)."""
        return {
            "random_heads": self.settings.random_heads,
            "drawn": len(self.sets),
            "distinct_sets_available": self.available,
            "seed": self.settings.seed,
            "layers": self.settings.layers,
            "drawn_from_layers": list(self.layers),
            "pool_heads": self.pool,
            "k": self.k,
            "action": self.action,
            "edit_heads": list(self.edit_heads),
            "metrics": self.summary(),
            "sets": [
                {"heads": list(s), **{m: r.as_dict()[m] for m in METRICS if m in r.as_dict()}}
                for s, r in zip(self.sets, self.controls, strict=True)
            ],
        }

    def describe(self) -> str:
        """One line for logs, e.g. ``worst group 80.0 vs 20 random sets of 4 heads: median 55.0, ...``."""
        s = self.summary()["acc_wg"]
        return (f"worst group {100 * s['edit']:.1f} vs {len(self.sets)} random sets of {self.k} heads from "
                f"layers {','.join(map(str, self.layers))}: median {100 * s['median']:.1f}, 90th percentile "
                f"{100 * s['p90']:.1f}, best {100 * s['best']:.1f}; rank {s['rank']} of {s['of']}")  # fmt: skip


def control_pool(
    heads: Sequence[int], layers: str, n_layers: int, n_heads: int, held: Sequence[int] | None = None
) -> tuple[list[int], list[int]]:
    """The layers controls draw from (``same``: the layers of ``heads``) and their heads (flat indices); with
    ``held`` (the head layers of a layer-subset store), ``all`` means those and other layers are refused."""
    chosen = sorted({h // n_heads for h in heads}) if layers == "same" else parse_layers(layers, n_layers)
    if held is not None and len(held) < n_layers:
        if layers == "all":
            chosen = sorted(held)
        missing = sorted(set(chosen) - set(held))
        if missing:
            raise EditclipError(
                f"controls layers {layers!r}: the evaluation store holds the heads of layers {format_layers(held)} "
                f"only (a layer-subset store), not those of {format_layers(missing)}"
            )
    return chosen, [layer * n_heads + h for layer in chosen for h in range(n_heads)]


def random_head_controls(
    evaluation: DecompositionStore,
    calibration: DecompositionStore | CalibrationMeans,
    edit: EditTensors,
    classifier: Tensor,
    targets: Targets,
    settings: ControlSettings | None = None,
    *,
    progress: bool = True,
) -> ControlResult:
    """Score ``edit`` and ``settings.random_heads`` random head sets of its size with the same action on the
    evaluation store (means from the calibration store, or precomputed), in one pass over the stored parts."""
    settings = settings or ControlSettings()
    heads, action = head_action(edit)
    shape = evaluation.meta["shape"]
    n_layers, n_heads = int(shape["layers"]), int(shape["heads"])
    layers, pool = control_pool(heads, settings.layers, n_layers, n_heads, evaluation.head_layers)
    sets, available = draw_head_sets(pool, len(heads), settings.random_heads, heads, settings.seed)
    preds, _ = head_set_scores(evaluation, calibration, [sorted(heads), *sets], action, classifier,
                               progress=progress)  # fmt: skip
    reports = [targets.report(p) for p in preds]

    def names(s: Sequence[int]) -> tuple[str, ...]:
        return tuple(head_name(h // n_heads, h % n_heads) for h in s)

    return ControlResult(settings, action.kind, len(heads), tuple(layers), len(pool), available, names(heads),
                         tuple(names(s) for s in sets), reports[0], tuple(reports[1:]))  # fmt: skip
