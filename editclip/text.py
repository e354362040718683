"""Text embeddings (batched, template-averaged, cached on disk) and the shipped description pools."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from ._constants import POOLS
from ._io import atomic_path
from .backbone import Backbone
from .errors import EditclipError
from .evaluate import Template, resolve_templates

# Shipped pools: name -> file inside the package.


def default_templates(bb: Backbone) -> str | list[str]:
    """The class-prompt templates used when none are given (one rule for every command): the toy world's
    own for the shipped toy CLIP, open_clip's ``openai_imagenet`` set (80 templates) for every other model."""
    from .toyworld import TEMPLATES, is_shipped_model

    return list(TEMPLATES) if is_shipped_model(bb.source.get("checkpoint")) else "openai_imagenet"


def cache_root() -> Path:
    """editclip's cache folder: ``$EDITCLIP_CACHE`` if set, else ``~/.cache/editclip``."""
    return Path(os.environ.get("EDITCLIP_CACHE") or Path.home() / ".cache" / "editclip").expanduser()


def encode_texts(
    bb: Backbone,
    texts: Sequence[str],
    templates: str | Sequence[Template] | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    cache: bool = True,
    progress: bool = True,
) -> Tensor:
    """Unit text embeddings [M, D] float32 (CPU) of `texts` under `bb`'s text tower.

    With `templates` (a template-set name such as ``openai_imagenet``, or format strings with one
    ``{}`` / callables of the text) each text is embedded once per template, the unit embeddings are
    averaged and the mean is renormalised, as zero-shot classifiers do. Results are cached as
    safetensors under `cache_dir` (default ``cache_root()/text``), keyed by the weights fingerprint
    and a sha256 of the filled-in prompts.
    """
    texts = list(texts)
    if not texts:
        raise EditclipError("no texts to encode: the list of texts is empty")
    if batch_size < 1:
        raise EditclipError(f"batch_size must be >= 1; got {batch_size}")
    prompts = resolve_templates(templates) if templates is not None else ["{}"]
    filled = [t.format(x) if isinstance(t, str) else t(x) for x in texts for t in prompts]

    path = None
    if cache:
        key = hashlib.sha256(json.dumps([len(prompts), filled], ensure_ascii=False).encode()).hexdigest()[:24]
        folder = Path(cache_dir) if cache_dir is not None else cache_root() / "text"
        path = folder / f"{bb.fingerprint}-{key}.safetensors"
        if path.is_file():
            return load_file(path)["embeddings"]

    parts = []
    for start in tqdm(
        range(0, len(filled), batch_size), desc="text embeddings", unit="batch", disable=not progress
    ):
        parts.append(torch.nn.functional.normalize(bb.encode_text(filled[start : start + batch_size]), dim=-1))
    emb = torch.cat(parts).float().cpu()
    if len(prompts) > 1:
        emb = torch.nn.functional.normalize(emb.view(len(texts), len(prompts), -1).mean(1), dim=-1)

    if path is not None:
        with atomic_path(path) as tmp:
            save_file({"embeddings": emb.contiguous()}, str(tmp))
    return emb


def load_pool(name_or_path: str | os.PathLike[str]) -> list[str]:
    """The descriptions of a pool: a shipped one (``general``, ``toyworld``) or a text file.

    One description per line; blank lines and lines starting with ``#`` are skipped.
    """
    name = str(name_or_path)
    if name in POOLS:
        source = resources.files("editclip").joinpath(POOLS[name])
        if not source.is_file():
            raise EditclipError(f"the shipped pool {name!r} is missing from this installation ({POOLS[name]})")
        return _nonempty(source.read_text(encoding="utf-8"), f"pool {name!r}")
    if not Path(name).expanduser().is_file():
        raise EditclipError(f"pool {name!r} is neither a shipped pool ({', '.join(POOLS)}) nor an existing text file")
    return read_lines(name, "pool")


def read_lines(path: str | os.PathLike[str], what: str) -> list[str]:
    """The non-blank, non-``#`` lines of a UTF-8 text file; `what` names the file in errors."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EditclipError(f"{what} file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise EditclipError(f"{what} file {str(path)!r} is not UTF-8 text: {err}") from err
    return _nonempty(text, f"{what} {str(path)!r}")


def _nonempty(text: str, what: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith("#")]
    if not kept:
        raise EditclipError(f"{what} is empty: it needs at least one entry (one per line)")
    return kept
