"""How many heads: the selection rule shared by ``editclip sweep`` and ``editclip suggest --pick``, and the
defaults of head selection (plain Python, so that command-line parsers can show them without torch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import EditclipError

if TYPE_CHECKING:
    from .evaluate import GroupReport

TOLERANCE = 0.01  # one point of worst-group accuracy
MAX_AVG_DROP = 0.05
MAX_K = 8  # the most heads a sweep or a pick tries by default
CUTOFF = 0.5  # spec fragments without a pick: heads scoring at least half the best score
SCORES = ("difference", "ratio")  # the groups rankings of editclip.suggest.head_scores, by name


def choose_k(
    trials: Sequence[tuple[int, GroupReport]], tolerance: float = TOLERANCE, max_avg_drop: float = MAX_AVG_DROP
) -> int:
    """The smallest k whose worst-group accuracy is within ``tolerance`` of the best among the k whose average
    accuracy is at most ``max_avg_drop`` below the unedited model's (``trials`` include k = 0, the baseline)."""
    if not trials or trials[0][0] != 0:
        raise EditclipError("choosing k needs the trials of k = 0 (the unedited model) first")
    if tolerance < 0 or max_avg_drop < 0:
        raise EditclipError(f"tolerance ({tolerance}) and max_avg_drop ({max_avg_drop}) must be >= 0")
    base = trials[0][1].acc_avg
    allowed = [(k, r) for k, r in trials if r.acc_avg >= base - max_avg_drop - 1e-12]
    best = max(r.acc_wg for _, r in allowed)
    return min(k for k, r in allowed if r.acc_wg >= best - tolerance - 1e-12)
