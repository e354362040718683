"""Layer-subset stores (`decompose --layers`): the other layers' heads are stored summed (L<l>.attn), the parts
still sum to the embedding, and every consumer either works on the held layers or refuses by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import editclip
from editclip import cli
from editclip._compile import compile_edit
from editclip.controls import HeadAction, control_pool, head_set_scores
from editclip.curves import ablation_curve, textspan_curve
from editclip.data import load_dataset
from editclip.evaluation_paths import fast_embeddings
from editclip.spec import EditSpec
from editclip.store import DecompositionStore, decompose_dataset
from editclip.suggest import head_scores, pick_top_k
from tests.test_pooled_towers import CASES, load_tiny


def _total(store: DecompositionStore) -> torch.Tensor:
    total = store.read("embed") + store.read("heads").sum((1, 2)) + store.read("mlps").sum(1)
    total = total + store.read("biases").sum(1) + store.const()
    if store.summed_layers:
        total = total + store.read("attn").sum(1)
    for name in ("pool_mlp", "pool_heads"):
        if store.has_field(name):
            part = store.read(name)
            total = total + (part.sum(1) if part.ndim == 3 else part)
    return total


@pytest.fixture(scope="module")
def stores(tiny_bb, tiny_waterbirds: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("subset")
    ds = load_dataset(tiny_waterbirds, split="val")
    full = decompose_dataset(tiny_bb, ds, root / "full", chunk_size=8, batch_size=4)
    subset = decompose_dataset(tiny_bb, ds, root / "last2", layers=[2, 3], chunk_size=8, batch_size=4)
    return full, subset


@pytest.mark.parametrize("convention", ["exact", "official"])
def test_subset_parts_sum_to_the_embedding_and_match_the_full_store(
    tiny_bb, tiny_waterbirds: Path, tmp_path: Path, convention: str
) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    full = decompose_dataset(tiny_bb, ds, tmp_path / "f", convention=convention, chunk_size=8)
    subset = decompose_dataset(tiny_bb, ds, tmp_path / "s", convention=convention, layers=[0, 3], chunk_size=8)
    assert subset.head_layers == [0, 3] and subset.summed_layers == [1, 2]
    assert subset.read("heads").shape[1] == 2 and subset.read("attn").shape[1:] == (2, 32)
    target = subset.read("embedding")
    if convention == "official":
        target = target / target.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(_total(subset), target, atol=1e-5, rtol=0)
    torch.testing.assert_close(subset.read("heads", index=(3, 2)), full.read("heads", index=(3, 2)), atol=0, rtol=0)
    for layer in range(4):  # summed layers: exactly the full store's heads summed
        torch.testing.assert_close(subset.layer_attention(layer), full.layer_attention(layer), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(subset.mean_layer_attention(), full.mean_layer_attention(), atol=1e-6, rtol=1e-5)
    assert "heads of L0,L3 only" in repr(subset)


def test_pooled_tower_subset_store_sums_to_the_embedding(tiny_waterbirds: Path, tmp_path: Path) -> None:
    bb = load_tiny(CASES["siglip"], seed=1)
    ds = load_dataset(tiny_waterbirds, split="val")
    n_layers = bb.shape.layers
    subset = decompose_dataset(bb, ds, tmp_path / "s", layers=[n_layers - 1], chunk_size=8)
    full = decompose_dataset(bb, ds, tmp_path / "f", chunk_size=8)
    assert subset.summed_layers == list(range(n_layers - 1)) and subset.has_field("pool_mlp")
    torch.testing.assert_close(_total(subset), subset.read("embedding"), atol=1e-5, rtol=0)
    torch.testing.assert_close(subset.layer_attention(0), full.layer_attention(0), atol=1e-6, rtol=1e-5)
    with pytest.raises(editclip.EditclipError, match="official convention of a attn-pooled tower has no per-layer"):
        decompose_dataset(bb, ds, tmp_path / "o", convention="official", layers=[0])


def test_reads_of_summed_heads_are_refused_by_name(stores) -> None:
    _, subset = stores
    with pytest.raises(editclip.EditclipError, match=r"holds the heads of layers L2-3 only .*head L1\.H3 needs the "
                       r"heads of L1"):  # fmt: skip
        subset.read("heads", index=(1, 3))
    with pytest.raises(editclip.EditclipError, match="the summed attention"):
        subset.load()
    with pytest.raises(editclip.EditclipError, match="not by a slice"):
        subset.read("heads", index=(slice(0, 2),))
    torch.testing.assert_close(subset.read("heads", index=([3, 2],)), subset.read("heads")[:, [1, 0]])


def test_resuming_with_other_layers_is_refused(tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "s"
    args = ["decompose", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]),
            "--data", str(tiny_waterbirds), "--split", "val", "--out", str(out), "--chunk-size", "8"]  # fmt: skip
    assert cli.main([*args, "--layers", "last:2"]) == 0
    assert DecompositionStore.open(out).meta["head_layers"] == [2, 3]
    assert cli.main([*args, "--layers", "last:2"]) == 0  # the same layers: resumes (complete)
    capsys.readouterr()
    assert cli.main([*args, "--layers", "last:3"]) == 2
    err = capsys.readouterr().err
    assert "'head_layers' differs: the store holds the heads of L2-3, this run asks for L1-3 (--layers)" in err
    assert cli.main(args) == 2  # all layers is another store too
    assert "this run asks for L0-3" in capsys.readouterr().err


def test_compile_and_fast_path_on_a_subset_store(tiny_files, tiny_bb, tiny_waterbirds: Path, stores) -> None:
    full, subset = stores

    def spec(heads: list[str]) -> EditSpec:
        return EditSpec.from_dict({
            "editclip": 1, "model": {"checkpoint": str(tiny_files[0]), "config": str(tiny_files[1])},
            "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
            "edits": [{"mean_ablate": heads}, {"project": {"head": "L3.H0", "away_from": {"texts": ["water"]}}}],
        })  # fmt: skip

    on_subset = compile_edit(spec(["L2.H1", "L3.H3"]), tiny_bb, subset)
    on_full = compile_edit(spec(["L2.H1", "L3.H3"]), tiny_bb, full)
    for name in ("ablate_head_means", "project_offset", "project_linear"):
        torch.testing.assert_close(getattr(on_subset.tensors, name), getattr(on_full.tensors, name))
    # the fast path maps the edit's heads to the subset store's layers: same edited embeddings
    torch.testing.assert_close(fast_embeddings(subset, on_full.tensors, progress=False),
                               fast_embeddings(full, on_full.tensors, progress=False), atol=1e-5, rtol=0)  # fmt: skip
    with pytest.raises(editclip.EditclipError, match=r"L2-3 only .*the spec's head L0\.H2 needs the heads of L0"):
        compile_edit(spec(["L0.H2"]), tiny_bb, subset)
    elsewhere = compile_edit(spec(["L1.H0"]), tiny_bb, full)
    with pytest.raises(editclip.EditclipError, match=r"the edit's head L1\.H0 needs the heads of L1"):
        fast_embeddings(subset, elsewhere.tensors, progress=False)


def test_curves_on_a_subset_store(stores) -> None:
    full, subset = stores
    classifier = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    labels = torch.from_numpy(full.column("y"))
    a, b = ablation_curve(full, classifier, labels), ablation_curve(subset, classifier, labels)
    assert a["attention"] == b["attention"] and a["mlps"] == b["mlps"]  # layer curves need only the layer sums
    texts = torch.nn.functional.normalize(torch.randn(12, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    c = textspan_curve(full, classifier, labels, texts, [1, 3], last=2)
    d = textspan_curve(subset, classifier, labels, texts, [1, 3], last=2)
    assert c["accuracy"] == d["accuracy"] and c["texts"] == d["texts"]
    with pytest.raises(editclip.EditclipError, match="the TextSpan curve of the last 3 layers needs the heads of L1"):
        textspan_curve(subset, classifier, labels, texts, [1], last=3)


def test_suggest_and_controls_rank_only_the_held_heads(stores) -> None:
    full, subset = stores
    ranked = head_scores(subset, spurious="place", label="y", progress=False)
    assert sorted({s.head.split(".")[0] for s in ranked}) == ["L2", "L3"]
    reference = head_scores(full, spurious="place", label="y", layers="last:2", progress=False)
    assert [s.head for s in ranked] == [s.head for s in reference]
    with pytest.raises(editclip.EditclipError, match="layers all needs the heads of L0-1"):
        head_scores(subset, spurious="place", label="y", layers="all", progress=False)
    classifier = torch.nn.functional.normalize(torch.randn(2, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    top = [s.head for s in ranked[:3]]
    assert pick_top_k(subset, top, classifier, "y", ["y", "place"]) == pick_top_k(full, top, classifier, "y",
                                                                                  ["y", "place"])  # fmt: skip
    with pytest.raises(editclip.EditclipError, match=r"head L0\.H1 of the ranking needs the heads of L0"):
        pick_top_k(subset, ["L0.H1"], classifier, "y", ["y", "place"])
    layers, pool = control_pool([9], "all", 4, 4, subset.head_layers)
    assert layers == [2, 3] and pool == list(range(8, 16))
    with pytest.raises(editclip.EditclipError, match="not those of L0-1"):
        control_pool([9], "L0-3", 4, 4, subset.head_layers)
    sets = [[9, 14], [8, 9, 10, 11]]
    for action in (HeadAction("mean_ablate"),):
        a = head_set_scores(full, full, sets, action, classifier, progress=False, keep_scores=True)[1]
        b = head_set_scores(subset, subset, sets, action, classifier, progress=False, keep_scores=True)[1]
        torch.testing.assert_close(a, b)
    with pytest.raises(editclip.EditclipError, match="the controls need the heads of L0"):
        head_set_scores(full, subset, [[1]], HeadAction("mean_ablate"), classifier, progress=False)


def test_textspan_and_retrieve_commands_on_a_subset_store(stores, tmp_path: Path, capsys) -> None:
    full, subset = stores
    args = ["textspan", "--pool", "toyworld", "--m", "2", "--layers", "last:2"]
    assert cli.main([*args, "--store", str(subset.root), "--out", str(tmp_path / "a")]) == 0
    assert cli.main([*args, "--store", str(full.root), "--out", str(tmp_path / "b")]) == 0
    reports = [json.loads((tmp_path / name / "report.json").read_text()) for name in ("a", "b")]
    assert reports[0]["heads"] == reports[1]["heads"]
    capsys.readouterr()
    assert cli.main(["textspan", "--pool", "toyworld", "--m", "2", "--layers", "all", "--store", str(subset.root),
                     "--out", str(tmp_path / "c")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "holds the heads of layers L2-3 only" in err and "--layers all needs the heads of L0-1" in err
    assert not (tmp_path / "c").exists()
    assert cli.main(["retrieve", "--store", str(subset.root), "--head", "L1.H0", "--text", "water",
                     "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    assert "--head L1.H0 needs the heads of L1" in capsys.readouterr().err
