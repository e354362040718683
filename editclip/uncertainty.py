"""How uncertain a group report is: a Wilson interval per group, a bootstrap for the worst group and averages.

- **A group's accuracy** ``correct / count`` gets the 95% Wilson score interval (Wilson 1927; Newcombe 1998
  recommends it over the normal approximation, which collapses to a point at 0 or 1 correct).
- **The worst group and the averages** (``acc_wg``, ``acc_avg``, ``acc_mean_group``, ``adj_acc_avg``) are
  functions of all groups at once, so they get a percentile bootstrap over images: the images of each
  group are resampled with replacement (group sizes fixed, as in a group-balanced test set), the metrics
  recomputed, and the 2.5th and 97.5th percentiles of ``resamples`` draws reported. The worst group is
  recomputed in every draw, so it may be another group than the observed one. A group's resampled
  number of correct predictions is Binomial(count, acc) - exactly the distribution of resampling its
  images - and is drawn as such, so the bootstrap costs O(resamples x groups), not O(resamples x images).
- A group of fewer than :data:`SMALL_GROUP` images is flagged: its accuracy moves by at least 3 points
  per image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EditclipError

if TYPE_CHECKING:
    from .evaluate import GroupReport

LEVEL = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
RESAMPLES = 1000
SEED = 0
SMALL_GROUP = 30
BOOTSTRAPPED = ("acc_wg", "acc_avg", "acc_mean_group", "adj_acc_avg")


def wilson_interval(correct: int, count: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / count`` (95% for the default ``z``)."""
    if count < 1 or not 0 <= correct <= count:
        raise EditclipError(f"a proportion needs 0 <= correct <= count and count >= 1, got {correct}/{count}")
    p = correct / count
    z2 = z * z
    centre = (p + z2 / (2 * count)) / (1 + z2 / count)
    half = z * math.sqrt(p * (1 - p) / count + z2 / (4 * count * count)) / (1 + z2 / count)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Uncertainty:
    """Intervals of one group report: Wilson per group (by group name), bootstrap per summary metric."""

    groups: dict[str, tuple[float, float]]
    summary: dict[str, tuple[float, float]]
    small_groups: tuple[str, ...]
    resamples: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """JSON form: ``{"level", "groups": {name: [lo, hi]}, "bootstrap": {...}, "small_groups"}``."""
        return {
            "level": LEVEL,
            "groups": {name: list(ci) for name, ci in self.groups.items()},
            "bootstrap": {
                "resamples": self.resamples,
                "seed": self.seed,
                "stratified_by": "group",
                **{k: list(ci) for k, ci in self.summary.items()},
            },
            "small_groups": list(self.small_groups),
            "small_group_threshold": SMALL_GROUP,
        }


def group_intervals(report: GroupReport, *, resamples: int = RESAMPLES, seed: int = SEED) -> Uncertainty:
    """Wilson intervals of every group of ``report`` and bootstrap intervals of its summary metrics."""
    return Uncertainty(
        groups={g.name: wilson_interval(g.correct, g.count) for g in report.groups},
        summary=bootstrap_intervals(report, resamples=resamples, seed=seed),
        small_groups=tuple(g.name for g in report.groups if g.count < SMALL_GROUP),
        resamples=resamples,
        seed=seed,
    )


def bootstrap_draws(report: GroupReport, *, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, np.ndarray]:
    """[resamples] values of each summary metric over bootstrap resamples of the images (stratified by group)."""
    if resamples < 2:
        raise EditclipError(f"the bootstrap needs at least 2 resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    counts = np.array([g.count for g in report.groups])
    accs = np.array([g.correct for g in report.groups]) / counts
    correct = rng.binomial(counts[None, :], accs[None, :], size=(resamples, len(counts)))  # [B, G]
    group_acc = correct / counts
    draws = {
        "acc_wg": group_acc.min(axis=1),
        "acc_avg": correct.sum(axis=1) / counts.sum(),
        "acc_mean_group": group_acc.mean(axis=1),
    }
    weights = np.array([g.train_count or 0 for g in report.groups], dtype=float)
    if weights.sum() > 0:
        draws["adj_acc_avg"] = group_acc @ (weights / weights.sum())
    return draws


def bootstrap_intervals(
    report: GroupReport, *, resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap intervals of ``acc_wg``, ``acc_avg``, ``acc_mean_group`` (and ``adj_acc_avg``
    when the training group sizes are known)."""
    tail = 100 * (1 - LEVEL) / 2
    return {
        name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
        for name, values in bootstrap_draws(report, resamples=resamples, seed=seed).items()
    }


def small_group_warnings(reports: Mapping[str, GroupReport]) -> list[str]:
    """One line per group (over all reports, once) with fewer than :data:`SMALL_GROUP` images."""
    seen: dict[str, int] = {}
    for report in reports.values():
        for g in report.groups:
            if g.count < SMALL_GROUP:
                seen.setdefault(g.name, g.count)
    return [
        f"group {name} has only {n} image{'s' if n != 1 else ''} (< {SMALL_GROUP}): one image moves its accuracy "
        f"by {100 / n:.1f} points; read its accuracy with its interval"
        for name, n in seen.items()
    ]


def format_interval(ci: tuple[float, float] | None) -> str:
    """``[76.3, 83.2]`` (percent), or empty."""
    return "" if ci is None else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
