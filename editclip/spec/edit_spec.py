"""The whole edit spec: reading it from YAML or plain data with every problem reported at once, and the
checks that need the model's shape (heads and layers in range, one action per part)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, Field, PrivateAttr, ValidationError, field_validator

from ..errors import EditclipError
from ..names import check_head, parse_head, parse_layers
from .data import CalibrationSpec
from .edits import Edit, ResolvedPart
from .evaluation import EvaluateSpec, ExportSpec
from .fields import SPEC_VERSION, StrictModel
from .model import ModelSpec
from .paths import anchor_paths, apply_overrides
from .problems import Lines, Problem, raise_problems
from .yaml_source import load_yaml


def _version(value: Any) -> Any:
    if type(value) is not int or value != SPEC_VERSION:
        raise ValueError(f"unsupported spec version {value!r}: this editclip reads version {SPEC_VERSION}")
    return value


class EditSpec(StrictModel):
    """A whole edit spec. Read it with :meth:`from_yaml` or :meth:`from_dict`, which also refuse
    contradictory edits and, when the model's config gives its shape, heads and layers out of range, and
    report every problem with its path (and line); constructing the model directly skips those checks
    until :meth:`check_against`."""

    editclip: Annotated[Literal[1], BeforeValidator(_version)] = Field(
        description="Spec format version; this editclip reads 1."
    )
    name: str | None = Field(None, description="A short name for the edit, used in reports.")
    model: ModelSpec = Field(description="The base model.")
    calibration: CalibrationSpec = Field(description="Images the edit's statistics are computed on.")
    edits: list[Edit] = Field(
        description="The edits, each {mean_ablate: ...} or {project: ...}; a part takes at most one "
        "(ablating it twice is allowed and counts once)."
    )
    target: Literal["wrapper", "weights"] = Field(
        "wrapper",
        description="wrapper: an EditedCLIP with the paper's direct-effect semantics; weights: a patched "
        "open_clip checkpoint where the head's own output changes at every token (total effect).",
    )
    convention: Literal["exact", "official"] = Field(
        "exact",
        description="How the post-LayerNorm constant is split over parts: exact (each part centred by its "
        "own mean) or official (the official code's split, for reproducing published numbers).",
    )
    evaluate: EvaluateSpec | None = Field(None, description="Zero-shot evaluation of base and edited models.")
    export: ExportSpec | None = Field(None, description="Export of the edited model.")

    _source: str | None = PrivateAttr(None)
    _lines: Lines = PrivateAttr(default_factory=dict)
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)

    @field_validator("edits")
    @classmethod
    def _some_edits(cls, edits: list[Edit]) -> list[Edit]:
        if not edits:
            raise ValueError("no edits: give at least one mean_ablate or project")
        return edits

    def __eq__(self, other: object) -> bool:
        """Specs are equal when their content is, wherever they were read from."""
        return isinstance(other, EditSpec) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    # -- reading and writing ------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> EditSpec:
        """Read a spec file; errors name each field's path and line. Relative paths in the file are read from
        its folder; ``overrides`` (``key.path=value``, as ``editclip run --set``) replace fields before the
        spec is validated, their relative paths read from the working folder (:mod:`editclip.spec.paths`)."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EditclipError(f"spec file {source} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise EditclipError(f"cannot read spec file {source}: {err}") from None
        data, lines, problems = load_yaml(text, source)
        raise_problems(problems, source, lines)
        data, applied = anchor_paths(data, Path(path).parent), {}
        if overrides:
            data, applied = apply_overrides(data, overrides)
        spec = cls._from_data(data, source, lines)
        spec._overrides = applied
        return spec

    @property
    def overrides(self) -> dict[str, Any]:
        """The ``--set`` overrides this spec was read with (``{key.path: value}``; empty for none)."""
        return dict(self._overrides)

    @classmethod
    def from_dict(cls, data: Any) -> EditSpec:
        """Validate a spec given as plain data (what ``yaml.safe_load`` returns)."""
        return cls._from_data(data, None, {})

    @classmethod
    def _from_data(cls, data: Any, source: str | None, lines: Lines) -> EditSpec:
        """Validate everything in one pass: field problems, and the edits that are well formed checked
        against each other and against the shape the model's config declares."""
        if data is None:
            raise EditclipError(f"the spec{' ' + source if source else ''} is empty; it starts with 'editclip: 1'")
        problems: list[Problem] = []
        spec: EditSpec | None = None
        try:
            spec = cls.model_validate(data)
        except ValidationError as err:
            problems += [Problem.from_pydantic(e, cls) for e in err.errors()]
        if spec is not None:
            edits = list(enumerate(spec.edits))
            shape = spec.model.vision_layers_heads()
        else:
            edits = _well_formed_edits(data)
            shape = _declared_shape(data)
        target = spec.target if spec is not None else (data.get("target") if isinstance(data, dict) else None)
        problems += edit_problems(edits, *(shape or (None, None)), target=target)
        raise_problems(problems, source, lines)
        assert spec is not None
        spec._source, spec._lines = source, lines
        return spec

    def to_yaml(self) -> str:
        """The spec as YAML (defaults written out, absent options left out); reads back equal."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False, allow_unicode=True)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """JSON Schema (draft 2020-12) of the spec file, for editors and documentation."""
        schema = cls.model_json_schema()
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "editclip edit spec"}

    # -- checks that need the model's shape ---------------------------------------------------------

    def check_against(self, n_layers: int, n_heads: int) -> None:
        """Raise unless every head and layer exists in a model of `n_layers` layers of `n_heads` heads and
        no part takes two different edits (``last:k`` selections can only be checked here)."""
        problems = edit_problems(list(enumerate(self.edits)), n_layers, n_heads, target=self.target)
        raise_problems(problems, self._source, self._lines)

    def resolved_parts(self, n_layers: int, n_heads: int) -> list[ResolvedPart]:
        """Every part the edits touch, once, with its action: ``("L21.H1", MeanAblate, 0)``,
        ``("L3.mlp", MeanAblate, 2)``, ``("embed", MeanAblate, 2)``, ``("L23.H6", Project, 3)``."""
        self.check_against(n_layers, n_heads)
        resolved: dict[str, ResolvedPart] = {}
        for i, edit in enumerate(self.edits):
            for part in edit.action.parts_for(n_layers, n_heads):
                resolved.setdefault(part, ResolvedPart(part, edit.action, i))
        return list(resolved.values())


def edit_problems(
    edits: list[tuple[int, Edit]], n_layers: int | None, n_heads: int | None, target: Any = None
) -> list[Problem]:
    """Problems of the (index, edit) pairs: heads and layers out of range when the shape is known, a head
    projected twice, or projected and mean-ablated, a CLS-source attention part edited with a head of its
    layer or in the weights target."""
    problems: list[Problem] = []
    if n_layers is not None:
        problems += _range_problems(edits, n_layers, n_heads)
    problems += _cls_source_problems(edits, n_layers, target)
    for j, edit in edits:
        if edit.project is not None and edit.project.embedding:
            earlier = [i for i, other in edits if i < j and other.project is not None and other.project.embedding]
            if earlier:
                message = f"the embedding is projected by edits[{j}] and already by edits[{earlier[0]}]; give one"
                problems.append(Problem(("edits", j, "project", "embedding"), message))
            continue
        if edit.project is None:
            continue
        ref = parse_head(edit.project.head)
        loc = ("edits", j, "project", "head")
        for i, other in edits:
            if other.project is not None and i < j and other.project.head == edit.project.head:
                message = f"{ref} is projected by edits[{j}] and already by edits[{i}]; one projection per head"
                problems.append(Problem(loc, message))
            elif other.mean_ablate is not None and other.mean_ablate.covers_head(ref, n_layers):
                problems.append(
                    Problem(
                        loc,
                        f"{ref} is projected by edits[{j}] and mean-ablated by edits[{i}] "
                        f"({other.mean_ablate.describe()}); a part takes only one of them",
                    )
                )
    return problems


WEIGHTS_CANNOT_CLS = (
    "the weights target cannot express a CLS-source ablation: that part is each image's attention weight of "
    "the CLS query on the CLS token times that token's value, a product of two image-dependent quantities that "
    "no change of the stock weights replaces by its mean (and for the CLS query alone); use target: wrapper"
)


def _cls_source_problems(edits: list[tuple[int, Edit]], n_layers: int | None, target: Any) -> Iterator[Problem]:
    """A CLS-source attention part lies inside its layer's head parts: no head of that layer may take an edit
    too (its share would be replaced twice), and the weights target cannot express it."""
    for j, edit in edits:
        ablate = edit.mean_ablate
        if ablate is None or not ablate.cls_source:
            continue
        loc = ("edits", j, "mean_ablate", "cls_source")
        if target == "weights":
            yield Problem(loc, WEIGHTS_CANNOT_CLS)
        for i, other in edits:
            for layer, what in _edited_heads(other, n_layers):
                if ablate.covers_cls_source(layer, n_layers):
                    how = "projects" if other.project is not None else "mean-ablates"
                    yield Problem(loc, (
                        f"edits[{j}] mean-ablates L{layer}.attn.cls, which lies inside {what}, which edits[{i}] "
                        f"{how} ({other.action.describe()}); the CLS-source attention of a layer takes no edit "
                        "together with a head of that layer"))  # fmt: skip
                    break


def _edited_heads(edit: Edit, n_layers: int | None) -> list[tuple[int, str]]:
    """(layer, what) of the heads an edit changes, where they can be listed (a layer selection that needs the
    unknown layer count gives none: the check runs again with the model's shape)."""
    if edit.project is not None:
        head = edit.project.head
        return [] if head is None else [(parse_head(head).layer, f"the part of {head}")]
    ablate = edit.mean_ablate
    found = [(parse_head(h).layer, f"the part of {h}") for h in ablate.heads or []]
    if ablate.parts in ("attention", "both"):
        try:
            layers = parse_layers(ablate.layers or "all", n_layers)
        except EditclipError:  # last:k / all without the model's shape, or out of range (reported elsewhere)
            layers = []
        found += [(layer, f"the heads of L{layer}") for layer in layers]
    return found


def _range_problems(edits: list[tuple[int, Edit]], n_layers: int, n_heads: int | None) -> Iterator[Problem]:
    for i, edit in edits:
        checks: list[tuple[tuple[Any, ...], str, str]] = []
        if edit.mean_ablate is not None:
            ablate = edit.mean_ablate
            checks += [(("edits", i, "mean_ablate", "heads", k), "head", h) for k, h in enumerate(ablate.heads or [])]
            if ablate.layers is not None:
                checks.append((("edits", i, "mean_ablate", "layers"), "layers", ablate.layers))
        elif edit.action.head is not None:  # type: ignore[union-attr]
            checks.append((("edits", i, "project", "head"), "head", edit.action.head))  # type: ignore[union-attr]
        for loc, kind, value in checks:
            try:
                if kind == "head":
                    check_head(parse_head(value), n_layers, n_heads)
                else:
                    parse_layers(value, n_layers)
            except EditclipError as err:
                yield Problem(loc, str(err))


def _well_formed_edits(data: Any) -> list[tuple[int, Edit]]:
    """The edits of raw spec data that validate on their own (to check them while other fields fail)."""
    raw = data.get("edits") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return []
    edits = []
    for i, item in enumerate(raw):
        try:
            edits.append((i, Edit.model_validate(item)))
        except ValidationError:
            continue  # its problems are reported by the whole spec's validation
    return edits


def _declared_shape(data: Any) -> tuple[int, int] | None:
    """(layers, heads) from raw spec data's model section, when that section validates and says."""
    raw = data.get("model") if isinstance(data, dict) else None
    try:
        return ModelSpec.model_validate(raw).vision_layers_heads()
    except ValidationError:
        return None
