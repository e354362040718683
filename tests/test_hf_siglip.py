"""transformers SigLIP (SiglipModel / SiglipVisionModel) through the hf_siglip adapter: instrumented forward
== get_image_features, exact and official splits (the official one == a transcription of the official code),
per-token parts, and a mean-ablation + projection edit exported to ONNX with parity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import editclip
from editclip._decompose import from_vit_output
from editclip.backbone import Backbone, read_shape
from editclip.edited import EditedCLIP, EditTensors
from editclip.export import export_onnx
from editclip.families import hf_siglip
from editclip.vit import run
from tests.reference_pool import naive_attention_pool_part, naive_stream, official_siglip
from tests.test_pooling import randomise_norms

TOL = 1e-5


def siglip_model(vision_only: bool = False) -> torch.nn.Module:
    from transformers import SiglipConfig, SiglipModel, SiglipTextConfig, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    vision = SiglipVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                image_size=32, patch_size=8, hidden_act="gelu_pytorch_tanh")  # fmt: skip
    if vision_only:
        return randomise_norms(SiglipVisionModel(vision))
    text = SiglipTextConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                            vocab_size=1000, max_position_embeddings=16, bos_token_id=None, eos_token_id=1,
                            pad_token_id=1)  # fmt: skip
    return randomise_norms(SiglipModel(SiglipConfig(vision_config=vision.to_dict(), text_config=text.to_dict())))


def backbone(model: torch.nn.Module) -> Backbone:
    """A Backbone around a transformers SigLIP built in memory (no processor or tokenizer download)."""
    model.eval()
    shape = read_shape(model, "tiny-siglip")
    return Backbone(model, lambda texts: torch.ones(len(texts), 16, dtype=torch.long), lambda image: image, shape,
                    "tiny-siglip", None)  # fmt: skip


def _images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(4))


@pytest.fixture(scope="module", params=["SiglipModel", "SiglipVisionModel"])
def bb(request: pytest.FixtureRequest) -> Backbone:
    return backbone(siglip_model(vision_only=request.param == "SiglipVisionModel"))


def test_adapter_describes_an_attention_pooled_tower(bb: Backbone) -> None:
    assert bb.family == "transformers-siglip"
    assert bb.shape.pool == "attn" and bb.shape.prefix_tokens == 0 and bb.shape.n_tokens == 16
    assert bb.shape.act == "gelu_tanh" and bb.shape.layers == 2 and bb.shape.heads == 4


def test_forward_and_exact_parts(bb: Backbone) -> None:
    images = _images()
    own = bb.encode_image(images)
    out = run(bb.tower, images, token_layers=[0, 1])
    assert (out.embedding - own).abs().max() <= TOL
    d = from_vit_output(out, "exact")
    assert (d.total() - own).abs().max() <= TOL
    for layer in (0, 1):
        assert (d.tokens[layer].sum(2) - d.heads[:, layer]).abs().max() <= TOL
    tower = hf_siglip.vision(bb.model)
    stream = naive_stream(tower, images)
    naive = naive_attention_pool_part(tower, stream["final"], stream["heads"][1][3])
    assert (d.heads[:, 1, 3] - naive).abs().max() <= TOL


def test_official_split_equals_the_official_code(bb: Backbone) -> None:
    images = _images()
    d = editclip.decompose(bb, images, convention="official", token_layers=[1])
    ref = official_siglip(hf_siglip.vision(bb.model), images)
    assert (d.pool_heads - ref["attn_results"]).abs().max() <= TOL
    assert (d.pool_tokens - ref["attn_spatial"].permute(0, 2, 1, 3)).abs().max() <= TOL
    assert (d.pool_mlp - ref["mlp_results"]).abs().max() <= TOL
    assert (d.const - ref["constant_bias"]).abs().max() <= TOL
    assert (d.total() - bb.encode_image(images)).abs().max() <= TOL


def test_edit_exports_to_onnx_with_parity(bb: Backbone, tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    dim = bb.shape.embed_dim
    edit = EditTensors.empty(dim)
    edit.ablate_heads = torch.tensor([1, 6])
    edit.ablate_head_means = torch.randn(2, dim, generator=gen)
    basis = torch.linalg.qr(torch.randn(dim, 8, generator=gen))[0]
    edit.project_heads = torch.tensor([7])
    edit.project_linear = (basis @ basis.t())[None]
    edit.project_offset = torch.randn(1, dim, generator=gen)
    edited = EditedCLIP(bb.model, edit)
    images = _images()
    d = editclip.decompose(bb, images)
    expected = edit.apply(d.total(), d.heads, d.mlps, d.biases, d.embed)
    assert (edited.encode_image(images) - expected).abs().max() <= TOL
    assert (expected - d.total()).abs().max() > 1e-3
    report = export_onnx(edited, tmp_path / "edited.onnx")
    assert report.parity.passed and report.parity.max_abs_diff <= 1e-4, report.summary()
