"""The phenomenon, measured: per-group zero-shot accuracy of a toy-world CLIP, the heads whose direct
parts carry the place, and what mean-ablating them does to the groups."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from .._decompose import Decomposition, decompose
from ..backbone import Backbone
from ..evaluate import GroupReport, group_metrics, predict, zero_shot_classifier
from ..names import HeadRef
from .train import to_tensor
from .world import CLASSES, WorldConfig, dataset_scene, render_many
from .write import SPLIT_NAMES


@dataclass
class Sample:
    """The first images of a split of ``editclip toyworld make`` (same seed: same images), preprocessed."""

    images: torch.Tensor  # [N, 3, S, S], normalised like the model's preprocess
    y: np.ndarray  # [N]
    place: np.ndarray  # [N]


def split_sample(split: str, n: int, seed: int = 0, cfg: WorldConfig | None = None) -> Sample:
    """Images 0..n-1 of `split` (val and test: the four groups in turn, so n=4k is balanced)."""
    cfg = cfg or WorldConfig()
    pairs = [dataset_scene(seed, SPLIT_NAMES.index(split), i, cfg) for i in range(n)]
    images = render_many([s for s, _ in pairs], [r for _, r in pairs])
    return Sample(to_tensor(images), np.array([s.y for s, _ in pairs]), np.array([s.place for s, _ in pairs]))


def train_group_counts(n: int = 2000, seed: int = 0, cfg: WorldConfig | None = None) -> dict[tuple[int, int], int]:
    """(y, place) sizes of the first `n` train images: the weights of the adjusted average."""
    cfg = cfg or WorldConfig()
    return dict(Counter((s.y, s.place) for s, _ in (dataset_scene(seed, 0, i, cfg) for i in range(n))))


def classifier(bb: Backbone) -> torch.Tensor:
    """[2, D] zero-shot weights of CLASSES under the toy world's TEMPLATES."""
    from . import TEMPLATES

    return zero_shot_classifier(bb, list(CLASSES), list(TEMPLATES))


def report(embeddings: torch.Tensor, clf: torch.Tensor, sample: Sample) -> GroupReport:
    """Per-(y, place) group accuracy of zero-shot predictions, adjusted average weighted like train."""
    groups = {"y": sample.y, "place": sample.place}
    return group_metrics(predict(embeddings, clf), sample.y, groups, train_group_counts())


def place_heads(d: Decomposition, clf: torch.Tensor, sample: Sample, layers: list[int], k: int) -> list[HeadRef]:
    """The `k` heads of `layers` whose direct parts push the class logit most with the place and least
    with the class: along w = clf[1] - clf[0], (mean over place 1 - place 0) - |mean over y 1 - y 0|."""
    s = (d.heads.float() @ (clf[1] - clf[0]).float()).numpy()  # [N, L, H]
    place = torch.as_tensor(sample.place).numpy()
    y = torch.as_tensor(sample.y).numpy()
    effect = s[place == 1].mean(0) - s[place == 0].mean(0) - np.abs(s[y == 1].mean(0) - s[y == 0].mean(0))
    ranked = sorted(((effect[l, h], l, h) for l in layers for h in range(d.n_heads)), reverse=True)
    return [HeadRef(l, h) for _, l, h in ranked[:k]]


def mean_ablated(d: Decomposition, means: torch.Tensor, heads: list[HeadRef]) -> torch.Tensor:
    """[N, D] embeddings with each head's direct part replaced by its mean (``means``: [L, H, D])."""
    z = d.total().clone()
    for ref in heads:
        z += means[ref.layer, ref.head] - d.heads[:, ref.layer, ref.head]
    return z


@dataclass
class Phenomenon:
    """Base and place-heads-ablated group reports on test, with the heads and where their means came from."""

    base: GroupReport
    ablated: GroupReport
    heads: list[HeadRef]
    n_val: int

    def as_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "base": self.base.as_dict(),
            "heads": [str(h) for h in self.heads],
            "means": f"val split, first {self.n_val} images",
            "ablated": self.ablated.as_dict(),
        }


def measure(bb: Backbone, n_val: int = 800, n_test: int = 2000, k: int = 3, last: int = 2, seed: int = 0) -> Phenomenon:
    """Zero-shot test groups; the `k` place heads of the `last` layers chosen and averaged on val; test
    groups again with those heads mean-ablated."""
    clf = classifier(bb)
    val, test = split_sample("val", n_val, seed), split_sample("test", n_test, seed)
    d_val, d_test = decompose(bb, val.images), decompose(bb, test.images)
    layers = list(range(bb.shape.layers - last, bb.shape.layers))
    heads = place_heads(d_val, clf, val, layers, k)
    ablated = mean_ablated(d_test, d_val.heads.mean(0), heads)
    return Phenomenon(report(d_test.total(), clf, test), report(ablated, clf, test), heads, n_val)
