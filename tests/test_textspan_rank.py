"""TextSpan's rank rule: each head's numerical rank, the official k capped at it (with a warning),
strict_k, on data of known rank and on random-weight ViT-B-32 heads against the official algorithm."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import open_clip
import pytest
import torch
from conftest import randomise
from reference import official_reference

import editclip
from editclip._decompose import from_vit_output
from editclip._textspan import RANK_TOL, textspan
from editclip.errors import EditclipError
from editclip.vit import run


def known_rank(rank=7, n=200, d=48, m_texts=90, noise=0.0, seed=0):
    """Head data of exact rank `rank` (its mean inside the span), optionally plus relative noise."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(rank, d))
    coef = rng.normal(size=(n, rank)) * np.linspace(3.0, 0.5, rank) + rng.normal(size=rank)
    data = coef @ directions
    data += noise * np.abs(data).max() * rng.normal(size=data.shape)
    texts = rng.normal(size=(m_texts, d))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    return data.astype(np.float32), texts.astype(np.float32)


def no_warnings():
    catcher = warnings.catch_warnings()
    catcher.__enter__()
    warnings.simplefilter("error")
    return catcher


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_rank_of_data_of_known_rank_ignores_float32_rounding(variant):
    for noise, expected in ((0.0, 7), (1e-7, 7), (1e-4, 48)):
        data, texts = known_rank(noise=noise)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = textspan(data, texts, m=5, variant=variant, k=7)
        assert int(result.rank) == expected, noise
    data, texts = known_rank(noise=1e-7)
    stricter = textspan(data, texts, m=5, rank_tol=1e-10)  # a threshold below float32 rounding counts the noise
    assert int(stricter.rank) > 7


def test_official_k_above_the_rank_warns_and_uses_the_rank():
    data, texts = known_rank(noise=1e-7, seed=1)
    with pytest.warns(UserWarning, match=r"k=12 exceeds the numerical rank \(7\) of 1 of 1 heads"):
        capped = textspan(data, texts, m=6, variant="official", k=12)
    assert int(capped.k_used) == 7 and capped.k == 12 and int(capped.rank) == 7
    reference, _ = official_reference(data.astype(np.float64), texts.astype(np.float64), 6, 7)
    assert capped.indices.tolist() == reference

    catcher = no_warnings()
    try:
        below = textspan(data, texts, m=5, variant="official", k=5)
        strict = textspan(data, texts, m=6, variant="official", k=12, strict_k=True)
    finally:
        catcher.__exit__(None, None, None)
    assert int(below.k_used) == 5
    assert below.indices.tolist() == official_reference(data.astype(np.float64), texts.astype(np.float64), 5, 5)[0]
    assert int(strict.k_used) == 12 and int(strict.rank) == 7


def test_m_above_the_rank_is_a_specific_error_unless_k_is_insisted_on():
    data, texts = known_rank(seed=2)
    with pytest.raises(EditclipError, match="m=9 is larger than its numerical rank 7"):
        textspan(data, texts, m=9, variant="official", k=20)
    assert textspan(data, texts, m=9, variant="official", k=20, strict_k=True).indices.shape == (9,)
    with pytest.raises(EditclipError, match="rank_tol=0"):
        textspan(data, texts, m=3, rank_tol=0)


def test_paper_variant_reports_the_rank_but_has_no_k():
    data, texts = known_rank(seed=3)
    batch = np.stack([data, data[:, ::-1].copy()])
    result = textspan(batch, texts, m=4, variant="paper")
    assert result.rank.tolist() == [7, 7] and result.k is None and result.k_used is None


# --------------------------------------------------------------------------------------------------
# Random-weight ViT-B-32 heads


@pytest.fixture(scope="module")
def b32_heads() -> dict[str, np.ndarray]:
    """Direct parts of 6 last-layer heads of a random-weight ViT-B-32 (biases and norms randomised) on
    120 noise images, in both conventions: {convention: [6, N, 512] float32}. The config is ViT-B-32's
    at 64 px (4 patches) to keep it fast: a head's rank comes from its width, not the token count."""
    cfg = copy.deepcopy(open_clip.get_model_config("ViT-B-32"))
    cfg["vision_cfg"]["image_size"] = 64
    torch.manual_seed(0)
    bb = editclip.load(config=cfg)
    randomise(bb.model)
    images = torch.randn(120, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = run(bb.visual, images)
    return {
        conv: from_vit_output(out, conv).heads[:, -1, ::2].transpose(0, 1).contiguous().numpy()
        for conv in ("exact", "official")
    }


def unit_texts(n: int, d: int, seed: int = 0) -> np.ndarray:
    texts = np.random.default_rng(seed).normal(size=(n, d))
    return (texts / np.linalg.norm(texts, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize(("convention", "expected"), [("exact", 64), ("official", 67)])
def test_b32_head_rank_sits_in_a_wide_gap(b32_heads, convention, expected):
    heads = b32_heads[convention]
    result = textspan(heads, unit_texts(100, heads.shape[-1]), m=2)
    assert result.rank.tolist() == [expected] * heads.shape[0]
    for head in heads.astype(np.float64):
        s = np.linalg.svd(head, compute_uv=False)
        assert s[expected - 1] / s[0] > 30 * RANK_TOL  # the smallest genuine direction
        assert s[expected] / s[0] < RANK_TOL / 30  # float32 rounding noise


@pytest.mark.slow
def test_b32_heads_against_the_official_algorithm_below_and_above_the_rank(b32_heads):
    heads = b32_heads["official"]
    texts = unit_texts(300, heads.shape[-1], seed=1)
    catcher = no_warnings()
    try:
        below = textspan(heads, texts, m=60, variant="official", k=64)
    finally:
        catcher.__exit__(None, None, None)
    with pytest.warns(UserWarning, match=r"k=80 exceeds the numerical rank \(67\) of 6 of 6 heads"):
        above = textspan(heads, texts, m=60, variant="official", k=80)
    assert above.k_used.tolist() == [67] * 6 and below.k_used.tolist() == [64] * 6
    for head, data in enumerate(heads.astype(np.float64)):
        assert below.indices[head].tolist() == official_reference(data, texts.astype(np.float64), 60, 64)[0]
        assert above.indices[head].tolist() == official_reference(data, texts.astype(np.float64), 60, 67)[0]
    # where the spectrum has a wide gap (k = 64, the head width), a 1e-6 relative perturbation of the
    # data leaves every pick in place; with noise directions in the projection (strict k = 80) it does not
    noise = 1 + 1e-6 * np.random.default_rng(2).normal(size=heads.shape).astype(np.float32)
    torch.testing.assert_close(textspan(heads * noise, texts, m=60, variant="official", k=64).indices, below.indices)
    strict = [textspan(x, texts, m=60, variant="official", k=80, strict_k=True).indices for x in (heads, heads * noise)]
    assert not torch.equal(*strict)


@pytest.mark.slow
def test_float32_paper_picks_match_float64_on_toy_world_heads():
    from editclip.text import encode_texts, load_pool
    from editclip.toyworld import load
    from editclip.toyworld.measure import split_sample

    bb = load()
    with torch.no_grad():
        out = run(bb.visual, split_sample("test", 400).images)
    heads = from_vit_output(out).heads.flatten(1, 2).transpose(0, 1)  # [16, N, D]
    texts = encode_texts(bb, load_pool("toyworld"), progress=False)
    double = textspan(heads, texts, m=60)
    single = textspan(heads, texts, m=60, precision="float32")
    assert single.rank is None and double.rank.tolist() == [bb.shape.head_dim] * heads.shape[0]
    agree = (single.indices == double.indices).float().mean(1)
    assert agree.min() >= 0.95, agree.tolist()
