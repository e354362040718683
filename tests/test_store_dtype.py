"""float16 stores: every part is the float32 part rounded to float16, and the embedding the float16 parts sum
to stays within the rounding of the parts (the README's measured numbers come from scripts/fp16_store_error.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from editclip.data import load_dataset
from editclip.store import decompose_dataset


def test_float16_parts_are_the_rounded_float32_parts(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    full = decompose_dataset(tiny_bb, ds, tmp_path / "f32", chunk_size=8)
    half = decompose_dataset(tiny_bb, ds, tmp_path / "f16", chunk_size=8, dtype="float16", layers=[3])
    assert half.read("heads", index=(3,)).dtype == torch.float32  # read back as float32
    for name in ("mlps", "embed", "biases", "embedding"):
        assert torch.equal(half.read(name), full.read(name).half().float())
    assert torch.equal(half.read("heads", index=(3,)), full.read("heads", index=(3,)).half().float())
    parts = [half.read(n).double() for n in ("mlps", "biases", "attn")]
    total = half.read("embed").double() + half.read("heads").double().sum((1, 2)) + sum(p.sum(1) for p in parts)
    z = full.read("embedding").double()
    error = (total + half.const().double() - z).norm(dim=-1) / z.norm(dim=-1)
    # each part is off by at most 2^-11 of itself: the sum by at most that of the parts' summed norms
    magnitudes = sum(p.norm(dim=-1).sum(1) for p in parts) + half.read("heads").double().norm(dim=-1).sum((1, 2))
    assert (error * z.norm(dim=-1) <= 2**-11 * (magnitudes + half.read("embed").double().norm(dim=-1)) + 1e-6).all()
    assert 0 < error.max() < 1e-2
