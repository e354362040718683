"""transformers SigLIP repos through local-dir: and hf-hub: (SiglipModel with its sentencepiece tokenizer,
SiglipVisionModel), in the API, the CLI (--model) and specs (model.name): the model's own forward, exact parts,
the SigLIP image processor's pixel values and tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hf_models import SIGLIP_PROCESSOR, fill_hub_cache, processor_kwargs
from PIL import Image

import editclip
from editclip import cli
from editclip.errors import EditclipError
from editclip.families import encode_image

transformers = pytest.importorskip("transformers")

TOL = 1e-5


@pytest.fixture(scope="module", params=["SiglipModel", "SiglipVisionModel"])
def folder(request: pytest.FixtureRequest) -> tuple[Path, str]:
    name = "siglip_folder" if request.param == "SiglipModel" else "siglip_vision_folder"
    return request.getfixturevalue(name), request.param


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(7))


def _pil(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_local_dir_siglip_is_the_model_with_its_processor(folder):
    path, cls = folder
    bb = editclip.load(f"local-dir:{path}")
    stock = getattr(transformers, cls).from_pretrained(str(path)).eval()
    assert bb.family == "transformers-siglip" and type(bb.model).__name__ == cls
    assert bb.pretrained == "weights in the folder" and bb.shape.pool == "attn"
    images = _images()
    own = encode_image(stock, images)
    assert (bb.encode_image(images) - own).abs().max() <= 1e-6
    for convention in ("exact", "official"):
        assert (editclip.decompose(bb, images, convention=convention).total() - own).abs().max() <= TOL
    processor = transformers.SiglipImageProcessor(**processor_kwargs(SIGLIP_PROCESSOR))
    for i, (h, w) in enumerate([(37, 53), (61, 29), (32, 32)]):
        image = _pil(h, w, i)
        want = processor(images=image, return_tensors="pt")["pixel_values"][0]
        assert (bb.preprocess(image) - want).abs().max() <= 1e-6
    record = bb.preprocessing
    assert record["resize_mode"] == "squash" and record["pipeline"] == "transformers"
    assert record["mean"] == [0.5, 0.45, 0.4] and record["interpolation"] == "bicubic"


def test_siglip_text_tower_uses_the_sentencepiece_tokenizer(siglip_folder, siglip_vision_folder):
    bb = editclip.load(f"local-dir:{siglip_folder}")
    stock = transformers.SiglipModel.from_pretrained(str(siglip_folder)).eval()
    tok = transformers.AutoTokenizer.from_pretrained(str(siglip_folder))
    texts = ["a photo of a bird", "the sky over the sea, a forest and two kites on the water"]
    ids = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = stock.get_text_features(input_ids=ids).pooler_output
    assert (bb.encode_text(texts) - want).abs().max() <= 1e-6
    assert bb.tokenizer(texts).shape == (2, 16)
    tower = editclip.load(f"local-dir:{siglip_vision_folder}")
    with pytest.raises(EditclipError, match="image tower only"):
        tower.encode_text(["a bird"])


def test_hf_hub_siglip_loads_from_an_offline_cache(offline_hub, siglip_folder, siglip_vision_folder):
    fill_hub_cache(offline_hub, "someone/tiny-siglip", siglip_folder)
    fill_hub_cache(offline_hub, "someone/tiny-siglip-vision", siglip_vision_folder)
    for repo, folder in (("someone/tiny-siglip", siglip_folder), ("someone/tiny-siglip-vision", siglip_vision_folder)):
        bb = editclip.load(f"hf-hub:{repo}")
        assert bb.family == "transformers-siglip" and bb.pretrained == "hub weights"
        assert bb.fingerprint == editclip.load(f"local-dir:{folder}").fingerprint
    assert editclip.load("hf-hub:someone/tiny-siglip").encode_text(["water"]).shape == (1, 64)


def test_from_hf_takes_a_siglip_with_its_own_processor_defaults():
    from hf_models import hf_siglip

    model = hf_siglip(vision_only=True, seed=3)
    bb = editclip.Backbone.from_hf(model)
    record = bb.preprocessing
    assert record["resize_mode"] == "squash" and record["mean"] == [0.5, 0.5, 0.5] and "resize_size" not in record
    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    image = _pil(45, 23, 0)
    want = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert (bb.preprocess(image) - want).abs().max() <= 1e-6
    images = _images(2)
    assert (editclip.decompose(bb, images).total() - bb.encode_image(images)).abs().max() <= TOL


def test_cli_model_and_spec_name_take_siglip_ids(siglip_folder, tiny_waterbirds, tmp_path, capsys):
    model = f"local-dir:{siglip_folder}"
    out = tmp_path / "store"
    args = ["decompose", "--model", model, "--data", str(tiny_waterbirds), "--split", "val", "--out", str(out)]
    assert cli.main(args) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["preprocessing"]["pipeline"] == "transformers" and meta["model"]["name"] == model
    spec = {"editclip": 1, "name": "siglip", "model": {"name": model},
            "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
            "edits": [{"mean_ablate": ["L2.H1"]}],
            "evaluate": {"data": {"root": str(tiny_waterbirds), "split": "test"}, "classes": ["landbird", "waterbird"],
                         "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]}}  # fmt: skip
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    capsys.readouterr()
    assert cli.main(["validate", str(path)]) == 0
    assert "(weights in the folder), fp32: 3 layers x 4 heads" in capsys.readouterr().out


@pytest.mark.parametrize("folder_name", ["siglip_folder", "siglip_vision_folder"])
def test_a_siglip_config_json_gives_random_weights_or_takes_a_checkpoint(folder_name, request):
    folder = request.getfixturevalue(folder_name)
    random = editclip.load(config=folder / "config.json")
    assert random.family == "transformers-siglip" and random.pretrained is None
    images = _images(2)
    assert (editclip.decompose(random, images).total() - random.encode_image(images)).abs().max() <= TOL
    loaded = editclip.load(config=folder / "config.json", checkpoint=folder / "model.safetensors")
    assert loaded.fingerprint == editclip.load(f"local-dir:{folder}").fingerprint != random.fingerprint


def test_a_missing_tokenizer_package_is_one_clear_error(siglip_folder, monkeypatch):
    def missing(*args, **kwargs):
        raise ImportError("SiglipTokenizer requires the SentencePiece library but it was not found")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", missing)
    with pytest.raises(EditclipError, match=r"its tokenizer needs a package that is not installed .*editclip\[hf\]"):
        editclip.load(f"local-dir:{siglip_folder}")
