"""Evaluating edits: the fast path (stored parts) and the exact path (the compiled model) agree on every
prediction; mean-ablation and projection mean what the paper says; the weights target is reported
with its fidelity; ``editclip run`` writes its report, and refuses bad specs before writing anything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_spec, write_waterbirds

import editclip
from editclip import cli
from editclip._compile import calibration_store, compile_edit
from editclip.data import load_dataset
from editclip.evaluate import predict, zero_shot_classifier
from editclip.evaluation_paths import compare, exact_embeddings, fast_embeddings, targets
from editclip.runner import run_spec
from editclip.spec import EditSpec
from editclip.toyworld import WEIGHTS_PATH

TEMPLATES = ["a photo of a {}."]


@pytest.fixture
def base(tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A valid spec (as data) for the tiny model and the tiny Waterbirds folder; cwd is a fresh folder."""
    monkeypatch.chdir(tmp_path)
    return tiny_spec(tiny_files, tiny_waterbirds)


def _spec(base: dict, **changes: Any) -> EditSpec:
    return EditSpec.from_dict({**base, **changes})


@pytest.mark.parametrize(
    "edits",
    [
        [{"mean_ablate": ["L3.H1", "L2.H0"]}, {"mean_ablate": {"layers": "L0", "parts": "both"}}],
        [{"mean_ablate": {"parts": "mlp", "embed": True}},
         {"project": {"head": "L3.H2", "onto": {"texts": ["water", "a forest", "sky"]}}}],
        [{"project": {"head": "L2.H3", "away_from": {"texts": ["water", "a forest"]}}}, {"mean_ablate": ["L1.H1"]}],
    ],
    ids=["heads-and-layer", "mlps-embed-project-onto", "project-away"],
)  # fmt: skip
def test_fast_and_exact_paths_agree(base: dict, tiny_bb: editclip.Backbone, tmp_path: Path, edits: list) -> None:
    spec = _spec(base, edits=edits)
    compiled = compile_edit(spec, tiny_bb, cache_dir=tmp_path / "cache")
    dataset = load_dataset(base["evaluate"]["data"]["root"], split="test")
    store = calibration_store(tiny_bb, dataset, tmp_path / "cache")
    classifier = zero_shot_classifier(tiny_bb, ["landbird", "waterbird"], TEMPLATES)
    fast = fast_embeddings(store, compiled.tensors, progress=False)
    exact = exact_embeddings(compiled.wrapper().encode_image, dataset, tiny_bb.preprocess, progress=False)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=1e-5)
    assert torch.equal(predict(fast, classifier), predict(exact, classifier))
    assert compare(fast, exact, classifier)["disagreements"] == 0
    # the unedited fast path is the base model's own embedding
    base_exact = exact_embeddings(tiny_bb.encode_image, dataset, tiny_bb.preprocess, progress=False)
    torch.testing.assert_close(fast_embeddings(store, None, progress=False), base_exact, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(fast, base_exact, atol=1e-4)  # the edit did something


def test_mean_ablation_replaces_the_part_by_its_calibration_mean(
    base: dict, tiny_bb: editclip.Backbone, tmp_path: Path
) -> None:
    spec = _spec(base, edits=[{"mean_ablate": ["L2.H1"]}])
    calibration = calibration_store(tiny_bb, load_dataset(base["calibration"]["data"]["root"], split="val"),
                                    tmp_path / "cache")  # fmt: skip
    compiled = compile_edit(spec, tiny_bb, calibration)
    images = torch.stack([tiny_bb.preprocess(load_dataset(base["evaluate"]["data"]["root"], split="test")[i][0])
                          for i in range(6)])  # fmt: skip
    d = editclip.decompose(tiny_bb, images)
    mean = calibration.read("heads", index=(2, 1)).double().mean(0).float()
    expected = d.total() - d.heads[:, 2, 1] + mean
    torch.testing.assert_close(compiled.wrapper().encode_image(images), expected, atol=1e-5, rtol=1e-5)


def test_projection_onto_the_whole_space_is_the_identity(
    base: dict, tiny_bb: editclip.Backbone, tmp_path: Path
) -> None:
    dim = tiny_bb.shape.embed_dim
    texts = [f"a photo of {n} {thing}" for n in ("one", "two", "three", "four", "five", "six", "seven")
             for thing in ("bird", "lake", "tree", "dog", "car", "house", "cloud")]  # fmt: skip
    (tmp_path / "pool.txt").write_text("\n".join(texts) + "\n")
    edits = [
        {"project": {"head": "L3.H0", "onto": {"texts": texts}}},
        {"project": {"head": "L1.H2", "onto": {"textspan": {"pool": "pool.txt", "m": dim}}}},
    ]
    compiled = compile_edit(_spec(base, edits=edits), tiny_bb, cache_dir=tmp_path / "cache")
    assert compiled.provenance["bases"]["L1.H2"]["m"] == dim
    eye = torch.eye(dim).expand(2, dim, dim)
    torch.testing.assert_close(compiled.tensors.project_linear, eye, atol=1e-4, rtol=0)
    images = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(compiled.wrapper().encode_image(images), tiny_bb.encode_image(images),
                               atol=1e-4, rtol=1e-4)  # fmt: skip


def test_weights_target_is_reported_with_its_fidelity(base: dict, tmp_path: Path) -> None:
    spec = _spec(base, target="weights", edits=[{"mean_ablate": ["L3.H2"]}])
    result = run_spec(spec, tmp_path / "run", cache_dir=tmp_path / "cache", log=lambda _: None)
    evaluation = result.report["evaluation"]
    fidelity = evaluation["checks"]["weights_fidelity"]
    assert 0.5 < fidelity["cosine_mean"] <= 1 + 1e-6 and fidelity["cosine_min"] <= fidelity["cosine_mean"]
    assert {"agreement", "acc_avg_diff", "acc_wg_diff"} <= set(fidelity)
    assert set(evaluation["metrics"]) == {"baseline", "edited (direct)", "edited"}
    assert fidelity["acc_avg_diff"] == pytest.approx(
        evaluation["metrics"]["edited"]["acc_avg"] - evaluation["metrics"]["edited (direct)"]["acc_avg"]
    )
    assert "patched weights vs direct edit" in (tmp_path / "run" / "report.md").read_text()


def test_run_command_writes_the_report(base: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = {**base, "export": {"formats": ["safetensors", "onnx"], "dir": str(tmp_path / "export")}}
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(base))
    out = tmp_path / "run"
    assert cli.main(["run", str(spec_file), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "worst group" in printed and "edited - baseline" in printed
    assert sorted(p.name for p in out.iterdir()) == ["groups.png", "report.json", "report.md", "spec.yaml"]
    report = json.loads((out / "report.json").read_text())
    metrics = report["evaluation"]["metrics"]
    for name in ("baseline", "edited"):
        assert {"acc_avg", "acc_wg", "adj_acc_avg", "acc_y:0_place:1", "worst_group"} <= set(metrics[name])
    assert report["evaluation"]["checks"]["exact_vs_fast"]["disagreements"] == 0
    assert report["edited_parts"] == ["L3.H1", "L2.H0"]
    # uncertainty: a Wilson interval per group, bootstrap intervals of the summaries, small groups flagged
    spans = report["evaluation"]["uncertainty"]["edited"]
    acc = metrics["edited"]["acc_y:0_place:1"]
    assert spans["groups"]["y:0_place:1"][0] <= acc <= spans["groups"]["y:0_place:1"][1]
    assert spans["bootstrap"]["acc_wg"][0] <= metrics["edited"]["acc_wg"] <= spans["bootstrap"]["acc_wg"][1]
    assert spans["small_groups"] == ["y:0_place:0", "y:0_place:1", "y:1_place:0", "y:1_place:1"]  # 4 images each
    assert len(report["evaluation"]["warnings"]) == 4 and "warning: group" in printed
    # groups named by their values (Waterbirds' names for a Waterbirds-layout folder), keys kept
    assert report["evaluation"]["group_names"]["names"]["y:1_place:0"] == "waterbird / land"
    markdown = (out / "report.md").read_text()
    assert "| waterbird / land (`y:1_place:0`) | 4 |" in markdown and "**Warning:**" in markdown
    assert (out / "groups.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / report["export"]["safetensors"]).is_file() and report["export"]["onnx"]["parity"]["passed"]
    assert "## Export" in (out / "report.md").read_text()
    assert EditSpec.from_yaml(out / "spec.yaml") == EditSpec.from_dict(base)
    # a second run refuses the non-empty folder, and --overwrite writes into it
    assert cli.main(["run", str(spec_file), "--out", str(out), "--cache", str(tmp_path / "cache")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    spec_file.write_text(yaml.safe_dump({k: v for k, v in base.items() if k != "export"}))
    assert cli.main(["run", str(spec_file), "--out", str(out), "--cache", str(tmp_path / "cache"), "--overwrite",
                     "--no-exact-check", "--controls", "6", "--controls-layers", "all"]) == 0  # fmt: skip
    controls = json.loads((out / "report.json").read_text())["evaluation"]["controls"]
    assert controls["drawn"] == 6 and controls["k"] == 2 and controls["drawn_from_layers"] == [0, 1, 2, 3]
    assert controls["metrics"]["acc_wg"]["of"] == 7 and "random-head controls: worst group" in capsys.readouterr().out
    assert "## Random-head controls" in (out / "report.md").read_text()
    assert cli.main(["run", str(spec_file), "--out", str(tmp_path / "bad"), "--controls", "3", "--controls-layers",
                     "L7"]) == 2 and not (tmp_path / "bad").exists()  # fmt: skip
    assert "L7" in capsys.readouterr().err


def _set(data: dict, path: str, value: Any) -> dict:
    data = json.loads(json.dumps(data))
    *keys, last = path.split(".")
    node = data
    for key in keys:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("edits", [{"mean_ablate": ["L9.H0"]}], "L9.H0|layer 9"),  # out of range: found once the model is loaded
        ("edits", [{"mean_ablate": ["L1.H7"]}], "head 7|H7"),
        ("edits", [{"mean_ablate": {"layers": "last:9", "parts": "attention"}}], "last:9|9"),
        ("edits", [], "no edits"),
        ("edits", [{"mean_ablate": ["L1-H0"]}], "L1-H0"),
        ("calibration.data.root", "nowhere", "does not exist"),
        ("evaluate.label", "colour", "no column 'colour'"),
        ("evaluate.groups", ["y", "img_filename"], "img_filename"),  # not an integer column
        ("evaluate.classes", ["landbird"], "at least 2 classes"),
        ("target", "both", "target"),
        ("surprise", 1, "unknown key"),
        ("export", {"formats": ["tflite"], "dir": "exports/x"}, "formats"),
    ],
)
def test_bad_specs_exit_2_and_write_nothing(
    base: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any, message: str
) -> None:
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(_set(base, path, value)))
    out = tmp_path / "never"
    code = cli.main(["run", str(spec_file), "--out", str(out), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(message, err), err
    assert not out.exists()


def test_group_names_from_the_spec_and_from_world_json(tiny_waterbirds: Path, tmp_path: Path) -> None:
    dataset = load_dataset(tiny_waterbirds, split="test")
    given = targets(dataset, "y", ["y", "place"], value_names={"place": {0: "grass", 1: "sea"}})
    assert given.value_names == {"y": {0: "landbird", 1: "waterbird"}, "place": {0: "grass", 1: "sea"}}
    assert "given" in given.names_source
    assert targets(dataset, "y", ["y"]).value_names == {"y": {0: "landbird", 1: "waterbird"}}
    world = write_waterbirds(tmp_path / "world", n_per_split=4)
    (world / "world.json").write_text(json.dumps({"generator": "editclip.toyworld", "classes": ["triangle", "circle"]}))
    tg = targets(load_dataset(world, split="test"), "y", ["y", "place"])
    assert tg.value_names == {"y": {0: "triangle", 1: "circle"}, "place": {0: "land", 1: "water"}}
    assert tg.names_source.endswith("world.json")
    assert [g.label for g in tg.report(tg.label).groups][:2] == ["triangle / land", "triangle / water"]


def test_targets_refuse_non_integer_columns(tiny_waterbirds: Path) -> None:
    dataset = load_dataset(tiny_waterbirds, split="test")
    assert targets(dataset, "y", ["y", "place"]).train_group_counts == {(0, 0): 4, (1, 0): 4, (0, 1): 4, (1, 1): 4}
    with pytest.raises(editclip.EditclipError, match="no label or group column 'place_filename'"):
        targets(dataset, "y", ["y", "place_filename"])


def test_demo_runs_end_to_end(tiny_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo on a random tiny model (the shipped toy CLIP is checked by `editclip demo` itself)."""
    from editclip.demo import run_demo

    monkeypatch.chdir(tmp_path)
    checkpoint, config = tiny_files
    lines: list[str] = []
    result = run_demo("demo", model={"checkpoint": str(checkpoint), "config": str(config)}, counts=(8, 24, 24),
                      max_heads=2, log=lines.append)  # fmt: skip
    assert result.heads and {"baseline", "edited"} == set(result.run.reports)
    assert EditSpec.from_yaml("demo/spec.yaml").edits[0].mean_ablate.heads == list(result.heads)
    summary = json.loads(Path("demo/demo.json").read_text())
    assert summary["goal"]["met"] == result.goal_met and len(summary["calibration_trials"]) <= 3
    assert Path("demo/export/model.onnx").is_file() and Path("demo/report/report.json").is_file()
    assert any(line.startswith("goal (worst group +10 points") for line in lines)
    written = yaml.safe_load(Path("demo/spec.yaml").read_text())  # portable: paths relative to the spec
    assert written["calibration"]["data"]["root"] == "data" and written["export"]["dir"] == "export"
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = EditSpec.from_yaml(tmp_path / "demo" / "spec.yaml")
    assert Path(moved.calibration.data.root) == tmp_path / "demo" / "data"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(editclip.EditclipError, match="not empty"):
        run_demo("demo", model={"checkpoint": str(checkpoint), "config": str(config)}, log=lines.append)


@pytest.mark.slow
def test_fast_and_exact_paths_agree_on_vit_b_32(base: dict, tmp_path: Path) -> None:
    """The same agreement on a real architecture (random weights; 4 calibration and 4 evaluation images)."""
    torch.manual_seed(0)
    bb = editclip.load("ViT-B-32")
    edits = [{"mean_ablate": ["L11.H3", "L10.H0"]}, {"mean_ablate": {"layers": "L0-3", "parts": "both", "embed": True}},
             {"project": {"head": "L11.H7", "away_from": {"texts": ["water", "a forest"]}}}]  # fmt: skip
    calibration = {**base["calibration"], "max_images": 4}
    spec = _spec(base, model={"name": "ViT-B-32"}, calibration=calibration, edits=edits)
    compiled = compile_edit(spec, bb, cache_dir=tmp_path / "cache")
    dataset = load_dataset(base["evaluate"]["data"]["root"], split="test", max_images=4)
    store = calibration_store(bb, dataset, tmp_path / "cache")
    classifier = zero_shot_classifier(bb, ["landbird", "waterbird"], TEMPLATES)
    fast = fast_embeddings(store, compiled.tensors, progress=False)
    exact = exact_embeddings(compiled.wrapper().encode_image, dataset, bb.preprocess, progress=False)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=1e-5)
    assert torch.equal(predict(fast, classifier), predict(exact, classifier))


@pytest.mark.slow
@pytest.mark.skipif(not WEIGHTS_PATH.is_file(), reason="the shipped toy CLIP is missing")
def test_demo_meets_the_goal_on_the_shipped_toy_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's main job: worst group +10 points, average down at most 5, with heads found on calibration."""
    from editclip.demo import run_demo

    monkeypatch.chdir(tmp_path)
    result = run_demo("demo", log=lambda _: None)
    delta = result.run.report["evaluation"]["delta"]
    assert result.goal_met, delta
    assert delta["acc_wg"] >= 0.10 and delta["acc_avg"] >= -0.05


def test_whole_embedding_projection_equals_projecting_z(base: dict, tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    from editclip.text import encode_texts

    texts = ["water", "a lake", "grass"]
    edits = [{"project": {"embedding": True, "away_from": {"texts": texts}}}]
    dataset = load_dataset(base["evaluate"]["data"]["root"], split="test")
    images = torch.stack([tiny_bb.preprocess(dataset[i][0]) for i in range(6)])
    z = tiny_bb.encode_image(images).double()
    q, _ = torch.linalg.qr(encode_texts(tiny_bb, texts, progress=False).double().t())  # [D, 3] orthonormal
    expected = z - (z @ q) @ q.t()
    direct = compile_edit(_spec(base, edits=edits), tiny_bb, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(direct.wrapper().encode_image(images).double(), expected, atol=1e-5, rtol=1e-5)
    assert float((direct.wrapper().encode_image(images).double() @ q).abs().max()) < 1e-5  # nothing left in the span
    store = calibration_store(tiny_bb, dataset, tmp_path / "cache")
    torch.testing.assert_close(fast_embeddings(store, direct.tensors, progress=False)[:6].double(), expected,
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    # the weights target folds it into the output projection: the same embedding, from a stock model
    weights = compile_edit(_spec(base, edits=edits, target="weights"), tiny_bb, cache_dir=tmp_path / "cache")
    torch.testing.assert_close(weights.patched_model().encode_image(images).double(), expected, atol=1e-5, rtol=1e-5)
    assert direct.provenance["bases"]["embedding"] == {"texts": texts, "rank": 3}
    # beside head edits it comes last; the controls refuse it (it is not a head edit)
    both = compile_edit(_spec(base, edits=[{"mean_ablate": ["L3.H1"]}, *edits]), tiny_bb, cache_dir=tmp_path / "cache")
    only_heads = compile_edit(_spec(base, edits=[{"mean_ablate": ["L3.H1"]}]), tiny_bb, cache_dir=tmp_path / "cache")
    ablated = only_heads.wrapper().encode_image(images).double()
    torch.testing.assert_close(both.wrapper().encode_image(images).double(), ablated - (ablated @ q) @ q.t(),
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    with pytest.raises(editclip.EditclipError, match="whole embedding"):
        from editclip.controls import head_action

        head_action(both.tensors)


def test_spec_controls_and_group_names_reach_the_report(base: dict, tmp_path: Path) -> None:
    evaluate = {**base["evaluate"], "controls": {"random_heads": 4, "seed": 2, "layers": "all"},
                "group_names": {"y": ["small bird", "big bird"], "place": {0: "meadow", 1: "lake"}}}  # fmt: skip
    result = run_spec(_spec(base, evaluate=evaluate), tmp_path / "run", cache_dir=tmp_path / "cache",
                      exact_check=False, log=lambda _: None)  # fmt: skip
    controls = result.report["evaluation"]["controls"]
    assert controls["drawn"] == 4 and controls["seed"] == 2 and controls["drawn_from_layers"] == [0, 1, 2, 3]
    assert result.report["evaluation"]["group_names"]["names"]["y:1_place:0"] == "big bird / meadow"
    assert result.report["evaluation"]["group_names"]["source"].startswith("given")
    assert "small bird / lake" in result.table
    off = run_spec(_spec(base, evaluate=evaluate), tmp_path / "off", cache_dir=tmp_path / "cache", exact_check=False,
                   controls=False, baseline_texts=["water", "a forest"], log=lambda _: None)  # fmt: skip
    assert "controls" not in off.report["evaluation"]
    # the whole-embedding baseline beside the head edit: the same as compiling it as an edit
    projected = run_spec(_spec(base, evaluate=evaluate, edits=[{"project": {"embedding": True, "away_from": {
        "texts": ["water", "a forest"]}}}]), tmp_path / "proj", cache_dir=tmp_path / "cache", exact_check=False,
        controls=False, log=lambda _: None)  # fmt: skip
    assert off.reports["embedding projection"] == projected.reports["edited"]
    assert off.report["evaluation"]["baselines"]["embedding projection"]["rank"] == 2
    assert "embedding projection" in off.table
    with pytest.raises(editclip.EditclipError, match="not a group column"):
        _spec(base, evaluate={**base["evaluate"], "group_names": {"colour": ["red"]}})
    with pytest.raises(editclip.EditclipError, match="random_heads"):
        _spec(base, evaluate={**base["evaluate"], "controls": {"random_heads": 0}})


def test_a_run_from_calibration_statistics_equals_the_store_based_run(
    base: dict, tiny_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    from editclip.stats import accumulate_stats

    stats = tmp_path / "val-stats.safetensors"
    accumulate_stats(tiny_bb, load_dataset(tiny_waterbirds, split="val"), stats, layers=[3], batch_size=8)
    evaluate = {**base["evaluate"], "controls": {"random_heads": 3, "seed": 1, "layers": "all"}}
    calibration = {**base["calibration"], "stats": str(stats)}
    runs = []
    for name, extra in (("store", {}), ("stats", {"calibration": calibration})):
        spec = _spec(base, evaluate=evaluate, **extra)
        runs.append(run_spec(spec, tmp_path / name, cache_dir=tmp_path / "cache", exact_check=False, log=print))
    by_store, by_stats = (r.report["evaluation"] for r in runs)
    assert runs[1].report["calibration"]["stats"] == str(stats)
    for name, metrics in by_store["metrics"].items():
        for key, value in metrics.items():
            if isinstance(value, float):
                assert by_stats["metrics"][name][key] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert by_stats["controls"]["metrics"] == by_store["controls"]["metrics"]
