"""Finding the heads to edit, from a decomposition of the calibration images.

Every head's direct contribution c(x) is taken at the paper's scale, c(x) / |z(x)| (the parts then sum
to the unit embedding the classifier reads), optionally restricted to a subspace S of the output space
(``directions``: the span of given texts, or of the class-embedding differences a zero-shot classifier
reads). With V a normaliser (below) and variances meaning traces of covariance matrices over the images:

- **groups** (``spurious`` column, optional ``label`` column): a grouping g of the images explains the
  between-group variance B_g = sum_groups n_g |mean_g - mean|^2 of the head's part in S (the sum of
  squares of a one-way ANOVA). The score is ``(B_spurious - B_label) / V``: how much of the head's part
  follows the spurious attribute's group means, minus how much follows the label's. A head that
  separates backgrounds but not classes scores high; a head that carries the class scores low, since
  ablating it would cost accuracy. The report also gives eta^2 = B / (the head's variance in S) for each.
- **texts** (``directions`` only): the score is the head's variance inside S over V.

``by="embedding"`` (default) takes V = the total variance of the unit embedding, so a head whose part is
tiny ranks low however cleanly it encodes the attribute: scores of different heads add up, and rank by
how much each head moves the output. ``by="head"`` takes V = the head's own total variance (a fraction
per head: eta^2_spurious - eta^2_label, or the share of the head's variance along the texts).

A third ranking (:func:`word_scores`) runs TextSpan per head and scores the share of the head's variance
explained by the chosen texts that contain given words ("water", "forest"), as the paper did by reading
the texts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._textspan import textspan
from .errors import EditclipError
from .evaluate import GroupReport, group_metrics, predict
from .names import head_name, parse_head, parse_layers
from .store import DecompositionStore

Normaliser = Literal["embedding", "head"]


@dataclass(frozen=True)
class HeadScore:
    """One head's score; ``share`` is its variance (in the subspace, if any) over the normaliser V, and
    ``spurious`` / ``label`` the fractions of that variance their group means explain (groups mode)."""

    head: str
    score: float
    share: float
    spurious: float | None = None
    label: float | None = None


@dataclass(frozen=True)
class WordScore:
    """A head's TextSpan texts that contain the given words, and the share of the head's variance they explain."""

    head: str
    score: float
    texts: tuple[str, ...]


def _scale(store: DecompositionStore) -> bool:
    """Whether stored parts must be divided by |z| (exact convention) to be at the paper's scale."""
    if store.convention not in ("exact", "official"):
        raise EditclipError(f"store {str(store.root)!r} has unknown convention {store.convention!r}")
    return store.convention == "exact"


def _candidates(store: DecompositionStore, layers: str | None) -> list[int]:
    n_layers = int(store.meta["shape"]["layers"])
    return parse_layers(layers or "all", n_layers)


@torch.no_grad()
def head_scores(
    store: DecompositionStore,
    *,
    spurious: str | None = None,
    label: str | None = None,
    directions: Tensor | None = None,
    by: Normaliser = "embedding",
    layers: str | None = None,
    progress: bool = True,
) -> list[HeadScore]:
    """Rank the heads of ``layers`` (a selection like ``last:4``; default all) by the module's score,
    best first. Give ``spurious`` (with an optional ``label``) column names for the groups score, or
    only ``directions`` [m, D] (rows spanning the subspace, e.g. text embeddings) for the texts score."""
    if spurious is None and directions is None:
        raise EditclipError("nothing to rank by: give a spurious column (with a label column) or directions (texts)")
    if label is not None and label == spurious:
        raise EditclipError(f"the spurious column and the label column are both {label!r}")
    if by not in ("embedding", "head"):
        raise EditclipError(f"unknown normaliser {by!r}: use 'embedding' or 'head'")
    scale = _scale(store)
    chosen = _candidates(store, layers)
    basis = None
    if directions is not None:
        basis = _orthonormal(directions)
        if basis.shape[1] != int(store.meta["shape"]["embed_dim"]):
            raise EditclipError(f"directions are {basis.shape[1]}-wide but the store's embeddings are "
                                f"{store.meta['shape']['embed_dim']}-wide")  # fmt: skip
    groupings = {}
    for role, column in (("spurious", spurious), ("label", label)):
        if column is not None:
            values = store.column(column)
            _, codes = np.unique(values, return_inverse=True)
            groupings[role] = torch.from_numpy(codes.reshape(-1))

    acc = _Accumulator(groupings)
    for chunk in tqdm(range(store.n_chunks), desc="head statistics", unit="chunk", disable=not progress):
        rows = store.chunk_range(chunk)
        heads = store.read("heads", rows=rows)[:, chosen].double()  # [n, L', H, D]
        z = store.read("embedding", rows=rows).double()
        norms = z.norm(dim=-1) if scale else torch.ones(z.shape[0], dtype=torch.float64)
        heads = heads / norms[:, None, None, None]
        sub = heads @ basis.t() if basis is not None else heads
        acc.add(rows, z / z.norm(dim=-1, keepdim=True), heads, sub)
    return acc.scores(chosen, by)


class _Accumulator:
    """Streaming float64 sums for the variances of :func:`head_scores`."""

    def __init__(self, groupings: dict[str, Tensor]) -> None:
        self.groupings = groupings
        self.count = 0
        self.sums: dict[str, Tensor] = {}  # unit [D], full [L', H, D], sub [L', H, m]
        self.squares: dict[str, Tensor] = {}  # unit [], full [L', H], sub [L', H]
        self.group_sums: dict[str, Tensor] = {}  # role -> [groups, L', H, m]

    def add(self, rows: range, unit: Tensor, full: Tensor, sub: Tensor) -> None:
        self.count += unit.shape[0]
        for name, x in (("unit", unit), ("full", full), ("sub", sub)):
            self.sums[name] = self.sums.get(name, 0) + x.sum(0)
            self.squares[name] = self.squares.get(name, 0) + (x**2).sum(0).sum(-1)
        for role, codes in self.groupings.items():
            sums = self.group_sums.setdefault(role, sub.new_zeros((int(codes.max()) + 1, *sub.shape[1:])))
            sums.index_add_(0, codes[rows.start : rows.stop], sub)

    def variance(self, name: str) -> Tensor:
        """Total variance (sum of squares about the mean) of one accumulated quantity."""
        return self.squares[name] - (self.sums[name] ** 2).sum(-1) / self.count

    def between(self, role: str) -> Tensor:
        """[L', H] between-group sum of squares of the subspace part under one grouping."""
        sums = self.group_sums[role]
        counts = torch.bincount(self.groupings[role], minlength=sums.shape[0]).double()
        keep = counts > 0
        within_means = ((sums[keep] ** 2).sum(-1) / counts[keep][:, None, None]).sum(0)
        return within_means - (self.sums["sub"] ** 2).sum(-1) / self.count

    def scores(self, layers: list[int], by: Normaliser) -> list[HeadScore]:
        if self.count < 2:
            raise EditclipError(f"ranking heads needs at least 2 calibration images; the store has {self.count}")
        sub_var = self.variance("sub")
        norm = self.variance("full") if by == "head" else self.variance("unit").expand_as(sub_var)
        norm = norm.clamp_min(1e-30)
        between = {role: self.between(role) for role in self.groupings}
        # groups: spurious minus label between-group variance; texts: the variance inside the subspace
        score = (between["spurious"] - between.get("label", 0)) / norm if "spurious" in between else sub_var / norm
        fractions = {role: b / sub_var.clamp_min(1e-30) for role, b in between.items()}
        out = [
            HeadScore(
                head_name(layer, h),
                float(score[i, h]),
                float(sub_var[i, h] / norm[i, h]),
                *(float(fractions[r][i, h]) if r in fractions else None for r in ("spurious", "label")),
            )
            for i, layer in enumerate(layers)
            for h in range(score.shape[1])
        ]
        return sorted(out, key=lambda s: -s.score)


def _orthonormal(directions: Tensor) -> Tensor:
    """[r, D] orthonormal rows spanning the rows of ``directions`` [m, D] (dependent rows dropped)."""
    q, r = torch.linalg.qr(directions.double().t())
    keep = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max().clamp_min(1e-30)
    if not bool(keep.any()):
        raise EditclipError("the directions are all zero")
    return q.t()[keep]


# ---------------------------------------------------------------------------------------------------
# TextSpan texts that name given words


def _word_pattern(words: Sequence[str]) -> re.Pattern[str]:
    """Whole words, case-insensitive, plurals included (``lake`` matches "lakes", not "lakeside")."""
    cleaned = [w.strip() for w in words if w.strip()]
    if not cleaned:
        raise EditclipError("no words to match: give at least one, e.g. water forest")
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in cleaned) + r")(?:s|es)?\b", re.IGNORECASE)


@torch.no_grad()
def word_scores(
    store: DecompositionStore,
    texts: Sequence[str],
    text_embeddings: Tensor,
    words: Sequence[str],
    *,
    m: int = 10,
    layers: str | None = None,
    progress: bool = True,
) -> list[WordScore]:
    """Rank heads by the share of their variance explained by the TextSpan texts (m per head, from the
    pool ``texts`` with unit embeddings [M, D]) that contain any of ``words``, best first."""
    pattern = _word_pattern(words)
    scale = _scale(store)
    norms = store.read("embedding").norm(dim=-1) if scale else None
    out = []
    for layer in tqdm(_candidates(store, layers), desc="TextSpan", unit="layer", disable=not progress):
        heads = store.read("heads", index=(layer,))  # [N, H, D]
        if norms is not None:
            heads = heads / norms[:, None, None]
        result = textspan(heads.transpose(0, 1), text_embeddings, m=m, texts=list(texts))
        gains = torch.diff(result.explained, dim=-1, prepend=torch.zeros_like(result.explained[..., :1]))
        for h, chosen in enumerate(result.texts or []):
            hits = [i for i, text in enumerate(chosen) if pattern.search(text)]
            score = float(gains[h, hits].sum()) if hits else 0.0
            out.append(WordScore(head_name(layer, h), score, tuple(chosen[i] for i in hits)))
    return sorted(out, key=lambda s: -s.score)


# ---------------------------------------------------------------------------------------------------
# How many heads: mean-ablate the top k on the calibration images (fast path) and keep the best k


@dataclass(frozen=True)
class Pick:
    """The chosen heads, and the calibration metrics of each k tried (k = 0 is the unedited model)."""

    heads: tuple[str, ...]
    trials: tuple[tuple[int, GroupReport], ...]

    @property
    def k(self) -> int:
        return len(self.heads)


@torch.no_grad()
def pick_top_k(
    store: DecompositionStore,
    ranking: Sequence[str],
    classifier: Tensor,
    label: str,
    groups: Sequence[str],
    *,
    max_k: int | None = None,
    max_avg_drop: float = 0.05,
) -> Pick:
    """Mean-ablate the first k heads of ``ranking`` (k = 0..max_k) on the calibration store and choose the k
    with the best worst-group accuracy whose average accuracy stays within ``max_avg_drop`` of the
    unedited model's (the smallest such k on ties).

    The edited embeddings are exactly what a spec ``mean_ablate: [those heads]`` compiled on this store
    gives (head means; a layer's out_proj bias part too once all its heads are ablated).
    """
    if store.convention != "exact":
        raise EditclipError(f"picking k needs an 'exact' store; {str(store.root)!r} is {store.convention!r}")
    n_heads = int(store.meta["shape"]["heads"])
    label_values = store.column(label)
    columns = {c: store.column(c) for c in groups}
    ranking = list(ranking)[: max_k if max_k is not None else len(ranking)]
    z = store.read("embedding")
    head_means = store.mean("heads")
    bias_means = store.mean("biases")
    done: dict[int, set[int]] = {}
    trials = [(0, group_metrics(predict(z, classifier), label_values, columns))]
    for k, name in enumerate(ranking, start=1):
        ref = parse_head(name, len(bias_means), n_heads)
        layer, head = ref.layer, ref.head
        z = z + head_means[layer, head] - store.read("heads", index=(layer, head))
        done.setdefault(layer, set()).add(head)
        if len(done[layer]) == n_heads:
            z = z + bias_means[layer] - store.read("biases", index=(layer,))
        trials.append((k, group_metrics(predict(z, classifier), label_values, columns)))
    base = trials[0][1].acc_avg
    allowed = [(k, r) for k, r in trials if r.acc_avg >= base - max_avg_drop - 1e-12]
    best_k = max(allowed, key=lambda t: (t[1].acc_wg, -t[0]))[0]
    return Pick(tuple(ranking[:best_k]), tuple(trials))


def spec_fragment(heads: Sequence[str]) -> str:
    """A ready ``edits:`` block that mean-ablates ``heads``."""
    if not heads:
        return "edits: []  # no head qualified"
    return "edits:\n  - mean_ablate: [" + ", ".join(heads) + "]"
