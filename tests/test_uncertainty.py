"""Wilson intervals against published values, the bootstrap against its known large-sample limits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from editclip.errors import EditclipError
from editclip.evaluate import group_metrics
from editclip.uncertainty import (
    bootstrap_draws,
    bootstrap_intervals,
    group_intervals,
    small_group_warnings,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("correct", "count", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe(correct: int, count: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(correct, count)
    assert lo == pytest.approx(low, abs=6e-5) and hi == pytest.approx(high, abs=6e-5)


def test_wilson_by_hand_and_symmetry() -> None:
    # 8/10: centre (8 + z^2/2) / (10 + z^2), half-width z sqrt(10 * 0.8 * 0.2 + z^2/4) / (10 + z^2)
    z = 1.959963984540054
    centre, half = (8 + z * z / 2) / (10 + z * z), z * math.sqrt(1.6 + z * z / 4) / (10 + z * z)
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)
    lo, hi = wilson_interval(3, 10)
    assert wilson_interval(7, 10) == pytest.approx((1 - hi, 1 - lo), abs=1e-12)
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] < 1.0  # never a point at 100%


@pytest.mark.parametrize(("correct", "count"), [(3, 0), (-1, 5), (6, 5)])
def test_wilson_refuses_impossible_counts(correct: int, count: int) -> None:
    with pytest.raises(EditclipError, match="proportion"):
        wilson_interval(correct, count)


def _report(accs: list[float], counts: list[int], train: dict | None = None):
    pred, label, group = [], [], []
    for g, (acc, n) in enumerate(zip(accs, counts, strict=True)):
        right = round(acc * n)
        label += [0] * n
        pred += [0] * right + [1] * (n - right)
        group += [g] * n
    return group_metrics(np.array(pred), np.array(label), {"g": np.array(group)}, train)


def test_bootstrap_of_the_average_matches_the_normal_limit() -> None:
    # one group of 2000 at 80%: the resampled accuracy has sd sqrt(p (1 - p) / n) = 0.00894
    report = _report([0.8], [2000])
    lo, hi = bootstrap_intervals(report, resamples=20000, seed=1)["acc_avg"]
    half = 1.959964 * math.sqrt(0.8 * 0.2 / 2000)
    assert lo == pytest.approx(0.8 - half, abs=1.5e-3) and hi == pytest.approx(0.8 + half, abs=1.5e-3)


def test_bootstrap_equals_resampling_the_images() -> None:
    """Binomial draws per group have the distribution of resampling each group's images with replacement."""
    report = _report([0.5, 0.9, 0.7], [40, 60, 30])
    fast = bootstrap_draws(report, resamples=20000, seed=3)
    rng = np.random.default_rng(4)
    correct = [np.array([1] * g.correct + [0] * (g.count - g.correct)) for g in report.groups]
    slow = {"acc_wg": [], "acc_avg": [], "acc_mean_group": []}
    for _ in range(4000):
        accs = [rng.choice(c, size=len(c)).mean() for c in correct]
        slow["acc_wg"].append(min(accs))
        slow["acc_avg"].append(sum(a * len(c) for a, c in zip(accs, correct, strict=True)) / 130)
        slow["acc_mean_group"].append(np.mean(accs))
    for name, values in slow.items():
        for q in (2.5, 50, 97.5):
            assert np.percentile(fast[name], q) == pytest.approx(np.percentile(values, q), abs=0.012), (name, q)


def test_bootstrap_worst_group_and_adjusted_average() -> None:
    # groups far apart: the worst group is always group 0, so its interval is group 0's own (normal limit)
    report = _report([0.5, 0.95], [1000, 1000], train={(0,): 1, (1,): 3})
    intervals = bootstrap_intervals(report, resamples=20000, seed=0)
    half = 1.959964 * math.sqrt(0.25 / 1000)
    assert intervals["acc_wg"] == pytest.approx((0.5 - half, 0.5 + half), abs=2e-3)
    # adjusted average 0.25 * a0 + 0.75 * a1: sd sqrt(0.0625 * 0.25 / 1000 + 0.5625 * 0.0475 / 1000)
    sd = math.sqrt((0.0625 * 0.25 + 0.5625 * 0.95 * 0.05) / 1000)
    centre = 0.25 * 0.5 + 0.75 * 0.95
    assert intervals["adj_acc_avg"] == pytest.approx((centre - 1.96 * sd, centre + 1.96 * sd), abs=1.5e-3)


def test_bootstrap_is_seeded_and_the_worst_group_can_switch() -> None:
    report = _report([0.6, 0.62], [50, 50])
    assert bootstrap_intervals(report, seed=7) == bootstrap_intervals(report, seed=7)
    a, b = bootstrap_draws(report, seed=7), bootstrap_draws(report, seed=8)
    assert not np.array_equal(a["acc_avg"], b["acc_avg"])
    draws = bootstrap_draws(report, resamples=2000)
    # the worst of two close groups is below either group's own resampled accuracy on average
    assert draws["acc_wg"].mean() < 0.6
    with pytest.raises(EditclipError, match="resamples"):
        bootstrap_intervals(report, resamples=1)


def test_small_groups_are_flagged() -> None:
    report = _report([0.0, 0.9], [1, 100])
    u = group_intervals(report)
    assert u.small_groups == ("g:0",)
    assert u.groups["g:0"][0] == 0.0 and u.groups["g:0"][1] > 0.7  # 0/1 says almost nothing
    (line,) = small_group_warnings({"baseline": report, "edited": report})
    assert "g:0" in line and "only 1 image " in line and "100.0 points" in line
    assert u.as_dict()["bootstrap"]["seed"] == 0
