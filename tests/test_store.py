"""The on-disk store: round trip, resume after an interruption, sharding, and the decompose command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import editclip
from editclip._decompose import decompose
from editclip.cli import main
from editclip.data import load_dataset
from editclip.store import DecompositionStore, backbone_for_store, decompose_dataset


def _stack_images(bb, ds) -> torch.Tensor:
    return torch.stack([ds.with_transform(bb.preprocess)[i][0] for i in range(len(ds))])


def test_store_round_trip_equals_in_memory(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="test")
    store = decompose_dataset(tiny_bb, ds, tmp_path / "s", batch_size=4, chunk_size=8, token_layers=[3])
    assert store.complete and store.count == 16 and store.n_chunks == 2
    d = store.load(token_layers=[3])
    ref = decompose(tiny_bb, _stack_images(tiny_bb, ds), token_layers=[3])
    for name in ("heads", "mlps", "embed", "biases", "norms"):
        torch.testing.assert_close(getattr(d, name), getattr(ref, name), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(d.tokens[3], ref.tokens[3], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(
        store.read("embedding"), tiny_bb.encode_image(_stack_images(tiny_bb, ds)), atol=1e-5, rtol=0
    )
    np.testing.assert_array_equal(store.column("place"), ds.columns["place"])
    # selective reads keep the caller's order and slice heads without loading the rest
    rows = [9, 2, 15, 2]
    torch.testing.assert_close(
        store.read("heads", index=(3, 1), rows=rows), ref.heads[rows, 3, 1], atol=1e-6, rtol=1e-5
    )
    torch.testing.assert_close(store.mean("heads"), ref.heads.mean(0), atol=1e-6, rtol=1e-5)
    assert backbone_for_store(store).fingerprint == tiny_bb.fingerprint


def test_interrupted_run_resumes_to_the_same_store(tiny_bb, tiny_waterbirds: Path, tmp_path: Path, monkeypatch) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    full = decompose_dataset(tiny_bb, ds, tmp_path / "full", batch_size=2, chunk_size=4)

    written = []
    original = DecompositionStore.write_chunk

    def crash_after_two(self, index, d, embedding):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(index)
        original(self, index, d, embedding)

    monkeypatch.setattr(DecompositionStore, "write_chunk", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        decompose_dataset(tiny_bb, ds, tmp_path / "resumed", batch_size=2, chunk_size=4)
    partial = DecompositionStore.open(tmp_path / "resumed")
    assert partial.missing_chunks() == [2, 3]
    assert not list((tmp_path / "resumed" / "chunks").glob("*.tmp"))  # no half-written chunk left
    with pytest.raises(editclip.EditclipError, match="incomplete: 2 of 4 chunks missing"):
        partial.read("heads")
    monkeypatch.setattr(DecompositionStore, "write_chunk", original)
    resumed = decompose_dataset(tiny_bb, ds, tmp_path / "resumed", batch_size=2, chunk_size=4)
    for name in ("heads", "mlps", "embed", "biases", "norms", "embedding"):
        assert torch.equal(resumed.read(name), full.read(name))


def test_shards_fill_one_store(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    first = decompose_dataset(tiny_bb, ds, tmp_path / "s", chunk_size=4, shard=(0, 2))
    assert first.missing_chunks() == [1, 3]
    second = decompose_dataset(tiny_bb, ds, tmp_path / "s", chunk_size=4, shard=(1, 2))
    assert second.complete
    whole = decompose_dataset(tiny_bb, ds, tmp_path / "whole", chunk_size=4)
    assert torch.equal(second.read("heads"), whole.read("heads"))


def test_a_store_of_other_data_is_not_resumed(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    decompose_dataset(tiny_bb, load_dataset(tiny_waterbirds, split="val"), tmp_path / "s", chunk_size=4)
    with pytest.raises(editclip.EditclipError, match="holds another decomposition"):
        decompose_dataset(tiny_bb, load_dataset(tiny_waterbirds, split="test"), tmp_path / "s", chunk_size=4)


def test_decompose_command(tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "store"
    args = ["decompose", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]),
            "--data", str(tiny_waterbirds), "--split", "val", "--out", str(out), "--token-layers", "last:2",
            "--convention", "official"]  # fmt: skip
    assert main(args) == 0
    assert "16 images" in capsys.readouterr().out
    store = DecompositionStore.open(out)
    assert store.token_layers == [2, 3] and store.convention == "official"
    d = store.load()
    total = d.total()
    torch.testing.assert_close(total.norm(dim=-1), torch.ones(16), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "ViT-Nope"], "unknown open_clip model 'ViT-Nope'"),
        (["--model", "RN50"], "'RN50': the image tower is a ResNet"),
        (["--model", "coca_ViT-B-32"], "CoCa models have an attention-pooled image tower"),
        (["--model", "EVA02-B-16"], "EVA towers (timm Eva: rotary position embeddings, SwiGLU MLPs)"),
        (["--model", "ViT-B-32", "--token-layers", "L40"], "layer 40 is out of range; this model has layers 0..11"),
        (["--model", "ViT-B-32", "--split", "holdout"], "split 'holdout' is unknown"),
        (["--model", "ViT-B-32", "--batch-size", "0"], "--batch-size and --chunk-size must be positive"),
        (["--model", "ViT-B-32", "--shard", "3/2"], "--shard '3/2': need 0 <= K < N"),
        (
            ["--checkpoint", "missing.safetensors", "--model-config", "x.json"],
            "checkpoint 'missing.safetensors' does not exist",
        ),
        ([], "name a model"),
    ],
)
def test_decompose_command_errors(extra, message, tiny_waterbirds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    code = main(["decompose", "--data", str(tiny_waterbirds), "--out", str(out), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_missing_data_is_reported_before_anything_is_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["decompose", "--model", "ViT-B-32", "--data", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
