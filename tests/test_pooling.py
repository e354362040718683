"""The pooled readout (editclip.pooling) against naive head-by-head references on random-weight towers."""

from __future__ import annotations

import pytest
import torch

from editclip._pool_params import hf_siglip_pooled_head, timm_pooled_head
from editclip.errors import UnsupportedModelError
from editclip.pooling import Readout, readout
from tests.reference_pool import naive_attention_pool_part, naive_stream, official_siglip

TOL = 1e-5
TINY = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4, "num_classes": 0}


def randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Shift every bias, norm, layer-scale, probe parameter away from its default."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or name.endswith("gamma") or "probe" in name or "latent" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.eval()


def timm_tower(name: str, **overrides) -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return randomise_norms(timm.create_model(name, pretrained=False, **{**TINY, **overrides}))


def hf_siglip_tower() -> torch.nn.Module:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh")  # fmt: skip
    return randomise_norms(SiglipVisionModel(config))


def _images(n: int = 3, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _all_parts(r: Readout, stream: dict) -> dict[str, torch.Tensor]:
    heads = [r.heads(raw, w, ls) for raw, w, ls in zip(stream["raw"], stream["out_weight"], stream["ls1"], strict=True)]
    return {
        "embed": r.field(stream["embed"]),
        "heads": torch.stack(heads, 1),
        "mlps": torch.stack([r.field(m) for m in stream["mlps"]], 1),
        "biases": torch.stack([r.constant(b) for b in stream["biases"]], 1),
    }


def _total(r: Readout, parts: dict[str, torch.Tensor]) -> torch.Tensor:
    total = parts["embed"] + parts["heads"].sum((1, 2)) + parts["mlps"].sum(1) + parts["biases"].sum(1) + r.const
    return total + (r.pool_mlp if r.pool_mlp is not None else 0)


@pytest.fixture(scope="module", params=["timm", "hf"])
def siglip(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.Tensor, dict, Readout]:
    """A tiny attention-pooled tower, its own embedding, its naive stream and the readout of it."""
    images = _images()
    if request.param == "timm":
        tower = timm_tower("vit_base_patch16_siglip_224")
        own = tower(images)
        head = timm_pooled_head(tower, None, "tiny-siglip")
        module = tower
    else:
        model = hf_siglip_tower()
        own = model(pixel_values=images).pooler_output
        module = getattr(model, "vision_model", model)
        head = hf_siglip_pooled_head(module, "tiny-hf-siglip")
    stream = naive_stream(module, images)
    return module, own, stream, readout(head, stream["final"])


def test_attention_readout_matches_model_forward(siglip) -> None:
    _, own, _, r = siglip
    assert (r.embedding - own).abs().max() <= TOL


def test_exact_parts_sum_to_embedding_and_match_naive(siglip) -> None:
    module, own, stream, r = siglip
    parts = _all_parts(r, stream)
    assert (_total(r, parts) - own).abs().max() <= TOL
    final = stream["final"]
    naive_heads = torch.stack([torch.stack([naive_attention_pool_part(module, final, c) for c in layer], 1)
                               for layer in stream["heads"]], 1)  # fmt: skip
    assert (parts["heads"] - naive_heads).abs().max() <= TOL
    assert (parts["embed"] - naive_attention_pool_part(module, final, stream["embed"])).abs().max() <= TOL
    bias_field = stream["biases"][1].expand_as(final)
    assert (parts["biases"][:, 1] - naive_attention_pool_part(module, final, bias_field)).abs().max() <= TOL
    assert parts["heads"].abs().max() > 1e-3 and r.pool_mlp.abs().max() > 1e-3  # the parts are not trivially zero


def test_per_token_parts_sum_to_head_parts(siglip) -> None:
    module, _, stream, r = siglip
    layer = 1
    probs, values = stream["probs"][layer], stream["values"][layer]
    w_o, ls = stream["out_weight"][layer], stream["ls1"][layer]
    tokens = r.head_tokens(probs, values, w_o, ls)  # [N, H, T, D]
    heads = r.heads(stream["raw"][layer], w_o, ls)
    assert (tokens.sum(2) - heads).abs().max() <= TOL
    # one source token of one head, naively: the field that head writes from that source alone
    h, s = 2, 5
    hd = values.shape[-1]
    contribution = values[:, h, s] @ w_o[:, h * hd : (h + 1) * hd].t()  # [N, W]
    field = probs[:, h, :, s, None] * contribution[:, None, :]  # [N, T, W]
    assert (tokens[:, h, s] - naive_attention_pool_part(module, stream["final"], field)).abs().max() <= TOL
    summed = r.head_tokens(probs, values, w_o, ls, reduce=True)
    assert (summed - tokens.sum(1)).abs().max() <= TOL


def test_official_split_equals_transcription() -> None:
    model = hf_siglip_tower()
    images = _images()
    vision = getattr(model, "vision_model", model)
    ref = official_siglip(vision, images)
    stream = naive_stream(vision, images)
    r = readout(hf_siglip_pooled_head(vision, "tiny-hf-siglip"), stream["final"])
    pool_heads, pool_tokens, const = r.official(tokens=True)
    assert (pool_heads - ref["attn_results"]).abs().max() <= TOL
    assert (pool_tokens - ref["attn_spatial"].permute(0, 2, 1, 3)).abs().max() <= TOL
    assert (r.pool_mlp - ref["mlp_results"]).abs().max() <= TOL
    assert (const - ref["constant_bias"]).abs().max() <= TOL
    total = pool_heads.sum(1) + r.pool_mlp + const
    assert (total - ref["pooler_output"]).abs().max() <= TOL
    assert (ref["pooler_output"] - model(pixel_values=images).pooler_output).abs().max() <= TOL


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("vit_base_patch16_siglip_gap_224", {}),  # no class token, LayerNorm on every token, then the mean
        ("vit_small_patch16_224", {"global_pool": "avg"}),  # class token left out, LayerNorm of the mean (fc_norm)
    ],
)
def test_mean_pool_parts_sum_to_embedding(name: str, overrides: dict) -> None:
    tower = timm_tower(name, **overrides)
    images = _images()
    own = tower(images)
    head = timm_pooled_head(tower, None, name)
    assert head.kind == "mean" and head.norm_after_mean == (overrides.get("global_pool") == "avg")
    stream = naive_stream(tower, images)
    r = readout(head, stream["final"])
    assert (r.embedding - own).abs().max() <= TOL
    parts = _all_parts(r, stream)
    assert (_total(r, parts) - own).abs().max() <= TOL
    tokens = r.head_tokens(stream["probs"][0], stream["values"][0], stream["out_weight"][0], stream["ls1"][0])
    assert (tokens.sum(2) - parts["heads"][:, 0]).abs().max() <= TOL
    with pytest.raises(Exception, match="attention-pooled"):
        r.official()


def test_unsupported_pools_are_refused() -> None:
    tower = timm_tower("vit_small_patch16_224", global_pool="max")
    with pytest.raises(UnsupportedModelError, match="global_pool 'max'"):
        timm_pooled_head(tower, None, "maxpool")
    tower = timm_tower("vit_base_patch16_siglip_224", class_token=True)
    with pytest.raises(UnsupportedModelError, match="class or register tokens"):
        timm_pooled_head(tower, None, "siglip-cls")
