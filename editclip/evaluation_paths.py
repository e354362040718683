"""The two evaluation paths of an edit, which must give the same prediction for every image.

- **fast**: edited embeddings computed from a stored exact-convention decomposition of the evaluation
  images (:class:`~editclip.store.DecompositionStore`), chunk by chunk, with the same
  :meth:`EditTensors.apply <editclip.edited.EditTensors.apply>` that the wrapper runs. Many edits can be
  scored on one store without running the model again.
- **exact**: the compiled model itself (:class:`~editclip.edited.EditedCLIP`, the patched open_clip
  model, or the base model) run on the images.

Both feed the same zero-shot classifier and the same group metrics (:mod:`editclip.evaluate`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .data import ImageDataset
from .edited import EditTensors
from .errors import EditclipError
from .evaluate import GroupReport, group_metrics, predict
from .names import head_name
from .store import DecompositionStore


@dataclass(frozen=True)
class Targets:
    """What predictions are scored against: labels, group columns and training-split group sizes."""

    label: np.ndarray  # [N] class index per image
    groups: dict[str, np.ndarray]  # column -> [N] values, in group order
    train_group_counts: dict[tuple[int, ...], int] | None
    value_names: dict[str, dict[int, str]] = field(default_factory=dict)  # column -> value -> display name
    names_source: str | None = None  # where value_names came from

    def report(self, pred: Tensor | np.ndarray) -> GroupReport:
        """Per-group metrics of predictions ``pred`` [N] (adjusted average when training sizes are known)."""
        return group_metrics(pred, self.label, self.groups, self.train_group_counts, self.value_names)


WATERBIRDS_NAMES = {"y": {0: "landbird", 1: "waterbird"}, "place": {0: "land", 1: "water"}}


def dataset_value_names(dataset: ImageDataset) -> tuple[dict[str, dict[int, str]], str | None]:
    """Names of the group columns' values that the dataset itself defines, and where they come from.

    A toy-world folder (``world.json`` written by ``editclip toyworld make``) names y by its classes and
    place by the toy world's places; another Waterbirds-layout folder gets Waterbirds' names (y: landbird,
    waterbird; place: land, water). Other datasets name nothing.
    """
    world = Path(dataset.root) / "world.json"
    if dataset.format == "waterbirds" and world.is_file():
        try:
            info = json.loads(world.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            info = None
        if isinstance(info, dict) and info.get("generator") == "editclip.toyworld":
            from .toyworld import PLACES

            classes = info.get("classes") or []
            return {"y": dict(enumerate(str(c) for c in classes)), "place": dict(enumerate(PLACES))}, str(world)
    if dataset.format == "waterbirds":
        return {k: dict(v) for k, v in WATERBIRDS_NAMES.items()}, "Waterbirds' names (landbird/waterbird, land/water)"
    return {}, None


def targets(
    dataset: ImageDataset,
    label: str,
    groups: Sequence[str] | None = None,
    value_names: Mapping[str, Mapping[int, str]] | None = None,
    classes: Sequence[str] | None = None,
) -> Targets:
    """Labels and group columns of ``dataset`` for evaluation; refuse columns it does not have.

    A label column of names (``y=waterbird``) is mapped to class indices through ``classes`` (its names
    must be among them); without ``classes`` such a column is refused, since its sorted codes need not
    be the classes' order. Coded columns' groups are named by their values.

    Groups are named for display by ``value_names`` ({column: {value: name}}, e.g. the spec's
    ``evaluate.group_names``) where given, else by :func:`dataset_value_names`.
    """
    columns = list(groups or [label])
    for name in dict.fromkeys([label, *columns]):
        if name not in dataset.columns:
            have = ", ".join(sorted(dataset.columns)) or "none"
            raise EditclipError(
                f"evaluation data {str(dataset.root)!r} has no label or group column {name!r} (its columns: {have}; "
                "file-name columns cannot be labels)"
            )
    names, source = dataset_value_names(dataset)
    if dataset.label_names:  # a coded column of names is named by its own values
        names = {**names, **{c: dict(enumerate(v)) for c, v in dataset.label_names.items()}}
        source = "the table's values" if source is None else f"the table's values, else {source}"
    if value_names:
        names = {**names, **{c: {int(v): str(n) for v, n in vn.items()} for c, vn in value_names.items()}}
        source = "given" if source is None else f"given, else {source}"
    names = {c: n for c, n in names.items() if c in columns}
    return Targets(
        label=_class_indices(dataset, label, classes),
        groups={c: dataset.columns[c] for c in columns},
        train_group_counts=dataset.group_counts(columns),
        value_names=names,
        names_source=source if names else None,
    )


def _class_indices(dataset: ImageDataset, label: str, classes: Sequence[str] | None) -> np.ndarray:
    codes = dataset.columns[label]
    names = dataset.label_names.get(label)
    if names is None:
        return codes
    if classes is None:
        raise EditclipError(f"label column {label!r} holds names ({', '.join(names[:4])}...); give the class names")
    index = {c: i for i, c in enumerate(classes)}
    for code in np.unique(codes).tolist():
        name = names[code]
        if name not in index:
            row = int(np.nonzero(codes == code)[0][0])
            where = f" ({dataset.sources[row]})" if dataset.sources else ""
            raise EditclipError(
                f"label column {label!r} has the value {name!r}{where}, which is not one of the classes "
                f"{', '.join(classes)}"
            )
    return np.array([index[n] for n in names], dtype=np.int64)[codes]


# ---------------------------------------------------------------------------------------------------
# Fast path: stored decompositions


def _check_store(store: DecompositionStore, dim: int | None) -> None:
    if store.convention != "exact":
        raise EditclipError(
            f"store {str(store.root)!r} uses the {store.convention!r} convention; edits apply to 'exact' parts"
        )
    width = store.meta.get("shape", {}).get("embed_dim")
    if dim is not None and width is not None and width != dim:
        raise EditclipError(f"store {str(store.root)!r} has {width}-wide embeddings but the edit is {dim}-wide")


@torch.no_grad()
def fast_embeddings(
    store: DecompositionStore, edit: EditTensors | None = None, *, progress: bool = True, desc: str = "fast path"
) -> Tensor:
    """[N, D] unnormalised embeddings of the stored images, edited by ``edit`` (unedited when None).

    Reads one store chunk at a time and only the fields the edit touches.
    """
    _check_store(store, None if edit is None else int(edit.embed_mean.shape[0]))
    fields = _fields_needed(edit)
    if edit is not None and "heads" in fields and store.summed_layers:
        edit = _on_stored_heads(store, edit)
    pieces = []
    for chunk in tqdm(range(store.n_chunks), desc=desc, unit="chunk", disable=not progress or store.n_chunks < 2):
        rows = store.chunk_range(chunk)
        z = store.read("embedding", rows=rows)
        if edit is not None:
            parts = {name: store.read(name, rows=rows) if name in fields else _unused(z, name) for name in _PART_DIMS}
            z = edit.apply(z, **parts)
        pieces.append(z)
    return torch.cat(pieces)


# the fields apply() takes, with their ranks
_PART_DIMS = {"heads": 4, "mlps": 3, "biases": 3, "embed": 2, "pool_mlp": 2, "cls_source": 3}


def _fields_needed(edit: EditTensors | None) -> set[str]:
    """The stored fields :meth:`EditTensors.apply` reads for ``edit``."""
    if edit is None:
        return set()
    needed = set()
    if edit.ablate_heads.numel() or edit.project_heads.numel():
        needed.add("heads")
    if edit.ablate_mlps.numel():
        needed.add("mlps")
    if edit.ablate_biases.numel():
        needed.add("biases")
    if bool(edit.ablate_embed):
        needed.add("embed")
    if bool(edit.ablate_pool_mlp):
        needed.add("pool_mlp")
    if edit.ablate_cls_source.numel():
        needed.add("cls_source")
    return needed


def _on_stored_heads(store: DecompositionStore, edit: EditTensors) -> EditTensors:
    """``edit`` with its flat head indices moved to a layer-subset store's ``heads`` (which holds fewer layers);
    a head of a layer the store holds only summed is refused, by name."""
    n_heads = int(store.meta["shape"]["heads"])

    def moved(flat: Tensor) -> Tensor:
        out = []
        for index in flat.tolist():
            layer, head = divmod(int(index), n_heads)
            out.append(store.head_positions([layer], f"the edit's head {head_name(layer, head)}")[0] * n_heads + head)
        return torch.tensor(out, dtype=torch.long)

    return replace(edit, ablate_heads=moved(edit.ablate_heads), project_heads=moved(edit.project_heads))


def _unused(z: Tensor, name: str) -> Tensor:
    """A zero-copy stand-in of the right rank for a field the edit does not read."""
    shape = (z.shape[0], *([1] * (_PART_DIMS[name] - 2)), z.shape[1])
    return z.new_zeros(1).expand(shape)


# ---------------------------------------------------------------------------------------------------
# Exact path: a model on the images


@torch.no_grad()
def exact_embeddings(
    encode_image: Callable[[Tensor], Tensor],
    dataset: ImageDataset,
    preprocess: Callable[[Any], Tensor],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "exact path",
) -> Tensor:
    """[N, D] unnormalised fp32 embeddings of ``dataset`` under ``encode_image`` (e.g. ``EditedCLIP.encode_image``,
    a patched model's, or the base model's), in dataset order."""
    loader = DataLoader(dataset.with_transform(preprocess), batch_size=batch_size)
    out = []
    for images, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        out.append(encode_image(images.to(device, dtype)).float().cpu())
    if not out:
        raise EditclipError(f"evaluation data {str(dataset.root)!r} has no images")
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------
# Comparing the paths


def compare(reference: Tensor, other: Tensor, classifier: Tensor) -> dict[str, float | int]:
    """How far two sets of embeddings [N, D] of the same images are apart, and whether their
    predictions under ``classifier`` [C, D] agree: agreement, disagreements, cosine (mean, min),
    max abs difference of the unit embeddings."""
    if reference.shape != other.shape:
        raise EditclipError(f"cannot compare embeddings of shapes {tuple(reference.shape)} and {tuple(other.shape)}")
    a, b = F.normalize(reference.float(), dim=-1), F.normalize(other.float(), dim=-1)
    cos = (a * b).sum(-1)
    same = predict(reference, classifier) == predict(other, classifier)
    return {
        "images": int(same.numel()),
        "agreement": float(same.float().mean()),
        "disagreements": int((~same).sum()),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "max_abs_diff": float((a - b).abs().max()),
    }
