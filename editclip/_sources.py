"""Model ids with a schema: ``hf-hub:ORG/NAME`` and ``local-dir:DIR``, told apart by the files they hold.

- open_clip format: ``open_clip_config.json`` (+ ``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``);
  open_clip itself then resolves the id (``open_clip.create_model``).
- transformers format: ``config.json`` whose ``model_type`` is a CLIP-like family (+ ``model.safetensors``,
  and optionally ``preprocessor_config.json`` and tokenizer files).

Hub files are fetched with ``huggingface_hub.hf_hub_download`` into the usual Hugging Face cache (so
``HF_HUB_OFFLINE=1`` works with a filled cache); a transformers repo is then loaded from that snapshot folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EditclipError

HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"
OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors",)
HF_OPTIONAL = ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
               "spiece.model", "special_tokens_map.json")  # fmt: skip
HF_MODEL_TYPES = ("clip", "clip_vision_model", "siglip", "siglip_vision_model", "siglip2", "siglip2_vision_model")


@dataclass(frozen=True)
class ModelFolder:
    """Where a schema id's files are, and which format they are in."""

    name: str  # the id as the user typed it
    folder: Path  # local folder (a hub snapshot for hf-hub ids)
    format: str  # "open_clip" or "transformers"
    config: dict[str, Any]  # open_clip_config.json or config.json, parsed

    @property
    def hub(self) -> bool:
        return self.name.startswith(HF_HUB)


def has_schema(name: str | None) -> bool:
    """Whether ``name`` is an ``hf-hub:`` or ``local-dir:`` id."""
    return bool(name) and name.startswith((HF_HUB, LOCAL_DIR))


def resolve(name: str) -> ModelFolder:
    """The files behind ``hf-hub:ORG/NAME`` or ``local-dir:DIR``; a clear error when they are not a model."""
    if name.startswith(LOCAL_DIR):
        return _local(name)
    if name.startswith(HF_HUB):
        return _hub(name)
    raise EditclipError(f"model id {name!r} has no hf-hub: or local-dir: schema")


def _local(name: str) -> ModelFolder:
    folder = Path(name[len(LOCAL_DIR) :]).expanduser()
    if not str(folder):
        raise EditclipError(f"{name!r}: give a folder after local-dir:")
    if not folder.is_dir():
        raise EditclipError(f"{name!r}: folder {str(folder)!r} does not exist")
    if (folder / OPEN_CLIP_CONFIG).is_file():
        _require_one(name, folder, OPEN_CLIP_WEIGHTS)
        return ModelFolder(name, folder, "open_clip", _read_json(folder / OPEN_CLIP_CONFIG, name))
    if (folder / HF_CONFIG).is_file():
        config = _read_json(folder / HF_CONFIG, name)
        _check_model_type(name, config)
        _require_one(name, folder, HF_WEIGHTS)
        return ModelFolder(name, folder, "transformers", config)
    raise EditclipError(
        f"{name!r}: folder {str(folder)!r} holds neither {OPEN_CLIP_CONFIG} (an open_clip model) nor {HF_CONFIG} "
        "(a transformers model)"
    )


def _hub(name: str) -> ModelFolder:
    repo = name[len(HF_HUB) :]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise EditclipError(f"{name!r}: expected hf-hub:ORG/NAME")
    path = _hub_file(repo, OPEN_CLIP_CONFIG)
    if path is not None:
        weights = [_hub_file(repo, f) for f in OPEN_CLIP_WEIGHTS]
        if not any(weights):
            wanted = " or ".join(OPEN_CLIP_WEIGHTS)
            raise EditclipError(f"{name!r}: the repo has {OPEN_CLIP_CONFIG} but no weights ({wanted})")
        return ModelFolder(name, path.parent, "open_clip", _read_json(path, name))
    path = _hub_file(repo, HF_CONFIG)
    if path is None:
        raise EditclipError(
            f"{name!r}: found neither {OPEN_CLIP_CONFIG} nor {HF_CONFIG} in the repo (or in the Hugging Face cache "
            "when offline); is the name right?"
        )
    config = _read_json(path, name)
    _check_model_type(name, config)
    if not any(_hub_file(repo, f) for f in HF_WEIGHTS):
        raise EditclipError(f"{name!r}: the repo has no {' or '.join(HF_WEIGHTS)} (editclip reads safetensors weights)")
    for optional in HF_OPTIONAL:
        _hub_file(repo, optional)
    return ModelFolder(name, path.parent, "transformers", config)


def _hub_file(repo: str, filename: str) -> Path | None:
    """A repo file from the hub (or the cache); None when the repo does not have it."""
    try:
        import huggingface_hub
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as err:
        raise EditclipError(f"hf-hub: ids need huggingface_hub ({err})") from None
    try:
        return Path(huggingface_hub.hf_hub_download(repo_id=repo, filename=filename))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    except RepositoryNotFoundError:
        raise EditclipError(f"hf-hub:{repo}: no such repository on the hub (or it is private)") from None
    except OSError as err:
        raise EditclipError(f"hf-hub:{repo}: could not fetch {filename}: {err}") from None


def _require_one(name: str, folder: Path, files: tuple[str, ...]) -> None:
    if not any((folder / f).is_file() for f in files):
        raise EditclipError(f"{name!r}: folder {str(folder)!r} has no weights ({' or '.join(files)})")


def _read_json(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EditclipError(f"{name!r}: {path.name} is not readable JSON: {err}") from None
    if not isinstance(data, dict):
        raise EditclipError(f"{name!r}: {path.name} is not a JSON object")
    return data


def _check_model_type(name: str, config: dict[str, Any]) -> None:
    kind = config.get("model_type")
    if kind not in HF_MODEL_TYPES:
        raise EditclipError(
            f"{name!r}: {HF_CONFIG} has model_type {kind!r}; editclip reads transformers models of type "
            f"{', '.join(HF_MODEL_TYPES)}"
        )
