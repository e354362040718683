"""Ranking heads for an edit: the scores equal their definitions computed by hand, a head planted to
follow the spurious attribute ranks first, picking k on the calibration images removes exactly it, and
the command prints a ready spec fragment."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from editclip import cli
from editclip._decompose import Decomposition
from editclip.errors import EditclipError
from editclip.store import DecompositionStore
from editclip.suggest import (
    head_scores,
    names_word,
    pick_top_k,
    relative_cutoff,
    semantic_scores,
    spec_fragment,
    word_scores,
)

N, L, H, D = 64, 2, 2, 8
SPURIOUS_HEAD, LABEL_HEAD = (1, 1), (0, 0)


def planted_store(root: Path, seed: int = 0, chunk_size: int = 24) -> DecompositionStore:
    """A store of N images in four balanced (y, place) groups. L0.H0 writes the label along e0,
    L1.H1 writes the place along e0 (more strongly, so it decides the zero-shot prediction), the other
    parts are noise in e1..e7; z is the sum of the parts."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(N) % 2
    place = (torch.arange(N) // 2) % 2
    e0 = torch.eye(D)[0]
    noise = torch.randn(N, L, H, D, generator=gen) * 0.3
    noise[..., 0] = 0
    heads = noise
    heads[:, LABEL_HEAD[0], LABEL_HEAD[1]] += (2 * y - 1)[:, None].float() * e0
    heads[:, SPURIOUS_HEAD[0], SPURIOUS_HEAD[1]] += 1.5 * (2 * place - 1)[:, None].float() * e0
    mlps = torch.randn(N, L, D, generator=gen) * 0.1
    mlps[..., 0] = 0
    embed = torch.full((N, D), 0.5)
    embed[:, 0] = 0
    biases = torch.zeros(N, L, D)
    d = Decomposition(heads, mlps, embed, biases, torch.zeros(D), torch.ones(N))
    z = d.total()
    d.norms = z.norm(dim=-1)
    meta = {
        "model": {"name": "planted"}, "fingerprint": "0" * 16, "convention": "exact",
        "shape": {"layers": L, "heads": H, "embed_dim": D}, "dataset": {"name": "planted"}, "count": N,
        "chunk_size": chunk_size, "token_layers": [], "dtype": "float32", "ids": [str(i) for i in range(N)],
        "paths": [f"{i}.png" for i in range(N)], "columns": {"y": y.tolist(), "place": place.tolist()},
    }  # fmt: skip
    store = DecompositionStore.create_or_resume(root, meta, torch.zeros(D))
    for chunk in range(store.n_chunks):
        rows = list(store.chunk_range(chunk))
        store.write_chunk(chunk, d[rows], z[rows])
    return store


CLASSIFIER = torch.stack([-torch.eye(D)[0], torch.eye(D)[0]])  # class 1 when the e0 coordinate is positive


def _by_hand(store: DecompositionStore) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per head: between-group sums of squares of c / |z| for place and for y, and the unit embedding's
    total variance, computed directly from the definitions."""
    z = store.read("embedding").double()
    c = store.read("heads").double() / z.norm(dim=-1)[:, None, None, None]
    unit = z / z.norm(dim=-1, keepdim=True)
    total = float(((unit - unit.mean(0)) ** 2).sum())

    def between(column: str) -> torch.Tensor:
        values = store.column(column)
        out = torch.zeros(L, H, dtype=torch.float64)
        for g in np.unique(values):
            sel = torch.from_numpy(values == g)
            out += int(sel.sum()) * ((c[sel].mean(0) - c.mean(0)) ** 2).sum(-1)
        return out

    return between("place"), between("y"), total


def test_group_scores_match_their_definition(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    scores = {s.head: s for s in head_scores(store, spurious="place", label="y", progress=False)}
    b_place, b_y, total = _by_hand(store)
    for layer in range(L):
        for head in range(H):
            s = scores[f"L{layer}.H{head}"]
            assert s.score == pytest.approx(float(b_place[layer, head] - b_y[layer, head]) / total, rel=1e-6)
    by_head = head_scores(store, spurious="place", label="y", by="head", progress=False)
    top = by_head[0]
    assert top.head == "L1.H1"
    assert top.score == pytest.approx(top.spurious - top.label, rel=1e-6)  # fractions of the head's variance


def test_mean_difference_ratio_matches_its_definition(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    ratio = {s.head: s.score for s in head_scores(store, spurious="place", label="y", score="ratio", progress=False)}
    b_place, b_y, _ = _by_hand(store)
    z = store.read("embedding").double()
    c = store.read("heads").double() / z.norm(dim=-1)[:, None, None, None]
    place = torch.from_numpy(store.column("place") == 1)
    y = torch.from_numpy(store.column("y") == 1)
    for layer in range(L):
        for head in range(H):
            assert ratio[f"L{layer}.H{head}"] == pytest.approx(float((b_place / b_y)[layer, head].sqrt()), rel=1e-5)
    # balanced groups: the ratio of the distances between the two group means
    part = c[:, 1, 1]
    by_means = (part[place].mean(0) - part[~place].mean(0)).norm() / (part[y].mean(0) - part[~y].mean(0)).norm()
    assert ratio["L1.H1"] == pytest.approx(float(by_means), rel=1e-5)
    assert max(ratio, key=ratio.get) == "L1.H1" and min(ratio, key=ratio.get) == "L0.H0"
    with pytest.raises(EditclipError, match="give both"):
        head_scores(store, spurious="place", score="ratio", progress=False)
    with pytest.raises(EditclipError, match="unknown score"):
        head_scores(store, spurious="place", label="y", score="eta", progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "word", "names"),
    [
        ("a photo with a shallow depth of field", "field", False),  # complement of 'depth of'
        ("a product photo of a water pistol", "water", False),  # modifies 'pistol'
        ("people playing field hockey", "field", False),
        ("a glass of water", "water", False),
        ("a farmer in a field", "field", True),
        ("a heron standing in shallow water.", "water", True),
        ("a photo of water", "water", True),  # 'photo of' frames what is shown
        ("dolphins jumping out of the water", "water", True),
        ("a landscape with wheat fields", "field", True),  # plural, heading its phrase
        ("a field of ripe wheat", "field", True),
        ("a lakeside cabin", "lake", False),  # whole words only
        ("red berries on a bush", "berry", True),
        ("an aerial photo of a lava field", "lava field", True),  # phrases
        ("Blue WATER, calm", "water", True),
    ],
)
def test_words_name_whole_words_heading_their_phrase(text: str, word: str, names: bool) -> None:
    assert names_word(text, word) is names


def test_semantic_scores_are_the_textspan_reconstruction_inside_the_span(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    pool = [f"text {i}" for i in range(D)]
    embeddings = torch.eye(D)  # text i is e_i
    query = torch.eye(D)[:1] * 3  # the span of e0 (the length of a query row does not matter)
    ranking = semantic_scores(store, pool, embeddings, query, m=2, progress=False)
    assert ranking[0].head in ("L1.H1", "L0.H0") and ranking[0].texts[0] == "text 0"
    z = store.read("embedding")
    for row in ranking:
        layer, head = (int(x[1:]) for x in row.head.split("."))
        c = (store.read("heads")[:, layer, head] / z.norm(dim=-1)[:, None]).double()
        centred = c - c.mean(0)
        chosen = [pool.index(t) for t in row.texts]  # the TextSpan basis is e_chosen, so P_Q P_B keeps e0 if chosen
        inside = (centred[:, 0] ** 2).sum() if 0 in chosen else 0.0
        assert row.score == pytest.approx(float(inside / (centred**2).sum()), abs=1e-6)
    assert relative_cutoff(ranking, 0.5) == [r.head for r in ranking if r.score >= 0.5 * ranking[0].score > 0]
    with pytest.raises(EditclipError, match="cut-off"):
        relative_cutoff(ranking, 0.0)


def test_planted_heads_rank_first_and_last(tmp_path: Path) -> None:
    ranking = head_scores(planted_store(tmp_path / "s"), spurious="place", label="y", progress=False)
    assert ranking[0].head == "L1.H1" and ranking[0].spurious > 0.5 and ranking[0].label < 0.05
    assert ranking[-1].head == "L0.H0" and ranking[-1].score < 0
    only_last = head_scores(planted_store(tmp_path / "s2"), spurious="place", layers="L0", progress=False)
    assert {s.head for s in only_last} == {"L0.H0", "L0.H1"}


def test_text_scores_are_variance_along_the_texts(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    texts = torch.stack([torch.eye(D)[0] + torch.eye(D)[1], torch.eye(D)[0] - torch.eye(D)[1]])  # span e0, e1
    scores = {s.head: s for s in head_scores(store, directions=texts, by="head", progress=False)}
    z = store.read("embedding")
    c = store.read("heads") / z.norm(dim=-1)[:, None, None, None]
    centred = c - c.mean(0)
    expected = (centred[..., :2] ** 2).sum((0, -1)) / (centred**2).sum((0, -1))
    for layer in range(L):
        for head in range(H):
            assert scores[f"L{layer}.H{head}"].score == pytest.approx(float(expected[layer, head]), rel=1e-5)
    assert max(scores.values(), key=lambda s: s.score).head in ("L1.H1", "L0.H0")  # the e0 writers


def test_word_scores_find_the_head_that_textspan_names(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    texts = ["a lake", "the sea", "a red square", "lakeside", "blue", "green", "a star", "night"]
    embeddings = torch.eye(D)  # text i is direction e_i: "a lake" is e0, where the planted heads write
    ranking = word_scores(store, texts, embeddings, ["lake"], m=3, progress=False)
    assert ranking[0].head in ("L1.H1", "L0.H0") and ranking[0].texts == ("a lake",)
    assert all("lakeside" not in s.texts for s in ranking)  # whole words only
    with pytest.raises(EditclipError, match="no words"):
        word_scores(store, texts, embeddings, [" "], progress=False)


def test_pick_removes_the_spurious_head(tmp_path: Path) -> None:
    store = planted_store(tmp_path / "s")
    ranking = [s.head for s in head_scores(store, spurious="place", label="y", progress=False)]
    pick = pick_top_k(store, ranking, CLASSIFIER, "y", ["y", "place"], max_avg_drop=0.05)
    assert pick.heads == ("L1.H1",)
    baseline, edited = pick.trials[0][1], pick.trials[1][1]
    assert baseline.acc_wg == 0.0 and edited.acc_wg == 1.0
    # the smallest k wins ties; ablating the label head too would cost the average
    assert pick.trials[-1][1].acc_avg < edited.acc_avg


def test_spec_fragment() -> None:
    assert spec_fragment(["L1.H1", "L0.H3"]) == "edits:\n  - mean_ablate: [L1.H1, L0.H3]"


def test_suggest_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = planted_store(tmp_path / "s")
    code = cli.main(["suggest", "--store", str(store.root), "--spurious", "place", "--label", "y", "--top", "1",
                     "--json", str(tmp_path / "r.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "- mean_ablate: [L1.H1]" in out
    assert (tmp_path / "r.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spurious", "place", "--words", "water"], "not several"),
        (["--semantic", "water", "--words", "water"], "not several"),
        (["--spurious", "place", "--cutoff", "0"], "--cutoff"),
        (["--spurious", "place", "--score", "ratio"], "give both"),
        ([], "nothing to rank by"),
        (["--spurious", "place", "--pick"], "--pick needs --classes"),
        (["--spurious", "nope", "--label", "y"], "no column 'nope'"),
        (["--spurious", "y", "--label", "y"], "both 'y'"),
        (["--spurious", "place", "--layers", "L7"], "out of range|0..1"),
    ],
)
def test_suggest_command_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = planted_store(tmp_path / "s")
    assert cli.main(["suggest", "--store", str(store.root), *args]) == 2
    assert re.search(message, capsys.readouterr().err)
