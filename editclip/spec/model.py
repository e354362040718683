"""The model section of a spec: which open_clip model, config or checkpoint, hf-hub:/local-dir: id, and its
image tower's shape read from the config JSON without importing torch or open_clip."""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..errors import EditclipError
from ..model_config import read_model_config
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
    if "model_type" in config:  # a transformers config.json
        vision = config.get("vision_config", config)
        layers, heads = vision.get("num_hidden_layers"), vision.get("num_attention_heads")
        return (layers, heads) if isinstance(layers, int) and isinstance(heads, int) else None
    config = config.get("model_cfg", config)
    vision = config.get("vision_cfg", {})
    layers, width = vision.get("layers"), vision.get("width")
    if not isinstance(layers, int) or not isinstance(width, int) or "timm_model_name" in vision:
        return None
    return layers, width // int(vision.get("head_width", 64))


_FOLDER_CONFIGS = ("open_clip_config.json", "config.json")


def _check_schema_id(name: str) -> None:
    """A local-dir: folder must exist and hold a model config; an hf-hub: id must be ORG/NAME."""
    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:") :]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"{name}: expected hf-hub:ORG/NAME")
        return
    folder = Path(name[len("local-dir:") :])
    if not folder.is_dir():
        raise ValueError(f"{name}: folder {folder} does not exist")
    if not any((folder / f).is_file() for f in _FOLDER_CONFIGS):
        raise ValueError(f"{name}: folder {folder} holds neither open_clip_config.json nor config.json")


class ModelSpec(StrictModel):
    """The base model: an open_clip architecture with a pretrained tag or checkpoint, a model-config JSON
    with an optional checkpoint, or the shipped toy-world model."""

    name: str | None = Field(
        None,
        description="open_clip architecture, e.g. ViT-L-14 (checked against open_clip's configs unless "
        "'config' is given, in which case it only names the model), or a model with its own weights: "
        "hf-hub:ORG/NAME or local-dir:DIR, in open_clip format (open_clip_config.json) or transformers "
        "format (config.json with model_type clip + model.safetensors).",
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
        description="open_clip model-config JSON (embed_dim, vision_cfg, text_cfg) of a custom architecture, "
        "or a transformers config.json (model_type clip; random weights unless a checkpoint is given).",
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
        if isinstance(raw, dict) and "model_type" in raw:
            return config  # a transformers config.json; the loader checks its model_type
        try:
            read_model_config(config)
        except EditclipError as err:
            raise ValueError(str(err)) from None
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
        if self.name is not None and self.name.startswith(("hf-hub:", "local-dir:")):
            _check_schema_id(self.name)
            if self.pretrained is not None or self.checkpoint is not None or self.config is not None:
                raise ValueError(f"{self.name} carries its own weights and config; give no pretrained, checkpoint "
                                 "or config with it")  # fmt: skip
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
        elif self.name and self.name.startswith("local-dir:"):
            folder = Path(self.name[len("local-dir:") :])
            path = next((folder / f for f in _FOLDER_CONFIGS if (folder / f).is_file()), None)
        elif self.name and self.name.startswith("hf-hub:"):
            path = None  # known once downloaded
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
        elif self.name and self.name.startswith("hf-hub:"):
            source = f"{self.name} (hub weights)"
        elif self.name and self.name.startswith("local-dir:"):
            source = f"{self.name} (weights in the folder)"
        else:
            source = f"{self.name or 'custom'} ({self.pretrained or 'random weights'})"
        return source + (f", config {self.config}" if self.config else "") + f", {self.precision}"
