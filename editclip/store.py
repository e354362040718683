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

from ._store_build import check_images_readable, decompose_dataset
from ._store_files import FORMAT_VERSION, LOCK_NAME, OPTIONAL_FIELDS, POOL_FIELDS
from ._store_folder import DecompositionStore
from ._store_model import backbone_for_store, check_backbone_meta, load_backbone, model_source

__all__ = [
    "FORMAT_VERSION",
    "LOCK_NAME",
    "OPTIONAL_FIELDS",
    "POOL_FIELDS",
    "DecompositionStore",
    "backbone_for_store",
    "check_backbone_meta",
    "check_images_readable",
    "decompose_dataset",
    "load_backbone",
    "model_source",
]
