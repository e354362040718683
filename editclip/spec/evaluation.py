"""The evaluation and export sections of a spec: zero-shot classes, templates, label and group columns
(checked against the data's metadata when it is readable); output formats and folder."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from .data import DataSpec
from .fields import PositiveInt, StrictModel, Templates, Text


class EvaluateSpec(StrictModel):
    """Zero-shot evaluation of the base and edited models, per group."""

    data: DataSpec = Field(description="Evaluation images with their label and group columns.")
    max_images: PositiveInt | None = Field(None, description="Use at most this many images (all when absent).")
    classes: list[Text] = Field(
        description="Class names in label order: the label value i (or the class name itself) is classes[i]."
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

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, classes: list[str]) -> list[str]:
        if len(classes) < 2:
            raise ValueError("zero-shot classification needs at least 2 classes")
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            raise ValueError(f"repeated class names: {', '.join(repeated)}")
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
