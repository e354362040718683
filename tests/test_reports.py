"""Head reports, curves and retrieval from the command line, on a tiny stored decomposition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from editclip.cli import main
from editclip.data import load_dataset
from editclip.store import decompose_dataset
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
    code = main(["textspan", "--decomposition", str(stores["train"]), "--pool", str(pool), "--m", "5",
                 "--layers", "last:2", "--variant", "official", "--k", "12", "--out", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [h["head"] for h in report["heads"]] == [f"L{layer}.H{h}" for layer in (2, 3) for h in range(4)]
    lines = set(load_pool(pool))
    for head in report["heads"]:
        explained = [t["explained"] for t in head["texts"]]
        assert len(explained) == 5 and np.all(np.diff(explained) >= 0) and 0 < explained[-1] <= 1
        assert {t["text"] for t in head["texts"]} <= lines
    markdown = (out / "report.md").read_text()
    assert "## L3.H1" in markdown and report["heads"][0]["texts"][0]["text"] in markdown
    assert (out / "overview.png").read_bytes()[:4] == b"\x89PNG"
    assert "L2.H0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "L9"], "layer 9 is out of range"),
        (["--layers", "L1-x"], "bad layer selection"),
        (["--m", "500"], "--m 500 is out of range"),
        (["--pool", "no-such-pool.txt"], "neither a shipped pool"),
        (["--pool", "EMPTY"], "is empty"),
        (["--decomposition", "MISSING"], "not a decomposition store"),
    ],
)
def test_textspan_bad_input_exits_2_and_writes_nothing(stores, pool, tmp_path, capsys, args, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    base = {"--decomposition": str(stores["train"]), "--pool": str(pool), "--m": "3", "--layers": "last:1"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = {"EMPTY": str(empty), "MISSING": str(tmp_path / "missing")}.get(value, value)
    out = tmp_path / "out"
    code = main(["textspan", *[x for kv in base.items() for x in kv], "--out", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
