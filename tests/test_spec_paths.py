"""Portable specs: relative paths are read from the spec file's folder, `--set` overrides fields before
validation (their paths from the working folder) and is recorded in the report, and the shipped pools
that work on the command line work in specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from editclip import cli
from editclip.errors import EditclipError
from editclip.spec import EditSpec
from editclip.spec.paths import anchor_paths, apply_overrides


def _spec(root: str, export: str = "export") -> dict:
    return {
        "editclip": 1,
        "model": {"toyworld": True},
        "calibration": {"data": {"root": root, "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H3"]},
                  {"project": {"head": "L3.H1", "away_from": {"textspan": {"pool": "toyworld", "m": 3}}}}],
        "export": {"formats": ["safetensors"], "dir": export},
    }  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from editclip.toyworld.write import write_dataset

    return write_dataset(tmp_path_factory.mktemp("w") / "project" / "data", seed=0, counts=(0, 16, 8), progress=False)


def test_relative_paths_are_read_from_the_spec_folder(world: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    project = world.parent
    (project / "specs").mkdir(exist_ok=True)
    (project / "specs" / "s.yaml").write_text(yaml.safe_dump(_spec("../data", "../exports/s")))
    monkeypatch.chdir(tmp_path)  # anywhere but the spec's folder
    spec = EditSpec.from_yaml(project / "specs" / "s.yaml")
    assert Path(spec.calibration.data.root).resolve() == world.resolve()
    assert Path(spec.export.dir).resolve() == (project / "exports" / "s").resolve()
    # from_dict (no file) reads from the working folder: the same relative root is missing here
    with pytest.raises(EditclipError, match="does not exist"):
        EditSpec.from_dict(_spec("../data"))


def test_shipped_pool_names_work_in_specs(world: Path) -> None:
    spec = EditSpec.from_dict(_spec(str(world)))
    assert spec.edits[1].project.away_from.textspan.pool == "toyworld"
    bad = _spec(str(world))
    bad["edits"][1]["project"]["away_from"]["textspan"]["pool"] = "toyland"
    with pytest.raises(EditclipError, match="shipped pools are general, toyworld"):
        EditSpec.from_dict(bad)


def test_anchor_paths_leaves_names_alone(tmp_path: Path) -> None:
    data = {"model": {"name": "ViT-B-16", "pretrained": "laion2b_s34b_b88k"},
            "edits": [{"project": {"onto": {"textspan": {"pool": "general"}}}}]}  # fmt: skip
    assert anchor_paths(data, tmp_path) == data
    data["model"]["pretrained"] = "ckpt/model.safetensors"
    assert anchor_paths(data, tmp_path)["model"]["pretrained"] == str(tmp_path / "ckpt/model.safetensors")


def test_overrides(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(world.parent)
    data, applied = apply_overrides(_spec("x"), ["calibration.data.root=data", "edits.0.mean_ablate=[L3.H2]",
                                                 "target=weights"])  # fmt: skip
    assert data["calibration"]["data"]["root"] == str(world.parent / "data") and applied["target"] == "weights"
    assert data["edits"][0]["mean_ablate"] == ["L3.H2"]
    for bad, message in [("target", "FIELD.PATH=VALUE"), ("edits.7.x=1", "not an item"), ("a.b=[", "not valid YAML")]:
        with pytest.raises(EditclipError, match=message):
            apply_overrides(_spec("x"), [bad])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_spec("missing")))
    with pytest.raises(EditclipError, match="target"):  # validated like the file
        EditSpec.from_yaml(tmp_path / "s.yaml", ["calibration.data.root=data", "target=bogus"])


def test_run_records_overrides(world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_spec("nowhere")))
    monkeypatch.chdir(world.parent)
    out = tmp_path / "run"
    argv = ["-q", "run", str(tmp_path / "s.yaml"), "--set", "calibration.data.root=data", "--set",
            f"export.dir={tmp_path / 'exp'}", "--out", str(out), "--cache", str(tmp_path / "cache")]  # fmt: skip
    assert cli.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["overrides"] == {"calibration.data.root": str(world), "export.dir": str(tmp_path / "exp")}
    assert (tmp_path / "exp" / "edit.safetensors").is_file()
    assert "| override | `calibration.data.root=" in (out / "report.md").read_text()
