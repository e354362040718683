"""TextSpan, suggest and compile from a statistics file equal the store-based results (toy world, a tiny
random-weight open_clip ViT, a tiny SigLIP tower), and the commands that need per-image parts refuse one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import editclip
from editclip._textspan import HeadMoments, stats_heads, store_heads, textspan
from editclip.cli import main
from editclip.data import load_dataset
from editclip.stats import PartStats, accumulate_stats
from editclip.store import decompose_dataset
from editclip.suggest import HeadScore, head_scores, pick_top_k, semantic_scores, word_scores
from editclip.text import encode_texts, load_pool
from tests.test_pooled_towers import CASES, load_tiny
from tests.test_stats import _spec


def _close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-6) -> None:
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    assert a.shape == b.shape
    scale = b.abs().max().clamp_min(1e-12)
    assert float((a - b).abs().max() / scale) < rel, float((a - b).abs().max() / scale)


def _pair(bb: editclip.Backbone, data: Path, root: Path, convention: str = "exact", split: str = "train"):
    """A store and a statistics file of the same images, from the same forward batches (a batch of another size
    changes the model's own float32 outputs by rounding); the statistics merge 5 batches."""
    ds = load_dataset(data, split=split)
    store = decompose_dataset(bb, ds, root / f"store-{convention}", batch_size=4, chunk_size=8, convention=convention)
    stats = accumulate_stats(bb, ds, root / f"stats-{convention}.safetensors", batch_size=4, convention=convention)
    return store, PartStats.load(stats.path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[editclip.Backbone, Path]:
    """The shipped toy-world model and a small toy world (40 training images)."""
    from editclip.toyworld import load
    from editclip.toyworld.write import write_dataset

    root = tmp_path_factory.mktemp("world")
    return load(), write_dataset(root / "world", seed=3, counts=(40, 8, 8), progress=False)


@pytest.fixture(scope="module")
def world_pairs(world, tmp_path_factory):
    bb, data = world
    root = tmp_path_factory.mktemp("world-pairs")
    return {c: _pair(bb, data, root, c) for c in ("exact", "official")}


@pytest.fixture(scope="module")
def tiny_pairs(tiny_bb, tiny_waterbirds, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-pairs")
    return {c: _pair(tiny_bb, tiny_waterbirds, root, c) for c in ("exact", "official")}


def _same_textspan(a, b) -> None:
    assert torch.equal(a.indices, b.indices)
    assert torch.equal(a.rank, b.rank)
    assert (a.k_used is None) == (b.k_used is None) and (a.k_used is None or torch.equal(a.k_used, b.k_used))
    for name in ("explained", "basis", "mean", "total_variance", "residual"):
        _close(getattr(b, name), getattr(a, name))


CASES_TS = [("paper", {}), ("official", {"k": 80}), ("official", {"k": 6})]  # k=80 is capped at each head's rank


@pytest.mark.parametrize("variant,kw", CASES_TS, ids=["paper", "official-capped", "official-k6"])
@pytest.mark.parametrize("model", ["world", "tiny"])
def test_textspan_from_statistics_equals_the_store(model, variant, kw, request):
    bb = request.getfixturevalue("world")[0] if model == "world" else request.getfixturevalue("tiny_bb")
    store, stats = request.getfixturevalue(f"{model}_pairs")["exact"]
    texts = encode_texts(bb, load_pool("toyworld" if model == "world" else "general")[:300], progress=False)
    layers = list(range(bb.shape.layers))
    data, refs = store_heads(store, layers)
    moments, refs_stats = stats_heads(stats, layers)
    assert refs == refs_stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the capped k warns the same way on both routes
        a = textspan(data, texts, m=5, variant=variant, **kw)
        b = textspan(moments, texts, m=5, variant=variant, **kw)
    _same_textspan(a, b)
    if kw.get("k") == 80:  # the rank rule: head parts of width D live in a head_dim subspace
        assert a.rank.max() <= bb.shape.head_dim < 80 and torch.equal(a.k_used, a.rank)
    one = textspan(HeadMoments(moments.mean[3], moments.scatter[3], moments.count), texts, m=5, variant="paper")
    assert one.indices.tolist() == textspan(data[3], texts, m=5).indices.tolist()


def test_textspan_of_a_pooled_tower_from_statistics(tiny_waterbirds, tmp_path):
    bb = load_tiny(CASES["siglip"], seed=4)
    store, stats = _pair(bb, tiny_waterbirds, tmp_path)
    texts = encode_texts(bb, load_pool("general")[:200], progress=False)
    for variant in ("paper", "official"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = textspan(store_heads(store, [1])[0], texts, m=4, variant=variant, k=10)
            b = textspan(stats_heads(stats, [1])[0], texts, m=4, variant=variant, k=10)
        _same_textspan(a, b)


def test_textspan_command_reads_a_statistics_file(tiny_bb, tiny_pairs, tmp_path, capsys):
    store, stats = tiny_pairs["exact"]
    reports = {}
    for name, source in (("store", store.root), ("stats", stats.root)):
        out = tmp_path / name
        assert main(["textspan", "--store", str(source), "--pool", "toyworld", "--m", "4", "--layers", "last:2",
                     "--variant", "official", "--k", "12", "--out", str(out)]) == 0  # fmt: skip
        reports[name] = json.loads((out / "report.json").read_text())
    a, b = reports["store"], reports["stats"]
    assert b["stats"]["path"] == str(stats.root) and b["stats"]["fingerprint"] == a["store"]["fingerprint"]
    for head_a, head_b in zip(a["heads"], b["heads"], strict=True):
        assert (head_a["head"], head_a["rank"], head_a["k_used"]) == (head_b["head"], head_b["rank"], head_b["k_used"])
        assert [t["index"] for t in head_a["texts"]] == [t["index"] for t in head_b["texts"]]
        _close([t["explained"] for t in head_b["texts"]], [t["explained"] for t in head_a["texts"]])
        _close(head_b["total_variance"], head_a["total_variance"])


def test_compile_takes_textspan_bases_from_statistics(tiny_files, tiny_bb, tiny_waterbirds, tmp_path):
    ds = load_dataset(tiny_waterbirds, split="val")
    store = decompose_dataset(tiny_bb, ds, tmp_path / "store", batch_size=4, chunk_size=8)
    stats = accumulate_stats(tiny_bb, ds, tmp_path / "val.safetensors", batch_size=4, layers=[3])
    for variant in ("paper", "official"):
        edits = [{"project": {"head": "L3.H1", "away_from": {"textspan": {"pool": "toyworld", "m": 3,
                                                                          "variant": variant}}}}]  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = editclip.compile(_spec(tiny_files, tiny_waterbirds, "val", edits=edits), tiny_bb, store)
            spec = _spec(tiny_files, tiny_waterbirds, "val", edits=edits, stats=str(stats.path))
            b = editclip.compile(spec, tiny_bb, cache_dir=tmp_path / "never")
        assert not (tmp_path / "never").exists()
        assert a.provenance["bases"]["L3.H1"]["texts"] == b.provenance["bases"]["L3.H1"]["texts"]
        _close(b.tensors.project_linear, a.tensors.project_linear)
        _close(b.tensors.project_offset, a.tensors.project_offset)


GROUPS = [dict(spurious="place", label="y"), dict(spurious="place", label="y", by="head"),
          dict(spurious="place", label="y", score="ratio"), dict(spurious="place"),
          dict(spurious="y", label="place", layers="last:2")]  # fmt: skip


def _same_ranking(a, b) -> None:
    assert [s.head for s in a] == [s.head for s in b]
    for name in ("score", "share", "spurious", "label"):
        values = [getattr(s, name) for s in a]
        if values[0] is not None:
            _close([getattr(s, name) for s in b], values)


@pytest.mark.parametrize("convention", ["exact", "official"])
@pytest.mark.parametrize("model", ["world", "tiny"])
def test_suggest_groups_ranking_from_statistics_equals_the_store(model, convention, request):
    store, stats = request.getfixturevalue(f"{model}_pairs")[convention]
    for kw in GROUPS:
        _same_ranking(head_scores(store, progress=False, **kw), head_scores(stats, progress=False, **kw))


@pytest.mark.parametrize("model", ["world", "tiny"])
def test_suggest_texts_words_semantic_from_official_statistics(model, request):
    bb = request.getfixturevalue("world")[0] if model == "world" else request.getfixturevalue("tiny_bb")
    store, stats = request.getfixturevalue(f"{model}_pairs")["official"]
    directions = encode_texts(bb, ["water", "a forest", "a red square"], progress=False)
    for kw in ({}, {"spurious": "place", "label": "y"}):
        _same_ranking(head_scores(store, directions=directions, progress=False, **kw),
                      head_scores(stats, directions=directions, progress=False, **kw))  # fmt: skip
    pool = load_pool("toyworld")
    pool_emb = encode_texts(bb, pool, progress=False)
    a = word_scores(store, pool, pool_emb, ["water", "red"], m=4, progress=False)
    b = word_scores(stats, pool, pool_emb, ["water", "red"], m=4, progress=False)
    assert [(s.head, s.texts) for s in a] == [(s.head, s.texts) for s in b]
    _close([s.score for s in b], [s.score for s in a])
    a = semantic_scores(store, pool, pool_emb, directions, m=4, progress=False)
    b = semantic_scores(stats, pool, pool_emb, directions, m=4, progress=False)
    assert [(s.head, s.texts) for s in a] == [(s.head, s.texts) for s in b]
    _close([s.score for s in b], [s.score for s in a])


def test_suggest_command_reads_a_statistics_file(tiny_pairs, tmp_path, capsys):
    store, stats = tiny_pairs["exact"]
    rankings = {}
    for name, source in (("store", store.root), ("stats", stats.root)):
        out = tmp_path / f"{name}.json"
        assert main(["suggest", "--store", str(source), "--spurious", "place", "--label", "y", "--json",
                     str(out)]) == 0  # fmt: skip
        rankings[name] = json.loads(out.read_text())
    assert rankings["stats"]["heads"] == rankings["store"]["heads"]
    _same_ranking([HeadScore(**r) for r in rankings["store"]["ranking"]],
                  [HeadScore(**r) for r in rankings["stats"]["ranking"]])  # fmt: skip


@pytest.mark.parametrize("ranking", [["--words", "water"], ["--semantic", "water"], ["--texts", "water"]])
def test_suggest_refuses_exact_statistics_before_encoding_any_text(ranking, tiny_pairs, monkeypatch, capsys):
    _, exact = tiny_pairs["exact"]

    def no_encoding(*args, **kwargs):
        raise AssertionError("texts were encoded before the refusal")

    monkeypatch.setattr("editclip.text.encode_texts", no_encoding)
    assert main(["suggest", "--store", str(exact.root), *ranking, "--pool", "toyworld"]) == 2
    err = capsys.readouterr().err
    assert f"{ranking[0]}" in err and "'exact'-convention statistics" in err and "--convention official" in err


def test_what_statistics_cannot_serve_is_refused(tiny_bb, tiny_pairs, tmp_path):
    store, exact = tiny_pairs["exact"]
    directions = encode_texts(tiny_bb, ["water"], progress=False)
    with pytest.raises(editclip.EditclipError, match=r"--texts .* from statistics needs each head's scatter at the "
                       r"paper's scale .* 'exact'-convention statistics.*--convention official"):  # fmt: skip
        head_scores(exact, directions=directions, progress=False)
    pool = load_pool("toyworld")
    with pytest.raises(editclip.EditclipError, match=r"--words from statistics needs"):
        word_scores(exact, pool, encode_texts(tiny_bb, pool, progress=False), ["water"], progress=False)
    with pytest.raises(editclip.EditclipError, match=r"choosing k \(--pick\) mean-ablates .* give a decomposition"):
        pick_top_k(exact, ["L3.H0"], directions, "y", ["y", "place"])
    with pytest.raises(editclip.EditclipError, match=r"have no column 'colour'; their group columns are"):
        head_scores(exact, spurious="colour", progress=False)
    some = accumulate_stats(tiny_bb, load_dataset(store.meta["dataset"]["root"], split="train"),
                            tmp_path / "some.safetensors", layers=[0, 2], convention="official")  # fmt: skip
    with pytest.raises(editclip.EditclipError, match=r"scatters for layers L0,L2, not for the heads L3.H0-3; make "
                       r"statistics with `editclip stats --layers L0,L2-3`"):  # fmt: skip
        head_scores(some, directions=directions, layers="last:2", progress=False)
    _same_ranking(head_scores(tiny_pairs["official"][0], spurious="place", label="y", progress=False),
                  head_scores(some, spurious="place", label="y", progress=False))  # groups need no scatters


def _old_format(stats: PartStats, path: Path) -> Path:
    """The statistics as an editclip before the paper-scale sums wrote them."""
    tensors = {k: v for k, v in load_file(str(stats.root)).items() if "paper" not in k}
    save_file(tensors, str(path), metadata={"editclip_stats": json.dumps({**stats.meta, "count": stats.count})})
    return path


@pytest.mark.parametrize("case", ["truncated", "not-safetensors", "a-store-file", "no-scatter", "old-for-suggest",
                                  "pool-heads"])  # fmt: skip
def test_bad_statistics_on_the_command_line_exit_2_with_one_line(case, tiny_pairs, tmp_path, capsys):
    store, stats = tiny_pairs["exact"]
    args = ["textspan", "--pool", "toyworld", "--m", "3", "--layers", "last:2", "--out", str(tmp_path / "out")]
    message = ""
    if case == "truncated":
        path = tmp_path / "cut.safetensors"
        path.write_bytes(stats.root.read_bytes()[: stats.root.stat().st_size // 2])
        message = "is not a readable statistics file"
    elif case == "not-safetensors":
        path = tmp_path / "notes.safetensors"
        path.write_text("not statistics\n")
        message = "is not a readable statistics file"
    elif case == "a-store-file":
        path, message = store.root / "meta.json", "is not a readable statistics file"
    elif case == "no-scatter":
        path = tmp_path / "l0.safetensors"
        small = PartStats(dict(stats.meta, layers=[0]), dict(stats.tensors), path)
        small.tensors["scatter.heads"] = stats.tensors["scatter.heads"][:1].clone()
        small.save(path)
        message = "have head scatters for layers L0, not for the heads L2.H0-3, L3.H0-3; make statistics with " \
                  "`editclip stats --layers L0,L2-3`"  # fmt: skip
    elif case == "old-for-suggest":
        path = _old_format(stats, tmp_path / "old.safetensors")
        args = ["suggest", "--spurious", "place", "--label", "y"]
        message = "have no paper-scale sums"
    else:
        path, message = stats.root, "hold no scatters of the attention pool's heads"
        args[args.index("last:2")] = "pool"
    code = main([*args, "--store", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_curves_take_their_calibration_from_statistics(tiny_bb, tiny_waterbirds, tiny_pairs, tmp_path, capsys):
    store, stats = tiny_pairs["exact"]
    evaluated = decompose_dataset(tiny_bb, load_dataset(tiny_waterbirds, split="test"), tmp_path / "test", chunk_size=8)
    results = {}
    for name, calibration in (("store", store.root), ("stats", stats.root)):
        out = tmp_path / name
        assert main(["curves", "--store", str(evaluated.root), "--calibration", str(calibration), "--classes",
                     "landbird", "waterbird", "--templates", "a photo of a {}.", "--pool", "toyworld", "--last", "2",
                     "--m", "2", "4", "--variant", "official", "--k", "8", "--out", str(out)]) == 0  # fmt: skip
        results[name] = json.loads((out / "curves.json").read_text())
    a, b = results["store"], results["stats"]
    assert b["textspan"]["means_from"] == "calibration statistics"
    assert b["textspan"]["texts"] == a["textspan"]["texts"] and b["textspan"]["k_used"] == a["textspan"]["k_used"]
    for section, key in (("textspan", "accuracy"), ("ablation", "attention"), ("ablation", "mlps")):
        assert b[section][key] == a[section][key]
    assert b["ablation"]["cls_ablation"] == a["ablation"]["cls_ablation"]


@pytest.mark.parametrize("command", [
    ["retrieve", "--head", "L3.H0", "--text", "water"],
    ["curves", "--classes", "landbird", "waterbird", "--label", "y"],  # --store: the evaluated images
    ["suggest", "--spurious", "place", "--label", "y", "--classes", "landbird", "waterbird", "--pick"],
])  # fmt: skip
def test_commands_that_need_per_image_parts_refuse_statistics(command, tiny_pairs, tmp_path, capsys):
    stats = tiny_pairs["exact"][1]
    extra = [] if command[0] == "suggest" else ["--out", str(tmp_path / "out")]
    assert main([*command, "--store", str(stats.root), *extra]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("needs per-image parts" in err or "--pick mean-ablates" in err), err
    assert "statistics" in err


def test_statistics_of_another_convention_or_preprocessing_are_refused(tiny_files, tiny_bb, tiny_pairs,
                                                                       tiny_waterbirds, tmp_path):  # fmt: skip
    official = tiny_pairs["official"][1]
    with pytest.raises(editclip.EditclipError, match=r"uses the 'official' convention; edits need 'exact'"):
        editclip.compile(_spec(tiny_files, tiny_waterbirds, "train"), tiny_bb, official)
    exact = tiny_pairs["exact"][1]
    other = PartStats(dict(exact.meta, preprocessing={**exact.meta["preprocessing"], "mean": [0.5, 0.5, 0.5]}),
                      exact.tensors, exact.root)  # fmt: skip
    with pytest.raises(editclip.EditclipError, match=r"calibration statistics .*preprocessing"):
        editclip.compile(_spec(tiny_files, tiny_waterbirds, "train"), tiny_bb, other)
