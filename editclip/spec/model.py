"""The model section of a spec: which open_clip model, config or checkpoint, and its image tower's shape
read from the config JSON without importing torch or open_clip."""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .fields import ExistingPath, StrictModel

TOYWORLD_CONFIG = Path(__file__).parent.parent / "toyworld" / "assets" / "config.json"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


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


class ModelSpec(StrictModel):
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
        if pretrained and pretrained.endswith(CHECKPOINT_SUFFIXES) and not Path(pretrained).is_file():
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
            path: Path | None = TOYWORLD_CONFIG
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
