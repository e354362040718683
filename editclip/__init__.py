"""editclip: interpret and edit CLIP image encoders through the direct effects of their parts.

Public API (each name is imported on first use, so ``import editclip`` and the command line start
without loading torch):

Models
    load, Backbone, VitShape, toyworld
Decomposition
    decompose, Decomposition, DecompositionStore
Naming heads
    textspan, TextSpanResult, encode_texts
Editing
    EditSpec, shipped_specs, shipped_spec, compile, CompiledEdit, EditedCLIP, EditTensors, run_spec, RunResult
Evaluation
    zero_shot_classifier, resolve_classes, group_metrics, group_intervals, random_head_controls, ControlSettings,
    sweep_k
Export
    save_edit, load_edit, export_onnx, OnnxImageEncoder
Errors
    EditclipError, UnsupportedModelError

Everything not listed in ``__all__`` is internal.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# public name -> (module, attribute in it); the attribute None means the module itself
_EXPORTS = {
    "load": (".backbone", "load"),
    "Backbone": (".backbone", "Backbone"),
    "VitShape": (".backbone", "VitShape"),
    "toyworld": (".toyworld", None),
    "decompose": ("._decompose", "decompose"),
    "Decomposition": ("._decompose", "Decomposition"),
    "DecompositionStore": (".store", "DecompositionStore"),
    "textspan": ("._textspan", "textspan"),
    "TextSpanResult": ("._textspan", "TextSpanResult"),
    "HeadMoments": ("._textspan", "HeadMoments"),
    "stats_heads": ("._textspan", "stats_heads"),
    "encode_texts": (".text", "encode_texts"),
    "EditSpec": (".spec", "EditSpec"),
    "shipped_specs": (".spec.shipped", "shipped_specs"),
    "shipped_spec": (".spec.shipped", "shipped_spec"),
    "compile": ("._compile", "compile_edit"),  # editclip.compile(spec, bb), as the design names it
    "CompiledEdit": ("._compile", "CompiledEdit"),
    "EditedCLIP": (".edited", "EditedCLIP"),
    "EditTensors": (".edited", "EditTensors"),
    "run_spec": (".runner", "run_spec"),
    "RunResult": (".runner", "RunResult"),
    "zero_shot_classifier": (".evaluate", "zero_shot_classifier"),
    "group_metrics": (".evaluate", "group_metrics"),
    "resolve_classes": (".classnames", "resolve_classes"),
    "group_intervals": (".uncertainty", "group_intervals"),
    "random_head_controls": (".controls", "random_head_controls"),
    "ControlSettings": (".controls", "ControlSettings"),
    "sweep_k": (".sweep", "sweep_k"),
    "save_edit": (".export", "save_edit"),
    "load_edit": (".export", "load_edit"),
    "export_onnx": (".export", "export_onnx"),
    "OnnxImageEncoder": (".export", "OnnxImageEncoder"),
    "EditclipError": (".errors", "EditclipError"),
    "UnsupportedModelError": (".errors", "UnsupportedModelError"),
}

__all__ = [
    "Backbone", "CompiledEdit", "ControlSettings", "Decomposition", "DecompositionStore", "EditSpec", "EditTensors",
    "EditclipError", "EditedCLIP", "HeadMoments", "OnnxImageEncoder", "RunResult", "TextSpanResult",
    "UnsupportedModelError", "VitShape", "__version__", "compile", "decompose", "encode_texts", "export_onnx",
    "group_intervals", "group_metrics", "load", "load_edit", "random_head_controls", "resolve_classes", "run_spec",
    "save_edit", "shipped_spec", "shipped_specs", "stats_heads", "sweep_k", "textspan", "toyworld",
    "zero_shot_classifier",
]  # fmt: skip

if TYPE_CHECKING:
    from . import toyworld
    from ._compile import CompiledEdit
    from ._compile import compile_edit as compile
    from ._decompose import Decomposition, decompose
    from ._textspan import HeadMoments, TextSpanResult, stats_heads, textspan
    from .backbone import Backbone, VitShape, load
    from .classnames import resolve_classes
    from .controls import ControlSettings, random_head_controls
    from .edited import EditedCLIP, EditTensors
    from .errors import EditclipError, UnsupportedModelError
    from .evaluate import group_metrics, zero_shot_classifier
    from .export import OnnxImageEncoder, export_onnx, load_edit, save_edit
    from .runner import RunResult, run_spec
    from .spec import EditSpec
    from .spec.shipped import shipped_spec, shipped_specs
    from .store import DecompositionStore
    from .sweep import sweep_k
    from .text import encode_texts
    from .uncertainty import group_intervals


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562) and keep it in the package namespace."""
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'editclip' has no attribute {name!r}") from None
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
