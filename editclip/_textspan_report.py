"""TextSpan head reports: the heads of a store, a JSON-ready report, its Markdown and overview plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

from ._io import save_figure, write_json, write_text
from ._textspan_select import HeadMoments
from .errors import EditclipError
from .names import HeadRef, PoolHeadRef

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._textspan import TextSpanResult
    from .stats import PartStats
    from .store import DecompositionStore


def store_heads(store: DecompositionStore, layers: Sequence[int]) -> tuple[Tensor, list[HeadRef]]:
    """Every head of `layers` from a store, head-major: C [K, N, D] (K = len(layers) * H) and the heads."""
    layers = list(layers)
    data = store.read("heads", index=(layers,))  # [N, len(layers), H, D]
    n, n_layers, n_heads, dim = data.shape
    refs = [HeadRef(layer, head) for layer in layers for head in range(n_heads)]
    return data.reshape(n, n_layers * n_heads, dim).transpose(0, 1), refs


def stats_heads(stats: PartStats, layers: Sequence[int]) -> tuple[HeadMoments, list[HeadRef]]:
    """Every head of `layers` from a statistics file, head-major: their :class:`HeadMoments` (K = len(layers) * H)
    and the heads; refused, naming the heads, when the file has no scatters for some of the layers."""
    layers = list(layers)
    sums, scatters = stats.tensors.get("sum.heads"), stats.tensors.get("scatter.heads")
    if sums is None or scatters is None or sums.ndim != 3 or scatters.shape != (len(stats.layers), *sums.shape[1:],
                                                                                   sums.shape[-1]):  # fmt: skip
        raise EditclipError(f"statistics {str(stats.root)!r} are damaged: their head sums and scatters do not match")
    if stats.count < 2:
        raise EditclipError(f"statistics {str(stats.root)!r} hold {stats.count} images; TextSpan needs at least 2")
    n_heads, dim = int(sums.shape[1]), int(sums.shape[2])
    missing = [layer for layer in layers if layer not in stats.layers]
    if missing:
        have = f"layers {layer_selection(stats.layers)}" if stats.layers else "no layers"
        named = ", ".join(f"L{layer}.H0-{n_heads - 1}" for layer in missing)
        wanted = layer_selection(sorted(set(layers) | set(stats.layers)))
        raise EditclipError(
            f"statistics {str(stats.root)!r} have head scatters for {have}, not for the heads {named}; make "
            f"statistics with `editclip stats --layers {wanted}`"
        )
    rows = [stats.layers.index(layer) for layer in layers]
    mean = (sums[layers] / stats.count).reshape(-1, dim)
    scatter = scatters[rows].reshape(-1, dim, dim)
    refs = [HeadRef(layer, head) for layer in layers for head in range(n_heads)]
    return HeadMoments(mean.double(), scatter.double(), stats.count), refs


def layer_selection(layers: Sequence[int]) -> str:
    """Layers as a selection `--layers` reads: runs of consecutive layers joined, e.g. ``L0-2,L5``."""
    runs: list[list[int]] = []
    for layer in sorted(set(layers)):
        if runs and layer == runs[-1][-1] + 1:
            runs[-1].append(layer)
        else:
            runs.append([layer])
    return ",".join(f"L{r[0]}" if len(r) == 1 else f"L{r[0]}-{r[-1]}" for r in runs)


def store_pool_heads(store: DecompositionStore) -> tuple[Tensor, list[PoolHeadRef]]:
    """The attention pool's heads of an official-convention store of a pooled tower: C [G, N, D] and the heads."""
    if not store.has_field("pool_heads"):
        raise EditclipError(
            f"store {str(store.root)!r} has no pool heads (pool.H*); decompose an attention-pooled tower "
            "(SigLIP) with --convention official"
        )
    data = store.read("pool_heads")  # [N, G, D]
    return data.transpose(0, 1), [PoolHeadRef(g) for g in range(data.shape[1])]


def head_report(result: TextSpanResult, heads: Sequence[HeadRef | PoolHeadRef], **provenance: Any) -> dict[str, Any]:
    """A JSON-ready report of a K-head TextSpan result: per head the texts in order, each with the
    variance it adds and the cumulative fraction explained, the total, the head's numerical rank and
    (official) the k it used; `provenance` is copied in."""
    if result.indices.ndim != 2 or result.texts is None:
        raise EditclipError("a head report needs a K-head TextSpan result computed with texts=")
    explained = result.explained.tolist()
    rows = []
    for i, ref in enumerate(heads):
        cumulative = explained[i]
        gains = [c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
        columns = (result.texts[i], result.indices[i].tolist(), gains, cumulative, result.residual[i].tolist())
        texts = [
            {"rank": r + 1, "text": t, "index": j, "gain": g, "explained": c, "new": n}
            for r, (t, j, g, c, n) in enumerate(zip(*columns, strict=True))
        ]
        rows.append({"head": str(ref), "total_variance": float(result.total_variance[i]),
                     "explained": cumulative[-1],
                     "rank": int(result.rank[i]) if result.rank is not None else None,
                     "k_used": int(result.k_used[i]) if result.k_used is not None else None,
                     "texts": texts})  # fmt: skip
    return {**provenance, "variant": result.variant, "k": result.k, "heads": rows}


def report_markdown(report: dict[str, Any]) -> str:
    """The head report as Markdown: a summary table, then each head's texts in order."""
    m = len(report["heads"][0]["texts"])
    lines = ["# TextSpan head report", ""]
    lines += [f"- {key}: {_describe(value)}" for key, value in report.items() if key != "heads"]
    capped = [r for r in report["heads"] if r.get("k_used") is not None and r["k_used"] < report["k"]]
    if capped:
        lines += ["", f"k = {report['k']} exceeds the numerical rank of {len(capped)} heads: their texts were "
                  "projected on their rank's directions (column k used), since the directions beyond it are "
                  "rounding noise and picks made from them are not reproducible."]  # fmt: skip
    lines += ["", "| head | variance | explained by the texts | rank | k used | first texts |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for row in report["heads"]:
        first = "; ".join(t["text"] for t in row["texts"][:3])
        rank, k_used = (_or_dash(row.get(key)) for key in ("rank", "k_used"))
        lines.append(f"| {row['head']} | {row['total_variance']:.4g} | {100 * row['explained']:.1f}% | {rank} | "
                     f"{k_used} | {first} |")  # fmt: skip
    for row in report["heads"]:
        lines += ["", f"## {row['head']}", "",
                  f"Total variance {row['total_variance']:.4g}; the {m} texts explain {100 * row['explained']:.1f}%. "
                  "Per text: variance it adds, cumulative variance explained, and how much of the text's "
                  "direction was new (outside the texts before it).",
                  ""]  # fmt: skip
        lines += [f"{t['rank']}. {t['text']} — +{100 * t['gain']:.1f}%, total {100 * t['explained']:.1f}%, "
                  f"new {100 * t['new']:.0f}%" for t in row["texts"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_head_overview(report: dict[str, Any], path: str | os.PathLike[str] | None = None) -> Figure:
    """Per head, its share of the variance of all reported heads (left) and the variance explained by
    each successive text as a stacked bar (right), labelled with the first text. Returns the Figure;
    saves it as PNG only when `path` is given."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = report["heads"]
    m = len(rows[0]["texts"])
    share = np.array([r["total_variance"] for r in rows])
    share = share / max(share.sum(), np.finfo(float).tiny)
    fig = Figure(figsize=(13, 1.6 + 0.3 * len(rows)))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1, 4], "wspace": 0.04})
    y = np.arange(len(rows))
    left.barh(y, 100 * share, color="0.55")
    left.set_xlabel("share of variance (%)")
    left.invert_xaxis()
    left.set_yticks(y, [f"{r['head']}  {_short(r['texts'][0]['text'])}" for r in rows], fontsize=8)
    colours = colormaps["viridis"](np.linspace(0.1, 0.95, m))
    start = np.zeros(len(rows))
    for step in range(m):
        gain = np.array([100 * r["texts"][step]["gain"] for r in rows])
        right.barh(y, gain, left=start, color=colours[step], edgecolor="white", linewidth=0.3,
                   label=f"text {step + 1}" if step in (0, m - 1) else None)  # fmt: skip
        start += gain
    for yi, total in zip(y, start, strict=True):
        right.text(total + 0.5, yi, f"{total:.0f}%", va="center", fontsize=7)
    right.set_xlim(0, 108)
    right.set_xlabel(f"variance explained by the first {m} texts (%), one segment per text in order")
    right.legend(loc="lower right", fontsize=8, frameon=False)
    left.set_ylim(len(rows) - 0.5, -0.5)
    left.set_title("head's share of the variance", fontsize=9)
    right.set_title(f"TextSpan ({report['variant']}) with pool {report.get('pool', '?')}: the first text of "
                    "each head is in its label", fontsize=9)  # fmt: skip
    if path is not None:
        save_figure(fig, path)
    return fig


def _describe(value: Any) -> str:
    """One readable line for a report field; a store description becomes model, data and path."""
    if isinstance(value, dict) and "fingerprint" in value:
        data = value.get("dataset") or {}
        model = (value.get("model") or {}).get("name")
        images = f"{data.get('name')} split {data.get('split')}, {value.get('count')} images"
        return f"{value.get('path')} ({model}, weights {value['fingerprint']}; {images}; {value.get('convention')})"
    return str(value)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _short(text: str, width: int = 42) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def write_head_report(report: dict[str, Any], out: str | os.PathLike[str]) -> list[Path]:
    """Write report.json, report.md and overview.png into `out` (each atomically)."""
    out = Path(out)
    paths = [out / "report.json", out / "report.md", out / "overview.png"]
    write_json(paths[0], report)
    write_text(paths[1], report_markdown(report))
    plot_head_overview(report, paths[2])
    return paths
