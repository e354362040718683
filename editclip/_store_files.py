"""The files of a decomposition store: format version, lock name, what a store's skeleton holds, and
memory-mapped reading of safetensors files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._io import is_temporary
from .errors import EditclipError

FORMAT_VERSION = 1
POOL_FIELDS = ("pool_mlp", "pool_heads", "pool_tokens")  # pooled towers (pool_heads, pool_tokens: official)
# Fields only some stores hold: the pool fields, and cls_source (CLS towers, stores made since it exists).
OPTIONAL_FIELDS = (*POOL_FIELDS, "cls_source")
LOCK_NAME = ".editclip-lock"
# Fields that must agree for a run to continue an existing store.
RESUME_KEYS = (
    "fingerprint", "preprocessing", "precision", "convention", "dataset", "count", "ids", "chunk_size",
    "token_layers", "dtype", "head_layers",
)  # fmt: skip
_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
# What a store being created holds before its meta.json appears: not "someone else's files".
_SKELETON = ("chunks", "const.safetensors")


def mmap_safetensors(path: Path) -> dict[str, np.ndarray]:
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


def is_store_file(path: Path) -> bool:
    """A lock file, an editclip temporary or a part of a store skeleton (not the user's own files)."""
    return path.name.startswith(LOCK_NAME) or is_temporary(path) or path.name in _SKELETON
