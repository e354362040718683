"""Zero-shot classification and per-group metrics: the numbers an edit is judged by.

The group report follows the WILDS conventions for spurious-correlation benchmarks such as Waterbirds:
``acc_avg`` (over images), ``acc_wg`` (the group with the lowest accuracy, not the smallest group),
``adj_acc_avg`` (group accuracies weighted by the training split's group sizes) and one
``acc_<group>`` per group, where a group is named by its column values: ``y:0_place:1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES
from tqdm.auto import tqdm

from ._io import save_figure
from .backbone import Backbone
from .errors import EditclipError
from .spec import TEMPLATE_SETS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Template = str | Callable[[str], str]

_TEMPLATES: dict[str, Sequence[Template]] = dict(
    zip(TEMPLATE_SETS, (OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES), strict=True)
)


# ---------------------------------------------------------------------------------------------------
# Zero-shot classification


def resolve_templates(templates: str | Sequence[Template]) -> list[Template]:
    """A template-set name (``openai_imagenet``, ``simple_imagenet``: open_clip's lists) or the templates
    themselves: format strings with one ``{}`` or callables of the class name."""
    if isinstance(templates, str):
        if templates not in _TEMPLATES:
            raise EditclipError(f"unknown template set {templates!r}; choose one of {', '.join(_TEMPLATES)}")
        return list(_TEMPLATES[templates])
    templates = list(templates)
    if not templates:
        raise EditclipError("no templates: give at least one, e.g. 'a photo of a {}.'")
    for template in templates:
        if isinstance(template, str) and template.count("{}") != 1:
            raise EditclipError(f"template {template!r} needs exactly one '{{}}' for the class name")
    return templates


@torch.no_grad()
def zero_shot_classifier(
    bb: Backbone,
    classes: Sequence[str],
    templates: str | Sequence[Template] = "openai_imagenet",
    batch_size: int = 256,
) -> torch.Tensor:
    """[C, D] unit class embeddings: every prompt embedded and normalised, averaged over the templates,
    renormalised. The same weights as ``open_clip.build_zero_shot_classifier`` (which returns [D, C])."""
    if len(classes) < 1:
        raise EditclipError("no classes to classify into")
    prompts = resolve_templates(templates)
    texts = [t.format(c) if isinstance(t, str) else t(c) for c in classes for t in prompts]
    starts = range(0, len(texts), batch_size)
    chunks = [
        F.normalize(bb.encode_text(texts[i : i + batch_size]).float(), dim=-1)
        for i in tqdm(starts, desc="class prompts", unit="batch", disable=len(starts) < 2, leave=False)
    ]
    per_prompt = torch.cat(chunks).reshape(len(classes), len(prompts), -1)
    return F.normalize(per_prompt.mean(dim=1), dim=-1)


def predict(embeddings: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    """[N] class index of each [N, D] image embedding under a [C, D] classifier (largest cosine)."""
    return (embeddings.float() @ classifier.float().T).argmax(dim=-1)


# ---------------------------------------------------------------------------------------------------
# Per-group metrics


@dataclass(frozen=True)
class GroupStat:
    """One group: its column values, name (``y:0_place:1``, the metric key), image count, correct
    predictions, training-split size and display name (``landbird / water``, when the values have names)."""

    key: tuple[Any, ...]
    name: str
    count: int
    correct: int
    train_count: int | None = None
    display: str | None = None

    @property
    def label(self) -> str:
        """How reports name the group: its display name, else its metric name."""
        return self.display or self.name

    @property
    def acc(self) -> float:
        """Accuracy in this group (0..1)."""
        return self.correct / self.count


@dataclass(frozen=True)
class GroupReport:
    """Accuracy per group and over groups for one model on one dataset; accuracies are fractions."""

    columns: tuple[str, ...]
    groups: tuple[GroupStat, ...]

    def __repr__(self) -> str:
        adjusted = "" if self.adj_acc_avg is None else f", adjusted {100 * self.adj_acc_avg:.1f}%"
        return (f"GroupReport({', '.join(self.columns)}: {len(self.groups)} groups, {self.count} images; "
                f"average {100 * self.acc_avg:.1f}%{adjusted}, worst group {100 * self.acc_wg:.1f}% "
                f"({self.worst.name}))")  # fmt: skip

    @property
    def count(self) -> int:
        """Number of images."""
        return sum(g.count for g in self.groups)

    @property
    def acc_avg(self) -> float:
        """Accuracy over all images."""
        return sum(g.correct for g in self.groups) / self.count

    @property
    def worst(self) -> GroupStat:
        """The group with the lowest accuracy (the first in key order on ties)."""
        return min(self.groups, key=lambda g: g.acc)

    @property
    def acc_wg(self) -> float:
        """Worst-group accuracy."""
        return self.worst.acc

    @property
    def acc_mean_group(self) -> float:
        """Mean of the group accuracies (each group counts once, whatever its size)."""
        return sum(g.acc for g in self.groups) / len(self.groups)

    @property
    def adj_acc_avg(self) -> float | None:
        """Group accuracies weighted by the training split's group sizes (None without those sizes).

        Training groups absent from this data are left out and the weights renormalised.
        """
        weights = [g.train_count or 0 for g in self.groups]
        if sum(weights) == 0:
            return None
        return sum(w * g.acc for w, g in zip(weights, self.groups, strict=True)) / sum(weights)

    def as_dict(self) -> dict[str, Any]:
        """Flat WILDS-style metrics: acc_avg, acc_wg, worst_group, acc_mean_group, adj_acc_avg (when the
        training sizes are known), count, and acc_<group> / count_<group> per group."""
        out: dict[str, Any] = {
            "acc_avg": self.acc_avg,
            "acc_wg": self.acc_wg,
            "worst_group": self.worst.name,
            "acc_mean_group": self.acc_mean_group,
        }
        if self.adj_acc_avg is not None:
            out["adj_acc_avg"] = self.adj_acc_avg
        out["count"] = self.count
        for g in self.groups:
            out[f"acc_{g.name}"] = g.acc
            out[f"count_{g.name}"] = g.count
        if any(g.display for g in self.groups):
            out["group_names"] = {g.name: g.label for g in self.groups}
        return out

    def table(self) -> str:
        """A plain-text table of this report (accuracies in %)."""
        return format_table({"acc %": self})


def group_metrics(
    pred: Any,
    label: Any,
    groups: Mapping[str, Any],
    train_group_counts: Mapping[tuple[Any, ...], int] | None = None,
    value_names: Mapping[str, Mapping[Any, str]] | None = None,
) -> GroupReport:
    """Per-group accuracy of predictions `pred` against `label` (both [N], arrays or tensors).

    `groups` maps column names to [N] values; a group is one combination of values, in the order of
    the columns. `train_group_counts` ({(value, ...): images}, e.g. from
    ``ImageDataset.group_counts(columns)``) gives the weights of the adjusted average. `value_names`
    ({column: {value: name}}) names groups for display (``landbird / water``); metric keys stay
    ``y:0_place:1``.
    """
    if not groups:
        raise EditclipError("group metrics need at least one group column (e.g. the label)")
    pred_a, label_a = _flat(pred, "pred"), _flat(label, "label")
    columns = {name: _flat(values, name) for name, values in groups.items()}
    for name, values in [("label", label_a), *columns.items()]:
        if len(values) != len(pred_a):
            raise EditclipError(f"{name} has {len(values)} values but there are {len(pred_a)} predictions")
    if len(pred_a) == 0:
        raise EditclipError("no predictions to evaluate")
    codes, uniques = [], []
    for values in columns.values():
        inverse, unique = _codes(values)
        codes.append(inverse)
        uniques.append(unique)
    combined = np.ravel_multi_index(codes, [len(u) for u in uniques]) if len(codes) > 1 else codes[0]
    present, group_of = np.unique(combined, return_inverse=True)
    counts = np.bincount(group_of.reshape(-1), minlength=len(present))
    hits = np.bincount(group_of.reshape(-1)[pred_a == label_a], minlength=len(present))
    parts = np.unravel_index(present, [len(u) for u in uniques]) if len(codes) > 1 else (present,)
    tally = {
        tuple(u[int(c)] for u, c in zip(uniques, code, strict=True)): (int(n), int(ok))
        for *code, n, ok in zip(*parts, counts, hits, strict=True)
    }
    train = {tuple(_scalar(v) for v in k): int(n) for k, n in (train_group_counts or {}).items()}
    stats = tuple(
        GroupStat(key, group_name(columns, key), n, ok, train.get(key), display_name(columns, key, value_names))
        for key, (n, ok) in sorted(tally.items(), key=lambda item: _order(item[0]))
    )
    return GroupReport(tuple(columns), stats)


def group_name(columns: Sequence[str], key: Sequence[Any]) -> str:
    """``y:0_place:1`` for columns (y, place) and values (0, 1)."""
    return "_".join(f"{c}:{v}" for c, v in zip(columns, key, strict=True))


def display_name(
    columns: Sequence[str], key: Sequence[Any], value_names: Mapping[str, Mapping[Any, str]] | None
) -> str | None:
    """``landbird / water`` for (y, place) = (0, 1) when both columns' values have names (a column without
    names shows as ``place:1``); None when no column has names."""
    if not value_names or not any(c in value_names for c in columns):
        return None
    return " / ".join(
        str(value_names[c][v]) if c in value_names and v in value_names[c] else f"{c}:{v}"
        for c, v in zip(columns, key, strict=True)
    )


def _flat(values: Any, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise EditclipError(f"{what} must be one value per image (1-D), got shape {array.shape}")
    return array


def _codes(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """[N] integer codes of a column's values and the (plain) value of each code."""
    try:
        unique, inverse = np.unique(values, return_inverse=True)
    except TypeError:  # values of several types (an object column): no order, so codes by first appearance
        index: dict[Any, int] = {}
        inverse = np.array([index.setdefault(_scalar(v), len(index)) for v in values.tolist()], dtype=np.int64)
        return inverse, list(index)
    return inverse.reshape(-1), [_scalar(v) for v in unique]


def _order(key: tuple[Any, ...]) -> list[tuple[str, Any]]:
    """Sort key for group keys: by value, values of different types kept apart instead of compared."""
    return [(type(v).__name__, v) for v in key]


def _scalar(value: Any) -> Any:
    """Plain Python values for group keys: numpy scalars unwrapped, whole floats made ints."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


# ---------------------------------------------------------------------------------------------------
# Tables and plots


def format_table(reports: Mapping[str, GroupReport]) -> str:
    """Side-by-side text table of several reports on the same data (e.g. baseline and edited), in %."""
    if not reports:
        raise EditclipError("no reports to tabulate")
    names = _group_names(reports)
    counts = {g.name: g.count for r in reports.values() for g in r.groups}
    labels = {g.name: g.label for r in reports.values() for g in r.groups}
    rows: list[list[str]] = [["group", "count", *reports]]
    for name in names:
        rows.append([labels[name], str(counts[name]), *(_pct(_acc_of(r, name)) for r in reports.values())])
    first = next(iter(reports.values()))
    rows.append(["average", str(first.count), *(_pct(r.acc_avg) for r in reports.values())])
    rows.append(["mean per group", "", *(_pct(r.acc_mean_group) for r in reports.values())])
    rows.append(["worst group", "", *(f"{_pct(r.acc_wg)} ({r.worst.label})" for r in reports.values())])
    if any(r.adj_acc_avg is not None for r in reports.values()):
        rows.append(["adjusted average", "", *(_pct(r.adj_acc_avg) for r in reports.values())])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def plot_groups(
    reports: Mapping[str, GroupReport],
    path: str | Path | None = None,
    title: str | None = None,
    *,
    intervals: bool = True,
    controls: Mapping[str, Sequence[float]] | None = None,
    controls_label: str = "random heads",
) -> Figure:
    """Bar chart of per-group, average and worst-group accuracy, one bar per report side by side (e.g.
    baseline and edited; each one's worst group named in the legend). Returns the Figure; saves it as PNG
    (atomically) only when ``path`` is given.

    ``intervals`` draws 95% error bars (Wilson per group, bootstrap for the average and the worst group,
    :mod:`editclip.uncertainty`). ``controls`` maps metric keys (``acc_<group>``, ``acc_avg``, ``acc_wg``)
    to their values over random-head controls, drawn as a grey range (min to max) with the median marked.
    """
    from matplotlib.figure import Figure

    if not reports:
        raise EditclipError("no reports to plot")
    names = _group_names(reports)
    counts = {g.name: g.count for r in reports.values() for g in r.groups}
    labels = {g.name: g.label for r in reports.values() for g in r.groups}
    ticks = [f"{labels[n]}\n(n={counts[n]})" for n in names] + ["average", "worst group"]
    slots = len(reports) + (1 if controls else 0)
    fig = Figure(figsize=(max(6.0, 0.55 * len(ticks) * (slots + 1)), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / slots
    x = np.arange(len(ticks))
    crowded = slots > 2  # labels turn upright so that neighbouring bars' labels cannot overlap
    for i, (label, report) in enumerate(reports.items()):
        values = [_acc_of(report, n) for n in names] + [report.acc_avg, report.acc_wg]
        heights = [0.0 if v is None else 100 * v for v in values]
        texts = ["" if v is None else f"{h:.1f}" for h, v in zip(heights, values, strict=True)]
        offsets = x + (i - (slots - 1) / 2) * width
        yerr = _error_bars(report, names, heights) if intervals else None
        bars = ax.bar(offsets, heights, width, label=f"{label} (worst group {report.worst.label})", yerr=yerr,
                      error_kw={"elinewidth": 0.8, "capsize": 2})  # fmt: skip
        ax.bar_label(bars, labels=texts, fontsize=7, padding=2, rotation=90 if crowded else 0)
    if controls:
        keys = [f"acc_{n}" for n in names] + ["acc_avg", "acc_wg"]
        where = x + (slots - 1) / 2 * width
        for j, key in enumerate(keys):
            values = 100 * np.asarray(controls.get(key, []), dtype=float)
            if values.size:
                ax.vlines(where[j], values.min(), values.max(), color="0.55", linewidth=3,
                          label=controls_label if j == 0 else None)  # fmt: skip
                ax.plot(where[j], np.median(values), marker="_", color="black", markersize=9)
    ax.set_xticks(x, ticks, fontsize=8)
    ax.axvline(len(names) - 0.5, color="0.6", linewidth=0.8, linestyle="--")
    ax.set_ylim(0, 135 if crowded else 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("accuracy (%)" + (", 95% intervals" if intervals else ""))
    ax.legend(loc="upper center", ncol=min(slots, 2), fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    if path is not None:
        save_figure(fig, path)
    return fig


def _error_bars(report: GroupReport, names: list[str], heights: list[float]) -> np.ndarray:
    """[2, bars] distances from each bar's top to its interval's ends (0 where a group is absent)."""
    from .uncertainty import bootstrap_intervals, wilson_interval

    by_name = {g.name: g for g in report.groups}
    summary = bootstrap_intervals(report)
    cis = [wilson_interval(by_name[n].correct, by_name[n].count) if n in by_name else None for n in names]
    cis += [summary["acc_avg"], summary["acc_wg"]]
    err = np.zeros((2, len(cis)))
    for j, (ci, h) in enumerate(zip(cis, heights, strict=True)):
        if ci is not None:
            err[:, j] = [max(0.0, h - 100 * ci[0]), max(0.0, 100 * ci[1] - h)]
    return err


def _group_names(reports: Mapping[str, GroupReport]) -> list[str]:
    seen: dict[str, tuple[Any, ...]] = {}
    for report in reports.values():
        for g in report.groups:
            seen.setdefault(g.name, g.key)
    return sorted(seen, key=lambda n: _order(seen[n]))


def _acc_of(report: GroupReport, name: str) -> float | None:
    return next((g.acc for g in report.groups if g.name == name), None)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
