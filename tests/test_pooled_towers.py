"""Pooled towers end to end: open_clip models with timm SigLIP / mean-pool towers, decomposed by editclip."""

from __future__ import annotations

import copy

import pytest
import torch

import editclip
from editclip.backbone import check_config
from editclip.errors import UnsupportedModelError
from editclip.vit import run
from tests.reference_pool import naive_attention_pool_part, naive_stream
from tests.test_pooling import randomise_norms

TOL = 1e-5
TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}
TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _register_tiny_timm_models() -> None:
    """Tiny timm SigLIP variants (attention pool; mean pool), so open_clip builds them from a config."""
    import timm
    from timm.models import register_model
    from timm.models.vision_transformer import _create_vision_transformer

    variants = {
        "editclip_test_siglip": {"class_token": False, "global_pool": "map"},
        "editclip_test_siglip_tanh": {"class_token": False, "global_pool": "map", "act_layer": "gelu_tanh"},
        "editclip_test_siglip_gap": {"class_token": False, "global_pool": "avg", "fc_norm": False},
        "editclip_test_vit_avg": {"class_token": True, "global_pool": "avg", "init_values": 0.5},
        "editclip_test_vit_token": {"class_token": True, "global_pool": "token"},
    }
    for name, args in variants.items():
        if name in timm.list_models(name):
            continue

        def build(pretrained: bool = False, _name: str = name, _args: dict = args, **kwargs):
            return _create_vision_transformer(_name, pretrained=False, **{**TINY_VIT, **_args, **kwargs})

        build.__name__ = name
        register_model(build)


def timm_config(model_name: str, pool: str, proj: str = "none", embed_dim: int = 64) -> dict:
    vision = {"image_size": 32, "timm_model_name": model_name, "timm_model_pretrained": False,
              "timm_pool": pool, "timm_proj": proj}  # fmt: skip
    return {"embed_dim": embed_dim, "vision_cfg": vision, "text_cfg": TEXT}


def load_tiny(config: dict, seed: int = 0) -> editclip.Backbone:
    _register_tiny_timm_models()
    torch.manual_seed(seed)
    bb = editclip.load(config=copy.deepcopy(config))
    randomise_norms(bb.model, seed)
    return bb


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def open_clip_avg_config(**vision: object) -> dict:
    base = {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16, "pool_type": "avg"}
    return {"embed_dim": 48, "vision_cfg": {**base, **vision}, "text_cfg": TEXT}


CASES = {
    "siglip": timm_config("editclip_test_siglip", "map"),
    "siglip-tanh-proj": timm_config("editclip_test_siglip_tanh", "map", proj="linear", embed_dim=48),
    "siglip-gap": timm_config("editclip_test_siglip_gap", "avg"),
    "vit-avg-fc-norm": timm_config("editclip_test_vit_avg", "avg", proj="linear", embed_dim=48),
    "vit-token": timm_config("editclip_test_vit_token", "token", proj="linear", embed_dim=48),
    "open-clip-avg": open_clip_avg_config(ls_init_value=0.5),  # LayerNorm on each token, then the mean
    "open-clip-clipa": open_clip_avg_config(no_ln_pre=True, final_ln_after_pool=True),  # LayerNorm of the mean
}


@pytest.fixture(scope="module", params=sorted(CASES))
def pooled_bb(request: pytest.FixtureRequest) -> editclip.Backbone:
    return load_tiny(CASES[request.param])


def test_instrumented_forward_matches_encode_image(pooled_bb: editclip.Backbone) -> None:
    images = _images()
    own = pooled_bb.encode_image(images)
    out = run(pooled_bb.tower, images)
    assert (out.embedding - own).abs().max() <= TOL
    plain = run(pooled_bb.tower, images, parts=False)
    assert (plain.embedding - own).abs().max() <= TOL


def test_exact_parts_sum_to_embedding(pooled_bb: editclip.Backbone) -> None:
    images = _images()
    own = pooled_bb.encode_image(images)
    d = editclip.decompose(pooled_bb, images, token_layers=[1])
    assert (d.total() - own).abs().max() <= TOL
    assert (d.tokens[1].sum(2) - d.heads[:, 1]).abs().max() <= TOL
    assert d.heads.abs().max() > 1e-3


def test_parts_match_naive_reference_through_the_pool() -> None:
    bb = load_tiny(CASES["siglip"])
    images = _images()
    trunk = bb.visual.trunk
    stream = naive_stream(trunk, images)
    d = editclip.decompose(bb, images)
    for layer in range(2):
        for head in range(4):
            naive = naive_attention_pool_part(trunk, stream["final"], stream["heads"][layer][head])
            assert (d.heads[:, layer, head] - naive).abs().max() <= TOL
    assert (d.embed - naive_attention_pool_part(trunk, stream["final"], stream["embed"])).abs().max() <= TOL
    assert d.pool_mlp is not None and d.pool_mlp.abs().max() > 1e-3


def test_official_convention_sums_to_embedding() -> None:
    bb = load_tiny(CASES["siglip-tanh-proj"])
    images = _images()
    d = editclip.decompose(bb, images, convention="official", token_layers=[0])
    assert d.heads.shape[1] == 0 and d.pool_heads.shape[1] == 4
    assert not any(t.requires_grad for t in (d.pool_heads, d.pool_tokens, d.pool_mlp, d.const))
    assert (d.total() - bb.encode_image(images)).abs().max() <= TOL
    assert (d.pool_tokens.sum(2) - d.pool_heads).abs().max() <= TOL
    assert (d[1:].total() - d.total()[1:]).abs().max() == 0


def test_mean_pool_has_no_official_split() -> None:
    bb = load_tiny(CASES["siglip-gap"])
    with pytest.raises(editclip.EditclipError, match="attention-pooled"):
        editclip.decompose(bb, _images(), convention="official")


def test_eva_and_other_timm_towers_are_refused_with_the_reason() -> None:
    cfg = timm_config("eva02_base_patch16_clip_224", "token")
    with pytest.raises(UnsupportedModelError, match="rotary position embeddings, SwiGLU"):
        check_config(cfg, "EVA02-B-16")
    eva = r"EVA towers \(timm Eva: rotary position embeddings, SwiGLU MLPs\) are not supported yet"
    with pytest.raises(UnsupportedModelError, match="'EVA02-B-16': " + eva):
        editclip.load("EVA02-B-16")  # refused by its config, before anything is built or downloaded
    import open_clip

    built = open_clip.CLIP(**timm_config("eva02_tiny_patch14_224", "token", "linear"))  # a built Eva trunk
    with pytest.raises(UnsupportedModelError, match="'my-eva': " + eva):
        editclip.Backbone.from_open_clip(built, None, None, name="my-eva")
    with pytest.raises(UnsupportedModelError, match="timm_pool 'max'"):
        check_config(timm_config("vit_base_patch16_siglip_224", "max"), "maxpool")
    with pytest.raises(UnsupportedModelError, match="not a timm VisionTransformer"):
        check_config(timm_config("convnext_tiny", "avg"), "convnext")


@pytest.mark.parametrize("case", ["siglip", "siglip-gap", "open-clip-avg"])
def test_heatmap_identity_on_pooled_towers(case: str) -> None:
    """Per-token scores of the chosen heads plus the rest are the image's score (the heatmaps' identity)."""
    from editclip.spatial import heatmaps, score_parts

    bb = load_tiny(CASES[case])
    images = _images()
    direction = torch.randn(bb.shape.embed_dim, generator=torch.Generator().manual_seed(3))
    parts = score_parts(bb, images, direction, layers="L1")
    assert (parts.tokens.sum(-1) + parts.rest - parts.total).abs().max() <= 1e-4
    maps = heatmaps(bb, images, torch.randn(2, bb.shape.embed_dim), progress=False)
    assert maps.maps.shape == (3, 32, 32) and maps.patch_scores.shape == (3, 4, 4)
    assert torch.isfinite(maps.maps).all() and maps.patch_scores.abs().max() > 0
    from editclip.attention_maps import attention_maps

    with pytest.raises(editclip.EditclipError, match="class token's attention"):
        attention_maps(bb, images, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B-16-SigLIP", "ViT-B-32-SigLIP2-256"])
def test_full_size_siglip_configs(name: str) -> None:
    """open_clip's own SigLIP / SigLIP2 configs (random weights, norms and biases shifted): exact at full size."""
    torch.manual_seed(0)
    bb = editclip.load(name)
    randomise_norms(bb.model)
    assert bb.shape.pool == "attn" and bb.shape.prefix_tokens == 0 and bb.shape.layers == 12
    images = torch.randn(2, 3, *bb.shape.image_size, generator=torch.Generator().manual_seed(0))
    own = bb.encode_image(images)
    d = editclip.decompose(bb, images, token_layers=[11])
    assert (d.total() - own).abs().max() <= TOL
    assert (d.tokens[11].sum(2) - d.heads[:, 11]).abs().max() <= TOL
    official = editclip.decompose(bb, images, convention="official")
    assert (official.total() - own).abs().max() <= TOL
