"""Export edited models: the artifacts of a compiled edit (:func:`export_compiled`), and the one import place
for everything export-related.

The pieces live in modules with one job each, re-exported here so ``editclip.export.NAME`` keeps working:

- :mod:`editclip.artifacts`: edit artifacts (:func:`save_edit` / :func:`load_edit`), open_clip patched
  checkpoints (:func:`save_patched_checkpoint`), metadata and the base-model check (:func:`check_base`);
- :mod:`editclip.onnx_export`: :func:`export_onnx` with its parity check against torch (:func:`check_parity`);
- :mod:`editclip.onnx_runtime`: :class:`OnnxImageEncoder`, running an exported file with onnxruntime.

The weights target is written by the model's family adapter in its stock format
(:func:`editclip.families.save_weights`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import families
from .artifacts import (
    CHECKPOINT_FORMAT,
    EDIT_FORMAT,
    FINGERPRINT_KEY,
    PREPROCESSING_KEY,
    check_base,
    load_edit,
    model_metadata,
    read_edit,
    read_metadata,
    recorded_preprocessing,
    save_edit,
    save_patched_checkpoint,
)
from .backbone import state_dict_fingerprint
from .onnx_export import (
    EXTERNAL_DATA_THRESHOLD,
    FP16_MIN_COSINE,
    FP32_ATOL,
    ExportReport,
    Parity,
    check_parity,
    export_onnx,
    preprocess_metadata,
)
from .onnx_runtime import END_KEY, ONNX_FORMAT, OnnxImageEncoder

if TYPE_CHECKING:
    from ._compile import CompiledEdit

__all__ = [
    "CHECKPOINT_FORMAT",
    "EDIT_FORMAT",
    "END_KEY",
    "EXTERNAL_DATA_THRESHOLD",
    "FINGERPRINT_KEY",
    "FP16_MIN_COSINE",
    "FP32_ATOL",
    "ONNX_FORMAT",
    "PREPROCESSING_KEY",
    "ExportReport",
    "OnnxImageEncoder",
    "Parity",
    "check_base",
    "check_parity",
    "export_compiled",
    "export_onnx",
    "load_edit",
    "model_metadata",
    "preprocess_metadata",
    "read_edit",
    "read_metadata",
    "recorded_preprocessing",
    "save_edit",
    "save_patched_checkpoint",
]


def export_compiled(
    compiled: CompiledEdit,
    folder: str | os.PathLike[str],
    formats: Sequence[str] = ("safetensors", "onnx"),
    *,
    fp16: bool = False,
    normalize: bool = False,
    opset: int = 18,
) -> dict[str, Any]:
    """Write a compiled edit's artifacts into ``folder``: ``edit.safetensors`` (wrapper target) or the weights
    target in the family's stock format (open_clip: ``patched.safetensors``; transformers: a ``patched/``
    folder for ``from_pretrained``), and ``model.onnx`` (checked against torch). Returns the paths written
    (and the ONNX parity)."""
    folder = Path(folder)
    weights = compiled.spec.target == "weights"
    meta = {**model_metadata(compiled.backbone, "patched" if weights else "edited"), **compiled.metadata()}
    written: dict[str, Any] = {}
    if "safetensors" in formats:
        if weights:
            patched = compiled.patched_model()
            meta["weights_fingerprint"] = state_dict_fingerprint(patched.state_dict())
            path = families.save_weights(compiled.backbone, patched, folder, meta)
        else:
            path = save_edit(folder / "edit.safetensors", compiled.tensors, meta)
        written["safetensors"] = str(path)
    if "onnx" in formats:
        model = compiled.patched_model() if weights else compiled.wrapper()
        if weights:
            meta["weights_fingerprint"] = state_dict_fingerprint(model.state_dict())
        report = export_onnx(model, folder / "model.onnx", fp16=fp16, normalize=normalize, opset=opset, metadata=meta)
        written["onnx"] = report.as_dict()
    return written
