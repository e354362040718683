"""The edit spec: a versioned YAML file that says which parts of a CLIP image embedding to change, how,
with which calibration data, and how to evaluate and export the result.

The models here are pydantic v2 with ``extra="forbid"`` and strict types everywhere, and every field
carries a description, so the JSON Schema (``editclip schema``) documents the format by itself. The spec
knows nothing of torch: names are checked for syntax when the spec is read, and against the model's
shape when its config declares one (else by :meth:`EditSpec.check_against` once the model is loaded).

Every problem is reported with the field's path (``edits[2].project.head``) and, for YAML files, its
line, all problems at once, as one :class:`~editclip.errors.EditclipError`. Relative paths in a spec file
(data roots, checkpoints, pools, the export folder) are read from the spec file's folder; ``--set``
overrides replace fields before validation (``paths``). A spec given as data (:meth:`EditSpec.from_dict`)
reads its relative paths from the working folder.

The package's modules, one concern each: ``fields`` (field types), ``data`` and ``model`` (the data and
model sections), ``edits``, ``evaluation`` (evaluation and export), ``edit_spec`` (the whole spec),
``problems`` (paths, lines, messages) and ``yaml_source`` (bounded YAML reading).
"""

from .data import WATERBIRDS_SPLITS, CalibrationSpec, DataSpec
from .edit_spec import EditSpec
from .edits import Basis, Edit, MeanAblate, Project, ResolvedPart, TextSpanSource
from .evaluation import EvaluateSpec, ExportSpec
from .fields import SPEC_VERSION, TEMPLATE_SETS, HeadName, LayerSelection
from .model import ModelSpec

__all__ = [
    "SPEC_VERSION",
    "TEMPLATE_SETS",
    "WATERBIRDS_SPLITS",
    "Basis",
    "CalibrationSpec",
    "DataSpec",
    "Edit",
    "EditSpec",
    "EvaluateSpec",
    "ExportSpec",
    "HeadName",
    "LayerSelection",
    "MeanAblate",
    "ModelSpec",
    "Project",
    "ResolvedPart",
    "TextSpanSource",
]
