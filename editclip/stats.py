"""Streaming statistics of a dataset's decomposition: sums that need no per-image store.

A :class:`PartStats` holds, in float64, over the images it has seen:

- ``count`` and the sum of every part field (``heads`` [L,H,D], ``mlps`` [L,D], ``embed`` [D],
  ``biases`` [L,D], ``norms`` [], ``pool_mlp`` [D] for pooled towers, ``cls_source`` [L,D] for CLS towers),
  so means are ``sum / count``;
- the centred scatter ``S = sum (x - mean)(x - mean)^T`` [len(layers), H, D, D] of the heads of the
  chosen ``layers`` (all by default), the one data term TextSpan needs;
- per group of every label/group column (``y``, ``place``) and of every pair of columns
  (``y,place``): the image count and the sums of every part field;
- at the paper's scale (each head's part divided by the image's |z| in the ``exact`` convention; the
  ``official`` parts already are), what ``editclip suggest`` ranks heads by: the heads' sums
  ``paper.sum.heads`` [L,H,D] and sums of squared norms ``paper.sumsq.heads`` [L,H], the sum of the unit
  embeddings z/|z| ``paper.sum.unit`` [D] and its squared norms ``paper.sumsq.unit`` [], and per group
  ``group.<key>.paper.heads`` [V,L,H,D]. Files made before these existed lack them; suggest refuses them.

Batches are added with :meth:`PartStats.add` and accumulators (shards, torchrun ranks) combined with
:meth:`PartStats.merge`: scatters combine with the pairwise rule of Chan et al., so the result does
not depend on batch size or order beyond rounding. The memory and the file size do not grow with the
number of images. A statistics file is one safetensors file whose ``editclip_stats`` metadata is JSON
like a store's meta.json (model, fingerprint, preprocessing, precision, convention, dataset, count).

:func:`accumulate_stats` makes one pass over a dataset; under ``torchrun`` each rank takes a
contiguous share of the images and the sums are all-reduced (``torch.distributed``) into one file
written by rank 0. Partial sums are saved every ``save_every`` batches, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from ._decompose import Decomposition, from_vit_output
from ._io import atomic_path
from .backbone import Backbone
from .data import ImageDataset
from .errors import EditclipError
from .store import check_backbone_meta, model_source
from .vit import run

FORMAT = "editclip-stats-1"
PART_FIELDS = ("heads", "mlps", "embed", "biases", "norms", "pool_mlp", "cls_source")
_NOT_GROUPS = ("split", "img_id")
# Fields that must agree for a run to continue partial sums.
_RESUME_KEYS = ("fingerprint", "preprocessing", "precision", "convention", "dataset", "ids", "layers", "groups")


@dataclass
class PartStats:
    """Float64 sums of a decomposition over images (see the module docstring).

    ``tensors`` maps ``count``, ``sum.<field>``, ``scatter.heads``, ``group.<key>.count`` [V] and
    ``group.<key>.<field>`` [V, ...] to float64 tensors; ``meta`` records where they came from, the
    scatter ``layers`` and each group key's values (``groups``: key -> list of value strings).
    """

    meta: dict[str, Any]
    tensors: dict[str, Tensor]
    path: Path | None = None

    # ----- making -------------------------------------------------------------------------------
    @classmethod
    def empty(cls, meta: dict[str, Any], shapes: dict[str, tuple[int, ...]], layers: Sequence[int]) -> PartStats:
        """No images yet: ``shapes`` gives each part field's per-image shape, ``meta['groups']`` the groups."""
        n_heads, dim = shapes["heads"][1], shapes["heads"][2]
        f64 = torch.float64
        tensors = {"count": torch.zeros((), dtype=f64), "scatter.heads": torch.zeros(len(layers), n_heads, dim, dim,
                   dtype=f64)}  # fmt: skip
        for name, shape in shapes.items():
            tensors[f"sum.{name}"] = torch.zeros(shape, dtype=f64)
        tensors |= {"paper.sum.heads": torch.zeros(shapes["heads"], dtype=f64),
                    "paper.sumsq.heads": torch.zeros(shapes["heads"][:2], dtype=f64),
                    "paper.sum.unit": torch.zeros(shapes["heads"][-1], dtype=f64),
                    "paper.sumsq.unit": torch.zeros((), dtype=f64)}  # fmt: skip
        for key, values in meta.get("groups", {}).items():
            tensors[f"group.{key}.count"] = torch.zeros(len(values), dtype=f64)
            for name, shape in shapes.items():
                tensors[f"group.{key}.{name}"] = torch.zeros(len(values), *shape, dtype=f64)
            tensors[f"group.{key}.paper.heads"] = torch.zeros(len(values), *shapes["heads"], dtype=f64)
        return cls({**meta, "format": FORMAT, "layers": [int(x) for x in layers]}, tensors)

    def parts(self, d: Decomposition) -> dict[str, Tensor]:
        """The float64 per-image tensors of ``d`` that these statistics sum."""
        fields = {name: getattr(d, name) for name in PART_FIELDS if f"sum.{name}" in self.tensors}
        missing = [name for name, value in fields.items() if value is None]
        if missing or d.convention != self.convention:
            raise EditclipError(
                f"this decomposition ({d.convention}, missing {missing}) does not match the statistics "
                f"({self.convention}, fields {sorted(fields)})"
            )
        return {name: value.detach().to("cpu", torch.float64) for name, value in fields.items()}

    def add(self, d: Decomposition, groups: dict[str, Tensor] | None = None, embedding: Tensor | None = None) -> None:
        """Add a batch of images; ``groups`` maps each group key to the batch's group index per image;
        ``embedding`` is the model's z [n, D] (default: the sum of the parts, equal to it up to rounding)."""
        n = len(d)
        if n == 0:
            return
        if "paper.sum.heads" not in self.tensors:
            raise EditclipError(
                f"statistics {str(self.path)!r} were made by an older editclip (no paper-scale sums); start again"
            )
        parts = self.parts(d)
        paper = self._paper(parts["heads"], d.total() if embedding is None else embedding)
        self._add_scatter(parts["heads"][:, self.layers])
        self.tensors["count"] += n
        for name, value in parts.items():
            self.tensors[f"sum.{name}"] += value.sum(0)
        groups = groups or {}
        for key in self.meta.get("groups", {}):
            if key not in groups:
                raise EditclipError(f"the batch has no group index for {key!r}")
            index = groups[key].to(torch.long)
            self.tensors[f"group.{key}.count"].index_add_(0, index, torch.ones(n, dtype=torch.float64))
            for name, value in parts.items():
                self.tensors[f"group.{key}.{name}"].index_add_(0, index, value)
            self.tensors[f"group.{key}.paper.heads"].index_add_(0, index, paper)

    def _paper(self, heads: Tensor, embedding: Tensor) -> Tensor:
        """Add the batch's paper-scale sums (module docstring); returns its heads at that scale [n, L, H, D]."""
        z = embedding.detach().to("cpu", torch.float64)
        norms = z.norm(dim=-1)
        paper = heads / norms[:, None, None, None] if self.convention == "exact" else heads
        unit = z / norms[:, None]
        self.tensors["paper.sum.heads"] += paper.sum(0)
        self.tensors["paper.sumsq.heads"] += paper.square().sum(0).sum(-1)
        self.tensors["paper.sum.unit"] += unit.sum(0)
        self.tensors["paper.sumsq.unit"] += unit.square().sum()
        return paper

    def merge(self, other: PartStats) -> None:
        """Add the images of ``other`` (same model, convention, layers and groups)."""
        for key in ("fingerprint", "preprocessing", "convention", "layers", "groups"):
            if self.meta.get(key) != other.meta.get(key):
                raise EditclipError(f"cannot merge statistics whose {key!r} differ")
        if set(self.tensors) != set(other.tensors):
            raise EditclipError("cannot merge statistics made by different editclip versions (their sums differ)")
        n_other = float(other.tensors["count"])
        if n_other:
            mean_other = other.tensors["sum.heads"][self.layers] / n_other
            self._merge_scatter(other.tensors["scatter.heads"], n_other, mean_other)
        for name, value in other.tensors.items():
            if name != "scatter.heads":
                self.tensors[name] += value

    def _add_scatter(self, heads: Tensor) -> None:
        """Add a batch's heads [n, l, H, D] to the scatter in place, in one pass over the D x D matrices: the
        batch's rows centred on its mean, and Chan's correction for the move of the mean as one more row
        ``sqrt(n_a n / (n_a + n)) (m_b - m_a)``; call before the sums move."""
        n, dim = heads.shape[0], heads.shape[-1]
        batch_mean = heads.mean(0)
        rows = heads - batch_mean
        n_a = float(self.tensors["count"])
        if n_a:
            delta = batch_mean - self.tensors["sum.heads"][self.layers] / n_a
            rows = torch.cat([rows, delta[None] * math.sqrt(n_a * n / (n_a + n))])
        flat = rows.flatten(1, 2).transpose(0, 1)  # [l H, rows, D]
        self.tensors["scatter.heads"].view(-1, dim, dim).baddbmm_(flat.transpose(1, 2), flat)

    def _merge_scatter(self, scatter: Tensor, n_b: float, mean_b: Tensor) -> None:
        """Chan's rule: S = S_a + S_b + (m_b - m_a)(m_b - m_a)^T n_a n_b / (n_a + n_b); call before the sums move."""
        n_a = float(self.tensors["count"])
        total = self.tensors["scatter.heads"]
        total += scatter
        if n_a:
            delta = mean_b - self.tensors["sum.heads"][self.layers] / n_a  # [l, H, D]
            total += delta[..., :, None] * delta[..., None, :] * (n_a * n_b / (n_a + n_b))

    # ----- reading ------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.tensors["count"])

    @property
    def layers(self) -> list[int]:
        return list(self.meta["layers"])

    @property
    def convention(self) -> str:
        return str(self.meta["convention"])

    @property
    def root(self) -> Path | None:
        """The file the statistics were loaded from (named like a store's folder in provenance)."""
        return self.path

    def _need_images(self) -> None:
        if self.count == 0:
            raise EditclipError(f"statistics {str(self.path)!r} hold no images")

    def mean(self, name: str) -> Tensor:
        """Mean of one part field over all images (float32, like :meth:`DecompositionStore.mean`)."""
        self._need_images()
        key = f"sum.{name}"
        if key not in self.tensors:
            raise EditclipError(f"statistics {str(self.path)!r} have no field {name!r}")
        return (self.tensors[key] / self.count).float()

    def scatter(self, layer: int, head: int) -> Tensor:
        """The centred D x D scatter of one head (float64)."""
        if layer not in self.layers:
            raise EditclipError(
                f"statistics {str(self.path)!r} have scatters for layers {self.layers}, not layer {layer}; "
                "make them with `editclip stats --layers` including it"
            )
        return self.tensors["scatter.heads"][self.layers.index(layer), head]

    def group_means(self, key: str, name: str = "heads") -> dict[str, tuple[int, Tensor]]:
        """Per group value of ``key`` (a column or ``a,b``): (image count, float32 mean of ``name``)."""
        groups = self.meta.get("groups", {})
        if key not in groups:
            raise EditclipError(f"statistics {str(self.path)!r} have no groups {key!r}; they have {sorted(groups)}")
        counts, sums = self.tensors[f"group.{key}.count"], self.tensors[f"group.{key}.{name}"]
        return {value: (int(c), (s / c).float() if c else torch.full_like(s, float("nan")).float())
                for value, c, s in zip(groups[key], counts, sums, strict=True)}  # fmt: skip

    def check_backbone(self, bb: Backbone, what: str = "statistics") -> None:
        """Raise unless ``bb`` has the weights and preprocessing these statistics were made with."""
        check_backbone_meta(self.meta, str(self.path), bb, what)

    def describe(self) -> dict[str, Any]:
        """Provenance for reports: model, fingerprint, dataset, count, convention."""
        keys = ("model", "fingerprint", "preprocessing", "dataset", "convention")
        return {k: self.meta.get(k) for k in keys} | {"count": self.count, "path": str(self.path)}

    # ----- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically as one safetensors file (float64 tensors, JSON metadata)."""
        meta = {**self.meta, "count": self.count}
        tensors = {k: v.contiguous() for k, v in self.tensors.items()}
        with atomic_path(Path(path)) as tmp:
            save_file(tensors, str(tmp), metadata={"editclip_stats": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PartStats:
        """Read a statistics file made by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise EditclipError(f"statistics file {str(path)!r} does not exist; make one with `editclip stats`")
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw = (handle.metadata() or {}).get("editclip_stats")
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
            meta = json.loads(raw) if raw is not None else None
        except (SafetensorError, ValueError, OSError) as err:
            raise EditclipError(f"{str(path)!r} is not a readable statistics file ({err})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise EditclipError(f"{str(path)!r} is not an editclip statistics file (no {FORMAT} metadata)")
        return cls(meta, tensors, path)


def group_columns(dataset: ImageDataset) -> dict[str, tuple[str, ...]]:
    """Each group key -> its columns: every label/group column, and every pair of them as ``"a,b"``."""
    names = [c for c in dataset.columns if c not in _NOT_GROUPS]
    keys = {name: (name,) for name in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            keys[f"{a},{b}"] = (a, b)
    return keys


def group_keys(dataset: ImageDataset) -> dict[str, np.ndarray]:
    """Each label/group column and each pair of them -> a string label per image (pairs as "a,b")."""
    keys = {}
    for key, columns in group_columns(dataset).items():
        text = dataset.columns[columns[0]].astype(str)
        for column in columns[1:]:
            text = np.char.add(np.char.add(text, ","), dataset.columns[column].astype(str))
        keys[key] = text
    return keys


def group_values(dataset: ImageDataset) -> dict[str, list[str]]:
    """Each group key -> its values as sorted strings (those of :func:`group_keys`, without per-image strings)."""
    values = {}
    for key, columns in group_columns(dataset).items():
        distinct = np.unique(np.stack([dataset.columns[c] for c in columns], 1), axis=0)
        values[key] = sorted(",".join(str(v) for v in row) for row in distinct.tolist())
    return values


def _group_index(dataset: ImageDataset, values: dict[str, list[str]], rows: np.ndarray) -> dict[str, Tensor]:
    """The index into ``values[key]`` of each image of ``rows``, for every group key (one batch at a time, so
    no per-image array of the whole dataset is built)."""
    index = {}
    for key, columns in group_columns(dataset).items():
        position = {value: i for i, value in enumerate(values[key])}
        labels = zip(*(dataset.columns[c][rows].tolist() for c in columns), strict=True)
        index[key] = torch.tensor([position[",".join(map(str, label))] for label in labels], dtype=torch.long)
    return index


def accumulate_stats(
    bb: Backbone,
    dataset: ImageDataset,
    out: str | os.PathLike[str],
    *,
    convention: str = "exact",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    save_every: int = 50,
    workers: int = 0,
) -> PartStats | None:
    """One pass over ``dataset`` -> the statistics file ``out`` (returned on rank 0, None on other ranks).

    Under torchrun (``WORLD_SIZE`` > 1) the default process group is started if needed (gloo on CPU,
    nccl on CUDA) and rank r takes the r-th contiguous share of the images. Every ``save_every`` batches a
    rank saves its partial sums beside ``out``; a rerun with the same model and data continues from them.
    """
    from torch.utils.data import DataLoader, Subset

    layers = list(range(bb.shape.layers)) if layers is None else sorted(set(layers))
    rank, world = _distributed(bb)
    out = Path(out)
    values = group_values(dataset)
    meta = {"model": model_source(bb), "fingerprint": bb.fingerprint, "preprocessing": bb.preprocessing,
            "precision": bb.precision, "shape": bb.shape.as_dict(), "convention": convention,
            "dataset": dataset.describe(), "ids": dataset.ids, "groups": values, "layers": layers}  # fmt: skip
    rows = np.array_split(np.arange(len(dataset)), world)[rank]
    partial = out.with_name(f"{out.name}.partial-{rank}-of-{world}")
    _check_disk(bb, convention, layers, values, out)
    stats = _resume(partial, meta)
    start = done = int(stats.meta["done"]) if stats is not None else 0
    images = Subset(dataset.with_transform(bb.preprocess), rows[start:])  # yields dataset indices, copies no list
    loader = DataLoader(images, batch_size=batch_size, num_workers=workers)
    with tqdm(total=len(rows), initial=done, desc="stats", unit="img", disable=rank != 0) as progress:
        for step, (batch, index) in enumerate(loader):
            forward = run(bb.tower, batch.to(bb.device))
            d = from_vit_output(forward, convention)
            if stats is None:
                shapes = {name: tuple(t.shape[1:]) for name in PART_FIELDS if (t := getattr(d, name)) is not None}
                stats = PartStats.empty({**meta, "done": 0}, shapes, layers)
            stats.add(d, _group_index(dataset, values, index.numpy()), forward.embedding)
            done += batch.shape[0]
            progress.update(batch.shape[0])
            if (step + 1) % save_every == 0 and done < len(rows):
                stats.meta["done"] = done
                stats.save(partial)
    if stats is None:
        raise EditclipError(f"dataset {dataset.name!r} has no images for rank {rank} of {world}")
    if world > 1:
        _all_reduce(stats)
    stats.meta.pop("done", None)
    if rank == 0:
        stats.save(out)
        stats.path = out
    if world > 1:
        torch.distributed.barrier()
    partial.unlink(missing_ok=True)
    return stats if rank == 0 else None


def _check_disk(bb: Backbone, convention: str, layers: list[int], values: dict[str, list], out: Path) -> None:
    """Refuse, before the pass, statistics that would not fit beside ``out`` (the file and its partial sums)."""
    from ._cost import check_free_space, stats_bytes

    size, _ = stats_bytes(bb, convention, layers, sum(len(v) for v in values.values()))
    check_free_space(out.parent, 2 * size, f"statistics {str(out)!r} (the file and its partial sums)")


def _resume(partial: Path, meta: dict[str, Any]) -> PartStats | None:
    """The partial sums of an interrupted run of the same model on the same data, if any."""
    if not partial.is_file():
        return None
    stats = PartStats.load(partial)
    for key in _RESUME_KEYS:
        if stats.meta.get(key) != meta.get(key):
            raise EditclipError(
                f"{str(partial)!r} holds partial statistics of another run ({key!r} differs); delete it or choose "
                "another --out"
            )
    return stats


def _distributed(bb: Backbone) -> tuple[int, int]:
    """(rank, world size): torchrun's, with the default process group started when there are several."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        if bb.device.type == "cuda":
            torch.cuda.set_device(bb.device)  # nccl works on the current device: this rank's own GPU
        dist.init_process_group("nccl" if bb.device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_reduce(stats: PartStats) -> None:
    """Sum every rank's statistics in place; scatters are re-centred on the global mean before summing."""
    import torch.distributed as dist

    device = torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
    n_local = float(stats.tensors["count"])
    local_mean = stats.tensors["sum.heads"][stats.layers] / max(n_local, 1.0)
    for name, value in stats.tensors.items():
        if name != "scatter.heads":
            stats.tensors[name] = _reduced(value, device)
    mean = stats.tensors["sum.heads"][stats.layers] / float(stats.tensors["count"])
    delta = local_mean - mean
    scatter = stats.tensors["scatter.heads"] + delta[..., :, None] * delta[..., None, :] * n_local
    stats.tensors["scatter.heads"] = _reduced(scatter, device)


def _reduced(value: Tensor, device: torch.device) -> Tensor:
    import torch.distributed as dist

    moved = value.to(device).contiguous()
    dist.all_reduce(moved)
    return moved.cpu()
