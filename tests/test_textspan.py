"""TextSpan: the batched implementation against direct per-head transcriptions of the algorithms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import official_reference, paper_reference

from editclip._textspan import textspan
from editclip.errors import EditclipError


def structured(n_heads=4, n=300, d=64, m_texts=120, planted=5, noise=0.3, seed=0):
    """Heads built from a few pool texts with decreasing scales, plus a mean offset and noise.

    Returns C [K, N, D] float32, R [M, D] unit, planted indices [K, planted].
    """
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(m_texts, d))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    heads, chosen = [], []
    scales = np.linspace(5.0, 1.5, planted)
    for _ in range(n_heads):
        idx = rng.choice(m_texts, planted, replace=False)
        coef = rng.normal(size=(n, planted)) * scales + rng.normal(size=planted)
        heads.append(coef @ r[idx] + noise * rng.normal(size=(n, d)) + rng.normal(size=d))
        chosen.append(idx)
    return np.stack(heads).astype(np.float32), r.astype(np.float32), np.stack(chosen)


@pytest.mark.parametrize("seed", [0, 1])
def test_official_matches_transcription_text_for_text(seed):
    c, r, _ = structured(n_heads=4, d=96, m_texts=150, seed=seed)
    result = textspan(c, r, m=20, variant="official", k=40, device="cpu")
    for head in range(c.shape[0]):
        ref, ref_rec = official_reference(c[head].astype(np.float64), r.astype(np.float64), 20, 40)
        assert result.indices[head].tolist() == ref
        for m in (1, 7, 13):  # the greedy order does not depend on m
            short = textspan(c[head], r, m=m, variant="official", k=40, device="cpu")
            assert short.indices.tolist() == ref[:m]
        np.testing.assert_allclose(result.reconstruct(c)[head].numpy(), ref_rec, atol=2e-4)


def test_paper_matches_transcription_and_recovers_planted_directions():
    c, r, planted = structured(n_heads=3, seed=3)
    result = textspan(c, r, m=20, variant="paper", device="cpu")
    for head in range(c.shape[0]):
        assert result.indices[head].tolist() == paper_reference(c[head].astype(np.float64), r, 20)
        assert set(result.indices[head, :5].tolist()) == set(planted[head].tolist())


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_explained_is_monotone_and_reaches_one_at_the_rank(variant):
    c, r, planted = structured(n_heads=2, noise=0.0, seed=5)
    # official: float64 only, and at most the data's rank (5 planted directions and the mean) texts
    precision, m = ("float32", 8) if variant == "paper" else ("float64", 6)
    result = textspan(c, r, m=m, variant=variant, device="cpu", precision=precision)
    explained = result.explained.numpy()
    assert np.all(np.diff(explained, axis=1) >= -1e-6)
    np.testing.assert_allclose(explained[:, 4:], 1.0, atol=1e-4)
    for head in range(2):
        assert set(result.indices[head, :5].tolist()) == set(planted[head].tolist())
    # with the planted span chosen, the reconstruction is the data itself
    np.testing.assert_allclose(result.reconstruct(c).numpy(), c, atol=1e-3)


def test_basis_is_orthonormal_and_spans_the_chosen_texts():
    c, r, _ = structured(n_heads=2, seed=7)
    result = textspan(c, r, m=10, variant="paper", texts=[f"t{i}" for i in range(len(r))], device="cpu")
    basis = result.basis.double()
    gram = basis @ basis.transpose(1, 2)
    torch.testing.assert_close(gram, torch.eye(10, dtype=torch.float64).expand(2, 10, 10), atol=1e-5, rtol=0)
    for head in range(2):
        chosen = torch.from_numpy(r[result.indices[head].numpy()]).double()
        residual = chosen - chosen @ basis[head].T @ basis[head]
        assert residual.abs().max() < 1e-5
        assert result.texts[head] == [f"t{i}" for i in result.indices[head].tolist()]
    assert result.mean.shape == (2, c.shape[2]) and result.total_variance.shape == (2,)


def test_single_head_and_chunked_heads_agree_with_one_batch():
    c, r, _ = structured(n_heads=5, seed=9)
    full = textspan(c, r, m=6, variant="official", k=30, device="cpu")
    chunked = textspan(torch.from_numpy(c), torch.from_numpy(r), m=6, variant="official", k=30, head_chunk=2)
    torch.testing.assert_close(full.indices, chunked.indices)
    one = textspan(c[3], r, m=6, variant="official", k=30, texts=[str(i) for i in range(len(r))])
    assert one.indices.shape == (6,) and one.basis.shape == (6, c.shape[2])
    assert one.indices.tolist() == full.indices[3].tolist()
    assert one.texts == [str(i) for i in full.indices[3].tolist()]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"m": 121}, "m=121 is out of range"),
        ({"m": 0}, "m=0 is out of range"),
        ({"variant": "fast"}, "unknown TextSpan variant"),
        ({"variant": "official", "k": 10, "m": 11}, "projection rank"),
        ({"texts": ["a", "b"]}, "2 texts given for 120"),
        ({"variant": "official", "precision": "float32"}, "not supported by the official variant"),
        ({"precision": "float16"}, "precision 'float16' is not supported"),
    ],
)
def test_bad_arguments_are_specific_errors(kwargs, message):
    c, r, _ = structured(n_heads=1, seed=0)
    with pytest.raises(EditclipError, match=message):
        textspan(c, r, **kwargs)


def test_a_pool_that_runs_out_of_directions_is_an_error():
    c, r, _ = structured(n_heads=1, d=16, m_texts=40, seed=0)
    low_rank = np.repeat(r[:3], 10, axis=0)  # 30 texts, 3 directions
    with pytest.raises(EditclipError, match="after 3 texts"):
        textspan(c, low_rank, m=4, variant="paper")
    with pytest.raises(EditclipError, match="width"):
        textspan(c, r[:, :8])


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_bench_runs_the_previous_implementation_and_finds_the_same_picks(variant, capsys):
    from editclip.cli import main

    args = ["bench", "textspan", "--n-heads", "3", "--images", "300", "--texts", "200", "--dim", "48", "--m", "12",
            "--k", "30", "--old-heads", "2", "--device", "cpu", "--variant", variant]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "same texts in the same order on the 2 heads run by both: yes" in out and "scaled" in out


def test_block_triangular_scatter_equals_the_full_product():
    from editclip._textspan_select import _symmetric_product

    x = torch.randn(2, 50, 70, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for block in (16, 30, 35, 64):
        torch.testing.assert_close(_symmetric_product(x, block=block), x.transpose(1, 2) @ x, rtol=1e-12, atol=1e-12)
