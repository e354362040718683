"""The edit spec: a versioned YAML file that says which parts of a CLIP image embedding to change, how,
with which calibration data, and how to evaluate and export the result.

The models here are pydantic v2 with ``extra="forbid"`` and strict types everywhere, and every field
carries a description, so the JSON Schema (``editclip schema``) documents the format by itself. The spec
knows nothing of torch: names are checked for syntax when the spec is read and against the model's
shape by :meth:`EditSpec.check_against` once the model is known.

Every problem is reported with the field's path (``edits[2].project.head``) and, for YAML files, its
line, all problems at once, as one :class:`~editclip.errors.EditclipError`. Relative paths in a spec
(data roots, checkpoints, pools, the export folder) are read from the current working folder.
"""

from __future__ import annotations

import csv
import difflib
import functools
import importlib.util
import json
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .errors import EditclipError
from .names import HeadRef, check_head, head_name, mlp_name, parse_head, parse_layers

SPEC_VERSION = 1
TEMPLATE_SETS = ("openai_imagenet", "simple_imagenet")
WATERBIRDS_SPLITS = {"0": "train", "1": "val", "2": "test"}
_POOL_DIR = Path(__file__).parent / "pools"
_TOYWORLD_CONFIG = Path(__file__).parent / "toyworld" / "assets" / "config.json"
_LAYER_PIECE_RE = re.compile(r"^(all|last:[1-9]\d*|L\d+(-\d+)?)$")
_HEAD_PATTERN = r"^L\d+\.H\d+$"
_CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


# ---------------------------------------------------------------------------------------------------
# Field types


def _head(value: str) -> str:
    try:
        return str(parse_head(value))
    except EditclipError as err:
        raise ValueError(str(err)) from None


def _layer_selection(value: str) -> str:
    pieces = [p.strip() for p in value.split(",")]
    for piece in pieces:
        if not _LAYER_PIECE_RE.match(piece):
            raise ValueError(
                f"bad layer selection {piece!r}: expected 'L<i>', 'L<i>-<j>', 'last:<k>' or 'all' (e.g. 'L0-19')"
            )
        if piece.startswith("L"):
            try:
                parse_layers(piece)
            except EditclipError as err:
                raise ValueError(str(err)) from None
    return ",".join(pieces)


def _int_layer(value: Any) -> Any:
    return f"L{value}" if type(value) is int else value


def _existing_path(value: str) -> str:
    if not value.strip():
        raise ValueError("empty path")
    if not Path(value).exists():
        raise ValueError(f"{value} does not exist (relative paths are read from {Path.cwd()})")
    return value


def _nonempty_text(value: str) -> str:
    if not value.strip():
        raise ValueError("empty text")
    return value


HeadName = Annotated[
    str,
    AfterValidator(_head),
    WithJsonSchema({"type": "string", "pattern": _HEAD_PATTERN, "examples": ["L21.H11"]}),
]
LayerSelection = Annotated[
    str,
    BeforeValidator(_int_layer),
    AfterValidator(_layer_selection),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
            "examples": ["L0-19", "last:4", "all"],
        }
    ),
]
ExistingPath = Annotated[str, AfterValidator(_existing_path)]
Text = Annotated[str, AfterValidator(_nonempty_text)]
PositiveInt = Annotated[int, Field(gt=0)]


def _templates(value: Any) -> str | list[str]:
    """A template-set name, or a non-empty list of templates each with one ``{}`` for the class name."""
    if isinstance(value, str):
        if value not in TEMPLATE_SETS:
            raise ValueError(
                f"unknown template set {value!r}: use one of {', '.join(TEMPLATE_SETS)} "
                "or a list of templates such as ['a photo of a {}.']"
            )
        return value
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a template-set name ({', '.join(TEMPLATE_SETS)}) or a non-empty list of templates")
    for i, template in enumerate(value):
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"template [{i}] {template!r} must be a string with exactly one '{{}}' for the class name")
    return list(value)


Templates = Annotated[
    str | list[str],
    PlainValidator(_templates),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(TEMPLATE_SETS)},
                {"type": "array", "items": {"type": "string", "pattern": r"\{\}"}, "minItems": 1},
            ]
        }
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# ---------------------------------------------------------------------------------------------------
# Reading dataset metadata (the header and the columns the spec names), without torch


@functools.lru_cache(maxsize=16)
def _read_csv(path: str, _stamp: tuple[int, int]) -> dict[str, list[str]] | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            columns: dict[str, list[str]] = {name.strip(): [] for name in header}
            names = list(columns)
            for row in reader:
                for name, value in zip(names, row, strict=False):
                    columns[name].append(value)
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return None
    return columns


def _table(path: Path) -> dict[str, list[str]] | None:
    if not path.is_file():
        return None
    stat = path.stat()
    return _read_csv(str(path), (stat.st_mtime_ns, stat.st_size))


def _detect_format(root: Path) -> str | None:
    """What ``auto`` means: a folder with metadata.csv is Waterbirds, a .csv file a manifest, another
    folder an image folder."""
    if (root / "metadata.csv").is_file():
        return "waterbirds"
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if root.is_dir():
        return "folder"
    return None


class DataSpec(_Strict):
    """Where images (and their label and group columns) come from."""

    format: Literal["auto", "waterbirds", "csv", "folder"] = Field(
        "auto",
        description="Dataset layout: 'waterbirds' (a folder with a WILDS-style metadata.csv), 'csv' "
        "(a manifest file with an image-path column plus label/group columns), 'folder' (one subfolder "
        "per class) or 'auto' (detected from root).",
    )
    root: ExistingPath = Field(
        description="The dataset: a Waterbirds folder, a CSV manifest or an image folder. Must exist."
    )
    split: Annotated[
        str | None,
        BeforeValidator(lambda v: str(v) if type(v) is int else v),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
    ] = Field(
        None,
        description="The split to use (Waterbirds: train, val, test or 0, 1, 2); all images when absent.",
    )

    @property
    def resolved_format(self) -> str | None:
        """``format``, with ``auto`` resolved from what lies at ``root``."""
        return _detect_format(Path(self.root)) if self.format == "auto" else self.format

    def metadata(self) -> tuple[Path, dict[str, list[str]]] | None:
        """The metadata table (path, columns) when the layout has one and it is readable."""
        fmt, root = self.resolved_format, Path(self.root)
        path = root / "metadata.csv" if fmt == "waterbirds" else root if fmt == "csv" and root.is_file() else None
        table = _table(path) if path is not None else None
        return (path, table) if path is not None and table is not None else None

    @field_validator("split")
    @classmethod
    def _check_split(cls, split: str | None, info: ValidationInfo) -> str | None:
        if split is None or "root" not in info.data:
            return split
        root = Path(info.data["root"])
        fmt = info.data.get("format", "auto")
        fmt = _detect_format(root) if fmt == "auto" else fmt
        if fmt != "waterbirds":
            return split
        split = WATERBIRDS_SPLITS.get(split, split)
        if split not in WATERBIRDS_SPLITS.values():
            raise ValueError(f"unknown Waterbirds split {split!r}: use train, val or test (or 0, 1, 2)")
        table = _table(root / "metadata.csv")
        if table is not None and "split" in table:
            code = {name: code for code, name in WATERBIRDS_SPLITS.items()}[split]
            if not any(v.strip() in (code, split) for v in table["split"]):
                raise ValueError(f"split {split!r} has no images in {root / 'metadata.csv'}")
        return split


# ---------------------------------------------------------------------------------------------------
# The model


def _open_clip_configs() -> Path | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing torch
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model_configs"
    return folder if folder.is_dir() else None


def _vision_layers_heads(config: dict[str, Any]) -> tuple[int, int] | None:
    config = config.get("model_cfg", config)
    vision = config.get("vision_cfg", {})
    layers, width = vision.get("layers"), vision.get("width")
    if not isinstance(layers, int) or not isinstance(width, int) or "timm_model_name" in vision:
        return None
    return layers, width // int(vision.get("head_width", 64))


class ModelSpec(_Strict):
    """The base model: an open_clip architecture with a pretrained tag or checkpoint, a model-config JSON
    with an optional checkpoint, or the shipped toy-world model."""

    name: str | None = Field(
        None,
        description="open_clip architecture, e.g. ViT-L-14 (checked against open_clip's configs unless "
        "'config' is given, in which case it only names the model).",
    )
    pretrained: str | None = Field(
        None,
        description="open_clip pretrained tag (e.g. laion2b_s32b_b82k) or a checkpoint path; with 'name' only.",
    )
    checkpoint: ExistingPath | None = Field(
        None, description="Local weights (.safetensors, .pt, .pth, .bin); needs 'name' or 'config'."
    )
    config: ExistingPath | None = Field(
        None,
        description="open_clip model-config JSON (embed_dim, vision_cfg, text_cfg) of a custom architecture.",
    )
    toyworld: bool = Field(False, description="Use editclip's shipped toy-world CLIP (nothing else may be given).")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="Precision the model is loaded in.")

    @field_validator("pretrained")
    @classmethod
    def _check_pretrained(cls, pretrained: str | None) -> str | None:
        if pretrained and pretrained.endswith(_CHECKPOINT_SUFFIXES) and not Path(pretrained).is_file():
            raise ValueError(f"checkpoint {pretrained} does not exist")
        return pretrained

    @field_validator("config")
    @classmethod
    def _check_config(cls, config: str | None) -> str | None:
        if config is None:
            return None
        try:
            raw = json.loads(Path(config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{config} is not a readable JSON file: {err}") from None
        raw = raw.get("model_cfg", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict) or not all(k in raw for k in ("embed_dim", "vision_cfg", "text_cfg")):
            raise ValueError(f"{config} is not an open_clip model config (needs embed_dim, vision_cfg, text_cfg)")
        return config

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.toyworld:
            given = [k for k in ("name", "pretrained", "checkpoint", "config") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"toyworld: true takes no {', '.join(given)}")
            return self
        if self.name is None and self.checkpoint is None and self.config is None:
            raise ValueError("no model: give name (+ pretrained), checkpoint with name or config, or toyworld: true")
        if self.pretrained is not None and (self.name is None or self.checkpoint or self.config):
            raise ValueError("pretrained goes with name only (not with checkpoint or config)")
        if self.checkpoint is not None and self.name is None and self.config is None:
            raise ValueError(f"checkpoint {self.checkpoint} needs name (an open_clip architecture) or config")
        if self.name is not None and self.config is None and not self.name.startswith(("hf-hub:", "local-dir:")):
            folder = _open_clip_configs()
            if folder is not None and not (folder / f"{self.name}.json").is_file():
                known = sorted(p.stem for p in folder.glob("*.json"))
                close = difflib.get_close_matches(self.name, known, n=3)
                hint = f"; close names: {', '.join(close)}" if close else ""
                raise ValueError(f"unknown open_clip model {self.name!r}{hint}")
        return self

    def vision_layers_heads(self) -> tuple[int, int] | None:
        """(layers, heads) of the image tower, read from the model's config JSON without loading it.

        None when the config does not say (e.g. a checkpoint of a hub model).
        """
        if self.toyworld:
            path: Path | None = _TOYWORLD_CONFIG
        elif self.config is not None:
            path = Path(self.config)
        else:
            folder = _open_clip_configs()
            path = folder / f"{self.name}.json" if folder is not None and self.name else None
        if path is None or not path.is_file():
            return None
        return _vision_layers_heads(json.loads(path.read_text(encoding="utf-8")))

    def describe(self) -> str:
        """One line: what the model is."""
        if self.toyworld:
            source = "the toy-world CLIP"
        elif self.checkpoint:
            source = f"{self.name or 'custom'} from {self.checkpoint}"
        else:
            source = f"{self.name or 'custom'} ({self.pretrained or 'random weights'})"
        return source + (f", config {self.config}" if self.config else "") + f", {self.precision}"


class CalibrationSpec(_Strict):
    """The images the edit's statistics (means, TextSpan bases) are computed on."""

    data: DataSpec = Field(description="Calibration images; keep them apart from the evaluation images.")
    max_images: PositiveInt | None = Field(None, description="Use at most this many images (all when absent).")


# ---------------------------------------------------------------------------------------------------
# Edits


def _selection_covers(selection: str, layer: int, n_layers: int | None) -> bool | None:
    """Whether a layer selection includes `layer`; None when that needs the (unknown) layer count."""
    unknown = False
    for piece in selection.split(","):
        if piece == "all":
            return True
        if piece.startswith("last:"):
            if n_layers is None:
                unknown = True
            elif layer >= n_layers - int(piece[5:]):
                return True
        elif layer in parse_layers(piece):
            return True
    return None if unknown else False


class MeanAblate(_Strict):
    """Replace parts by their mean over the calibration images: z' = z - c(x) + E[c]."""

    heads: list[HeadName] | None = Field(None, description="Heads to ablate, e.g. [L21.H1, L22.H12].")
    layers: LayerSelection | None = Field(
        None,
        description="Layers whose 'parts' are ablated: L8, L0-19, last:4, all, or comma-joined (default all).",
    )
    parts: Literal["attention", "mlp", "both"] | None = Field(
        None, description="Which parts of the selected layers: every attention head, the MLP, or both."
    )
    embed: bool = Field(False, description="Also ablate the embedding (ln_pre) term, as the paper's MLP ablation does.")

    @field_validator("heads")
    @classmethod
    def _some_heads(cls, heads: list[str] | None) -> list[str] | None:
        if heads is not None and not heads:
            raise ValueError("empty head list")
        return heads

    @model_validator(mode="after")
    def _something(self) -> MeanAblate:
        if self.layers is not None and self.parts is None:
            raise ValueError("layers needs parts: attention, mlp or both")
        if not self.heads and self.parts is None and not self.embed:
            raise ValueError("nothing to ablate: give heads, parts (with optional layers) or embed: true")
        return self

    def covers_head(self, ref: HeadRef, n_layers: int | None = None) -> bool | None:
        """Whether this edit ablates head `ref`; None when that depends on the unknown layer count."""
        if self.heads and str(ref) in self.heads:
            return True
        if self.parts in ("attention", "both"):
            return True if self.layers is None else _selection_covers(self.layers, ref.layer, n_layers)
        return False

    def parts_for(self, n_layers: int, n_heads: int) -> list[str]:
        """The part names this edit ablates in a model of that shape (no duplicates, in spec order)."""
        names = list(self.heads or [])
        if self.parts is not None:
            for layer in parse_layers(self.layers or "all", n_layers):
                if self.parts in ("attention", "both"):
                    names += [head_name(layer, h) for h in range(n_heads)]
                if self.parts in ("mlp", "both"):
                    names.append(mlp_name(layer))
        if self.embed:
            names.append("embed")
        return list(dict.fromkeys(names))

    def describe(self) -> str:
        """One line, e.g. ``mean_ablate attention of L0-19; embed``."""
        what = []
        if self.heads:
            what.append(", ".join(self.heads))
        if self.parts is not None:
            kind = {"attention": "attention", "mlp": "MLPs", "both": "attention and MLPs"}[self.parts]
            what.append(f"{kind} of " + (f"layers {self.layers}" if self.layers else "all layers"))
        if self.embed:
            what.append("embed")
        return "mean_ablate " + "; ".join(what)


class TextSpanSource(_Strict):
    """The head's TextSpan basis: m texts picked greedily from a pool on the calibration images."""

    pool: str = Field(description="A shipped description pool by name (e.g. general) or a text file, one text a line.")
    m: PositiveInt = Field(description="Number of texts (basis directions) to pick.")
    variant: Literal["paper", "official"] = Field(
        "paper", description="TextSpan as the paper states it, or as the official code computes it."
    )

    @field_validator("pool")
    @classmethod
    def _check_pool(cls, pool: str) -> str:
        if _pool_file(pool) is not None:
            return pool
        if "/" in pool or os.sep in pool or pool.endswith(".txt"):
            raise ValueError(f"pool file {pool} does not exist")
        shipped = sorted(p.stem for p in _POOL_DIR.glob("*.txt"))
        if shipped and pool not in shipped:
            raise ValueError(f"unknown pool {pool!r}: shipped pools are {', '.join(shipped)}, or give a text file")
        return pool

    @field_validator("m")
    @classmethod
    def _m_fits_pool(cls, m: int, info: ValidationInfo) -> int:
        path = _pool_file(info.data.get("pool", ""))
        if path is not None:
            size = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            if m > size:
                raise ValueError(f"m={m} is more than the {size} texts of pool {info.data['pool']!r}")
        return m


def _pool_file(pool: str) -> Path | None:
    """The text file of a pool name or path, when it exists."""
    for path in (Path(pool), _POOL_DIR / f"{pool}.txt"):
        if pool and path.is_file():
            return path
    return None


class Basis(_Strict):
    """Directions in the embedding space: a TextSpan basis of the head, or the embeddings of given texts."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    textspan: TextSpanSource | None = Field(None, description="The head's own TextSpan basis.")
    texts: list[Text] | None = Field(None, description="Texts whose (orthonormalised) embeddings span the directions.")

    @field_validator("texts")
    @classmethod
    def _some_texts(cls, texts: list[str] | None) -> list[str] | None:
        if texts is not None and not texts:
            raise ValueError("empty text list")
        return texts

    @model_validator(mode="after")
    def _one(self) -> Basis:
        if (self.textspan is None) == (self.texts is None):
            raise ValueError("give exactly one of textspan, texts")
        return self

    def describe(self) -> str:
        """One line, e.g. ``TextSpan of pool 'general' (m=20, paper)``."""
        if self.textspan is not None:
            ts = self.textspan
            return f"TextSpan of pool {ts.pool!r} (m={ts.m}, {ts.variant})"
        texts = self.texts or []
        shown = ", ".join(repr(t) for t in texts[:2]) + (", ..." if len(texts) > 2 else "")
        return f"{len(texts)} text{'s' if len(texts) != 1 else ''} ({shown})"


class Project(_Strict):
    """Keep only a head's component in a span (onto), or remove it (away_from); the head's calibration mean
    stays: onto c' = mean + P(c - mean), away_from c' = c - P(c - mean), P the orthogonal projector."""

    head: HeadName = Field(description="The head, e.g. L23.H6.")
    onto: Basis | None = Field(None, description="Keep only the part of the head's output in these directions.")
    away_from: Basis | None = Field(None, description="Remove the part of the head's output in these directions.")

    @model_validator(mode="after")
    def _one(self) -> Project:
        if (self.onto is None) == (self.away_from is None):
            raise ValueError("give exactly one of onto, away_from")
        return self

    @property
    def mode(self) -> Literal["onto", "away_from"]:
        """``onto`` or ``away_from``."""
        return "onto" if self.onto is not None else "away_from"

    @property
    def basis(self) -> Basis:
        """The directions, whichever way they are used."""
        return self.onto if self.onto is not None else self.away_from  # type: ignore[return-value]

    def parts_for(self, n_layers: int, n_heads: int) -> list[str]:
        """The one head this edit changes."""
        return [self.head]

    def describe(self) -> str:
        """One line, e.g. ``project L23.H6 onto TextSpan of pool 'general' (m=20, paper)``."""
        return f"project {self.head} {self.mode.replace('_', ' ')} {self.basis.describe()}"


def _heads_shorthand(value: Any) -> Any:
    return {"heads": value} if isinstance(value, list) else value


def _mean_ablate_schema(schema: dict[str, Any]) -> None:
    """Document the list shorthand ``mean_ablate: [L21.H1, ...]`` beside the mapping form."""
    heads = {"type": "array", "items": {"type": "string", "pattern": _HEAD_PATTERN}, "minItems": 1}
    schema["anyOf"] = [*schema.pop("anyOf"), heads]


class Edit(_Strict):
    """One edit: exactly one of mean_ablate, project."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    mean_ablate: Annotated[MeanAblate | None, BeforeValidator(_heads_shorthand)] = Field(
        None,
        description="Mean-ablate heads (a list of head names is short for {heads: [...]}), the "
        "attention heads and/or MLPs of chosen layers, and/or the embedding term.",
        json_schema_extra=_mean_ablate_schema,
    )
    project: Project | None = Field(None, description="Project one head onto, or away from, a span of directions.")

    @model_validator(mode="after")
    def _one(self) -> Edit:
        if (self.mean_ablate is None) == (self.project is None):
            raise ValueError("an edit has exactly one of: mean_ablate, project")
        return self

    @property
    def action(self) -> MeanAblate | Project:
        """The edit itself."""
        return self.mean_ablate if self.mean_ablate is not None else self.project  # type: ignore[return-value]

    @property
    def kind(self) -> Literal["mean_ablate", "project"]:
        """``mean_ablate`` or ``project``."""
        return "mean_ablate" if self.mean_ablate is not None else "project"


class ResolvedPart(NamedTuple):
    """One part of the embedding with the action applied to it and the index of the edit that asks."""

    part: str  # "L21.H1", "L3.mlp" or "embed"
    action: MeanAblate | Project
    edit: int


# ---------------------------------------------------------------------------------------------------
# Evaluation and export


class EvaluateSpec(_Strict):
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


class ExportSpec(_Strict):
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


# ---------------------------------------------------------------------------------------------------
# The spec


def _version(value: Any) -> Any:
    if type(value) is not int or value != SPEC_VERSION:
        raise ValueError(f"unsupported spec version {value!r}: this editclip reads version {SPEC_VERSION}")
    return value


class EditSpec(_Strict):
    """A whole edit spec. Read it with :meth:`from_yaml` or :meth:`from_dict`, which also refuse
    contradictory edits and report every problem with its path (and line); constructing the model
    directly skips those cross-edit checks until :meth:`check_against`."""

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
    _lines: dict[tuple[Any, ...], int] = PrivateAttr(default_factory=dict)

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
    def from_yaml(cls, path: str | os.PathLike[str]) -> EditSpec:
        """Read a spec file; errors name each field's path and line."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EditclipError(f"spec file {source} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise EditclipError(f"cannot read spec file {source}: {err}") from None
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise EditclipError(f"spec file {source} is not valid YAML: {err}") from None
        lines: dict[tuple[Any, ...], int] = {}
        problems: list[_Problem] = []
        if node is not None:
            _index_nodes(node, (), lines, problems)
        _raise_problems(problems, source, lines)
        return cls._from_data(data, source, lines)

    @classmethod
    def from_dict(cls, data: Any) -> EditSpec:
        """Validate a spec given as plain data (what ``yaml.safe_load`` returns)."""
        return cls._from_data(data, None, {})

    @classmethod
    def _from_data(cls, data: Any, source: str | None, lines: dict[tuple[Any, ...], int]) -> EditSpec:
        if data is None:
            raise EditclipError(f"the spec{' ' + source if source else ''} is empty; it starts with 'editclip: 1'")
        try:
            spec = cls.model_validate(data)
        except ValidationError as err:
            raise _spec_error([_Problem.from_pydantic(e) for e in err.errors()], source, lines) from None
        spec._source, spec._lines = source, lines
        spec._raise(spec._edit_problems(None, None))
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
        self._raise(self._edit_problems(n_layers, n_heads))

    def resolved_parts(self, n_layers: int, n_heads: int) -> list[ResolvedPart]:
        """Every part the edits touch, once, with its action: ``("L21.H1", MeanAblate, 0)``,
        ``("L3.mlp", MeanAblate, 2)``, ``("embed", MeanAblate, 2)``, ``("L23.H6", Project, 3)``."""
        self.check_against(n_layers, n_heads)
        resolved: dict[str, ResolvedPart] = {}
        for i, edit in enumerate(self.edits):
            for part in edit.action.parts_for(n_layers, n_heads):
                resolved.setdefault(part, ResolvedPart(part, edit.action, i))
        return list(resolved.values())

    def _edit_problems(self, n_layers: int | None, n_heads: int | None) -> list[_Problem]:
        problems: list[_Problem] = []
        if n_layers is not None:
            problems += self._range_problems(n_layers, n_heads)
        for j, edit in enumerate(self.edits):
            if edit.project is None:
                continue
            ref = parse_head(edit.project.head)
            loc = ("edits", j, "project", "head")
            for i, other in enumerate(self.edits):
                if other.project is not None and i < j and other.project.head == edit.project.head:
                    message = f"{ref} is projected by edits[{j}] and already by edits[{i}]; one projection per head"
                    problems.append(_Problem(loc, message))
                elif other.mean_ablate is not None and other.mean_ablate.covers_head(ref, n_layers):
                    problems.append(
                        _Problem(
                            loc,
                            f"{ref} is projected by edits[{j}] and mean-ablated by edits[{i}] "
                            f"({other.mean_ablate.describe()}); a part takes only one of them",
                        )
                    )
        return problems

    def _range_problems(self, n_layers: int, n_heads: int | None) -> Iterator[_Problem]:
        for i, edit in enumerate(self.edits):
            checks: list[tuple[tuple[Any, ...], str, str]] = []
            if edit.mean_ablate is not None:
                ablate = edit.mean_ablate
                checks += [
                    (("edits", i, "mean_ablate", "heads", k), "head", h) for k, h in enumerate(ablate.heads or [])
                ]
                if ablate.layers is not None:
                    checks.append((("edits", i, "mean_ablate", "layers"), "layers", ablate.layers))
            else:
                checks.append((("edits", i, "project", "head"), "head", edit.action.head))  # type: ignore[union-attr]
            for loc, kind, value in checks:
                try:
                    if kind == "head":
                        check_head(parse_head(value), n_layers, n_heads)
                    else:
                        parse_layers(value, n_layers)
                except EditclipError as err:
                    yield _Problem(loc, str(err))

    def _raise(self, problems: list[_Problem]) -> None:
        _raise_problems(problems, self._source, self._lines)


# ---------------------------------------------------------------------------------------------------
# Problems: path, line, message


_MISSING = object()
_MESSAGES = {
    "missing": "required field missing",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
}


class _Problem(NamedTuple):
    loc: tuple[Any, ...]
    msg: str
    value: Any = _MISSING
    line: int | None = None  # when the loc alone does not tell (a repeated key)

    @classmethod
    def from_pydantic(cls, error: Any) -> _Problem:
        loc, kind = tuple(error["loc"]), error["type"]
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            allowed = f"; allowed keys: {', '.join(model.model_fields)}" if model is not None else ""
            return cls(loc, f"unknown key{allowed}")
        msg = _MESSAGES.get(kind, error["msg"]).removeprefix("Value error, ")
        return cls(loc, msg, _MISSING if kind == "missing" else error.get("input", _MISSING))

    def render(self, lines: dict[tuple[Any, ...], int]) -> str:
        where = _path_str(self.loc)
        line = self.line or _line_of(self.loc, lines)
        if line is not None:
            where += f" (line {line})"
        text = f"{where}: {self.msg}"
        if self.value is not _MISSING:
            shown = repr(self.value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            if shown not in self.msg and not isinstance(self.value, dict):
                text += f"; got {shown}"
        return text


def _raise_problems(problems: list[_Problem], source: str | None, lines: dict[tuple[Any, ...], int]) -> None:
    if problems:
        raise _spec_error(problems, source, lines)


def _spec_error(problems: list[_Problem], source: str | None, lines: dict[tuple[Any, ...], int]) -> EditclipError:
    """One error that lists every problem, one a line: ``path (line N): message; got VALUE``."""
    head = f"invalid edit spec{' ' + source if source else ''}"
    count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
    body = "\n".join("  " + p.render(lines) for p in problems)
    return EditclipError(f"{head} ({count}):\n{body}")


def _path_str(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "spec"


def _line_of(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _index_nodes(
    node: yaml.Node, loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int], problems: list[_Problem]
) -> None:
    """Record the 1-based line of every mapping key and sequence item; report duplicate keys."""
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            where = (*loc, key)
            if where in lines:
                line = key_node.start_mark.line + 1
                problems.append(_Problem(where, f"duplicate key (first at line {lines[where]})", line=line))
                continue
            lines[where] = key_node.start_mark.line + 1
            _index_nodes(value_node, where, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_nodes(item, (*loc, i), lines, problems)


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The spec model class that validates the value at `loc` (to list its allowed keys)."""
    tp: Any = EditSpec
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, int) and typing.get_origin(tp) is list:
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
            tp = tp.model_fields[part].annotation
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp
