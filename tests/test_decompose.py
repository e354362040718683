"""The instrumented forward equals open_clip's, and the parts sum to the embedding, on several towers."""

from __future__ import annotations

import pytest
import torch
from conftest import randomise
from reference import exact_parts, official_parts

import editclip
from editclip._decompose import decompose, from_vit_output
from editclip.vit import run

ARCHS = ["ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-B-32-quickgelu", "ViT-M-16-alt", "tiny"]


@pytest.fixture(scope="module", params=ARCHS)
def arch(request: pytest.FixtureRequest, tiny_files):
    """(backbone, open_clip's embedding, one instrumented forward with tokens of the first and last layer)."""
    torch.manual_seed(0)
    if request.param == "tiny":
        bb = editclip.load(checkpoint=tiny_files[0], config=tiny_files[1])
    else:
        bb = editclip.load(request.param)
        randomise(bb.model)
    images = torch.randn(2, 3, *bb.shape.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = bb.model.encode_image(images)
    return bb, reference, run(bb.visual, images, token_layers=[0, bb.shape.layers - 1])


def test_instrumented_forward_matches_open_clip(arch) -> None:
    _, reference, out = arch
    assert (out.embedding - reference).abs().max().item() <= 1e-5


@pytest.mark.parametrize("convention", ["exact", "official"])
def test_parts_sum_to_embedding(arch, convention: str) -> None:
    bb, z, out = arch
    last = bb.shape.layers - 1
    d = from_vit_output(out, convention)
    target = z if convention == "exact" else z / z.norm(dim=-1, keepdim=True)
    assert (d.total() - target).abs().max().item() <= 1e-5
    for layer in (0, last):
        assert (d.tokens[layer].sum(2) - d.heads[:, layer]).abs().max().item() <= 1e-5
    assert d.heads.shape == (2, bb.shape.layers, bb.shape.heads, bb.shape.embed_dim)
    assert d.tokens[last].shape == (2, bb.shape.heads, bb.shape.n_tokens, bb.shape.embed_dim)
    torch.testing.assert_close(d.norms, z.norm(dim=-1))


@pytest.mark.parametrize("convention", ["exact", "official"])
def test_tokens_of_every_layer_in_one_or_several_batches(tiny_bb, convention: str) -> None:
    """Per-token parts of all layers: the same in one batch or several, and with the MLPs, embedding term,
    biases and constant they sum to the embedding (normalised in the official convention)."""
    images = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    every = list(range(tiny_bb.shape.layers))
    one = decompose(tiny_bb, images, convention, token_layers=every, batch_size=5)
    split = decompose(tiny_bb, images, convention, token_layers=every, batch_size=2)
    for layer in every:
        assert one.tokens[layer].is_contiguous()
        torch.testing.assert_close(split.tokens[layer], one.tokens[layer], atol=1e-6, rtol=1e-5)
        assert (one.tokens[layer].sum(2) - one.heads[:, layer]).abs().max().item() <= 1e-5
    z = tiny_bb.encode_image(images)
    target = z if convention == "exact" else z / z.norm(dim=-1, keepdim=True)
    tokens = sum(one.tokens[layer].sum((1, 2)) for layer in every)
    total = tokens + one.mlps.sum(1) + one.embed + one.biases.sum(1) + one.const
    assert (total - target).abs().max().item() <= 1e-5


def test_parts_really_vary(arch) -> None:
    """Guard against a decomposition that puts everything in one term: heads and MLPs both carry signal."""
    d = from_vit_output(arch[2])
    assert d.heads.abs().sum() > 0.05 * d.total().abs().sum()
    assert d.mlps.abs().sum() > 0.05 * d.total().abs().sum()
    assert d.biases.abs().sum() > 0  # randomised out_proj biases are bookkept


def test_official_convention_matches_a_literal_transcription(tiny_bb) -> None:
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    ref = official_parts(tiny_bb.visual, images)
    d = decompose(tiny_bb, images, convention="official", token_layers=[1, 3])
    torch.testing.assert_close(d.embed, ref["embed"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(d.mlps, ref["mlps"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(d.heads, ref["heads"], atol=1e-6, rtol=1e-4)
    for layer in (1, 3):
        torch.testing.assert_close(d.tokens[layer], ref["tokens"][:, layer], atol=1e-6, rtol=1e-4)


def test_exact_convention_matches_per_component_centring(tiny_bb) -> None:
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = exact_parts(tiny_bb.visual, images)
    d = decompose(tiny_bb, images)
    for name in ("embed", "mlps", "heads", "biases"):
        torch.testing.assert_close(getattr(d, name), ref[name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_low_precision_close_to_open_clip(tiny_files, precision: str) -> None:
    bb = editclip.load(checkpoint=tiny_files[0], config=tiny_files[1], precision=precision)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    z = bb.encode_image(images)
    d = decompose(bb, images)
    cos = torch.nn.functional.cosine_similarity(d.total(), z)
    assert cos.min() > 0.99
    assert d.heads.dtype == torch.float32


def test_token_sum_mode_equals_summed_tokens(tiny_bb) -> None:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    full = run(tiny_bb.visual, images, token_layers=[2, 3])
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[2, 1] = mask[3] = True
    summed = run(tiny_bb.visual, images, parts=False, token_layers=[2, 3], token_reduce="sum", token_head_mask=mask)
    expected = full.tokens[2][:, 1] + full.tokens[3].sum(1)
    torch.testing.assert_close(summed.token_sum, expected, atol=1e-6, rtol=1e-5)


def test_decomposition_subsets_and_concat(tiny_bb) -> None:
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    d = decompose(tiny_bb, images, batch_size=3)
    assert len(d) == 4
    again = editclip.Decomposition.concat([d[:1], d[1:]])
    torch.testing.assert_close(again.total(), d.total())


def test_bad_inputs_are_specific(tiny_bb) -> None:
    with pytest.raises(editclip.EditclipError, match=r"images must be \[N, 3, 32, 32\]"):
        decompose(tiny_bb, torch.randn(1, 3, 64, 64))
    with pytest.raises(editclip.EditclipError, match="convention 'paper' is unknown"):
        decompose(tiny_bb, torch.randn(1, 3, 32, 32), convention="paper")
    with pytest.raises(editclip.EditclipError, match="token layer 9 is out of range"):
        run(tiny_bb.visual, torch.randn(1, 3, 32, 32), token_layers=[9])
