"""The evaluation and export sections of a spec: zero-shot classes, templates, label and group columns
(checked against the data's metadata when it is readable); output formats and folder."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from .data import DataSpec
from .fields import ClassList, LayerSelection, PositiveInt, StrictModel, Templates, Text


class ControlsSpec(StrictModel):
    """Random-head controls: the edit's action on random sets of as many heads, scored beside it."""

    random_heads: PositiveInt = Field(20, description="How many random head sets (R).")
    seed: Annotated[int, Field(ge=0)] = Field(0, description="Seed of the random sets.")
    layers: Literal["same"] | LayerSelection = Field(
        "same", description="Layers the random heads come from: same (the edit's heads' layers), or a selection "
        "such as all, last:4, L8-11."
    )  # fmt: skip


def _value_names(value: Any) -> Any:
    """``{y: [landbird, waterbird]}`` is short for ``{y: {0: landbird, 1: waterbird}}``; keys written as
    integer strings (``"0"``, as JSON writes them) are integers."""
    if not isinstance(value, dict):
        return value

    def key(k: Any) -> Any:
        return int(k) if isinstance(k, str) and re.fullmatch(r"-?\d+", k.strip()) else k

    return {c: dict(enumerate(v)) if isinstance(v, list) else {key(k): n for k, n in v.items()}
            if isinstance(v, dict) else v for c, v in value.items()}  # fmt: skip


class EvaluateSpec(StrictModel):
    """Zero-shot evaluation of the base and edited models, per group."""

    data: DataSpec = Field(description="Evaluation images with their label and group columns.")
    max_images: PositiveInt | None = Field(None, description="Use at most this many images (all when absent).")
    classes: ClassList = Field(
        description="Class names in label order: the label value i (or the class name itself) is classes[i]. "
        "Or a class source: imagenet (open_clip's 1,000 names), imagefolder:PATH (an ImageFolder's sorted "
        "sub-folder names) or cub:PATH (CUB's classes.txt, names cleaned)."
    )
    templates: Templates = Field(
        "openai_imagenet",
        description="Prompt templates with '{}' for the class name, or open_clip's set "
        "openai_imagenet (80) or simple_imagenet (7). Text embeddings are averaged over templates.",
    )
    label: str = Field(description="The column that holds the class of each image (e.g. y).")
    groups: list[str] | None = Field(
        None,
        description="Columns whose value combinations define the groups, e.g. [y, place] (default: [label]).",
    )
    group_names: Annotated[dict[str, dict[int, Text]] | None, BeforeValidator(_value_names)] = Field(
        None,
        description="Names of the group columns' values for reports, e.g. {y: [landbird, waterbird], place: "
        "[land, water]} (a list names values 0, 1, ...; a mapping names any integer values). Default: the "
        "dataset's own (world.json of a toy world, Waterbirds' names for a Waterbirds folder).",
        json_schema_extra={"examples": [{"y": ["landbird", "waterbird"], "place": ["land", "water"]}]},
    )
    controls: ControlsSpec | None = Field(
        None, description="Random-head controls of the edit (e.g. {random_heads: 20, seed: 0, layers: same})."
    )

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, classes: list[str]) -> list[str]:
        if len(classes) < 2:
            raise ValueError("zero-shot classification needs at least 2 classes")
        return classes

    @field_validator("label")
    @classmethod
    def _check_label(cls, label: str, info: ValidationInfo) -> str:
        found = _columns(info, [label])
        if found is not None and "classes" in info.data:
            classes: list[str] = info.data["classes"]
            values = sorted({v.strip() for v in found[label]})
            if all(re.fullmatch(r"-?\d+", v) for v in values):
                bad = [v for v in values if not 0 <= int(v) < len(classes)]
                if bad:
                    raise ValueError(
                        f"column {label!r} has value(s) {', '.join(bad)} but classes has "
                        f"{len(classes)} names "
                        f"(indices 0..{len(classes) - 1})"
                    )
            elif any(v not in classes for v in values):
                unknown = [v for v in values if v not in classes][:5]
                raise ValueError(f"column {label!r} has labels that are not in classes: {', '.join(unknown)}")
        return label

    @field_validator("groups")
    @classmethod
    def _check_groups(cls, groups: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if groups is None:
            return None
        if not groups:
            raise ValueError("empty group list (leave groups out to group by the label)")
        repeated = sorted({g for g in groups if groups.count(g) > 1})
        if repeated:
            raise ValueError(f"repeated group columns: {', '.join(repeated)}")
        _columns(info, groups)
        return groups

    @model_validator(mode="after")
    def _named_columns(self) -> EvaluateSpec:
        unknown = sorted(set(self.group_names or {}) - set(self.group_columns))
        if unknown:
            raise ValueError(f"group_names names column {unknown[0]!r}, which is not a group column "
                             f"({', '.join(self.group_columns)})")  # fmt: skip
        return self

    @property
    def group_columns(self) -> list[str]:
        """The columns that define the groups (the label alone by default)."""
        return self.groups or [self.label]


def _columns(info: ValidationInfo, names: list[str]) -> dict[str, list[str]] | None:
    """The named columns of the evaluation data's metadata; raise when one is missing."""
    data: DataSpec | None = info.data.get("data")
    found = data.metadata() if data is not None else None
    if found is None:
        return None
    path, table = found
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(f"no column {missing[0]!r} in {path}; its columns are {', '.join(table)}")
    return {n: table[n] for n in names}


def _unique_formats(formats: list[str]) -> list[str]:
    if not formats:
        raise ValueError("empty format list: give safetensors and/or onnx")
    if len(set(formats)) != len(formats):
        raise ValueError("a format is listed twice")
    return formats


class ExportSpec(StrictModel):
    """Where and how the edited model is written."""

    formats: Annotated[list[Literal["safetensors", "onnx"]], AfterValidator(_unique_formats)] = Field(
        description="safetensors (the edit, or the patched checkpoint for target weights) and/or onnx "
        "(the image tower)."
    )
    dir: str = Field(description="Output folder (created when the spec runs).")

    @field_validator("dir")
    @classmethod
    def _nonempty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty path")
        return value
