"""Sweeps over k: mean-ablate the top k heads of a ranking for k = 0..K, on calibration and evaluation images,
each k beside random head sets of the same size, and pick k on the calibration images only.

Every edit and control is scored by the one-pass logit arithmetic of :mod:`editclip.controls` (the
prediction of a mean-ablated head set is the base class scores plus the sum of its heads' deltas), so a
sweep of K values with R controls each costs about one fast-path evaluation per split.

**Choosing k** (:func:`editclip._selection.choose_k`, also ``editclip suggest --pick``): among the k whose calibration
average accuracy stays within ``max_avg_drop`` of the unedited model's, take the best calibration worst-group
accuracy, and pick the *smallest* k within ``tolerance`` of it. The evaluation images play no part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ._selection import MAX_AVG_DROP, TOLERANCE, choose_k
from .controls import CalibrationMeans, ControlSettings, HeadAction, control_pool, draw_head_sets, head_set_scores
from .errors import EditclipError
from .evaluate import GroupReport
from .evaluation_paths import Targets
from .names import head_name, parse_head
from .store import DecompositionStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

@dataclass(frozen=True)
class SweepRow:
    """One k: the heads ablated, the edit's report and its controls' reports per split."""

    k: int
    heads: tuple[str, ...]
    reports: dict[str, GroupReport]
    controls: dict[str, tuple[GroupReport, ...]]

    def band(self, split: str, metric: str) -> dict[str, float] | None:
        """The controls' min, median, 90th percentile and max of ``metric`` on ``split`` (None without controls)."""
        values = np.array([getattr(r, metric) for r in self.controls.get(split, ())], dtype=float)
        if values.size == 0:
            return None
        edit = getattr(self.reports[split], metric)
        return {
            "min": float(values.min()),
            "median": float(np.median(values)),
            "p90": float(np.percentile(values, 90)),
            "max": float(values.max()),
            "rank": int(1 + (values > edit + 1e-12).sum()),
            "of": int(values.size + 1),
        }


@dataclass
class Sweep:
    """A sweep over k (row 0 is the unedited model) and the k chosen on the calibration split."""

    rows: list[SweepRow]
    pick: int
    tolerance: float
    max_avg_drop: float
    settings: ControlSettings | None
    splits: tuple[str, ...]
    baselines: dict[str, dict[str, GroupReport]] = field(default_factory=dict)  # name -> split -> report

    @property
    def heads(self) -> tuple[str, ...]:
        """The heads of the chosen k."""
        return self.rows[self.pick].heads

    def table(self) -> str:
        """Fixed-width text table (accuracies in %): per k, each split's worst group and average, and the
        random band (median / 90th percentile of the worst group) with the edit's rank."""
        head = ["k", "head added"]
        for split in self.splits:
            head += [f"{split} wg", f"{split} avg"]
            if self.settings:
                head += [f"{split} random wg median/p90", "rank"]
        rows = [head]
        for row in self.rows:
            cells = [str(row.k) + (" *" if row.k == self.pick else ""), row.heads[-1] if row.heads else "(none)"]
            for split in self.splits:
                r = row.reports[split]
                cells += [f"{100 * r.acc_wg:.1f}", f"{100 * r.acc_avg:.1f}"]
                band = row.band(split, "acc_wg") if self.settings else None
                if self.settings and band is None:
                    cells += ["-", "-"]
                elif band is not None:
                    cells += [f"{100 * band['median']:.1f} / {100 * band['p90']:.1f}", f"{band['rank']}/{band['of']}"]
            rows.append(cells)
        for name, reports in self.baselines.items():
            cells = ["-", name]
            for split in self.splits:
                cells += [f"{100 * reports[split].acc_wg:.1f}", f"{100 * reports[split].acc_avg:.1f}"]
                cells += ["", ""] if self.settings else []
            rows.append(cells)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

        def line(cells: list[str]) -> str:
            pairs = enumerate(zip(cells, widths, strict=True))
            return "  ".join(c.ljust(w) if i == 1 else c.rjust(w) for i, (c, w) in pairs)

        lines = [line(r) for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"* chosen on {self.splits[0]}: the smallest k within {100 * self.tolerance:.1f} points of the "
                     f"best worst group, average at most {100 * self.max_avg_drop:.1f} points below k = 0")  # fmt: skip
        return "\n".join(line.rstrip() for line in lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON form: settings, the pick, and per k the heads, metrics and random bands of each split."""
        settings = self.settings
        pick = {"k": self.pick, "heads": list(self.heads), "chosen_on": self.splits[0], "tolerance": self.tolerance,
                "max_avg_drop": self.max_avg_drop}  # fmt: skip
        rows = []
        for row in self.rows:
            entry: dict[str, Any] = {"k": row.k, "heads": list(row.heads)}
            for split in self.splits:
                bands = {m: row.band(split, m) for m in ("acc_wg", "acc_avg")}
                entry[split] = {"metrics": row.reports[split].as_dict(), "random_band": bands}
            rows.append(entry)
        return {
            "pick": pick,
            "controls": None if settings is None else vars(settings).copy(),
            "rows": rows,
            "baselines": {n: {s: r.as_dict() for s, r in by_split.items()} for n, by_split in self.baselines.items()},
        }

    def plot(self, path: Any = None, title: str | None = None) -> Figure:
        """Worst group and average vs k, edit against the random band, calibration (dashed) and evaluation
        (solid); the chosen k marked. Saved atomically as a PNG when ``path`` is given."""
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        from ._io import save_figure

        fig = Figure(figsize=(10, 5.0))
        ks = np.array([row.k for row in self.rows])
        colours = {split: c for split, c in zip(self.splits, ("tab:orange", "tab:blue"), strict=False)}
        panels = (("acc_wg", "worst group"), ("acc_avg", "average"))
        for ax, (metric, name) in zip(fig.subplots(1, 2), panels, strict=True):
            for split in self.splits:
                style = "--" if split == self.splits[0] and len(self.splits) > 1 else "-"
                edit = [100 * getattr(row.reports[split], metric) for row in self.rows]
                ax.plot(ks, edit, style, marker="o", color=colours[split], label=f"top-k heads ({split})")
                bands = [row.band(split, metric) for row in self.rows]
                if any(bands):
                    at = [k for k, b in zip(ks, bands, strict=True) if b]
                    lo = [100 * b["min"] for b in bands if b]
                    hi = [100 * b["max"] for b in bands if b]
                    med = [100 * b["median"] for b in bands if b]
                    ax.fill_between(at, lo, hi, color=colours[split], alpha=0.15,
                                    label=f"random k heads, min-max ({split})")  # fmt: skip
                    ax.plot(at, med, ":", color=colours[split], label=f"random k heads, median ({split})")
                for b_name, reports in self.baselines.items():
                    ax.axhline(100 * getattr(reports[split], metric), color=colours[split], linestyle="-.",
                               linewidth=0.9, label=f"{b_name} ({split})")  # fmt: skip
            ax.axvline(self.pick, color="0.4", linewidth=0.8)
            ax.set_xlabel("k (heads mean-ablated)")
            ax.set_ylabel(f"{name} accuracy (%)")
            ax.set_title(f"{name} (k = {self.pick} chosen on {self.splits[0]})")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        handles, labels = fig.axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=7, frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.05 + 0.035 * ((len(labels) + 3) // 4), 1, 1))
        if path is not None:
            save_figure(fig, path)
        return fig


def _flat(ranking: Sequence[str], n_layers: int, n_heads: int) -> list[int]:
    flat = []
    for name in ranking:
        ref = parse_head(name, n_layers, n_heads)
        index = ref.layer * n_heads + ref.head
        if index in flat:
            raise EditclipError(f"head {name} is twice in the ranking")
        flat.append(index)
    return flat


@torch.no_grad()
def sweep_k(
    stores: Mapping[str, DecompositionStore],
    targets: Mapping[str, Targets],
    calibration: DecompositionStore | CalibrationMeans,
    ranking: Sequence[str],
    classifier: Tensor,
    *,
    max_k: int | None = None,
    controls: ControlSettings | None = None,
    tolerance: float = TOLERANCE,
    max_avg_drop: float = MAX_AVG_DROP,
    progress: bool = True,
) -> Sweep:
    """Mean-ablate the top k of ``ranking`` for k = 0..max_k on each split of ``stores`` (the first is the
    one k is chosen on), with ``controls`` random sets of k heads each (the same sets on every split)."""
    if not stores:
        raise EditclipError("a sweep needs at least the calibration split")
    first = next(iter(stores.values()))
    n_layers, n_heads = int(first.meta["shape"]["layers"]), int(first.meta["shape"]["heads"])
    flat = _flat(ranking, n_layers, n_heads)
    max_k = len(flat) if max_k is None else min(max_k, len(flat))
    if max_k < 1:
        raise EditclipError("the ranking has no heads to sweep over")
    means = calibration if isinstance(calibration, CalibrationMeans) else CalibrationMeans.of(calibration)
    sets: list[tuple[int, ...]] = [()]
    spans = [(0, 1)]  # per k: (first index in sets, number of sets)
    for k in range(1, max_k + 1):
        top = flat[:k]
        start = len(sets)
        sets.append(tuple(sorted(top)))
        if controls is not None:
            _, pool = control_pool(top, controls.layers, n_layers, n_heads)
            with contextlib.suppress(EditclipError):  # no other set of k heads in those layers: no band at k
                sets += draw_head_sets(pool, k, controls.random_heads, top, controls.seed + k)[0]
        spans.append((start, len(sets) - start))
    preds = {
        split: head_set_scores(store, means, sets, HeadAction("mean_ablate"), classifier, progress=progress)[0]
        for split, store in stores.items()
    }
    names = [tuple(head_name(h // n_heads, h % n_heads) for h in flat[:k]) for k in range(max_k + 1)]
    rows = []
    for k, (start, count) in enumerate(spans):
        reports = {s: targets[s].report(preds[s][start]) for s in stores}
        ctrl = {s: tuple(targets[s].report(p) for p in preds[s][start + 1 : start + count]) for s in stores}
        rows.append(SweepRow(k, names[k], reports, ctrl))
    split = next(iter(stores))
    pick = choose_k([(row.k, row.reports[split]) for row in rows], tolerance, max_avg_drop)
    return Sweep(rows, pick, tolerance, max_avg_drop, controls, tuple(stores))
