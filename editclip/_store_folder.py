"""``DecompositionStore``: opening, creating, writing and reading one store folder (layout: :mod:`editclip.store`)."""

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

from ._decompose import Decomposition
from ._io import atomic_path, clean_stale_temporaries, write_json
from ._store_files import FORMAT_VERSION, OPTIONAL_FIELDS, RESUME_KEYS, is_store_file, mmap_safetensors
from ._store_model import check_backbone_meta, describe_mismatch
from .backbone import Backbone
from .errors import EditclipError
from .names import format_layers, head_name, parse_layers


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
            for key in RESUME_KEYS:
                if _resume_value(store.meta, key) != _resume_value(meta, key):
                    both = describe_mismatch(key, store.meta, meta)
                    raise EditclipError(
                        f"{str(root)!r} holds another decomposition ({key!r} differs{both}); "
                        "choose another --out, or delete that folder yourself"
                    )
            return store
        foreign = [p.name for p in root.iterdir() if not is_store_file(p)] if root.exists() else []
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
        if self.summed_layers:
            tokens = f", heads of {format_layers(self.head_layers)} only{tokens}"
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

    @property
    def n_layers(self) -> int:
        return int(self.meta["shape"]["layers"])

    @property
    def head_layers(self) -> list[int]:
        """The layers whose heads the store holds one by one (all, unless made with ``--layers``)."""
        held = self.meta.get("head_layers")
        return list(range(self.n_layers)) if held is None else [int(x) for x in held]

    @property
    def summed_layers(self) -> list[int]:
        """The other layers: their heads are stored summed, as one part ``L{l}.attn`` per layer (field ``attn``)."""
        held = set(self.head_layers)
        return [layer for layer in range(self.n_layers) if layer not in held]

    def head_positions(self, layers: Iterable[int], what: str | None = None) -> list[int]:
        """Where model layers are on the stored ``heads`` layer axis; refuses a layer whose heads are summed,
        naming ``what`` needed it (e.g. ``"head L3.H1"``) and the layers the store holds."""
        held = self.head_layers
        layers = [int(x) for x in layers]
        missing = [layer for layer in layers if layer not in held]
        if missing:
            raise EditclipError(
                f"store {str(self.root)!r} holds the heads of layers {format_layers(held)} only (decompose "
                f"--layers); {what or 'this'} needs the heads of {format_layers(missing)}: decompose again with "
                "--layers including them"
            )
        return [held.index(layer) for layer in layers]

    def layer_attention(self, layer: int, rows: Iterable[int] | None = None) -> Tensor:
        """[N, D] the direct part of every head of ``layer`` summed (out_proj bias not included)."""
        if layer in self.head_layers:
            return self.read("heads", index=(layer,), rows=rows).sum(1)
        if not 0 <= layer < self.n_layers:
            raise EditclipError(f"layer {layer} is out of range; this store's model has layers 0..{self.n_layers - 1}")
        return self.read("attn", index=(self.summed_layers.index(layer),), rows=rows)

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
        tensors = chunk_tensors(d, embedding, self.head_layers, self.meta["dtype"])
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
        return torch.from_numpy(np.array(mmap_safetensors(self.root / "const.safetensors")["const"]))

    def read(self, name: str, index: Sequence[Any] | None = None, rows: Iterable[int] | None = None) -> Tensor:
        """One field as a float32 tensor, optionally sliced per image with ``index`` (e.g. ``(slice(None), 11)``).

        ``rows`` picks images (default all). Only the slices asked for are copied out of the mapped files.
        For ``heads``, the first entry of ``index`` is a model layer (or a list of them) and the layer axis of
        an unindexed read is :attr:`head_layers`; a layer whose heads the store sums is refused.
        """
        self._require_complete()
        if name == "heads" and index and self.summed_layers:
            index = (self._head_index(index), *index[1:])
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
            arrays = mmap_safetensors(self.chunk_path(chunk))
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

    def _head_index(self, index: Sequence[Any]) -> Any:
        """The stored position(s) of the model layer(s) ``index[0]`` of a ``heads`` read."""
        first = index[0]
        if isinstance(first, slice):
            if first == slice(None):
                return first
            raise EditclipError("index the heads of a layer-subset store by layer numbers, not by a slice")
        if np.ndim(first) == 0:
            head = index[1] if len(index) > 1 and np.ndim(index[1]) == 0 else None
            what = f"layer {int(first)}" if head is None else f"head {head_name(int(first), int(head))}"
            return self.head_positions([int(first)], what)[0]
        return self.head_positions(np.asarray(first).reshape(-1).tolist())

    def mean_layer_attention(self) -> Tensor:
        """[L, D] every layer's heads summed, averaged over the images (out_proj bias not included)."""
        heads = self.mean("heads").sum(1)  # [len(head_layers), D]
        out = heads.new_zeros(self.n_layers, heads.shape[-1])
        out[self.head_layers] = heads
        if self.summed_layers:
            out[self.summed_layers] = self.mean("attn")
        return out

    def layer_subset(self, selection: str | None, what: str) -> list[int]:
        """The layers of ``selection`` (e.g. ``last:4``; None: the layers whose heads the store holds), refused
        unless the store holds their heads; ``what`` names who asks (e.g. ``"--layers last:4"``)."""
        if selection is None:
            return self.head_layers
        layers = parse_layers(selection, self.n_layers)
        self.head_positions(layers, what)
        return layers

    def mean(self, name: str) -> Tensor:
        """Mean of one field over all images, streamed chunk by chunk (float64 accumulation); the layer axis
        of ``heads`` is :attr:`head_layers`."""
        self._require_complete()
        total = None
        for chunk in range(self.n_chunks):
            array = mmap_safetensors(self.chunk_path(chunk))[name]
            part = torch.from_numpy(np.asarray(array, dtype=np.float64)).sum(0)
            total = part if total is None else total + part
        return (total / self.count).float()

    def load(self, rows: Iterable[int] | None = None, token_layers: Sequence[int] = ()) -> Decomposition:
        """The stored decomposition (all images, or ``rows``) in memory."""
        rows = None if rows is None else list(rows)
        if self.summed_layers:
            raise EditclipError(
                f"store {str(self.root)!r} holds the heads of layers {format_layers(self.head_layers)} only and the "
                f"summed attention (L<l>.attn) of {format_layers(self.summed_layers)}, which a Decomposition has no "
                "place for; read its fields with store.read(...)"
            )
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
        return name in mmap_safetensors(self.chunk_path(0))

    def describe(self) -> dict[str, Any]:
        """Provenance for reports: model, fingerprint, dataset, split, count, convention."""
        keys = ("model", "fingerprint", "preprocessing", "dataset", "count", "convention")
        return {k: self.meta.get(k) for k in keys} | {"path": str(self.root)}


def chunk_tensors(d: Decomposition, embedding: Tensor, head_layers: Sequence[int], dtype: str) -> dict[str, Tensor]:
    """The tensors a chunk file holds for ``d``: the heads of ``head_layers``, the other layers' heads summed
    (``attn``), the other parts and the embedding, on the CPU in the store's ``dtype``."""
    held = list(head_layers)
    summed = [layer for layer in range(d.n_layers) if layer not in set(held)]
    tensors = {
        "heads": d.heads if not summed else d.heads[:, held],
        "mlps": d.mlps,
        "embed": d.embed,
        "biases": d.biases,
        "norms": d.norms,
        "embedding": embedding,
    }
    if summed:
        tensors["attn"] = d.heads[:, summed].sum(2)  # [n, len(summed), D]: one part L{l}.attn per layer
    tensors.update({f"tokens_L{layer}": t for layer, t in d.tokens.items()})
    tensors.update({name: t for name in OPTIONAL_FIELDS if (t := getattr(d, name)) is not None})
    torch_dtype = {"float32": torch.float32, "float16": torch.float16}[dtype]
    return {k: v.detach().to("cpu", torch_dtype).contiguous() for k, v in tensors.items()}


def _resume_value(meta: dict[str, Any], key: str) -> Any:
    """A resume-checked field; a store without ``head_layers`` holds every layer's heads."""
    if key == "head_layers" and meta.get(key) is None:
        return list(range(int(meta["shape"]["layers"])))
    return meta.get(key)
