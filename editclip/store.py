"""A decomposition of a whole dataset on disk: safetensors chunks plus one JSON metadata file.

Layout of a store folder::

    meta.json                   model, weights fingerprint, convention, dataset, ids, columns...
    const.safetensors           the image-independent term ``const`` [D]
    chunks/chunk-00000.safetensors   heads [n,L,H,D], mlps [n,L,D], embed, biases, norms, embedding,
                                     cls_source [n,L,D] (CLS towers), tokens_L{l} [n,H,T,D] when token
                                     layers were asked for

Chunk i holds images [i*chunk_size, (i+1)*chunk_size). Each chunk is written to a temporary file and
renamed, so a chunk file is either whole or absent: an interrupted run resumes by computing the missing
chunks, and several processes (``--shard K/N``, torchrun ranks) fill one store by taking every N-th
chunk. Reading memory-maps the chunk files and copies only the slices asked for.

A run holds the lock file ``.editclip-lock`` (``.editclip-lock-K-of-N`` for a shard) while it writes, so
two runs of one shard never race; the images are checked before a new store is created, and a run that
fails before its first chunk removes the store it created.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ._decompose import Decomposition, constant_term, from_vit_output
from ._io import atomic_path, clean_stale_temporaries, is_temporary, prepare_output, write_json
from ._lock import hold_lock
from .backbone import Backbone, describe_preprocessing, with_preprocessing
from .backbone import load as load_model
from .data import ImageDataset
from .errors import EditclipError
from .vit import run

FORMAT_VERSION = 1
PART_FIELDS = ("heads", "mlps", "embed", "biases", "norms", "embedding")
POOL_FIELDS = ("pool_mlp", "pool_heads", "pool_tokens")  # pooled towers (pool_heads, pool_tokens: official)
# Fields only some stores hold: the pool fields, and cls_source (CLS towers, stores made since it exists).
OPTIONAL_FIELDS = (*POOL_FIELDS, "cls_source")
_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
LOCK_NAME = ".editclip-lock"
# What a store being created holds before its meta.json appears: not "someone else's files".
_SKELETON = ("chunks", "const.safetensors")
# Fields that must agree for a run to continue an existing store.
_RESUME_KEYS = (
    "fingerprint", "preprocessing", "precision", "convention", "dataset", "count", "ids", "chunk_size",
    "token_layers", "dtype",
)  # fmt: skip


def _mmap_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every tensor of a safetensors file as a numpy array (no copy)."""
    with path.open("rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(header_len))
    arrays = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _NP_DTYPES.get(info["dtype"])
        if dtype is None:
            raise EditclipError(f"{str(path)!r}: tensor {name!r} has dtype {info['dtype']}, which stores do not use")
        start, stop = info["data_offsets"]
        count = (stop - start) // np.dtype(dtype).itemsize
        arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + header_len + start, shape=(count,)).reshape(
            info["shape"]
        )
    return arrays


@dataclass
class DecompositionStore:
    """A decomposition store folder (see the module docstring)."""

    root: Path
    meta: dict[str, Any]

    # ----- opening and creating -------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> DecompositionStore:
        """Open an existing store for reading."""
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise EditclipError(
                f"{str(root)!r} is not a decomposition store (no meta.json); make one with `editclip decompose`"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise EditclipError(f"store {str(root)!r}: meta.json is not valid JSON ({err}); decompose again") from None
        if meta.get("format_version") != FORMAT_VERSION:
            raise EditclipError(
                f"store {str(root)!r} has format {meta.get('format_version')}; this editclip reads {FORMAT_VERSION}"
            )
        return cls(root, meta)

    @classmethod
    def create_or_resume(cls, root: str | os.PathLike[str], meta: dict[str, Any], const: Tensor) -> DecompositionStore:
        """Start a store, or continue one that was made by the same model on the same data."""
        root = Path(root)
        meta = {"format_version": FORMAT_VERSION, **meta}
        if (root / "meta.json").is_file():
            store = cls.open(root)
            for key in _RESUME_KEYS:
                if store.meta.get(key) != meta.get(key):
                    raise EditclipError(
                        f"{str(root)!r} holds another decomposition ({key!r} differs{_both(key, store.meta, meta)}); "
                        "choose another --out, or delete that folder yourself"
                    )
            return store
        foreign = [p.name for p in root.iterdir() if not _ours(p)] if root.exists() else []
        if foreign:
            raise EditclipError(
                f"{str(root)!r} exists and is not a decomposition store (it holds {sorted(foreign)[0]!r}); choose an "
                "empty or new folder"
            )
        (root / "chunks").mkdir(parents=True, exist_ok=True)
        with atomic_path(root / "const.safetensors") as tmp:
            save_file({"const": const.float().contiguous().cpu()}, str(tmp))
        write_json(root / "meta.json", meta)  # last: its presence marks a store
        return cls(root, meta)

    def check_backbone(self, bb: Backbone, what: str = "store") -> None:
        """Raise unless ``bb`` has the weights and the preprocessing this store was made with."""
        check_backbone_meta(self.meta, str(self.root), bb, what)

    def remove_if_empty(self) -> bool:
        """Remove the store's files if it has no finished chunk (a run that failed before its first one)."""
        chunks = self.root / "chunks"
        if chunks.is_dir() and any(p.suffix == ".safetensors" for p in chunks.iterdir()):
            return False
        for path in (self.root / "meta.json", self.root / "const.safetensors"):  # meta.json first: no longer a store
            path.unlink(missing_ok=True)
        if chunks.is_dir():
            clean_stale_temporaries(chunks)
            if not any(chunks.iterdir()):
                chunks.rmdir()
        return True

    def __repr__(self) -> str:
        meta, shape, data = self.meta, self.meta.get("shape") or {}, self.meta.get("dataset") or {}
        model = (meta.get("model") or {}).get("name", "?")
        tokens = f", tokens of {', '.join(f'L{t}' for t in self.token_layers)}" if self.token_layers else ""
        state = "complete" if self.complete else f"{len(self.missing_chunks())} chunks missing"
        return (f"DecompositionStore({str(self.root)!r}: {self.count} images of {data.get('name', '?')} "
                f"({data.get('split') or 'all'}), {model} [{meta.get('fingerprint')}], "
                f"{shape.get('layers')} layers x {shape.get('heads')} heads, {meta.get('convention')}, "
                f"{meta.get('dtype')}{tokens}, {state})")  # fmt: skip

    # ----- layout ---------------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def chunk_size(self) -> int:
        return int(self.meta["chunk_size"])

    @property
    def n_chunks(self) -> int:
        return -(-self.count // self.chunk_size)

    @property
    def ids(self) -> list[str]:
        return list(self.meta["ids"])

    @property
    def convention(self) -> str:
        return str(self.meta["convention"])

    @property
    def token_layers(self) -> list[int]:
        return list(self.meta.get("token_layers") or [])

    def chunk_path(self, index: int) -> Path:
        return self.root / "chunks" / f"chunk-{index:05d}.safetensors"

    def chunk_range(self, index: int) -> range:
        return range(index * self.chunk_size, min((index + 1) * self.chunk_size, self.count))

    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.n_chunks) if not self.chunk_path(i).is_file()]

    @property
    def complete(self) -> bool:
        return not self.missing_chunks()

    def column(self, name: str) -> np.ndarray:
        """Integer label/group column per stored image (e.g. ``y``, ``place``)."""
        columns = self.meta.get("columns", {})
        if name not in columns:
            raise EditclipError(f"store {str(self.root)!r} has no column {name!r}; it has {sorted(columns)}")
        return np.asarray(columns[name], dtype=np.int64)

    def image_path(self, index: int) -> Path:
        """Path of the stored image ``index``."""
        return Path(self.meta["paths"][index])

    # ----- writing --------------------------------------------------------------------------------
    def write_chunk(self, index: int, d: Decomposition, embedding: Tensor) -> None:
        """Write chunk ``index`` atomically."""
        dtype = {"float32": torch.float32, "float16": torch.float16}[self.meta["dtype"]]
        tensors = {
            "heads": d.heads,
            "mlps": d.mlps,
            "embed": d.embed,
            "biases": d.biases,
            "norms": d.norms,
            "embedding": embedding,
        }
        tensors.update({f"tokens_L{layer}": t for layer, t in d.tokens.items()})
        tensors.update({name: t for name in OPTIONAL_FIELDS if (t := getattr(d, name)) is not None})
        tensors = {k: v.detach().to("cpu", dtype).contiguous() for k, v in tensors.items()}
        with atomic_path(self.chunk_path(index)) as tmp:
            save_file(tensors, str(tmp))

    # ----- reading --------------------------------------------------------------------------------
    def _require_complete(self) -> None:
        missing = self.missing_chunks()
        if missing:
            raise EditclipError(
                f"store {str(self.root)!r} is incomplete: {len(missing)} of {self.n_chunks} chunks missing "
                f"(e.g. {missing[:5]}); run the same `editclip decompose` command again to finish it"
            )

    def const(self) -> Tensor:
        return torch.from_numpy(np.array(_mmap_safetensors(self.root / "const.safetensors")["const"]))

    def read(self, name: str, index: Sequence[Any] | None = None, rows: Iterable[int] | None = None) -> Tensor:
        """One field as a float32 tensor, optionally sliced per image with ``index`` (e.g. ``(slice(None), 11)``).

        ``rows`` picks images (default all). Only the slices asked for are copied out of the mapped files.
        """
        self._require_complete()
        order = None
        wanted = None
        if rows is not None:
            requested = np.asarray(list(rows), dtype=np.int64)
            if requested.size and (requested.min() < 0 or requested.max() >= self.count):
                raise EditclipError(
                    f"row indices must be in 0..{self.count - 1}; got {requested.min()}..{requested.max()}"
                )
            order = np.argsort(requested, kind="stable")
            wanted = requested[order]  # gather in ascending order, then restore the caller's order
        pieces = []
        for chunk in range(self.n_chunks):
            span = self.chunk_range(chunk)
            local = None
            if wanted is not None:
                local = wanted[(wanted >= span.start) & (wanted < span.stop)] - span.start
                if local.size == 0:
                    continue
            arrays = _mmap_safetensors(self.chunk_path(chunk))
            if name not in arrays:
                raise EditclipError(f"store {str(self.root)!r} has no field {name!r}; it has {sorted(arrays)}")
            array = arrays[name] if local is None else arrays[name][local]
            if index is not None:
                array = array[(slice(None), *index)]
            pieces.append(torch.from_numpy(np.array(array, dtype=np.float32)))  # a copy out of the mapped file
        gathered = torch.cat(pieces)
        if order is None:
            return gathered
        out = torch.empty_like(gathered)
        out[torch.from_numpy(order)] = gathered
        return out

    def mean(self, name: str) -> Tensor:
        """Mean of one field over all images, streamed chunk by chunk (float64 accumulation)."""
        self._require_complete()
        total = None
        for chunk in range(self.n_chunks):
            array = _mmap_safetensors(self.chunk_path(chunk))[name]
            part = torch.from_numpy(np.asarray(array, dtype=np.float64)).sum(0)
            total = part if total is None else total + part
        return (total / self.count).float()

    def load(self, rows: Iterable[int] | None = None, token_layers: Sequence[int] = ()) -> Decomposition:
        """The stored decomposition (all images, or ``rows``) in memory."""
        rows = None if rows is None else list(rows)
        missing = [layer for layer in token_layers if layer not in self.token_layers]
        if missing:
            raise EditclipError(
                f"store {str(self.root)!r} has no per-token parts for layers {missing}; it has {self.token_layers}"
            )
        return Decomposition(
            heads=self.read("heads", rows=rows),
            mlps=self.read("mlps", rows=rows),
            embed=self.read("embed", rows=rows),
            biases=self.read("biases", rows=rows),
            const=self.const(),
            norms=self.read("norms", rows=rows),
            convention=self.convention,
            tokens={layer: self.read(f"tokens_L{layer}", rows=rows) for layer in token_layers},
            **{name: self.read(name, rows=rows) for name in OPTIONAL_FIELDS if self.has_field(name)},
        )

    def has_field(self, name: str) -> bool:
        """Whether the chunks hold ``name`` (the pool fields exist for pooled towers only, ``cls_source`` for CLS
        towers in stores made by an editclip that writes it)."""
        self._require_complete()
        return name in _mmap_safetensors(self.chunk_path(0))

    def describe(self) -> dict[str, Any]:
        """Provenance for reports: model, fingerprint, dataset, split, count, convention."""
        keys = ("model", "fingerprint", "preprocessing", "dataset", "count", "convention")
        return {k: self.meta.get(k) for k in keys} | {"path": str(self.root)}


def _both(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """For the preprocessing, name both sides of a mismatch."""
    if key != "preprocessing":
        return ""
    return f": the store has {describe_preprocessing(old.get(key))}, this run {describe_preprocessing(new.get(key))}"


def check_backbone_meta(meta: dict[str, Any], where: str, bb: Backbone, what: str) -> None:
    """Raise unless ``bb`` has the weights fingerprint and the preprocessing recorded in ``meta``."""
    if meta.get("fingerprint") != bb.fingerprint:
        raise EditclipError(
            f"{what} {where!r} was made with other weights ({meta.get('fingerprint')}, not {bb.fingerprint})"
        )
    if meta.get("preprocessing") != bb.preprocessing:
        raise EditclipError(
            f"{what} {where!r} was made with other preprocessing: {describe_preprocessing(meta.get('preprocessing'))}; "
            f"the model given preprocesses with {describe_preprocessing(bb.preprocessing)}"
        )


def model_source(bb: Backbone) -> dict[str, Any]:
    """How to load ``bb`` again (stored in meta.json and in compiled edits)."""
    src = bb.source
    out: dict[str, Any] = {"name": bb.model_id, "precision": bb.precision}
    from .toyworld import is_shipped_model

    if src.get("in_memory"):
        out |= {"in_memory": True}
    elif is_shipped_model(src.get("checkpoint")):
        out |= {"toyworld": True}  # the shipped model: no installation path in stores, reports and exports
    elif src.get("checkpoint"):
        out |= {"checkpoint": str(Path(src["checkpoint"]).resolve()), "config": src.get("config")}
    elif src.get("config") is not None:
        out |= {"config": src.get("config")}
    else:
        out |= {"pretrained": src.get("pretrained")}
    return out | {"preprocessing": bb.preprocessing}


def load_backbone(
    source: dict[str, Any], device: str | torch.device = "cpu", fingerprint: str | None = None
) -> Backbone:
    """Load the model described by :func:`model_source` with the preprocessing it records; refuse other
    weights than ``fingerprint``."""
    if source.get("in_memory"):
        raise EditclipError(
            f"model {source.get('name')!r} was built in memory (Backbone.from_open_clip / from_hf), so editclip "
            "cannot load it again; pass that Backbone (or give the model arguments)"
        )
    if source.get("toyworld"):
        from .toyworld import load as load_toyworld

        bb = load_toyworld(device=str(device), precision=source.get("precision", "fp32"))
    elif source.get("checkpoint"):
        bb = load_model(
            checkpoint=source["checkpoint"],
            config=source.get("config"),
            device=device,
            precision=source.get("precision", "fp32"),
        )
    elif source.get("config") is not None:
        bb = load_model(source["name"], config=source["config"], device=device,
                        precision=source.get("precision", "fp32"))  # fmt: skip
    else:
        bb = load_model(
            source["name"],
            pretrained=source.get("pretrained"),
            device=device,
            precision=source.get("precision", "fp32"),
        )
    if fingerprint is not None and bb.fingerprint != fingerprint:
        raise EditclipError(
            f"the weights of {source.get('name')!r} now have fingerprint {bb.fingerprint}, not {fingerprint} as "
            "recorded; the checkpoint changed (or pretrained=None gave new random weights)"
        )
    if source.get("preprocessing"):
        bb = with_preprocessing(bb, source["preprocessing"])
    return bb


def backbone_for_store(store: DecompositionStore, device: str | torch.device = "cpu") -> Backbone:
    """The model a store was made with, checked against the store's weights fingerprint."""
    return load_backbone(store.meta["model"], device, store.meta["fingerprint"])


def decompose_dataset(
    bb: Backbone,
    dataset: ImageDataset,
    out: str | os.PathLike[str],
    *,
    convention: str = "exact",
    token_layers: Sequence[int] = (),
    batch_size: int = 32,
    chunk_size: int = 256,
    dtype: str = "float32",
    shard: tuple[int, int] = (0, 1),
    workers: int = 0,
    wait: bool = False,
) -> DecompositionStore:
    """Decompose every image of ``dataset`` into the store at ``out``; resumes an interrupted run.

    ``shard=(k, n)`` computes only chunks with index % n == k, so n processes fill one store. While it writes,
    the run holds the store's lock for its shard: a second run of that shard fails at once naming the owner
    (or, with ``wait``, waits for it); the lock of a dead process is taken over.
    """
    if dtype not in ("float32", "float16"):
        raise EditclipError(f"store dtype {dtype!r} is not supported; choose float32 or float16")
    if not 0 <= shard[0] < shard[1]:
        raise EditclipError(f"shard {shard[0]}/{shard[1]} is invalid: need 0 <= K < N")
    if chunk_size % batch_size and batch_size < chunk_size:
        chunk_size = max(batch_size, chunk_size // batch_size * batch_size)
    bad = [layer for layer in token_layers if not 0 <= layer < bb.shape.layers]
    if bad:
        raise EditclipError(f"token layers {bad} are out of range; this model has layers 0..{bb.shape.layers - 1}")
    meta = {
        "model": model_source(bb),
        "fingerprint": bb.fingerprint,
        "preprocessing": bb.preprocessing,
        "precision": bb.precision,
        "shape": bb.shape.as_dict(),
        "convention": convention,
        "dataset": dataset.describe(),
        "count": len(dataset),
        "chunk_size": chunk_size,
        "token_layers": sorted(token_layers),
        "dtype": dtype,
        "ids": dataset.ids,
        "paths": [str(p.resolve()) for p in dataset.paths],
        "columns": {k: v.tolist() for k, v in dataset.columns.items()},
        "train_group_counts": _train_counts(dataset),
    }
    const = constant_term(bb.tower, convention)
    root = prepare_output(out, overwrite=True, kind="dir", what="store folder")  # creatable and writable
    made_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    lock = root / (LOCK_NAME if shard[1] == 1 else f"{LOCK_NAME}-{shard[0]}-of-{shard[1]}")
    try:
        with hold_lock(lock, f"store {str(root)!r}", wait=wait, log=tqdm.write):
            fresh = not (root / "meta.json").is_file()
            if fresh:
                check_images_readable(dataset)
            store = DecompositionStore.create_or_resume(root, meta, const)
            clean_stale_temporaries(root / "chunks")  # half-written chunks of a killed run
            try:
                _fill(store, bb, dataset, shard, token_layers, convention, batch_size, workers)
            except BaseException:
                if fresh:
                    store.remove_if_empty()
                raise
    finally:
        if made_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return store


def _ours(path: Path) -> bool:
    """A lock file, an editclip temporary or a part of a store skeleton (not the user's own files)."""
    return path.name.startswith(LOCK_NAME) or is_temporary(path) or path.name in _SKELETON


def check_images_readable(dataset: ImageDataset) -> None:
    """Open every image's header (and verify what PIL can without decoding) before a store is created."""
    from .images import check_image

    for i, path in enumerate(tqdm(dataset.paths, desc="check images", unit="img", disable=len(dataset) < 2000)):
        where = dataset.sources[i] if dataset.sources else f"item {dataset.ids[i]}"
        try:
            check_image(path, where, dataset.max_pixels)
        except EditclipError as err:
            raise EditclipError(f"{err} (nothing was written)") from None


def _fill(
    store: DecompositionStore,
    bb: Backbone,
    dataset: ImageDataset,
    shard: tuple[int, int],
    token_layers: Sequence[int],
    convention: str,
    batch_size: int,
    workers: int,
) -> None:
    """Compute this shard's missing chunks."""
    todo = [i for i in store.missing_chunks() if i % shard[1] == shard[0]]
    images = dataset.with_transform(bb.preprocess)
    with tqdm(total=sum(len(store.chunk_range(i)) for i in todo), desc="decompose", unit="img",
              disable=not todo) as progress:  # a complete store: no empty bar
        for chunk in todo:
            subset = images.subset(list(store.chunk_range(chunk)))
            loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
            parts, embeddings = [], []
            for batch, _ in loader:
                out_ = run(bb.tower, batch.to(bb.device), token_layers=token_layers)
                parts.append(from_vit_output(out_, convention))
                embeddings.append(out_.embedding)
                progress.update(batch.shape[0])
            store.write_chunk(chunk, Decomposition.concat(parts), torch.cat(embeddings))


def _train_counts(dataset: ImageDataset) -> dict[str, dict[str, int]]:
    """Training-split group sizes of each pair of integer columns, for adjusted averages."""
    names = [c for c in dataset.columns if c not in ("split", "img_id")]
    out: dict[str, dict[str, int]] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            counts = dataset.group_counts((a, b))
            if counts:
                out[f"{a},{b}"] = {f"{k[0]},{k[1]}": v for k, v in counts.items()}
    return out
