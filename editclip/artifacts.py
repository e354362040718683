"""Edit artifacts and patched checkpoints in safetensors, and the metadata that ties them to their base model.

- **Edit artifact** (:func:`save_edit` / :func:`load_edit`): the tensors of a compiled edit in one
  safetensors file, with the spec (YAML), the calibration provenance, the convention, the base model's
  source and the base weights' fingerprint in its metadata. It loads onto the base model only.
- **Patched checkpoint** (:func:`save_patched_checkpoint`): the weights target as a full open_clip state
  dict in safetensors, which stock open_clip loads with ``create_model(name, pretrained=path)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from . import _onnx
from ._constants import PREPROCESSING_KEY
from ._io import atomic_path
from .checkpoints import check_readable, read_error
from .edited import EditedCLIP, EditTensors
from .errors import EditclipError

if TYPE_CHECKING:
    from .backbone import Backbone

EDIT_FORMAT = "editclip-edit/1"
CHECKPOINT_FORMAT = "editclip-patched-checkpoint/1"
FINGERPRINT_KEY = "editclip_base_fingerprint"


def save_edit(path: str | os.PathLike[str], tensors: EditTensors, metadata: Mapping[str, Any]) -> Path:
    """Write an edit artifact: ``tensors`` plus ``metadata`` (e.g. :meth:`CompiledEdit.metadata`: spec YAML,
    provenance, convention, base model source, base fingerprint; non-string values are JSON-encoded)."""
    meta = _onnx.stringify(metadata)
    if not meta.get(FINGERPRINT_KEY):
        raise EditclipError(f"edit metadata needs {FINGERPRINT_KEY!r} (the base weights' fingerprint)")
    meta["format"] = EDIT_FORMAT
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.to_dict().items()}, str(tmp), metadata=meta)
    return path


def read_edit(path: str | os.PathLike[str]) -> tuple[EditTensors, dict[str, str]]:
    """The tensors and metadata of an edit artifact, without a model."""
    meta, tensors = _read_safetensors(path, EDIT_FORMAT, "an editclip edit artifact (made by save_edit)")
    return EditTensors.from_dict(tensors), meta


def load_edit(path: str | os.PathLike[str], bb: Backbone) -> EditedCLIP:
    """The edited model of an artifact on ``bb``; refuses weights other than those the edit was made for."""
    tensors, meta = read_edit(path)
    check_base(meta, bb, path)
    return EditedCLIP(bb.model, tensors)


def recorded_preprocessing(meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The preprocessing an artifact or ONNX file records (None when it records none)."""
    if meta.get(PREPROCESSING_KEY):
        return json.loads(meta[PREPROCESSING_KEY])
    return json.loads(meta.get("editclip_base_model", "{}") or "{}").get("preprocessing")


def check_base(meta: Mapping[str, str], bb: Backbone, path: str | os.PathLike[str]) -> None:
    """Raise unless ``bb`` has the base weights and the preprocessing recorded in ``meta``."""
    from .backbone import describe_preprocessing

    expected = meta.get(FINGERPRINT_KEY)
    if expected != bb.fingerprint:
        base = json.loads(meta.get("editclip_base_model", "{}") or "{}").get("name", "?")
        raise EditclipError(
            f"{str(path)!r} was compiled for {base!r} weights with fingerprint {expected}, but the model given "
            f"({bb.model_id!r}) has fingerprint {bb.fingerprint}; load the base model it was made for"
        )
    recorded = recorded_preprocessing(meta)
    if recorded is None:
        raise EditclipError(
            f"{str(path)!r} does not record the preprocessing it was calibrated with (an older editclip made it); "
            "compile it again with `editclip run`"
        )
    if recorded != bb.preprocessing:
        raise EditclipError(
            f"{str(path)!r} was calibrated with preprocessing {describe_preprocessing(recorded)}, but the model given "
            f"preprocesses with {describe_preprocessing(bb.preprocessing)}; give the model the artifact's "
            "preprocessing (its model config's preprocess_cfg)"
        )


def save_patched_checkpoint(
    path: str | os.PathLike[str], state_dict: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a full open_clip state dict (the weights target) as safetensors, loadable by stock open_clip
    with ``open_clip.create_model(name, pretrained=path)``; ``metadata`` is kept for provenance."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen and tensor.numel():  # safetensors refuses shared storage
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    meta = {**_onnx.stringify(metadata or {}), "format": CHECKPOINT_FORMAT}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file (empty when it has none)."""
    check_readable(path, "file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, ValueError, SafetensorError) as err:
        raise EditclipError(f"{str(path)!r} is not a readable safetensors file (truncated or corrupt): {err}") from None


def _read_safetensors(path: str | os.PathLike[str], fmt: str, what: str) -> tuple[dict[str, str], dict[str, Tensor]]:
    if not Path(path).is_file():
        raise EditclipError(f"{str(path)!r} does not exist")
    meta = read_metadata(path)
    if meta.get("format") != fmt:
        raise EditclipError(f"{str(path)!r} is not {what}; its format is {meta.get('format')!r}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (OSError, SafetensorError) as err:
        raise read_error(path, err, "edit artifact") or EditclipError(f"cannot read {str(path)!r}: {err}") from None
    return meta, tensors


def model_metadata(bb: Backbone, kind: str = "base") -> dict[str, str]:
    """Metadata naming the model of an export: kind (base, edited or patched), id, base source and
    fingerprint, and the fingerprint of the weights themselves (override it for patched weights)."""
    from .store import model_source

    return {
        "kind": kind,
        "model_id": bb.model_id,
        "editclip_base_model": json.dumps(model_source(bb)),
        FINGERPRINT_KEY: bb.fingerprint,
        "weights_fingerprint": bb.fingerprint,
        PREPROCESSING_KEY: json.dumps(bb.preprocessing),
    }
