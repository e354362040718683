"""Shared fixtures: tiny random-weight CLIPs (with non-trivial biases and norms) and tiny datasets."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

import editclip

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/editclip."""
    os.environ["EDITCLIP_CACHE"] = str(tmp_path_factory.mktemp("editclip-cache"))


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every bias, norm and layer-scale parameter non-default values, so bookkeeping is exercised."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("bias", "gamma")) or ".ln" in name or "ln_" in name or "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen).to(p) * 0.2)
    return model


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random-weight tiny CLIP written as (checkpoint.safetensors, config.json)."""
    root = tmp_path_factory.mktemp("tiny-model")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG))
    torch.manual_seed(0)
    bb = editclip.load(config=config)
    randomise(bb.model)
    checkpoint = root / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()}, str(checkpoint))
    return checkpoint, config


@pytest.fixture(scope="session")
def tiny_bb(tiny_files: tuple[Path, Path]) -> editclip.Backbone:
    checkpoint, config = tiny_files
    return editclip.load(checkpoint=checkpoint, config=config)


def tiny_spec(tiny_files: tuple[Path, Path], data: Path, **overrides: object) -> dict:
    """A valid spec (as data): the tiny model, calibration on ``val`` and evaluation on ``test`` of ``data``.

    Top-level sections given as keyword arguments replace the defaults (``edits=[...]``, ``export=...``).
    """
    checkpoint, config = tiny_files
    spec: dict = {
        "editclip": 1,
        "name": "tiny",
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(data), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H1", "L2.H0"]}],
        "evaluate": {"data": {"root": str(data), "split": "test"}, "classes": ["landbird", "waterbird"],
                     "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]},
    }  # fmt: skip
    spec.update(overrides)
    return spec


def write_export_spec(folder: Path, tiny_files: tuple[Path, Path], data: Path, export_dir: Path) -> Path:
    """``folder/spec.yaml``: the tiny spec ablating L3.H1, exporting safetensors and ONNX to ``export_dir``."""
    spec = tiny_spec(tiny_files, data, edits=[{"mean_ablate": ["L3.H1"]}],
                     export={"formats": ["safetensors", "onnx"], "dir": str(export_dir)})
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def write_waterbirds(root: Path, n_per_split: int = 16, size: int = 32, seed: int = 0) -> Path:
    """A Waterbirds-layout folder of random images whose colour depends weakly on y and place."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for split in (0, 1, 2):
        for i in range(n_per_split):
            y, place = i % 2, (i // 2) % 2
            pixels = rng.integers(0, 255, (size, size, 3)).astype(np.float32)
            pixels[..., 0] = pixels[..., 0] * 0.5 + 120 * y
            pixels[..., 2] = pixels[..., 2] * 0.5 + 120 * place
            name = f"img/{split}_{i:03d}.png"
            (root / "img").mkdir(exist_ok=True)
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / name)
            rows.append({"img_id": len(rows), "img_filename": name, "y": y, "split": split, "place": place,
                         "place_filename": "-"})  # fmt: skip
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="session")
def tiny_waterbirds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_waterbirds(tmp_path_factory.mktemp("wb") / "waterbirds")


@pytest.fixture(scope="session")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight transformers CLIP folder (config.json, model.safetensors, processor, tokenizer)."""
    pytest.importorskip("transformers")
    from hf_models import write_hf_folder

    return write_hf_folder(tmp_path_factory.mktemp("hf-clip"))


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, offline: fill it with hf_models.fill_hub_cache to serve hf-hub: ids."""
    import huggingface_hub

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="session")
def siglip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight transformers SiglipModel folder (config, weights, processor, sentencepiece tokenizer)."""
    pytest.importorskip("transformers")
    from hf_models import write_siglip_folder

    return write_siglip_folder(tmp_path_factory.mktemp("hf-siglip"))


@pytest.fixture(scope="session")
def siglip_vision_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight transformers SiglipVisionModel folder (config, weights, processor)."""
    pytest.importorskip("transformers")
    from hf_models import write_siglip_folder

    return write_siglip_folder(tmp_path_factory.mktemp("hf-siglip-vision"), vision_only=True)


@pytest.fixture(scope="session")
def hf_bb(hf_folder: Path) -> editclip.Backbone:
    return editclip.load(f"local-dir:{hf_folder}")
