"""The edits of a spec: mean-ablate heads, layers' parts (attention heads, MLPs, the CLS-source
attention) or the embedding term; project a head onto or away from a span of directions (a TextSpan basis
or texts)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .._constants import POOLS
from ..names import POOL_MLP, HeadRef, cls_source_name, head_name, layer_ranges, mlp_name, parse_layers
from .fields import HEAD_PATTERN, HeadName, LayerSelection, PositiveInt, StrictModel, Text

PACKAGE = Path(__file__).parent.parent  # the editclip package folder, where the shipped pools are


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
        elif any(start <= layer < stop for start, stop in layer_ranges(piece)):
            return True
    return None if unknown else False


class MeanAblate(StrictModel):
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
    pool_mlp: bool | None = Field(
        None, description="Also ablate the attention pool's MLP (pool.mlp) of an attention-pooled (SigLIP) tower."
    )
    cls_source: bool | None = Field(
        None,
        description="Also ablate the CLS-source attention (L<i>.attn.cls) of the selected layers (default all): "
        "what every head of the layer reads from the CLS token itself, as the official ablation does. "
        "CLS-pooled towers and the wrapper target only; not with an edit of a head in the same layer.",
    )

    @field_validator("heads")
    @classmethod
    def _some_heads(cls, heads: list[str] | None) -> list[str] | None:
        if heads is not None and not heads:
            raise ValueError("empty head list")
        return heads

    @model_validator(mode="after")
    def _something(self) -> MeanAblate:
        if self.layers is not None and self.parts is None and not self.cls_source:
            raise ValueError("layers needs parts (attention, mlp or both) or cls_source: true")
        if not self.heads and self.parts is None and not self.embed and not self.pool_mlp and not self.cls_source:
            raise ValueError(
                "nothing to ablate: give heads, parts (with optional layers), embed: true, pool_mlp: true or "
                "cls_source: true"
            )
        return self

    def covers_head(self, ref: HeadRef, n_layers: int | None = None) -> bool | None:
        """Whether this edit ablates head `ref`; None when that depends on the unknown layer count."""
        if self.heads and str(ref) in self.heads:
            return True
        if self.parts in ("attention", "both"):
            return True if self.layers is None else _selection_covers(self.layers, ref.layer, n_layers)
        return False

    def covers_cls_source(self, layer: int, n_layers: int | None = None) -> bool | None:
        """Whether this edit ablates the CLS-source attention of `layer`; None when that depends on the unknown
        layer count."""
        if not self.cls_source:
            return False
        return True if self.layers is None else _selection_covers(self.layers, layer, n_layers)

    def parts_for(self, n_layers: int, n_heads: int) -> list[str]:
        """The part names this edit ablates in a model of that shape (no duplicates, in spec order)."""
        names = list(self.heads or [])
        if self.parts is not None or self.cls_source:
            for layer in parse_layers(self.layers or "all", n_layers):
                if self.parts in ("attention", "both"):
                    names += [head_name(layer, h) for h in range(n_heads)]
                if self.parts in ("mlp", "both"):
                    names.append(mlp_name(layer))
                if self.cls_source:
                    names.append(cls_source_name(layer))
        if self.embed:
            names.append("embed")
        if self.pool_mlp:
            names.append(POOL_MLP)
        return list(dict.fromkeys(names))

    def describe(self) -> str:
        """One line, e.g. ``mean_ablate attention of L0-19; embed``."""
        what = []
        if self.heads:
            what.append(", ".join(self.heads))
        if self.parts is not None:
            kind = {"attention": "attention", "mlp": "MLPs", "both": "attention and MLPs"}[self.parts]
            what.append(f"{kind} of " + (f"layers {self.layers}" if self.layers else "all layers"))
        if self.cls_source:
            what.append("CLS-source attention of " + (f"layers {self.layers}" if self.layers else "all layers"))
        if self.embed:
            what.append("embed")
        if self.pool_mlp:
            what.append(POOL_MLP)
        return "mean_ablate " + "; ".join(what)


class TextSpanSource(StrictModel):
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
        raise ValueError(f"unknown pool {pool!r}: shipped pools are {', '.join(POOLS)}, or give a text file")

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
    """The text file of a pool name (the shipped pools, as on the command line) or path, when it exists."""
    for path in (PACKAGE / POOLS[pool] if pool in POOLS else None, Path(pool)):
        if pool and path is not None and path.is_file():
            return path
    return None


class Basis(StrictModel):
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


class Project(StrictModel):
    """Keep only a head's component in a span (onto), or remove it (away_from); the head's calibration mean
    stays: onto c' = mean + P(c - mean), away_from c' = c - P(c - mean), P the orthogonal projector.

    With ``embedding: true`` instead of a head, the whole image embedding is projected away from the span
    of given texts, ``z' = z - P z``, no mean kept: the zero-shot debiasing baseline of Chuang et al.
    (2023) and RoboShot (Adila et al. 2024), applied after every other edit."""

    head: HeadName | None = Field(None, description="The head, e.g. L23.H6 (or embedding: true).")
    embedding: bool = Field(False, description="Project the whole embedding (away_from texts only) instead of a head.")
    onto: Basis | None = Field(None, description="Keep only the part of the head's output in these directions.")
    away_from: Basis | None = Field(None, description="Remove the part of the head's output in these directions.")

    @model_validator(mode="after")
    def _one(self) -> Project:
        if (self.onto is None) == (self.away_from is None):
            raise ValueError("give exactly one of onto, away_from")
        if (self.head is None) != self.embedding:
            raise ValueError("give a head, or embedding: true (the whole embedding), not both")
        if self.embedding and (self.away_from is None or self.away_from.texts is None):
            raise ValueError("embedding: true projects the embedding away_from texts ({away_from: {texts: [...]}})")
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
        """The one head this edit changes, or ``embedding``."""
        return [self.head or EMBEDDING]

    def describe(self) -> str:
        """One line, e.g. ``project L23.H6 onto TextSpan of pool 'general' (m=20, paper)``."""
        return f"project {self.head or 'the embedding'} {self.mode.replace('_', ' ')} {self.basis.describe()}"


EMBEDDING = "embedding"  # the part name of the whole embedding (a projection of it)


def _heads_shorthand(value: Any) -> Any:
    return {"heads": value} if isinstance(value, list) else value


def _mean_ablate_schema(schema: dict[str, Any]) -> None:
    """Document the list shorthand ``mean_ablate: [L21.H1, ...]`` beside the mapping form."""
    heads = {"type": "array", "items": {"type": "string", "pattern": HEAD_PATTERN}, "minItems": 1}
    schema["anyOf"] = [*schema.pop("anyOf"), heads]


class Edit(StrictModel):
    """One edit: exactly one of mean_ablate, project."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    mean_ablate: Annotated[MeanAblate | None, BeforeValidator(_heads_shorthand)] = Field(
        None,
        description="Mean-ablate heads (a list of head names is short for {heads: [...]}), the "
        "attention heads and/or MLPs of chosen layers, and/or the embedding term.",
        json_schema_extra=_mean_ablate_schema,
    )
    project: Project | None = Field(
        None, description="Project one head onto, or away from, a span of directions (or the whole embedding away)."
    )

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

    part: str  # "L21.H1", "L3.mlp", "L3.attn.cls", "embed" or "pool.mlp"
    action: MeanAblate | Project
    edit: int
