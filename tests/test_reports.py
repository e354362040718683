"""Head reports, curves and retrieval from the command line, on a tiny stored decomposition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from editclip.cli import main
from editclip.curves import ablation_curve, textspan_curve
from editclip.data import load_dataset
from editclip.errors import EditclipError
from editclip.store import DecompositionStore, decompose_dataset
from editclip.text import load_pool


@pytest.fixture(autouse=True)
def text_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDITCLIP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def stores(tiny_bb, tiny_waterbirds, tmp_path_factory) -> dict[str, Path]:
    """Decompositions of the tiny Waterbirds train and test splits."""
    root = tmp_path_factory.mktemp("stores")
    for split in ("train", "test"):
        decompose_dataset(tiny_bb, load_dataset(tiny_waterbirds, split=split), root / split, chunk_size=8)
    return {"train": root / "train", "test": root / "test"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "pool.txt"
    path.write_text("\n".join(load_pool("general")[::40]) + "\n")  # ~100 varied lines
    return path


def test_textspan_report(stores, pool, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["textspan", "--store", str(stores["train"]), "--pool", str(pool), "--m", "5",
                 "--layers", "last:2", "--variant", "official", "--k", "12", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [h["head"] for h in report["heads"]] == [f"L{layer}.H{h}" for layer in (2, 3) for h in range(4)]
    lines = set(load_pool(pool))
    for head in report["heads"]:
        explained = [t["explained"] for t in head["texts"]]
        assert len(explained) == 5 and np.all(np.diff(explained) >= 0) and 0 < explained[-1] <= 1
        assert {t["text"] for t in head["texts"]} <= lines
    assert report["k"] == 12 and all(h["k_used"] == 12 and h["rank"] >= 12 for h in report["heads"])
    markdown = (out / "report.md").read_text()
    assert "## L3.H1" in markdown and report["heads"][0]["texts"][0]["text"] in markdown
    assert f"| {report['heads'][0]['rank']} | 12 |" in markdown
    assert (out / "overview.png").read_bytes()[:4] == b"\x89PNG"
    assert "L2.H0" in capsys.readouterr().out
    insisted = tmp_path / "insisted"
    assert main(["textspan", "--store", str(stores["train"]), "--pool", str(pool), "--m", "3", "--layers",
                 "last:1", "--variant", "official", "--k", "14", "--insist-k", "--out", str(insisted)]) == 0
    assert {h["k_used"] for h in json.loads((insisted / "report.json").read_text())["heads"]} == {14}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "L9"], "layer 9 is out of range"),
        (["--layers", "L1-x"], "bad layer selection"),
        (["--m", "500"], "--m 500 is out of range"),
        (["--pool", "no-such-pool.txt"], "neither a shipped pool"),
        (["--pool", "EMPTY"], "is empty"),
        (["--store", "MISSING"], "not a decomposition store"),
    ],
)
def test_textspan_bad_input_exits_2_and_writes_nothing(stores, pool, tmp_path, capsys, args, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    options = {"--store": str(stores["train"]), "--pool": str(pool), "--m": "3", "--layers": "last:1"}
    assert_refused("textspan", options, args, message, tmp_path, capsys, EMPTY=str(empty))


def assert_refused(command, options, changes, message, tmp_path, capsys, **placeholders):
    """Run `command` with `options` updated by the flag/value pairs `changes` (MISSING: a path that does
    not exist; other placeholders by name); it must exit 2 with `message` and create no --out."""
    placeholders["MISSING"] = str(tmp_path / "missing")
    options = dict(options)
    for flag, value in zip(changes[::2], changes[1::2], strict=True):
        options[flag] = placeholders.get(value, value)
    out = tmp_path / "out"
    lists = ("--classes", "--m")  # space-separated lists: "a b" is two items
    argv = [x for flag, value in options.items() for x in (flag, *(value.split() if flag in lists else [value]))]
    assert main([command, *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _accuracy(z, classifier, labels):
    return float(((z @ classifier.T).argmax(-1) == labels).double().mean())


@pytest.fixture(scope="module")
def classifier(stores):
    """A random 2-class classifier whose predictions vary over the tiny images."""
    gen = torch.Generator().manual_seed(1)
    store = DecompositionStore.open(stores["test"])
    return torch.nn.functional.normalize(torch.randn(2, store.meta["shape"]["embed_dim"], generator=gen), dim=-1)


def test_ablation_curve_matches_a_direct_computation(stores, classifier):
    store, calib = DecompositionStore.open(stores["test"]), DecompositionStore.open(stores["train"])
    labels = torch.from_numpy(store.column("y"))
    curve = ablation_curve(store, classifier, labels, calib)
    d, c = store.load(), calib.load()
    z = d.total()
    attn = d.heads.sum(2) + d.biases  # [N, L, D]
    mean_attn = (c.heads.sum(2) + c.biases).mean(0)
    for k in range(d.n_layers + 1):
        expected = z - attn[:, :k].sum(1) + mean_attn[:k].sum(0)
        assert curve["attention"][k] == pytest.approx(_accuracy(expected, classifier, labels))
        expected = z - d.mlps[:, :k].sum(1) + c.mlps[:, :k].mean(0).sum(0)
        assert curve["mlps"][k] == pytest.approx(_accuracy(expected, classifier, labels))
    everything = z - d.mlps.sum(1) - d.embed + c.mlps.mean(0).sum(0) + c.embed.mean(0)
    assert curve["all_mlps_and_embed"] == pytest.approx(_accuracy(everything, classifier, labels))
    assert curve["means_from"] == "a separate calibration store"


def test_textspan_curve_limits(stores, classifier):
    """m = 0 mean-ablates the heads; a complete basis (m = D) reconstructs them exactly."""
    store = DecompositionStore.open(stores["test"])
    labels = torch.from_numpy(store.column("y"))
    dim = store.meta["shape"]["embed_dim"]
    texts = torch.nn.functional.normalize(torch.randn(dim + 8, dim, generator=torch.Generator().manual_seed(2)), dim=-1)
    curve = textspan_curve(store, classifier, labels, texts, [4, dim], last=2, variant="paper")
    assert curve["m"] == [0, 4, dim] and curve["means_from"] == "the evaluated store itself"
    d = store.load()
    z = d.total()
    assert curve["original"] == pytest.approx(_accuracy(z, classifier, labels))
    first = d.heads[:, :2].sum(2) + d.biases[:, :2]  # [N, 2, D] the attention layers before the last two
    early = z - first.sum(1) + first.mean(0).sum(0)
    assert curve["early_ablated"] == pytest.approx(_accuracy(early, classifier, labels))
    assert curve["accuracy"][-1] == pytest.approx(curve["early_ablated"])
    late = d.heads[:, 2:]
    ablated = early - late.sum((1, 2)) + late.mean(0).sum((0, 1))
    assert curve["accuracy"][0] == pytest.approx(_accuracy(ablated, classifier, labels))
    assert set(curve["texts"]) == {f"L{layer}.H{h}" for layer in (2, 3) for h in range(4)}


def test_curves_command(stores, pool, tmp_path, capsys):
    out = tmp_path / "curves"
    code = main(["curves", "--store", str(stores["test"]), "--calibration", str(stores["train"]),
                 "--classes", "landbird", "waterbird", "--templates", "a photo of a {}.", "--pool", str(pool),
                 "--last", "2", "--m", "2", "4", "--out", str(out)])  # fmt: skip
    assert code == 0
    result = json.loads((out / "curves.json").read_text())
    assert len(result["ablation"]["attention"]) == 5 and result["textspan"]["m"] == [0, 2, 4]
    assert result["textspan"]["calibration"]["path"] == str(stores["train"])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "a separate calibration store" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--m", "0 4"], "--m values must be in 1.."),
        (["--last", "9"], "--last 9 is out of range"),
        (["--classes", "bird"], "at least two classes"),
        (["--label", "colour"], "has no column 'colour'"),
        (["--calibration", "MISSING"], "not a decomposition store"),
    ],
)
def test_curves_bad_input_exits_2_and_writes_nothing(stores, pool, tmp_path, capsys, args, message):
    options = {"--store": str(stores["test"]), "--classes": "a b", "--pool": str(pool), "--m": "2",
               "--last": "1"}  # fmt: skip
    assert_refused("curves", options, args, message, tmp_path, capsys)


def test_retrieval_ranks_by_the_head_contribution(stores, tmp_path, capsys):
    store = DecompositionStore.open(stores["test"])
    query_id = store.ids[3]
    out = tmp_path / "retrieve"
    assert main(["retrieve", "--store", str(stores["test"]), "--head", "L3.H1", "--image", query_id,
                 "--top", "5", "--out", str(out)]) == 0  # fmt: skip
    results = json.loads((out / "results.json").read_text())["results"]
    head = store.read("heads", index=(3, 1))
    centred = head - head.mean(0)
    cosine = torch.nn.functional.cosine_similarity(centred, centred[3][None], dim=-1)
    cosine[3] = -2  # the query itself is not a result
    assert [r["index"] for r in results] == cosine.argsort(descending=True)[:5].tolist()
    assert (out / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"

    text_out = tmp_path / "text"
    assert main(["retrieve", "--store", str(stores["test"]), "--head", "L2.H0", "--text", "a red bird",
                 "--top", "3", "--out", str(text_out)]) == 0  # fmt: skip
    scores = [r["score"] for r in json.loads((text_out / "results.json").read_text())["results"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--head", "L4.H0"], "layer 4 is out of range"),
        (["--head", "L1.H7"], "head 7 is out of range"),
        (["--head", "head3"], "bad head name"),
        (["--image", "no-such-id"], "is not in the store"),
    ],
)
def test_retrieve_bad_input_exits_2_and_writes_nothing(stores, tmp_path, capsys, args, message):
    options = {"--store": str(stores["test"]), "--head": "L1.H0"}
    if "--image" not in args:
        options["--text"] = "a bird"
    assert_refused("retrieve", options, args, message, tmp_path, capsys)


def test_retrieval_by_an_image_file_decomposes_it_with_the_store_model(stores, tiny_bb, tmp_path, capsys):
    from PIL import Image

    from editclip import decompose
    from editclip.retrieval import image_contribution

    store = DecompositionStore.open(stores["test"])
    head = store.read("heads", index=(3, 1))
    # a stored image decomposed on the fly gives its stored row (same model, preprocessing, convention)
    again = image_contribution(store, store.image_path(5), 3, 1, tiny_bb)
    torch.testing.assert_close(again, head[5], rtol=1e-5, atol=1e-6)

    rng = np.random.default_rng(7)
    query = tmp_path / "outside.png"
    Image.fromarray(rng.integers(0, 255, (40, 28, 3)).astype(np.uint8)).save(query)
    with Image.open(query) as image:
        own = decompose(tiny_bb, tiny_bb.preprocess(image.convert("RGB"))[None]).heads[0, 3, 1]
    for extra, expected in [
        ([], torch.nn.functional.cosine_similarity(head - head.mean(0), (own - head.mean(0))[None], dim=-1)),
        (["--score", "dot"], (head - head.mean(0)) @ (own - head.mean(0))),
        (["--score", "dot", "--no-centre"], head @ own),  # the official notebook's raw dot product
    ]:
        out = tmp_path / f"out{len(extra)}"
        assert main(["retrieve", "--store", str(stores["test"]), "--head", "L3.H1", "--image", str(query),
                     "--top", "6", *extra, "--out", str(out)]) == 0  # fmt: skip
        report = json.loads((out / "results.json").read_text())
        assert report["score"] == (extra[1] if extra else "cosine") and report["query_file"] == str(query)
        assert [r["index"] for r in report["results"]] == expected.argsort(descending=True)[:6].tolist()
        np.testing.assert_allclose([r["score"] for r in report["results"]], expected.sort(descending=True)[0][:6],
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
        assert (out / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"

    # the file of a stored image is that stored row: excluded from its own results, as its id is
    by_id, by_path = tmp_path / "by-id", tmp_path / "by-path"
    for target, image in ((by_id, store.ids[2]), (by_path, str(store.image_path(2)))):
        assert main(["retrieve", "--store", str(stores["test"]), "--head", "L2.H0", "--image", image,
                     "--score", "dot", "--out", str(target)]) == 0  # fmt: skip
    rows = [[r["index"] for r in json.loads((t / "results.json").read_text())["results"]] for t in (by_id, by_path)]
    assert rows[0] == rows[1] and 2 not in rows[0]


def test_rank_by_head_scores() -> None:
    from editclip.retrieval import rank_by_head

    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    q = torch.tensor([1.0, 1.0])
    order, scores = rank_by_head(x, q, centre=False, score="dot")
    assert order.tolist() == [1, 2, 0, 3] and scores.tolist() == [3.0, 2.0, 1.0, -2.0]
    order, scores = rank_by_head(x, q, centre=False)  # cosine: [1,0] and [3,0] tie, stable order
    assert order.tolist() == [0, 1, 2, 3] and scores[0] == pytest.approx(2**-0.5)
    order, _ = rank_by_head(x, x[2], exclude=2, score="dot")
    centred = x - x.mean(0)
    assert order.tolist() == (centred @ centred[2]).argsort(descending=True)[1:].tolist()
    with pytest.raises(EditclipError, match="score 'l2' is unknown"):
        rank_by_head(x, q, score="l2")


def test_retrieve_refuses_unreadable_query_files(stores, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    options = {"--store": str(stores["test"]), "--head": "L1.H0"}
    assert_refused("retrieve", options, ["--image", str(bad)], "cannot read query image", tmp_path, capsys)
    assert_refused("retrieve", options, ["--image", "MISSING"], "and is not an image file", tmp_path, capsys)


def test_curves_take_a_class_source(stores, tmp_path, capsys):
    cub = tmp_path / "CUB_200_2011"
    cub.mkdir()
    (cub / "classes.txt").write_text("1 001.Land_bird\n2 002.Water_bird\n")
    reports = []
    for classes in ([f"cub:{cub}"], ["Land bird", "Water bird"]):
        out = tmp_path / f"curves{len(reports)}"
        assert main(["curves", "--store", str(stores["test"]), "--classes", *classes, "--only", "ablation",
                     "--templates", "a photo of a {}.", "--out", str(out)]) == 0  # fmt: skip
        reports.append(json.loads((out / "curves.json").read_text()))
    assert reports[0]["classes"] == ["Land bird", "Water bird"]
    assert reports[0]["ablation"] == reports[1]["ablation"]
    options = {"--store": str(stores["test"]), "--only": "ablation"}
    assert_refused("curves", options, ["--classes", "imagefolder:MISSING"], "is not a folder", tmp_path, capsys)
    assert_refused("curves", options, ["--classes", f"cub:{tmp_path}"], "classes.txt' does not exist", tmp_path,
                   capsys)  # fmt: skip
