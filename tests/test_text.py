"""Text embeddings, their cache, and description pools (including the shipped general pool)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import editclip
from editclip.errors import EditclipError
from editclip.text import POOLS, encode_texts, load_pool


@pytest.fixture
def bb(tiny_bb):
    return tiny_bb


def test_encode_texts_is_unit_batched_and_template_averaged(bb, tmp_path):
    texts = ["a dog", "a cat", "a red car", "the sea at night", "a tower"]
    emb = encode_texts(bb, texts, batch_size=2, cache=False, progress=False)
    assert emb.shape == (5, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(emb, torch.nn.functional.normalize(bb.encode_text(texts), dim=-1))

    templates = ["a photo of {}.", "a drawing of {}."]
    tmpl = encode_texts(bb, texts, templates, batch_size=3, cache=False, progress=False)
    each = [torch.nn.functional.normalize(bb.encode_text([t.format(x) for x in texts]), dim=-1) for t in templates]
    torch.testing.assert_close(tmpl, torch.nn.functional.normalize(sum(each) / 2, dim=-1))
    named = encode_texts(bb, texts, "simple_imagenet", cache=False, progress=False)
    assert named.shape == (5, 32)


def test_encode_texts_caches_by_weights_texts_and_templates(bb, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITCLIP_CACHE", str(tmp_path))
    first = encode_texts(bb, ["a boat", "a kite"], progress=False)
    files = list((tmp_path / "text").glob(f"{bb.fingerprint}-*.safetensors"))
    assert len(files) == 1

    def refuse(texts):
        raise AssertionError("cached embeddings should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(bb, "encode_text", refuse)
        torch.testing.assert_close(encode_texts(bb, ["a boat", "a kite"], progress=False), first)
    encode_texts(bb, ["a boat", "a kite"], ["a photo of {}."], progress=False)
    encode_texts(bb, ["a boat", "a kite"], cache_dir=tmp_path / "elsewhere", progress=False)
    assert len(list((tmp_path / "text").glob("*.safetensors"))) == 2
    assert len(list((tmp_path / "elsewhere").glob("*.safetensors"))) == 1


def test_encode_texts_rejects_bad_input(bb):
    with pytest.raises(EditclipError, match="empty"):
        encode_texts(bb, [], cache=False)
    with pytest.raises(EditclipError, match="exactly one"):
        encode_texts(bb, ["a dog"], ["a photo"], cache=False)
    with pytest.raises(EditclipError, match="unknown template set"):
        encode_texts(bb, ["a dog"], "imagenet", cache=False)


def test_load_pool_reads_files_and_rejects_empty_or_missing_pools(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("# a comment\n\na red apple\n  a blue sky  \n#another\nsnow on a roof\n")
    assert load_pool(pool) == ["a red apple", "a blue sky", "snow on a roof"]
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    with pytest.raises(EditclipError, match="empty"):
        load_pool(empty)
    with pytest.raises(EditclipError, match="neither a shipped pool"):
        load_pool(tmp_path / "missing.txt")


def _normalise(line: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", line.lower()).split())


def test_general_pool_is_large_and_has_no_near_duplicates():
    pool = load_pool("general")
    assert len(pool) >= 3000
    seen: dict[str, str] = {}
    for line in pool:
        key = _normalise(line)
        assert key not in seen, f"near-duplicate lines: {seen[key]!r} and {line!r}"
        seen[key] = line


def test_shipped_pools_are_known():
    assert set(POOLS) == {"general", "toyworld"}
    toyworld = Path(editclip.__file__).parent / POOLS["toyworld"]
    if toyworld.is_file():
        assert load_pool("toyworld") == load_pool(toyworld)
