"""Finding the heads to edit, from a decomposition of the calibration images.

Every head's direct contribution c(x) is taken at the paper's scale, c(x) / |z(x)| (the parts then sum
to the unit embedding the classifier reads), optionally restricted to a subspace S of the output space
(``directions``: the span of given texts, or of the class-embedding differences a zero-shot classifier
reads). With V a normaliser (below) and variances meaning traces of covariance matrices over the images:

- **groups** (``spurious`` column, optional ``label`` column): a grouping g of the images explains the
  between-group variance B_g = sum_groups n_g |mean_g - mean|^2 of the head's part in S (the sum of
  squares of a one-way ANOVA). Two rankings, by name (``score=``):

  - ``difference`` (default; *variance-weighted*): ``(B_spurious - B_label) / V``, how much of the head's
    part follows the spurious attribute's group means, minus how much follows the label's. A head that
    separates backgrounds but not classes scores high; a head that carries the class scores low, since
    ablating it would cost accuracy. Weighted by variance, a head ranks by how much it moves the output.
  - ``ratio`` (*mean-difference ratio*): ``sqrt(B_spurious / B_label)``, for two balanced groups per
    column the ratio of the distances between the group means, ``|mean_s1 - mean_s0| / |mean_y1 -
    mean_y0|``. It needs no normaliser (V cancels) and ignores how large the part is, so a tiny head
    that separates places cleanly ranks as high as a large one.

  The report also gives eta^2 = B / (the head's variance in S) for each column.
- **texts** (``directions`` only): the score is the head's variance inside S over V.

``by="embedding"`` (default) takes V = the total variance of the unit embedding, so a head whose part is
tiny ranks low however cleanly it encodes the attribute: scores of different heads add up, and rank by
how much each head moves the output. ``by="head"`` takes V = the head's own total variance (a fraction
per head: eta^2_spurious - eta^2_label, or the share of the head's variance along the texts).

Two more rankings read each head's TextSpan texts (m per head, from a description pool):

- :func:`word_scores`: the share of the head's variance explained by the chosen texts that *name* given
  words ("water", "forest"), as the paper did by reading the texts. A text names a word when the word (or
  its plural) is a whole token heading its phrase (:func:`names_word`): not a modifier of the next word
  ("water pistol", "field hockey") and not the bare complement of an ``of`` after another noun ("depth of
  field", "a glass of water"; but "a photo of water" names water).
- :func:`semantic_scores`: no words, only meaning: the share of the head's variance that its TextSpan
  reconstruction places inside the span of the given texts' embeddings.

Every ranking reads either a decomposition store or a statistics file (:class:`~editclip.stats.PartStats`),
with the same result up to rounding: the groups scores need only sums at the paper's scale (which a
statistics file holds in either convention); the texts score and the TextSpan rankings need each head's
scatter at that scale, which statistics of the ``official`` convention hold (the ``exact`` parts are
divided by a different |z| per image, so their scatter cannot be rescaled). Choosing k (:func:`pick_top_k`)
mean-ablates every calibration image and needs a store.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._selection import MAX_AVG_DROP, SCORES, TOLERANCE, choose_k
from ._textspan import HeadMoments, stats_heads, textspan
from .errors import EditclipError
from .evaluate import GroupReport, group_metrics, predict
from .names import head_name, parse_head, parse_layers
from .stats import PartStats
from .store import DecompositionStore

Calibration = DecompositionStore | PartStats
Normaliser = Literal["embedding", "head"]
Score = Literal["difference", "ratio"]


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


def _scale(store: Calibration) -> bool:
    """Whether stored parts must be divided by |z| (exact convention) to be at the paper's scale."""
    if store.convention not in ("exact", "official"):
        raise EditclipError(f"store {str(store.root)!r} has unknown convention {store.convention!r}")
    return store.convention == "exact"


def _candidates(store: Calibration, layers: str | None) -> list[int]:
    """The layers whose heads are ranked: ``layers`` (refused where a layer-subset store sums the heads), or
    every layer whose heads the store holds (statistics hold every layer's head sums)."""
    if isinstance(store, PartStats):
        return parse_layers(layers or "all", int(store.meta["shape"]["layers"]))
    return store.layer_subset(layers, f"layers {layers}")


@torch.no_grad()
def head_scores(
    store: Calibration,
    *,
    spurious: str | None = None,
    label: str | None = None,
    directions: Tensor | None = None,
    by: Normaliser = "embedding",
    score: Score = "difference",
    layers: str | None = None,
    progress: bool = True,
) -> list[HeadScore]:
    """Rank the heads of ``layers`` (a selection like ``last:4``; default all) by the module's score,
    best first. Give ``spurious`` (with an optional ``label``) column names for the groups score, or
    only ``directions`` [m, D] (rows spanning the subspace, e.g. text embeddings) for the texts score.
    ``score`` names the groups ranking: ``difference`` (variance-weighted, over the normaliser ``by``) or
    ``ratio`` (the mean-difference ratio, which needs ``label``)."""
    if spurious is None and directions is None:
        raise EditclipError("nothing to rank by: give a spurious column (with a label column) or directions (texts)")
    if label is not None and label == spurious:
        raise EditclipError(f"the spurious column and the label column are both {label!r}")
    if by not in ("embedding", "head"):
        raise EditclipError(f"unknown normaliser {by!r}: use 'embedding' or 'head'")
    if score not in SCORES:
        raise EditclipError(f"unknown score {score!r}: use {' or '.join(SCORES)}")
    if score == "ratio" and (spurious is None or label is None):
        raise EditclipError("the mean-difference ratio compares the spurious column with the label: give both")
    scale = _scale(store)
    chosen = _candidates(store, layers)
    basis = None
    if directions is not None:
        basis = _orthonormal(directions)
        if basis.shape[1] != int(store.meta["shape"]["embed_dim"]):
            raise EditclipError(f"directions are {basis.shape[1]}-wide but the store's embeddings are "
                                f"{store.meta['shape']['embed_dim']}-wide")  # fmt: skip
    columns = {role: column for role, column in (("spurious", spurious), ("label", label)) if column is not None}
    if isinstance(store, PartStats):
        return _stats_sums(store, chosen, columns, basis).scores(chosen, by, score)
    groupings = {}
    for role, column in columns.items():
        values = store.column(column)
        _, codes = np.unique(values, return_inverse=True)
        groupings[role] = torch.from_numpy(codes.reshape(-1))

    acc = _Accumulator(groupings)
    for chunk in tqdm(range(store.n_chunks), desc="head statistics", unit="chunk", disable=not progress):
        rows = store.chunk_range(chunk)
        heads = store.read("heads", index=(chosen,), rows=rows).double()  # [n, L', H, D]
        z = store.read("embedding", rows=rows).double()
        norms = z.norm(dim=-1) if scale else torch.ones(z.shape[0], dtype=torch.float64)
        heads = heads / norms[:, None, None, None]
        sub = heads @ basis.t() if basis is not None else heads
        acc.add(rows, z / z.norm(dim=-1, keepdim=True), heads, sub)
    return acc.scores(chosen, by, score)


class _Accumulator:
    """Streaming float64 sums for the variances of :func:`head_scores`."""

    def __init__(self, groupings: dict[str, Tensor]) -> None:
        self.groupings = groupings
        self.count = 0
        self.sums: dict[str, Tensor] = {}  # unit [D], full [L', H, D], sub [L', H, m]
        self.squares: dict[str, Tensor] = {}  # unit [], full [L', H], sub [L', H]
        self.group_sums: dict[str, Tensor] = {}  # role -> [groups, L', H, m]
        self.group_counts = {role: torch.bincount(codes).double() for role, codes in groupings.items()}

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
        sums, counts = self.group_sums[role], self.group_counts[role]
        keep = counts > 0
        within_means = ((sums[keep] ** 2).sum(-1) / counts[keep][:, None, None]).sum(0)
        return within_means - (self.sums["sub"] ** 2).sum(-1) / self.count

    def scores(self, layers: list[int], by: Normaliser, kind: Score = "difference") -> list[HeadScore]:
        if self.count < 2:
            raise EditclipError(f"ranking heads needs at least 2 calibration images; the store has {self.count}")
        sub_var = self.variance("sub")
        norm = self.variance("full") if by == "head" else self.variance("unit").expand_as(sub_var)
        norm = norm.clamp_min(1e-30)
        between = {role: self.between(role) for role in self.group_counts}
        # groups: spurious minus label between-group variance; texts: the variance inside the subspace
        if kind == "ratio":
            score = (between["spurious"] / between["label"].clamp_min(1e-30)).sqrt()
        elif "spurious" in between:
            score = (between["spurious"] - between.get("label", 0)) / norm
        else:
            score = sub_var / norm
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


_PAPER_SUMS = ("paper.sum.heads", "paper.sumsq.heads", "paper.sum.unit", "paper.sumsq.unit")


def _stats_sums(stats: PartStats, chosen: list[int], columns: dict[str, str], basis: Tensor | None) -> _Accumulator:
    """The sums :func:`head_scores` accumulates over a store, read from a statistics file."""
    if missing := [name for name in _PAPER_SUMS if name not in stats.tensors]:
        raise EditclipError(
            f"statistics {str(stats.root)!r} have no paper-scale sums ({', '.join(missing)}): they were made by an "
            "older editclip; make them again with `editclip stats` to rank heads from them"
        )
    groups = stats.meta.get("groups", {})
    t = stats.tensors
    acc = _Accumulator({})
    acc.count = stats.count
    full = t["paper.sum.heads"][chosen]  # [L', H, D]
    acc.sums = {"unit": t["paper.sum.unit"], "full": full}
    acc.squares = {"unit": t["paper.sumsq.unit"], "full": t["paper.sumsq.heads"][chosen]}
    if basis is None:
        acc.sums["sub"], acc.squares["sub"] = full, acc.squares["full"]
    else:  # sum_x |B c|^2 = tr(B (S + N mean mean^T) B^T) from the scatters at the paper's scale
        what = "--texts / --along-classes (the variance inside the texts' span)"
        _paper_moments(stats, [layer for layer in chosen if layer not in stats.layers], what)
        squares = []
        for layer in chosen:  # one layer's scatters at a time
            moments = _paper_moments(stats, [layer], what)
            second = moments.scatter + stats.count * moments.mean[:, :, None] * moments.mean[:, None, :]
            squares.append(((basis @ second) * basis).sum((-1, -2)))
        acc.sums["sub"] = full @ basis.t()
        acc.squares["sub"] = torch.stack(squares)
    for role, column in columns.items():
        if column not in groups:
            raise EditclipError(
                f"statistics {str(stats.root)!r} have no column {column!r}; their group columns are {sorted(groups)}"
            )
        sums = t[f"group.{column}.paper.heads"][:, chosen]  # [V, L', H, D]
        acc.group_sums[role] = sums @ basis.t() if basis is not None else sums
        acc.group_counts[role] = t[f"group.{column}.count"]
    return acc


def require_paper_scale(store: Calibration, what: str) -> None:
    """Refuse statistics that cannot give each head's scatter at the paper's scale c/|z| (only statistics of the
    official convention have it: an exact-convention head is divided by a different |z| per image). Stores pass.
    Commands call it before encoding any text, so the refusal costs nothing."""
    if isinstance(store, PartStats) and store.convention != "official":
        raise EditclipError(
            f"{what} from statistics needs each head's scatter at the paper's scale c/|z|; {str(store.root)!r} are "
            f"{store.convention!r}-convention statistics, whose scatters are of c and cannot be rescaled per image: "
            "make official-convention statistics (`editclip stats --convention official`) or give a store"
        )


def _paper_moments(stats: PartStats, layers: list[int], what: str) -> HeadMoments:
    """The heads of ``layers`` at the paper's scale as :class:`HeadMoments` [K = len(layers) * H]."""
    require_paper_scale(stats, what)
    return stats_heads(stats, layers)[0]


def _orthonormal(directions: Tensor) -> Tensor:
    """[r, D] orthonormal rows spanning the rows of ``directions`` [m, D] (dependent rows dropped)."""
    q, r = torch.linalg.qr(directions.double().t())
    keep = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max().clamp_min(1e-30)
    if not bool(keep.any()):
        raise EditclipError("the directions are all zero")
    return q.t()[keep]


# ---------------------------------------------------------------------------------------------------
# TextSpan texts that name given words


_FUNCTION_WORDS = frozenset(
    [
        "a", "an", "the", "of", "in", "on", "at", "by", "with", "without", "and", "or", "but", "under", "over", "near",
        "beside", "behind", "above", "below", "into", "onto", "from", "to", "for", "against", "along", "across",
        "around", "through", "between", "among", "is", "are", "was", "were", "be", "being", "this", "that", "these",
        "those", "its", "their", "his", "her", "it", "as", "like", "while", "during",
    ]
)
_FRAME_WORDS = frozenset(
    [
        "photo", "photos", "photograph", "picture", "image", "images", "view", "views", "close-up", "closeup", "shot",
        "snapshot", "painting", "drawing", "illustration", "scene", "sketch", "render", "rendering",
    ]
)
_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")


def _forms(word: str) -> set[tuple[str, ...]]:
    """Token sequences of a word or phrase and of its plural (last word + s, es, or y -> ies)."""
    tokens = tuple(_TOKEN.findall(word.lower()))
    if not tokens:
        return set()
    *rest, last = tokens
    plurals = {last, last + "s", last + "es"} | ({last[:-1] + "ies"} if last.endswith("y") else set())
    return {(*rest, p) for p in plurals}


def names_word(text: str, word: str) -> bool:
    """Whether ``text`` names ``word`` (a word or phrase, plurals included): the word occurs as whole tokens,
    not followed by another content word (which it would modify: "water pistol") and not right after an
    ``of`` that follows a content word other than a framing word (its complement: "depth of field", but
    "a photo of water" names water)."""
    tokens = _TOKEN.findall(text.lower())
    for form in _forms(word):
        n = len(form)
        for i in range(len(tokens) - n + 1):
            if tuple(tokens[i : i + n]) != form:
                continue
            after = tokens[i + n] if i + n < len(tokens) else None
            if after is not None and after[0].isalnum() and after not in _FUNCTION_WORDS:
                continue
            before = tokens[i - 2] if i >= 2 else None
            if tokens[i - 1 : i] == ["of"] and before is not None and before[0].isalnum() and \
                    before not in _FUNCTION_WORDS and before not in _FRAME_WORDS:  # fmt: skip
                continue
            return True
    return False


def _words(words: Sequence[str]) -> list[str]:
    cleaned = [w.strip() for w in words if w.strip()]
    if not cleaned:
        raise EditclipError("no words to match: give at least one, e.g. water forest")
    return cleaned


@torch.no_grad()
def word_scores(
    store: Calibration,
    texts: Sequence[str],
    text_embeddings: Tensor,
    words: Sequence[str],
    *,
    m: int = 10,
    layers: str | None = None,
    progress: bool = True,
) -> list[WordScore]:
    """Rank heads by the share of their variance explained by the TextSpan texts (m per head, from the
    pool ``texts`` with unit embeddings [M, D]) that name any of ``words`` (:func:`names_word`), best first."""
    words = _words(words)
    out = []
    for layer, heads in _layer_heads(store, layers, "--words", progress):
        result = textspan(heads, text_embeddings, m=m, texts=list(texts))
        gains = torch.diff(result.explained, dim=-1, prepend=torch.zeros_like(result.explained[..., :1]))
        for h, chosen in enumerate(result.texts or []):
            hits = [i for i, text in enumerate(chosen) if any(names_word(text, w) for w in words)]
            score = float(gains[h, hits].sum()) if hits else 0.0
            out.append(WordScore(head_name(layer, h), score, tuple(chosen[i] for i in hits)))
    return sorted(out, key=lambda s: -s.score)


@torch.no_grad()
def semantic_scores(
    store: Calibration,
    texts: Sequence[str],
    text_embeddings: Tensor,
    query: Tensor,
    *,
    m: int = 10,
    layers: str | None = None,
    progress: bool = True,
) -> list[WordScore]:
    """Rank heads by the share of their variance that their TextSpan reconstruction (m texts per head from the
    pool ``texts`` with unit embeddings [M, D]) places in the span of ``query`` [q, D] (e.g. the embeddings
    of "water", "a lake"): ``sum_x |P_Q P_B (c(x) - mean)|^2 / sum_x |c(x) - mean|^2``, best first. A head's
    ``texts`` are its TextSpan texts, in order."""
    q = _orthonormal(query)
    if q.shape[1] != text_embeddings.shape[1]:
        raise EditclipError(f"query texts are {q.shape[1]}-wide but the pool's embeddings are "
                            f"{text_embeddings.shape[1]}-wide")  # fmt: skip
    out = []
    for layer, heads in _layer_heads(store, layers, "--semantic", progress):
        result = textspan(heads, text_embeddings, m=m, texts=list(texts))
        basis = result.basis.double()  # [H, m, D] orthonormal
        if isinstance(heads, HeadMoments):  # sum_x |W^T (c - mean)|^2 = tr(W^T S W), W = B^T B Q^T
            w = basis.transpose(1, 2) @ (basis @ q.t())  # [H, D, q]
            inside = ((heads.scatter @ w) * w).sum((1, 2))
            total = heads.scatter.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(1e-30)
        else:
            centred = heads.double() - result.mean.double()[:, None]  # [H, N, D]
            coefficients = centred @ basis.transpose(1, 2)  # [H, N, m]
            inside = ((coefficients @ (basis @ q.t())) ** 2).sum((1, 2))  # |P_Q P_B c|^2 summed over images
            total = (centred**2).sum((1, 2)).clamp_min(1e-30)
        for h, chosen in enumerate(result.texts or []):
            out.append(WordScore(head_name(layer, h), float(inside[h] / total[h]), tuple(chosen)))
    return sorted(out, key=lambda s: -s.score)


def _layer_heads(
    store: Calibration, layers: str | None, what: str, progress: bool
) -> Iterator[tuple[int, Tensor | HeadMoments]]:
    """Per candidate layer, its heads at the paper's scale: [H, N, D] from a store, moments from statistics."""
    chosen = _candidates(store, layers)
    if isinstance(store, PartStats):
        _paper_moments(store, [layer for layer in chosen if layer not in store.layers], what)  # refused up front
    norms = store.read("embedding").norm(dim=-1) if isinstance(store, DecompositionStore) and _scale(store) else None
    for layer in tqdm(chosen, desc="TextSpan", unit="layer", disable=not progress):
        if isinstance(store, PartStats):
            yield layer, _paper_moments(store, [layer], what)
            continue
        heads = store.read("heads", index=(layer,))  # [N, H, D]
        if norms is not None:
            heads = heads / norms[:, None, None]
        yield layer, heads.transpose(0, 1)


def relative_cutoff(scores: Sequence[HeadScore | WordScore], cutoff: float) -> list[str]:
    """The heads whose score is positive and at least ``cutoff`` times the best score, in rank order."""
    if not 0 < cutoff <= 1:
        raise EditclipError(f"the relative cut-off {cutoff} must be in (0, 1]")
    best = max((s.score for s in scores), default=0.0)
    return [s.head for s in scores if s.score > 0 and s.score >= cutoff * best]


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
    store: Calibration,
    ranking: Sequence[str],
    classifier: Tensor,
    label: str,
    groups: Sequence[str],
    *,
    max_k: int | None = None,
    max_avg_drop: float = MAX_AVG_DROP,
    tolerance: float = TOLERANCE,
) -> Pick:
    """Mean-ablate the first k heads of ``ranking`` (k = 0..max_k) on the calibration store and choose k by
    :func:`editclip._selection.choose_k`: the smallest k whose worst-group accuracy is within ``tolerance`` of the
    best among the k whose average accuracy stays within ``max_avg_drop`` of the unedited model's.

    The edited embeddings are exactly what a spec ``mean_ablate: [those heads]`` compiled on this store
    gives (head means; a layer's out_proj bias part too once all its heads are ablated).
    """
    if isinstance(store, PartStats):
        raise EditclipError(
            f"choosing k (--pick) mean-ablates the top k heads on every calibration image, which statistics "
            f"({str(store.root)!r}) do not hold: give a decomposition store, or a model and --data"
        )
    if store.convention != "exact":
        raise EditclipError(f"picking k needs an 'exact' store; {str(store.root)!r} is {store.convention!r}")
    n_heads = int(store.meta["shape"]["heads"])
    label_values = store.column(label)
    columns = {c: store.column(c) for c in groups}
    ranking = list(ranking)[: max_k if max_k is not None else len(ranking)]
    z = store.read("embedding")
    head_means = store.mean("heads")  # [L', H, D]: the store's head layers
    bias_means = store.mean("biases")
    positions = {}
    for name in ranking:
        ref = parse_head(name, len(bias_means), n_heads)
        positions[ref] = store.head_positions([ref.layer], f"head {ref} of the ranking")[0]
    done: dict[int, set[int]] = {}
    trials = [(0, group_metrics(predict(z, classifier), label_values, columns))]
    for k, name in enumerate(ranking, start=1):
        ref = parse_head(name, len(bias_means), n_heads)
        layer, head = ref.layer, ref.head
        z = z + head_means[positions[ref], head] - store.read("heads", index=(layer, head))
        done.setdefault(layer, set()).add(head)
        if len(done[layer]) == n_heads:
            z = z + bias_means[layer] - store.read("biases", index=(layer,))
        trials.append((k, group_metrics(predict(z, classifier), label_values, columns)))
    best_k = choose_k(trials, tolerance, max_avg_drop)
    return Pick(tuple(ranking[:best_k]), tuple(trials))


def spec_fragment(heads: Sequence[str]) -> str:
    """A ready ``edits:`` block that mean-ablates ``heads``."""
    if not heads:
        return "edits: []  # no head qualified"
    return "edits:\n  - mean_ablate: [" + ", ".join(heads) + "]"
