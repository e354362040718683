"""Model families and ids: transformers CLIP through the tower description, hf-hub: / local-dir: ids (open_clip
and transformers formats, the hub served from a pre-filled offline cache), models built in memory."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CONFIG, randomise
from hf_models import PROCESSOR, TEXT, VISION, fill_hub_cache, hf_clip, processor_kwargs
from PIL import Image
from safetensors.torch import save_file

import editclip
from editclip.backbone import supported_models
from editclip.errors import EditclipError, UnsupportedModelError
from editclip.vit import run

transformers = pytest.importorskip("transformers")

@pytest.fixture(scope="module")
def open_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """An open_clip-format folder: open_clip_config.json + open_clip_model.safetensors of a random tiny model."""
    folder = tmp_path_factory.mktemp("oc-clip")
    torch.manual_seed(1)
    model = randomise(open_clip.CLIP(**TINY_CONFIG).eval(), 1)
    pp = {"mean": [0.4, 0.4, 0.4], "std": [0.3, 0.3, 0.3], "interpolation": "bilinear", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": pp}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder, model


# ----- transformers CLIP: exactness ----------------------------------------------------------------------------


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_hf_clip_instrumented_forward_and_parts_are_exact(act):
    bb = editclip.Backbone.from_hf(hf_clip(act))
    assert bb.family == "transformers-clip" and bb.shape.act == {"quick_gelu": "quickgelu"}.get(act, act)
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = bb.model.get_image_features(pixel_values=images).pooler_output
    out = run(bb.tower, images, token_layers=[0, 2])
    assert (out.embedding - reference).abs().max() <= 1e-5
    exact = editclip.decompose(bb, images, convention="exact", token_layers=[1])
    assert (exact.total() - reference).abs().max() <= 1e-5
    official = editclip.decompose(bb, images, convention="official")
    assert (official.total() - F.normalize(reference, dim=-1)).abs().max() <= 1e-5
    # the per-token parts of a layer sum over tokens to that layer's heads
    assert torch.allclose(exact.tokens[1].sum(2), exact.heads[:, 1], atol=1e-5)


def test_hf_vision_with_projection_is_exact():
    torch.manual_seed(0)
    config = transformers.CLIPVisionConfig(**VISION, projection_dim=24, hidden_act="gelu")
    model = randomise(transformers.CLIPVisionModelWithProjection(config).eval())
    bb = editclip.Backbone.from_hf(model)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        reference = model(pixel_values=images).image_embeds
    assert (bb.encode_image(images) - reference).abs().max() == 0
    assert (editclip.decompose(bb, images).total() - reference).abs().max() <= 1e-5
    with pytest.raises(EditclipError, match="image tower only"):
        bb.encode_text(["a dog"])


def test_hf_norms_keep_their_own_eps():
    model = hf_clip()
    tower = editclip.Backbone.from_hf(model).tower
    assert tower.ln_post.eps == 1e-3 and tower.blocks[0].ln_1.eps == 1e-5
    images = torch.randn(2, 3, 32, 32)
    model.vision_model.post_layernorm.eps = 1e-5  # the wrong eps changes the embedding measurably
    with torch.no_grad():
        wrong = model.get_image_features(pixel_values=images).pooler_output
    assert (run(tower, images).embedding - wrong).abs().max() > 1e-5


RENAMES = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
           ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))  # fmt: skip


def test_hf_and_open_clip_towers_agree_on_the_same_weights():
    """One description, two naming schemes: open_clip weights renamed to HF's give the same embedding."""
    torch.manual_seed(2)
    oc = randomise(open_clip.CLIP(**TINY_CONFIG).eval(), 2)
    vision = {**VISION, "num_hidden_layers": 4, "hidden_act": "gelu", "intermediate_size": 256}
    hf = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**vision, projection_dim=32)).eval()
    sd, v = oc.state_dict(), "vision_model."
    new = {v + "embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
           v + "embeddings.class_embedding": sd["visual.class_embedding"],
           v + "embeddings.position_embedding.weight": sd["visual.positional_embedding"],
           "visual_projection.weight": sd["visual.proj"].t()}  # fmt: skip
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for kind in ("weight", "bias"):
            new[f"{v}{ours}.{kind}"] = sd[f"visual.{theirs}.{kind}"]
    for i in range(4):
        o, h = f"visual.transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for kind in ("weight", "bias"):
            qkv = sd[o + f"attn.in_proj_{kind}"].chunk(3)
            for j, name in enumerate("qkv"):
                new[h + f"self_attn.{name}_proj.{kind}"] = qkv[j]
            for ours, theirs in RENAMES:
                new[h + f"{ours}.{kind}"] = sd[o + f"{theirs}.{kind}"]
    hf.load_state_dict(new, strict=True)
    images = torch.randn(3, 3, 32, 32)
    a, b = editclip.decompose(editclip.Backbone.from_hf(hf), images), editclip.decompose(
        editclip.Backbone.from_open_clip(oc, None, None), images
    )
    assert torch.allclose(a.heads, b.heads, atol=1e-5) and torch.allclose(a.total(), b.total(), atol=1e-5)


# ----- ids: local-dir: and hf-hub: -----------------------------------------------------------------------------


def test_local_dir_transformers_folder_loads_with_processor_and_tokenizer(hf_folder, hf_bb):
    model = transformers.CLIPModel.from_pretrained(str(hf_folder)).eval()
    assert hf_bb.fingerprint == editclip.Backbone.from_hf(model).fingerprint
    assert hf_bb.pretrained == "weights in the folder"
    texts = ["a photo of a dog.", "two kites over the sea"]
    tok = transformers.AutoTokenizer.from_pretrained(str(hf_folder))
    with torch.no_grad():
        ids = tok(texts, padding=True, return_tensors="pt")
        want = model.get_text_features(**ids).pooler_output
    torch.testing.assert_close(hf_bb.encode_text(texts), want, atol=1e-5, rtol=0)
    # the preprocessing equals the image processor's
    image = Image.fromarray((torch.rand(40, 52, 3) * 255).to(torch.uint8).numpy())
    processor = transformers.CLIPImageProcessor(**processor_kwargs(PROCESSOR))
    want = processor(images=image, return_tensors="pt")["pixel_values"][0]
    assert (hf_bb.preprocess(image) - want).abs().max() <= 1e-6  # the processor's own operations
    pp = hf_bb.source["preprocess_cfg"]
    assert pp["mean"] == [0.5, 0.4, 0.3] and pp["interpolation"] == "bilinear" and pp["size"] == [32, 32]


def test_local_dir_open_clip_folder_loads_through_open_clip(open_clip_folder):
    folder, model = open_clip_folder
    bb = editclip.load(f"local-dir:{folder}")
    assert bb.family == "open_clip" and bb.pretrained == "weights in the folder"
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(bb.encode_image(images), model.encode_image(images), atol=1e-6, rtol=0)
    assert bb.source["preprocess_cfg"]["interpolation"] == "bilinear"
    assert (editclip.decompose(bb, images).total() - model.encode_image(images)).abs().max() <= 1e-5


def test_hf_hub_ids_load_from_an_offline_cache(offline_hub, hf_folder, open_clip_folder):
    fill_hub_cache(offline_hub, "someone/tiny-hf-clip", hf_folder)
    fill_hub_cache(offline_hub, "someone/tiny-oc-clip", open_clip_folder[0])
    hf = editclip.load("hf-hub:someone/tiny-hf-clip")
    assert hf.family == "transformers-clip" and hf.pretrained == "hub weights"
    assert hf.fingerprint == editclip.load(f"local-dir:{hf_folder}").fingerprint
    oc = editclip.load("hf-hub:someone/tiny-oc-clip")
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(oc.encode_image(images), open_clip_folder[1].encode_image(images), atol=1e-6, rtol=0)
    with pytest.raises(EditclipError, match=r"neither open_clip_config\.json nor config\.json"):
        editclip.load("hf-hub:someone/absent")


def test_bad_ids_and_folders_are_refused(tmp_path, hf_folder):
    with pytest.raises(EditclipError, match="does not exist"):
        editclip.load(f"local-dir:{tmp_path / 'nope'}")
    with pytest.raises(EditclipError, match="holds neither"):
        editclip.load(f"local-dir:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EditclipError, match="model_type 'bert'"):
        editclip.load(f"local-dir:{tmp_path}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    with pytest.raises(EditclipError, match="no weights"):
        editclip.load(f"local-dir:{tmp_path}")
    with pytest.raises(EditclipError, match="takes no pretrained"):
        editclip.load(f"local-dir:{hf_folder}", pretrained="openai")
    with pytest.raises(EditclipError, match="hf-hub:ORG/NAME"):
        editclip.load("hf-hub:no-slash")
    siglip2 = {**transformers.SiglipConfig(text_config=TEXT, vision_config=VISION).to_dict(), "model_type": "siglip2"}
    with pytest.raises(UnsupportedModelError, match=r"SigLIP2 models \(variable-resolution NaFlex"):
        editclip.load(config=siglip2)


def test_known_models_hint_lists_only_supported_models():
    names = supported_models()
    assert "ViT-B-32" in names and "ViT-L-14" in names
    assert not any(n.startswith(("RN", "convnext", "coca", "EVA")) for n in names)
    with pytest.raises(EditclipError) as err:
        editclip.load("ViT-Nope-1")
    assert "RN50" not in str(err.value) and "hf-hub:ORG/NAME" in str(err.value)


def test_from_open_clip_wraps_a_model_the_user_built():
    torch.manual_seed(4)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    bb = editclip.Backbone.from_open_clip(randomise(model), preprocess, open_clip.get_tokenizer("ViT-B-32"))
    images = torch.randn(1, 3, 224, 224)
    assert (editclip.decompose(bb, images).total() - bb.encode_image(images)).abs().max() <= 1e-5
    assert bb.encode_text(["a dog"]).shape == (1, 512)
    from editclip.store import load_backbone, model_source

    with pytest.raises(EditclipError, match="built in memory"):
        load_backbone(model_source(bb))


def test_hf_base_model_exports_to_onnx_and_gives_attention_maps(hf_bb, tmp_path):
    report = editclip.export_onnx(hf_bb.model, tmp_path / "base.onnx")
    assert report.parity.passed and report.metadata["mean"] == json.dumps([0.5, 0.4, 0.3])
    from editclip.attention_maps import attention_maps

    images = torch.randn(2, 3, 32, 32)
    maps = attention_maps(hf_bb, images, progress=False)
    assert maps.raw.shape == (2, 4, 4) and (maps.embedding - hf_bb.encode_image(images)).abs().max() <= 1e-5


def test_hf_preprocessing_is_recorded_and_restored(hf_bb):
    from editclip._hf_load import preprocess_from_processor
    from editclip.backbone import with_preprocessing

    record = hf_bb.preprocessing
    assert record["size"] == [32, 32] and record["mean"] == [0.5, 0.4, 0.3] and record["interpolation"] == "bilinear"
    changed = with_preprocessing(hf_bb, {**record, "mean": [0.1, 0.2, 0.3]})
    assert changed.preprocessing["mean"] == [0.1, 0.2, 0.3]
    with_preprocessing(hf_bb, record)  # the shared model gets its own record back
    with pytest.raises(EditclipError, match="makes"):
        preprocess_from_processor({**PROCESSOR, "crop_size": {"height": 28, "width": 28}}, (32, 32), "m")
