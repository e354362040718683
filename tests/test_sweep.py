"""Sweeps over k: each row is the compiled top-k edit's fast path, controls never repeat the edit, k is chosen
on calibration only by the smallest-k-within-tolerance rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import editclip
from editclip._compile import calibration_store, compile_edit
from editclip._selection import choose_k
from editclip.controls import ControlSettings
from editclip.data import load_dataset
from editclip.evaluate import group_metrics, predict, zero_shot_classifier
from editclip.evaluation_paths import fast_embeddings, targets
from editclip.spec import EditSpec
from editclip.sweep import sweep_k

RANKING = ["L3.H1", "L2.H0", "L3.H3", "L1.H2"]


def _report(wg: float, avg: float) -> editclip.evaluate.GroupReport:
    """Two groups of 1000 images: accuracies wg and 2 avg - wg."""
    n = 1000
    right = [round(wg * n), round((2 * avg - wg) * n)]
    pred = torch.tensor([0] * right[0] + [1] * (n - right[0]) + [0] * right[1] + [1] * (n - right[1]))
    return group_metrics(pred, torch.zeros(2 * n, dtype=torch.long), {"g": torch.tensor([0] * n + [1] * n)})


def test_choose_k_prefers_fewer_heads_within_the_tolerance() -> None:
    trials = [(0, _report(0.55, 0.775)), (1, _report(0.700, 0.82)), (2, _report(0.708, 0.82)),
              (3, _report(0.712, 0.81)), (4, _report(0.72, 0.72))]  # fmt: skip
    assert choose_k(trials, tolerance=0.015) == 1  # k=3 is best within the average drop; k=1 is within 1.5 points
    assert choose_k(trials, tolerance=0.005) == 2
    assert choose_k(trials, tolerance=0.0) == 3
    assert choose_k(trials, tolerance=0.0, max_avg_drop=0.3) == 4  # k=4's average drop is now allowed
    assert choose_k(trials[:1]) == 0  # nothing to gain: no heads
    with pytest.raises(editclip.EditclipError, match="k = 0"):
        choose_k(trials[1:])


@pytest.fixture
def stores(tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tiny_bb: editclip.Backbone, tmp_path: Path) -> dict:
    val, test = load_dataset(tiny_waterbirds, split="val"), load_dataset(tiny_waterbirds, split="test")
    checkpoint, config = tiny_files
    return {
        "stores": {"calibration": calibration_store(tiny_bb, val, tmp_path / "c"),
                   "evaluation": calibration_store(tiny_bb, test, tmp_path / "c")},
        "targets": {"calibration": targets(val, "y", ["y", "place"]), "evaluation": targets(test, "y", ["y", "place"])},
        "classifier": zero_shot_classifier(tiny_bb, ["landbird", "waterbird"], ["a photo of a {}."]),
        "spec": {"editclip": 1, "model": {"checkpoint": str(checkpoint), "config": str(config)},
                 "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}}},
    }  # fmt: skip


def test_sweep_rows_are_the_compiled_top_k_edits(stores: dict, tiny_bb: editclip.Backbone) -> None:
    cal = stores["stores"]["calibration"]
    result = sweep_k(stores["stores"], stores["targets"], cal, RANKING, stores["classifier"],
                     controls=ControlSettings(random_heads=5, seed=1, layers="all"), progress=False)  # fmt: skip
    assert [row.k for row in result.rows] == [0, 1, 2, 3, 4]
    evaluation, tg = stores["stores"]["evaluation"], stores["targets"]["evaluation"]
    for row in result.rows:
        assert row.heads == tuple(RANKING[: row.k])
        edit = None
        if row.k:
            spec = EditSpec.from_dict({**stores["spec"], "edits": [{"mean_ablate": list(row.heads)}]})
            edit = compile_edit(spec, tiny_bb, cal).tensors
        expected = tg.report(predict(fast_embeddings(evaluation, edit, progress=False), stores["classifier"]))
        assert row.reports["evaluation"] == expected
        if row.k:
            assert len(row.controls["evaluation"]) == 5 and len(row.controls["calibration"]) == 5
            band = row.band("evaluation", "acc_wg")
            assert band["min"] <= band["median"] <= band["p90"] <= band["max"] and band["of"] == 6
    calibration_only = [(row.k, row.reports["calibration"]) for row in result.rows]
    assert result.pick == choose_k(calibration_only) and result.heads == tuple(RANKING[: result.pick])
    # the evaluation split plays no part in the pick
    swapped = {"calibration": stores["targets"]["calibration"], "evaluation": stores["targets"]["calibration"]}
    alone = sweep_k({"calibration": cal}, swapped, cal, RANKING, stores["classifier"], progress=False)
    assert alone.pick == result.pick and alone.settings is None
    assert "random wg median/p90" in result.table() and "* chosen on calibration" in result.table()
    as_json = result.as_dict()
    assert as_json["pick"]["k"] == result.pick and len(as_json["rows"]) == 5
    fig = result.plot(None, title="tiny")
    ticks = fig.axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks)


def test_sweep_refuses_bad_rankings(stores: dict) -> None:
    cal = stores["stores"]["calibration"]
    with pytest.raises(editclip.EditclipError, match="twice"):
        sweep_k(stores["stores"], stores["targets"], cal, ["L1.H1", "L1.H1"], stores["classifier"], progress=False)
    with pytest.raises(editclip.EditclipError, match="L9"):
        sweep_k(stores["stores"], stores["targets"], cal, ["L9.H1"], stores["classifier"], progress=False)


def test_sweep_command_writes_its_table_json_and_figure(
    stores: dict, tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml

    from editclip import cli

    spec = {**stores["spec"], "edits": [{"mean_ablate": ["L3.H1", "L2.H0", "L1.H2"]}],
            "evaluate": {"data": {"root": str(tiny_waterbirds), "split": "test"}, "classes": ["landbird", "waterbird"],
                         "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]}}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "sweep"
    args = ["sweep", str(path), "--out", str(out), "--random-heads", "3", "--controls-layers", "all",
            "--cache", str(tmp_path / "c"), "--baseline-texts", "water", "a forest"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "chosen on calibration: k =" in printed and "embedding projection" in printed
    report = json.loads((out / "sweep.json").read_text())
    assert report["ranking"] == ["L3.H1", "L2.H0", "L1.H2"] and len(report["rows"]) == 4
    assert report["controls"] == {"random_heads": 3, "seed": 0, "layers": "all"}
    assert set(report["baselines"]["embedding projection"]) == {"calibration", "evaluation"}
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert "![sweep](sweep.png)" in (out / "sweep.md").read_text()
    # a suggest --json ranking is read (positive scores, in order); a non-empty --out is refused
    (tmp_path / "r.json").write_text(json.dumps({"ranking": [{"head": "L2.H0", "score": 0.5},
                                                             {"head": "L0.H0", "score": -1.0}]}))  # fmt: skip
    assert cli.main([*args[:3], str(tmp_path / "s2"), "--ranking", str(tmp_path / "r.json"), "--random-heads", "0",
                     "--cache", str(tmp_path / "c")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "s2" / "sweep.json").read_text())["ranking"] == ["L2.H0"]
    assert cli.main(args) == 2 and "--overwrite" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert cli.main([*args[:3], str(tmp_path / "s3"), "--ranking", str(tmp_path / "bad.json")]) == 2
    assert "suggest --json" in capsys.readouterr().err and not (tmp_path / "s3").exists()
