"""What ``editclip run`` writes about a run: report.json, report.md and the model card of its export folder.

- ``report.json`` has one level per concept (``calibration.data``, ``evaluation.metrics``...), records the
  software versions and the device (:func:`environment`), and writes the paths that lie inside the folder
  above the report relative to the report (``../data``), so that a folder moved as a whole still reads
  right (:func:`portable`).
- ``report.md`` shows the same as tables: accuracy per group with 95% intervals, the random-head controls,
  the checks, the exports, the environment.
- the model card (``README.md`` + ``model_card.json`` in the export folder) says what was edited and why,
  where the calibration came from, what it changed, how the exported files are preprocessed and loaded,
  and with which versions they were made.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .backbone import describe_preprocessing
from .evaluate import GroupReport, GroupStat
from .uncertainty import RESAMPLES, SEED, format_interval, group_intervals

PATH_KEYS = frozenset({"root", "path", "store", "stats", "spec_file", "data_path", "checkpoint", "dir", "safetensors"})
_DISTRIBUTIONS = {"torch": "torch", "open_clip": "open_clip_torch", "onnxruntime": "onnxruntime", "onnx": "onnx"}


def environment(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The versions of editclip, python, torch, open_clip, onnx and onnxruntime (None: not installed), and the
    device with its name (the GPU's, or the CPU's architecture and torch's thread count)."""
    versions: dict[str, str | None] = {"editclip": __version__, "python": platform.python_version()}
    for name, dist in _DISTRIBUTIONS.items():
        versions[name] = _installed(dist, "onnxruntime-gpu" if name == "onnxruntime" else None)
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{platform.machine() or 'cpu'} CPU, {torch.get_num_threads()} torch threads"
    return {"versions": versions, "device": str(device), "device_name": name}


def _installed(dist: str, alternative: str | None = None) -> str | None:
    for candidate in (dist, alternative):
        if candidate is None:
            continue
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def portable(value: Any, report_dir: str | os.PathLike[str]) -> Any:
    """``value`` with every path under a :data:`PATH_KEYS` key that lies inside the report folder's parent
    written relative to the report folder; other paths (and everything else) unchanged."""
    base = Path(report_dir).resolve()
    top = base.parent

    def convert(key: str | None, item: Any) -> Any:
        if isinstance(item, Mapping):
            return {k: convert(k, v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(key, v) for v in item]
        if key in PATH_KEYS and isinstance(item, str) and item:
            path = Path(item).resolve()
            if path.is_relative_to(top):
                return Path(os.path.relpath(path, base)).as_posix()
        return item

    return convert(None, value)


# ----- report.md -----------------------------------------------------------------------------------------------


def markdown(report: Mapping[str, Any], reports: Mapping[str, GroupReport]) -> str:
    """report.md: what was edited, on what, accuracy per group baseline vs edited (with 95% intervals), the
    random-head controls, checks, exports, versions."""
    r = report
    lines = [f"# editclip run: {r.get('name') or 'edit'}", ""]
    lines += ["| | |", "|---|---|"]
    lines.append(f"| model | {model_text(r['model'])}, weights `{r['model']['fingerprint']}` |")
    lines.append(f"| preprocessing | {describe_preprocessing(r['model'].get('preprocessing'))}; precision "
                 f"{r['model'].get('precision')} |")  # fmt: skip
    lines.append(f"| target | {r['target']} ({_semantics(r['target'])}) |")
    lines.append(f"| edits | {'; '.join(r['edits'])} ({len(r['edited_parts'])} parts) |")
    calib = r["calibration"]
    source = f"statistics `{calib['stats']}`" if calib.get("stats") else f"store `{calib.get('store')}`"
    lines.append(f"| calibration | {data_text(calib['data'])}, {source} |")
    shared = (r.get("calibration_overlap") or {}).get("shared_images")
    if shared:
        lines.append(f"| transductive | calibration includes {shared} of the evaluated images "
                     "(calibration.transductive: true) |")  # fmt: skip
    if r.get("spec_file"):
        lines.append(f"| spec | `{r['spec_file']}` |")
    for key, value in (r.get("overrides") or {}).items():
        lines.append(f"| override | `{key}={value}` |")
    ev = r.get("evaluation")
    if ev is not None:
        lines.append(f"| evaluation | {data_text(ev['data'])}; classes {', '.join(ev['classes'])}; "
                     f"groups {', '.join(ev['groups'])} |")  # fmt: skip
        lines += ["", "## Accuracy (%)", "", accuracy_table(reports, ev["classes"], ev["label"]), ""]
        lines.append("Intervals are 95%: Wilson per group; a bootstrap over images (stratified by group, "
                     f"{RESAMPLES} resamples, seed {SEED}) for the averages and the worst group.")  # fmt: skip
        lines += [f"\n**Warning:** {w}" for w in ev.get("warnings", [])]
        lines += ["", "![per-group accuracy](groups.png)"]
        if "controls" in ev:
            lines += ["", "## Random-head controls", "", controls_table(ev["controls"])]
        if ev["checks"]:
            lines += ["", "## Checks", "", checks_table(ev["checks"])]
    if r.get("export"):
        lines += ["", "## Export", "", exports_table(r["export"])]
    if r.get("environment"):
        lines += ["", "## Environment", "", environment_table(r["environment"])]
    return "\n".join(lines) + "\n"


def model_text(model: Mapping[str, Any]) -> str:
    """``toyclip (the shipped toy-world CLIP)``, ``ViT-B-16 (pretrained laion2b_s34b_b88k)``..."""
    if model.get("toyworld"):
        return f"{model['name']} (the shipped toy-world CLIP)"
    if model.get("checkpoint"):
        return f"{model['name']} (checkpoint `{model['checkpoint']}`)"
    tag = model.get("pretrained")
    return f"{model['name']} ({'pretrained ' + tag if tag else 'random weights'})"


def data_text(data: Mapping[str, Any]) -> str:
    """``data/toyworld (waterbirds, split val), 600 images``."""
    details = [data.get("format") or "?"] + ([f"split {data['split']}"] if data.get("split") else [])
    return f"`{data.get('root')}` ({', '.join(details)}), {data.get('count')} images"


def _semantics(target: str) -> str:
    return "direct effects, EditedCLIP" if target == "wrapper" else "total effects, patched open_clip weights"


def group_label(group: GroupStat, columns: tuple[str, ...], classes: list[str], label: str) -> str:
    """``triangle / water (`y:0_place:1`)`` when the group's values have names (``evaluate.group_names``,
    the data's own), else ``y=0 (triangle), place=1``: each column's value, the class name for the label
    column."""
    if group.display and group.display != group.name:
        return f"{group.display} (`{group.name}`)"
    parts = []
    for column, value in zip(columns, group.key, strict=True):
        named = column == label and isinstance(value, int) and 0 <= value < len(classes)
        parts.append(f"{column}={value}" + (f" ({classes[value]})" if named else ""))
    return ", ".join(parts)


def accuracy_table(reports: Mapping[str, GroupReport], classes: list[str], label: str) -> str:
    """Per-group accuracy, average, mean per group, worst group and adjusted average, one column per model,
    each with its 95% interval (Wilson per group, bootstrap for the summaries)."""
    names = list(reports)
    first = reports[names[0]]
    labels = {g.name: group_label(g, first.columns, classes, label) for r in reports.values() for g in r.groups}
    spans = {name: group_intervals(r) for name, r in reports.items()}

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    def cell(value: float | None, ci: tuple[float, float] | None) -> str:
        return f"{_pct(value)} {format_interval(ci)}".rstrip()

    def summary(metric: str) -> list[str]:
        return [cell(getattr(r, metric), spans[n].summary.get(metric)) for n, r in reports.items()]

    rows = [row(["group", "images", *names]), "|---|---:|" + "---:|" * len(names)]
    for g in first.groups:
        accs = [cell(next((x.acc for x in r.groups if x.name == g.name), None), spans[n].groups.get(g.name))
                for n, r in reports.items()]  # fmt: skip
        rows.append(row([labels[g.name], str(g.count), *accs]))
    rows.append(row(["average", str(first.count), *summary("acc_avg")]))
    rows.append(row(["mean per group", "", *summary("acc_mean_group")]))
    worst = [f"{c} ({labels[r.worst.name]})" for c, r in zip(summary("acc_wg"), reports.values(), strict=True)]
    rows.append(row(["worst group", "", *worst]))
    if first.adj_acc_avg is not None:
        rows.append(row(["adjusted average (training group sizes)", "", *summary("adj_acc_avg")]))
    return "\n".join(rows)


def controls_table(controls: Mapping[str, Any]) -> str:
    """The controls section of report.md: how the edit ranks among random head sets of its size."""
    c = controls
    lines = [f"The edit's action ({c['action']}) on {c['drawn']} random sets of {c['k']} heads drawn from layers "
             f"{', '.join(map(str, c['drawn_from_layers']))} (seed {c['seed']}; never the edit's own set). Rank 1 "
             "is better than every control.", "",
             "| metric | edit | controls: median | 90th percentile | best | edit's rank |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for key, m in c["metrics"].items():
        lines.append(f"| {key} | {_pct(m['edit'])} | {_pct(m['median'])} | {_pct(m['p90'])} | {_pct(m['best'])} | "
                     f"{m['rank']} of {m['of']} |")  # fmt: skip
    return "\n".join(lines)


_CHECK_ROWS = (
    ("images", "images compared", "{:d}"),
    ("agreement", "same prediction (%)", "pct"),
    ("disagreements", "different predictions", "{:d}"),
    ("cosine_mean", "mean cosine of the embeddings", "{:.6f}"),
    ("cosine_min", "lowest cosine", "{:.6f}"),
    ("max_abs_diff", "largest absolute difference", "{:.3g}"),
    ("acc_avg_diff", "average accuracy difference (points)", "points"),
    ("acc_wg_diff", "worst-group accuracy difference (points)", "points"),
)
_CHECK_NAMES = {
    "exact_vs_fast": "exact path vs fast path",
    "weights_fidelity": "patched weights vs direct edit",
}


def checks_table(checks: Mapping[str, Mapping[str, Any]]) -> str:
    """One column per check (exact vs fast, weights fidelity), one row per quantity it measured."""
    names = list(checks)
    rows = ["| quantity | " + " | ".join(_CHECK_NAMES.get(n, n.replace("_", " ")) for n in names) + " |",
            "|---|" + "---:|" * len(names)]  # fmt: skip
    known = {key for key, _, _ in _CHECK_ROWS}
    extra = [(k, k.replace("_", " "), "{}") for n in names for k in checks[n] if k not in known]
    for key, label, fmt in (*_CHECK_ROWS, *dict.fromkeys(extra)):
        if not any(key in checks[n] for n in names):
            continue
        rows.append(f"| {label} | " + " | ".join(_format(checks[n].get(key), fmt) for n in names) + " |")
    return "\n".join(rows)


def _format(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "pct":
        return f"{100 * value:.2f}"
    if fmt == "points":
        return f"{100 * value:+.1f}"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def exports_table(exports: Mapping[str, Any]) -> str:
    """One row per exported file: its format, path, size and parity check."""
    rows = ["| format | file | size | check |", "|---|---|---:|---|"]
    for fmt, value in exports.items():
        if isinstance(value, Mapping):
            size = f"{value['size_bytes'] / 2**20:.1f} MiB" if value.get("size_bytes") else ""
            rows.append(f"| {fmt} | `{value['path']}` | {size} | {parity_text(value.get('parity'))} |")
        else:
            rows.append(f"| {fmt} | `{value}` | | |")
    return "\n".join(rows)


def parity_text(parity: Mapping[str, Any] | None) -> str:
    if not parity:
        return "parity not checked"
    verdict = "passed" if parity.get("passed") else "FAILED"
    return (f"onnxruntime ({parity['provider']}) vs torch at batch {', '.join(map(str, parity['batch_sizes']))}: "
            f"max abs diff {parity['max_abs_diff']:.3g}, min cosine {parity['min_cosine']:.7f}, {verdict}")  # fmt: skip


def environment_table(env: Mapping[str, Any]) -> str:
    rows = ["| | |", "|---|---|", f"| device | {env['device']} ({env['device_name']}) |"]
    rows += [f"| {name} | {version or 'not installed'} |" for name, version in env["versions"].items()]
    return "\n".join(rows)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"

