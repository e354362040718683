"""``decompose_dataset``: fill a store from a dataset (resumable, sharded, locked)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ._decompose import Decomposition, constant_term, from_vit_output
from ._io import clean_stale_temporaries, prepare_output
from ._lock import hold_lock
from ._store_files import LOCK_NAME
from ._store_folder import DecompositionStore
from ._store_model import model_source
from .backbone import Backbone
from .data import ImageDataset
from .errors import EditclipError
from .vit import run


def decompose_dataset(
    bb: Backbone,
    dataset: ImageDataset,
    out: str | os.PathLike[str],
    *,
    convention: str = "exact",
    token_layers: Sequence[int] = (),
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    chunk_size: int = 256,
    dtype: str = "float32",
    shard: tuple[int, int] = (0, 1),
    workers: int = 0,
    wait: bool = False,
) -> DecompositionStore:
    """Decompose every image of ``dataset`` into the store at ``out``; resumes an interrupted run.

    ``layers`` (default all) are the layers whose heads are stored one by one; every other layer's heads are
    stored summed, as one part ``L{l}.attn`` per layer (field ``attn``), so the parts still sum to the embedding.
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
    head_layers = _head_layers(bb, convention, layers)
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
        "head_layers": head_layers,
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
                _check_disk(store, bb, shard, token_layers)
                _fill(store, bb, dataset, shard, token_layers, convention, batch_size, workers)
            except BaseException:
                if fresh:
                    store.remove_if_empty()
                raise
    finally:
        if made_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return store


def _check_disk(store: DecompositionStore, bb: Backbone, shard: tuple[int, int], token_layers: Sequence[int]) -> None:
    """Refuse, before the first chunk, a run whose missing chunks (of this shard) would not fit on the disk."""
    from ._cost import check_free_space, store_bytes_per_image

    todo = sum(len(store.chunk_range(i)) for i in store.missing_chunks() if i % shard[1] == shard[0])
    if todo:
        per_image = store_bytes_per_image(bb, store.convention, store.head_layers, token_layers, store.meta["dtype"])
        check_free_space(store.root, per_image * todo, f"decomposing {todo:,} images into {str(store.root)!r}")


def _head_layers(bb: Backbone, convention: str, layers: Sequence[int] | None) -> list[int]:
    """The checked, sorted layers whose heads a store keeps one by one."""
    n_layers = bb.shape.layers
    if layers is None:
        return list(range(n_layers))
    chosen = sorted({int(layer) for layer in layers})
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad or not chosen:
        raise EditclipError(f"head layers {bad or chosen} are out of range; this model has layers 0..{n_layers - 1}")
    if convention == "official" and bb.shape.pool != "cls" and len(chosen) < n_layers:
        raise EditclipError(
            f"the official convention of a {bb.shape.pool}-pooled tower has no per-layer head parts (only the "
            "pool's heads), so --layers does not apply; drop it or use --convention exact"
        )
    return chosen


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
