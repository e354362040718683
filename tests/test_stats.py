"""Streaming statistics: equal to the same sums over a store, independent of batching, merge, resume, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomise

import editclip
from editclip.cli import main
from editclip.data import load_dataset
from editclip.stats import PartStats, accumulate_stats
from editclip.store import decompose_dataset

OTHER_CONFIG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 3, "width": 48, "patch_size": 16, "head_width": 12},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def other_bb(tmp_path_factory: pytest.TempPathFactory) -> editclip.Backbone:
    config = tmp_path_factory.mktemp("other-model") / "other.json"
    config.write_text(json.dumps(OTHER_CONFIG))
    torch.manual_seed(1)
    bb = editclip.load(config=config)
    randomise(bb.model, seed=1)
    return bb


@pytest.fixture(params=["tiny", "other"])
def bb(request, tiny_bb):
    return tiny_bb if request.param == "tiny" else request.getfixturevalue("other_bb")


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> None:
    a, b = a.double(), b.double()
    assert a.shape == b.shape
    if not b.numel():
        return
    scale = b.abs().max().clamp_min(1e-12)
    assert float((a - b).abs().max() / scale) < rel


def test_stats_equal_the_sums_over_a_store(bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    store = decompose_dataset(bb, ds, tmp_path / "store", batch_size=4, chunk_size=8)
    stats = accumulate_stats(bb, ds, tmp_path / "s.safetensors", batch_size=3)
    assert stats.count == 16 and stats.layers == list(range(bb.shape.layers))
    for name in ("heads", "mlps", "embed", "biases", "norms"):
        _close(stats.mean(name), store.mean(name))
    heads = store.read("heads").double()
    for layer, head in [(0, 0), (bb.shape.layers - 1, bb.shape.heads - 1)]:
        x = heads[:, layer, head]
        xc = x - x.mean(0)
        _close(stats.scatter(layer, head), xc.T @ xc)
    place, y = store.column("place"), store.column("y")
    for key, labels in (("place", place.astype(str)), ("y,place", np.char.add(np.char.add(y.astype(str), ","),
                                                                               place.astype(str)))):  # fmt: skip
        means = stats.group_means(key)
        assert sorted(means) == sorted(set(labels.tolist()))
        for value, (count, mean) in means.items():
            rows = np.flatnonzero(labels == value)
            assert count == len(rows)
            _close(mean, heads[rows].mean(0))
    loaded = PartStats.load(tmp_path / "s.safetensors")
    assert loaded.meta["fingerprint"] == bb.fingerprint and loaded.meta["count"] == 16
    assert loaded.meta["dataset"] == ds.describe() and loaded.convention == "exact"
    for name, value in stats.tensors.items():
        assert torch.equal(loaded.tensors[name], value) and value.dtype == torch.float64


def test_batching_order_and_merging_do_not_change_the_statistics(tiny_bb, tiny_waterbirds: Path, tmp_path) -> None:
    ds = load_dataset(tiny_waterbirds, split="test")
    whole = accumulate_stats(tiny_bb, ds, tmp_path / "whole", batch_size=16)
    small = accumulate_stats(tiny_bb, ds, tmp_path / "small", batch_size=1)
    half_a = accumulate_stats(tiny_bb, ds.subset(list(range(9, 16))), tmp_path / "a", batch_size=5)
    half_b = accumulate_stats(tiny_bb, ds.subset(list(range(9))), tmp_path / "b", batch_size=2)
    half_a.meta["groups"] = half_b.meta["groups"]  # both halves hold every group value here
    half_a.merge(half_b)
    for other in (small, half_a):
        assert other.count == whole.count
        for name, value in whole.tensors.items():
            _close(other.tensors[name], value)


def test_layer_subset_keeps_only_those_scatters(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    full = accumulate_stats(tiny_bb, ds, tmp_path / "full", batch_size=8)
    last = accumulate_stats(tiny_bb, ds, tmp_path / "last", layers=[3, 2], batch_size=8)
    assert last.layers == [2, 3] and last.tensors["scatter.heads"].shape[0] == 2
    assert torch.allclose(last.scatter(3, 1), full.scatter(3, 1), rtol=1e-12, atol=0)
    with pytest.raises(editclip.EditclipError, match="scatters for layers \\[2, 3\\], not layer 0"):
        last.scatter(0, 0)


def test_an_interrupted_run_resumes_from_its_partial_sums(tiny_bb, tiny_waterbirds, tmp_path, monkeypatch) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    full = accumulate_stats(tiny_bb, ds, tmp_path / "full", batch_size=2)
    added = []
    original = PartStats.add

    def crash_after_five(self, d, groups=None, embedding=None):
        if len(added) == 5:
            raise KeyboardInterrupt
        added.append(len(d))
        original(self, d, groups, embedding)

    monkeypatch.setattr(PartStats, "add", crash_after_five)
    out = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        accumulate_stats(tiny_bb, ds, out, batch_size=2, save_every=2)
    partial = out.with_name(out.name + ".partial-0-of-1")
    assert not out.exists() and PartStats.load(partial).meta["done"] == 8
    monkeypatch.setattr(PartStats, "add", original)
    seen = []
    monkeypatch.setattr(PartStats, "add", lambda self, d, groups=None, embedding=None: (seen.append(len(d)),
                                                                           original(self, d, groups, embedding)))
    resumed = accumulate_stats(tiny_bb, ds, out, batch_size=2, save_every=2)
    assert sum(seen) == 8 and not partial.exists()  # only the images after the partial sums were computed
    for name, value in full.tensors.items():
        _close(resumed.tensors[name], value)
    with pytest.raises(editclip.EditclipError, match="partial statistics of another run \\('dataset' differs\\)"):
        PartStats.load(out).save(partial)  # a partial file of the whole val split ...
        accumulate_stats(tiny_bb, load_dataset(tiny_waterbirds, split="test"), out, batch_size=2)  # ... not test


def test_stats_command_and_its_errors(tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "val.safetensors"
    args = ["stats", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]),
            "--data", str(tiny_waterbirds), "--split", "val", "--out", str(out), "--layers", "last:2"]  # fmt: skip
    assert main(args) == 0
    assert "statistics of 16 images" in capsys.readouterr().out
    assert PartStats.load(out).layers == [2, 3]
    assert main(args) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--layers", "L9"]) == 2
    assert "layer 9 is out of range" in capsys.readouterr().err
    not_stats = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(not_stats))
    for path, message in ((not_stats, "not an editclip statistics file"), (tmp_path / "gone", "does not exist")):
        with pytest.raises(editclip.EditclipError, match=message):
            PartStats.load(path)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(editclip.EditclipError, match="not a readable statistics file"):
        PartStats.load(tmp_path / "junk.safetensors")


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tiny_files, tiny_waterbirds: Path, tmp_path: Path) -> None:
    common = ["--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]), "--data",
              str(tiny_waterbirds), "--split", "train", "--batch-size", "3"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two.safetensors"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "editclip.cli", "stats", *common, "--out", str(two)]  # fmt: skip
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main(["stats", *common, "--out", str(tmp_path / "one.safetensors")]) == 0
    one, both = PartStats.load(tmp_path / "one.safetensors"), PartStats.load(two)
    assert both.count == one.count == 16 and not list(tmp_path.glob("*.partial-*"))
    for name, value in one.tensors.items():
        _close(both.tensors[name], value)


def _spec(tiny_files, root: Path, split: str, edits=None, **calibration) -> editclip.EditSpec:
    spec = {
        "editclip": 1,
        "model": {"checkpoint": str(tiny_files[0]), "config": str(tiny_files[1])},
        "calibration": {"data": {"root": str(root), "split": split}, **calibration},
        "edits": [{"mean_ablate": {"heads": ["L3.H2"], "layers": "L1", "parts": "attention", "embed": True}},
                  {"mean_ablate": {"layers": "L2", "parts": "mlp"}},
                  {"project": {"head": "L0.H1", "away_from": {"texts": ["red", "blue"]}}}],
    }  # fmt: skip
    return editclip.EditSpec.from_dict({**spec, "edits": edits or spec["edits"]})


def test_compile_from_statistics_equals_compile_from_a_store(tiny_files, tiny_bb, tiny_waterbirds, tmp_path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    accumulate_stats(tiny_bb, ds, tmp_path / "val.safetensors", layers=[3], batch_size=5)
    store = decompose_dataset(tiny_bb, ds, tmp_path / "store", batch_size=4)
    from_store = editclip.compile(_spec(tiny_files, tiny_waterbirds, "val"), tiny_bb, store)
    spec = _spec(tiny_files, tiny_waterbirds, "val", stats=str(tmp_path / "val.safetensors"))
    from_stats = editclip.compile(spec, tiny_bb, cache_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()  # no per-image store was made
    assert from_stats.provenance["stats"] == str(tmp_path / "val.safetensors")
    assert from_stats.tensors.ablate_biases.tolist() == [1]
    for name, value in vars(from_store.tensors).items():
        if value.dtype.is_floating_point:
            _close(getattr(from_stats.tensors, name), value)
        else:
            assert torch.equal(getattr(from_stats.tensors, name), value)
    with pytest.raises(editclip.EditclipError, match="holds 16 images of 'waterbirds' \\(split val\\); the spec's"):
        editclip.compile(_spec(tiny_files, tiny_waterbirds, "test", stats=spec.calibration.stats), tiny_bb)


def test_statistics_of_other_weights_or_without_the_scatter_are_refused(tiny_files, tiny_bb, other_bb, tiny_waterbirds,
                                                                        tmp_path) -> None:  # fmt: skip
    ds = load_dataset(tiny_waterbirds, split="val")
    other = accumulate_stats(other_bb, ds, tmp_path / "other.safetensors", batch_size=8)
    with pytest.raises(editclip.EditclipError, match=r"calibration statistics .* was made with other weights"):
        editclip.compile(_spec(tiny_files, tiny_waterbirds, "val"), tiny_bb, other)
    mine = accumulate_stats(tiny_bb, ds, tmp_path / "mine.safetensors", batch_size=8, layers=[0, 1])
    textspan = {"project": {"head": "L3.H0", "onto": {"textspan": {"pool": "general", "m": 2}}}}
    with pytest.raises(editclip.EditclipError, match=r"scatters for layers L0-1, not for the heads L3.H0-3; make "
                       r"statistics with `editclip stats --layers L0-1,L3`"):  # fmt: skip
        editclip.compile(_spec(tiny_files, tiny_waterbirds, "val", edits=[textspan]), tiny_bb, mine)
