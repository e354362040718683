"""What `editclip run` writes about a run: report.json (one level per concept, portable paths, versions),
report.md (tables, no raw key: value dumps) and the model card of the export folder, whose loading
snippets run as written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import editclip
from editclip import cli
from editclip.report import portable
from editclip.toyworld import ASSETS

TEMPLATES = ["a photo of a {}."]


@pytest.fixture
def toy_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A spec file for the shipped toy CLIP on a small toy world, all beside it in a fresh folder (the cwd)."""
    from editclip.toyworld.write import write_dataset

    monkeypatch.chdir(tmp_path)
    data = write_dataset(tmp_path / "data", seed=0, counts=(8, 16, 16), progress=False)
    spec = {
        "editclip": 1,
        "name": "toy",
        "model": {"toyworld": True},
        "calibration": {"data": {"root": str(data), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H3", "L3.H1"]}],
        "evaluate": {"data": {"root": str(data), "split": "test"}, "classes": ["triangle", "circle"],
                     "templates": TEMPLATES, "label": "y", "groups": ["y", "place"]},
        "export": {"formats": ["safetensors", "onnx"], "dir": str(tmp_path / "export")},
    }  # fmt: skip
    path = tmp_path / "toy.yaml"
    path.write_text("# Why: the toy CLIP reads the background.\n" + yaml.safe_dump(spec))
    return path


def _run(spec: Path, out: Path) -> dict:
    assert cli.main(["run", str(spec), "--out", str(out), "--cache", str(out.parent / "cache")]) == 0
    return json.loads((out / "report.json").read_text())


def test_report_json_is_tidy_and_portable(toy_spec: Path, tmp_path: Path) -> None:
    report = _run(toy_spec, tmp_path / "run")
    calibration = report["calibration"]
    assert "calibration" not in calibration and calibration["data"]["split"] == "val"
    assert calibration["count"] == calibration["data"]["count"] == 16
    # paths beside the report are relative to it, and resolve from there
    assert calibration["data"]["root"] == "../data" and report["spec_file"] == "../toy.yaml"
    assert report["export"]["onnx"]["path"] == "../export/model.onnx"
    assert (tmp_path / "run" / report["export"]["safetensors"]).resolve().is_file()
    # the shipped model is named, not located: no installation path anywhere
    text = (tmp_path / "run" / "report.json").read_text() + (tmp_path / "run" / "report.md").read_text()
    assert str(ASSETS) not in text and "site-packages" not in text and report["model"]["toyworld"] is True
    env = report["environment"]
    assert set(env["versions"]) >= {"editclip", "torch", "open_clip", "onnxruntime", "python"}
    assert env["versions"]["editclip"] == editclip.__version__ and env["device"] == "cpu" and env["device_name"]
    onnx_meta = editclip.OnnxImageEncoder(tmp_path / "export" / "model.onnx", providers="cpu").metadata
    assert str(ASSETS) not in json.dumps(onnx_meta) and json.loads(onnx_meta["editclip_base_model"])["toyworld"]


def test_report_md_has_tables_not_dumps(toy_spec: Path, tmp_path: Path) -> None:
    _run(toy_spec, tmp_path / "run")
    md = (tmp_path / "run" / "report.md").read_text()
    assert not re.search(r"^- \w+: ", md, re.MULTILINE), md  # no "- agreement: 1"
    assert "| triangle / water (`y:0_place:1`) | 4 |" in md and "| same prediction (%) | 100.00 |" in md
    assert "## Environment" in md and "| torch |" in md and "`../export/model.onnx`" in md
    for line in (row for row in md.splitlines() if row.startswith("|")):  # every table row is well formed
        assert line.endswith("|"), line


def test_portable_paths(tmp_path: Path) -> None:
    report_dir = tmp_path / "a" / "report"
    value = {"root": str(tmp_path / "a" / "data"), "store": "/elsewhere/x", "name": str(tmp_path / "a" / "n"),
             "list": [{"path": str(report_dir / "f.png")}]}  # fmt: skip
    assert portable(value, report_dir) == {"root": "../data", "store": "/elsewhere/x", "name": value["name"],
                                           "list": [{"path": "f.png"}]}  # fmt: skip


def test_model_card_snippets_run(toy_spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(toy_spec, tmp_path / "run")
    export = tmp_path / "export"
    card = json.loads((export / "model_card.json").read_text())
    assert card["why"] == "Why: the toy CLIP reads the background."
    assert card["calibration"]["data"]["root"] == "../data" and card["files"]["onnx"] == "model.onnx"
    assert card["evaluation"]["metrics"]["edited"]["acc_wg"] >= 0 and card["preprocessing"]["image_size"] == [48, 48]
    assert card["environment"]["versions"]["onnxruntime"] and "mean_ablate" in card["spec"]
    readme = (export / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    assert len(blocks) == 3  # editclip + ONNX, onnxruntime alone, the edit artifact
    monkeypatch.chdir(export)
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save("photo.jpg")
    results = []
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)  # the card's own snippet
        results.append(scope)
    assert results[0]["embeddings"].shape == (1, 64)
    np.testing.assert_allclose(results[1]["embeddings"], results[0]["embeddings"], atol=1e-4)
    assert isinstance(results[2]["model"], editclip.EditedCLIP)


def test_weights_target_card_loads_in_open_clip(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, config = tiny_files
    spec = {
        "editclip": 1,
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H2"]}],
        "target": "weights",
        "export": {"formats": ["safetensors"], "dir": str(tmp_path / "export")},
    }
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(spec))
    _run(tmp_path / "w.yaml", tmp_path / "run")
    export = tmp_path / "export"
    readme = (export / "README.md").read_text()
    assert "Metrics before and after" not in readme  # no evaluate section: no metrics claimed
    (block,) = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    monkeypatch.chdir(export)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # the card's own snippet
    import torch

    from editclip.export import read_metadata

    images = torch.randn(2, 3, 32, 32)
    bb = editclip.load(checkpoint=checkpoint, config=config)
    patched = editclip.load(checkpoint=export / "patched.safetensors", config=config)
    assert read_metadata(export / "patched.safetensors")["editclip_target"] == "weights"
    with torch.no_grad():
        got = scope["model"].eval().encode_image(images)
        torch.testing.assert_close(got, patched.model.encode_image(images))
        assert not torch.allclose(got, bb.model.encode_image(images), atol=1e-4)


@pytest.mark.parametrize("n_reports", [2, 3])
def test_group_chart_labels_do_not_overlap(n_reports: int, tmp_path: Path) -> None:
    """The weights target's chart has three bars per group: their value labels and the legend stay apart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from editclip.evaluate import group_metrics, plot_groups

    rng = np.random.default_rng(0)
    y, place = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    names = {"baseline": 0.5, "edited (direct)": 0.9, "edited": 1.0}
    reports = {name: group_metrics(np.where(rng.random(400) < p, y, 1 - y), y, {"y": y, "place": place})
               for name, p in list(names.items())[:n_reports]}  # fmt: skip
    fig = plot_groups(reports, tmp_path / "groups.png", title="x")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_text()]
    legend = ax.get_legend().get_window_extent(renderer)
    assert len(boxes) == n_reports * 6
    for i, a in enumerate(boxes):
        assert not a.overlaps(legend)
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    assert all("worst group y:" in t.get_text() for t in ax.get_legend().get_texts())


def test_curves_have_integer_ticks_and_maps_colorbars(tmp_path: Path) -> None:
    import torch

    from editclip.commands.segment import _examples_figure, _overlay_figure
    from editclip.curves import plot_curves

    where = {"path": "s", "count": 3}
    ablation = {"attention": [0.9, 0.8, 0.5], "mlps": [0.9, 0.85, 0.7], "all_mlps_and_embed": 0.6,
                "evaluated": where, "calibration": where, "means_from": "calibration"}  # fmt: skip
    reconstruction = {"m": [1, 2, 3], "accuracy": [0.5, 0.6, 0.7], "original": 0.9, "early_ablated": 0.4,
                      "last": 2, "variant": "paper"}  # fmt: skip
    fig = plot_curves(ablation, reconstruction, tmp_path / "c.png")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    image, heat = torch.rand(8, 8, 3), torch.rand(8, 8)
    overlay = _overlay_figure(image, heat, "map")
    assert any(ax.get_label() == "<colorbar>" for ax in overlay.axes)
    grid = _examples_figure({"image": image[None].repeat(2, 1, 1, 1), "mask": heat[None].repeat(2, 1, 1),
                             "decomposition": heat[None].repeat(2, 1, 1)})  # fmt: skip
    assert any(ax.get_label() == "<colorbar>" for ax in grid.axes)
