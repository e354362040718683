"""The paper's accuracy curves on a stored decomposition (docs/method.md sections 2 and 3).

- Mean-ablation (paper Fig. 2): zero-shot accuracy when the direct contributions of the first k
  attention layers (all heads and the out_proj bias part), or of the first k MLPs, are replaced by
  their means, for k = 0..L; and when all MLPs (and, as the official code does, the embedding term)
  are mean-ablated.
- CLS-source ablation (the official ``compute_ablations.py``): accuracy of the model, with all MLPs
  and the embedding term mean-ablated, with the part of every attention layer read from the CLS
  token itself (``cls_source``: each head's attention weight on the CLS token times its value there)
  mean-ablated, and with both.
- TextSpan reconstruction (paper Fig. 3): accuracy when every head of the last `last` layers is
  replaced by its m-dimensional TextSpan reconstruction (mean + projection onto the first m basis
  vectors), the attention layers before them mean-ablated as in the official script, for each m.
  m = 0 is every one of those heads mean-ablated.

Means and TextSpan bases come from a calibration store (by default the evaluated store itself, as
in the official code) or a statistics file (:class:`~editclip.stats.PartStats`: means, and the head
scatters TextSpan reads); results record which was used. Layers are read one at a time, so
memory stays at a few [N, D] arrays plus one layer's heads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ._io import save_figure
from ._textspan import Variant, stats_heads, store_heads, textspan
from .errors import EditclipError
from .stats import PartStats
from .store import DecompositionStore

Calibration = DecompositionStore | PartStats

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def check_calibration(store: DecompositionStore, calibration: Calibration) -> None:
    """Means only transfer between stores of the same weights and convention."""
    for key in ("fingerprint", "convention"):
        if store.meta.get(key) != calibration.meta.get(key):
            raise EditclipError(
                f"calibration store {str(calibration.root)!r} has {key} {calibration.meta.get(key)!r} but the "
                f"evaluated store has {store.meta.get(key)!r}; both must come from the same model and convention"
            )


def _layers(store: DecompositionStore) -> Iterator[tuple[Tensor, Tensor]]:
    """Per layer, the direct contributions [N, D] of its attention (heads and out_proj bias part) and MLP."""
    for layer in tqdm(range(int(store.meta["shape"]["layers"])), desc="layers", unit="layer"):
        attn = store.layer_attention(layer) + store.read("biases", index=(layer,))
        yield attn, store.read("mlps", index=(layer,))


def _mean_attention(store: Calibration) -> Tensor:
    """[L, D] mean direct contribution of each attention layer."""
    heads = store.mean("heads").sum(1) if isinstance(store, PartStats) else store.mean_layer_attention()
    return heads + store.mean("biases")


def cls_source_missing(store: Calibration) -> str | None:
    """Why ``store`` has no CLS-source parts (None when it has them)."""
    pool = (store.meta.get("shape") or {}).get("pool", "cls")
    if pool != "cls":
        return (f"store {str(store.root)!r} is of a tower that pools with {pool!r}: no class token is read out, so "
                "there is no CLS-source attention to ablate")  # fmt: skip
    if not (store.has_field("cls_source") if isinstance(store, DecompositionStore) else "sum.cls_source" in
            store.tensors):  # fmt: skip
        return (f"store {str(store.root)!r} has no CLS-source parts (it was made by an editclip that did not store "
                "them); decompose the images again")  # fmt: skip
    return None


def cls_ablation_embeddings(
    store: DecompositionStore, calibration: Calibration | None = None
) -> dict[str, Tensor]:
    """[N, D] embeddings of the official ablation table: ``baseline``; ``mlps`` (every MLP and the embedding
    term mean-ablated); ``cls_source`` (every layer's CLS-source attention part mean-ablated); both
    (``mlps_and_cls_source``). In the store's convention, means from ``calibration`` (default the store)."""
    calibration = calibration or store
    check_calibration(store, calibration)
    for where in (store, calibration):
        if (reason := cls_source_missing(where)) is not None:
            raise EditclipError(reason)
    z = store.read("embed") + store.const()
    mlp_delta = calibration.mean("embed") - store.read("embed")
    for attn, mlp in _layers(store):
        z += attn + mlp
    mean_mlps, mean_cls = calibration.mean("mlps"), calibration.mean("cls_source")
    cls_delta = torch.zeros_like(z)
    for layer in range(int(store.meta["shape"]["layers"])):
        mlp_delta += mean_mlps[layer] - store.read("mlps", index=(layer,))
        cls_delta += mean_cls[layer] - store.read("cls_source", index=(layer,))
    return {"baseline": z, "mlps": z + mlp_delta, "cls_source": z + cls_delta,
            "mlps_and_cls_source": z + mlp_delta + cls_delta}  # fmt: skip


def _accuracy(z: Tensor, classifier: Tensor, labels: Tensor) -> float:
    return float(((z @ classifier.T).argmax(-1) == labels).double().mean())


def _provenance(store: DecompositionStore, calibration: Calibration) -> dict[str, Any]:
    return {
        "evaluated": store.describe(),
        "calibration": calibration.describe(),
        "means_from": "the evaluated store itself"
        if calibration.root.resolve() == store.root.resolve()
        else "calibration statistics" if isinstance(calibration, PartStats) else "a separate calibration store",
    }


def ablation_curve(
    store: DecompositionStore,
    classifier: Tensor,
    labels: Tensor,
    calibration: Calibration | None = None,
) -> dict[str, Any]:
    """Accuracy under cumulative mean-ablation of attention layers and of MLPs (paper Fig. 2).

    classifier: [C, D] unit class embeddings; labels: [N] class indices of the stored images.
    Returns accuracies (fractions) ``attention[k]`` and ``mlps[k]`` with the first k layers ablated
    (k = 0..L), ``all_mlps`` and ``all_mlps_and_embed``, the official table ``cls_ablation`` (accuracy of
    each embedding of :func:`cls_ablation_embeddings`; None, with the reason in ``cls_ablation_missing``,
    when the stores have no CLS-source parts), and the provenance of the means.
    """
    calibration = calibration or store
    check_calibration(store, calibration)
    mean_attn, mean_mlps, mean_embed = _mean_attention(calibration), calibration.mean("mlps"), calibration.mean("embed")

    embed = store.read("embed")
    z = embed + store.const()
    for attn, mlp in _layers(store):  # first pass: the embedding itself
        z += attn + mlp
    attn_curve, mlp_curve = [_accuracy(z, classifier, labels)], [_accuracy(z, classifier, labels)]
    no_attn, no_mlp = z.clone(), z
    for layer, (attn, mlp) in enumerate(_layers(store)):  # second pass: ablate one more layer each step
        no_attn += mean_attn[layer] - attn
        no_mlp += mean_mlps[layer] - mlp
        attn_curve.append(_accuracy(no_attn, classifier, labels))
        mlp_curve.append(_accuracy(no_mlp, classifier, labels))
    missing = cls_source_missing(store) or cls_source_missing(calibration)
    table = None
    if missing is None:
        embeddings = cls_ablation_embeddings(store, calibration)
        table = {name: _accuracy(edited, classifier, labels) for name, edited in embeddings.items()}
    return {
        **_provenance(store, calibration),
        "attention": attn_curve,
        "mlps": mlp_curve,
        "all_mlps": mlp_curve[-1],
        "all_mlps_and_embed": _accuracy(no_mlp + mean_embed - embed, classifier, labels),
        "cls_ablation": table,
        "cls_ablation_missing": missing,
    }


def textspan_curve(
    store: DecompositionStore,
    classifier: Tensor,
    labels: Tensor,
    texts: Tensor,
    m_values: Sequence[int],
    last: int = 4,
    variant: Variant = "paper",
    k: int = 80,
    strict_k: bool = False,
    calibration: Calibration | None = None,
    device: str | torch.device | None = None,
    precision: str = "float64",
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Accuracy when the heads of the last `last` layers are replaced by m-dimensional TextSpan
    reconstructions, earlier attention layers mean-ablated (paper Fig. 3).

    texts: [M, D] unit text embeddings of the pool, `names` its texts. Bases and means come from
    `calibration`.
    Returns ``accuracy`` for each m in ``m`` (0 and `m_values`), the accuracy of the original model
    (``original``) and with only the earlier layers mean-ablated (``early_ablated``: the limit of a
    complete basis), each head's chosen ``texts`` (indices without `names`), the official variant's
    ``k_used`` per head (k capped at the head's numerical rank unless `strict_k`), and the provenance.
    """
    calibration = calibration or store
    check_calibration(store, calibration)
    n_layers = int(store.meta["shape"]["layers"])
    if not 1 <= last <= n_layers:
        raise EditclipError(f"last={last} is out of range: this model has {n_layers} layers")
    for held in (store, calibration):  # statistics hold every layer's head sums (scatters: checked when read)
        if isinstance(held, DecompositionStore):
            held.head_positions(range(n_layers - last, n_layers), f"the TextSpan curve of the last {last} layers")
    m_values = sorted(set(m_values))
    if not m_values or m_values[0] < 1:
        raise EditclipError(f"m values must be >= 1; got {list(m_values)}")
    mean_attn = _mean_attention(calibration)

    z = store.read("embed") + store.const()
    early_delta = torch.zeros_like(z)  # the attention layers before the last ones, mean-ablated
    for layer, (attn, mlp) in enumerate(_layers(store)):
        z += attn + mlp
        if layer < n_layers - last:
            early_delta += mean_attn[layer] - attn
    original = _accuracy(z, classifier, labels)
    z += early_delta
    early = _accuracy(z, classifier, labels)

    steps = [0, *m_values]
    deltas = torch.zeros(len(steps), *z.shape)  # per m: sum over heads of (reconstruction - contribution)
    chosen: dict[str, list[Any]] = {}
    k_used: dict[str, int] = {}
    for layer in range(n_layers - last, n_layers):
        reader = stats_heads if isinstance(calibration, PartStats) else store_heads
        calib_heads, refs = reader(calibration, [layer])
        result = textspan(calib_heads, texts, m=m_values[-1], variant=variant, k=k, texts=names,
                          strict_k=strict_k, device=device, precision=precision)  # fmt: skip
        del calib_heads
        heads, _ = store_heads(store, [layer])  # [H, N, D]
        centred = heads - result.mean[:, None]
        coords = centred @ result.basis.transpose(1, 2)  # [H, N, m_max]
        for i, m in enumerate(steps):
            deltas[i] += (coords[..., :m] @ result.basis[:, :m] - centred).sum(0)
        rows = result.texts if names is not None else result.indices.tolist()
        chosen |= {str(ref): row for ref, row in zip(refs, rows, strict=True)}
        if result.k_used is not None:
            k_used |= {str(ref): int(used) for ref, used in zip(refs, result.k_used, strict=True)}
    return {
        **_provenance(store, calibration),
        "last": last,
        "variant": variant,
        "k": k if variant == "official" else None,
        "k_used": k_used or None,
        "original": original,
        "early_ablated": early,
        "m": steps,
        "accuracy": [_accuracy(z + delta, classifier, labels) for delta in deltas],
        "texts": chosen,
    }


def plot_curves(
    ablation: dict[str, Any] | None, reconstruction: dict[str, Any] | None, path: str | os.PathLike[str] | None = None
) -> Figure:
    """One panel per computed curve: mean-ablation (Fig. 2) and TextSpan reconstruction (Fig. 3), with integer
    ticks for k and m. Returns
    the Figure; saves it as PNG only when `path` is given."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [p for p in (ablation, reconstruction) if p is not None]
    if not panels:
        raise EditclipError("no curves to plot")
    fig = Figure(figsize=(6 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    ax_iter = iter(axes)
    if ablation is not None:
        ax = next(ax_iter)
        x = np.arange(len(ablation["attention"]))
        ax.plot(x, 100 * np.array(ablation["attention"]), marker="o", label="attention layers")
        ax.plot(x, 100 * np.array(ablation["mlps"]), marker="s", label="MLPs")
        ax.axhline(100 * ablation["all_mlps_and_embed"], color="0.5", linestyle=":",
                   label="all MLPs and the embedding term")  # fmt: skip
        table = ablation.get("cls_ablation")
        if table is not None:
            ax.axhline(100 * table["cls_source"], color="tab:red", linestyle="--",
                       label="CLS-source attention of every layer")  # fmt: skip
            ax.axhline(100 * table["mlps_and_cls_source"], color="tab:purple", linestyle="-.",
                       label="MLPs, embedding term and CLS-source attention")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("first k layers mean-ablated")
        ax.set_ylabel("zero-shot accuracy (%)")
        ax.set_title("Mean-ablation (paper Fig. 2)", fontsize=10)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    if reconstruction is not None:
        ax = next(ax_iter)
        ax.plot(reconstruction["m"], 100 * np.array(reconstruction["accuracy"]), marker="o",
                label=f"TextSpan ({reconstruction['variant']}) reconstruction")  # fmt: skip
        ax.axhline(100 * reconstruction["original"], color="black", linestyle="--", label="original model")
        ax.axhline(100 * reconstruction["early_ablated"], color="0.5", linestyle=":",
                   label=f"layers before the last {reconstruction['last']} mean-ablated")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"texts per head m (heads of the last {reconstruction['last']} layers)")
        ax.set_ylabel("zero-shot accuracy (%)")
        ax.set_title("TextSpan reconstruction (paper Fig. 3); m = 0: heads mean-ablated", fontsize=10)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    first = panels[0]
    fig.suptitle(f"{first['evaluated']['path']} ({first['evaluated']['count']} images); means and bases from "
                 f"{first['calibration']['path']} ({first['means_from']})", fontsize=9)  # fmt: skip
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
