"""Bad inputs at the boundary with the user's own files: model configs, checkpoints and artifacts, data
tables, image paths and images. Each is refused through the CLI with exit 2 and one message naming the
file, field or row; no traceback, nothing written, the user's files byte-identical."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_CONFIG, write_waterbirds

from editclip import cli
from editclip.errors import EditclipError
from editclip.model_config import PREPROCESS, TEXT, TOP_LEVEL, VISION, check_model_config, read_model_config


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for folders)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def cli_fails(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    """Run the CLI; assert exit 2, one error message holding every fragment, nothing changed under root."""
    before = _snapshot(root)
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in captured.err, f"{fragment!r} not in:\n{captured.err}"
    assert _snapshot(root) == before
    return captured.err


# ---------------------------------------------------------------------------------------------------
# Model-config JSON


def _config(**changes: Any) -> dict[str, Any]:
    """TINY_CONFIG with `changes` applied; keys like "vision_cfg.width" reach into sections."""
    config = json.loads(json.dumps(TINY_CONFIG))
    for key, value in changes.items():
        section, _, name = key.rpartition(".")
        (config.setdefault(section, {}) if section else config)[name] = value
    return config


BAD_CONFIGS = [
    ("misspelt preprocess_cfg", _config(preprocess={"mean": [0.5] * 3}), ["unknown key preprocess",
     "did you mean preprocess_cfg?", "editclip reads only embed_dim, vision_cfg"]),
    ("misspelt vision key", _config(**{"vision_cfg.head_widht": 16}), ["vision_cfg.head_widht",
     "did you mean vision_cfg.head_width?"]),
    ("misspelt text key", _config(**{"text_cfg.context_lenght": 16}), ["did you mean text_cfg.context_length?"]),
    ("misspelt preprocess key", _config(preprocess_cfg={"means": [0.5] * 3}), ["unknown key preprocess_cfg.means",
     "did you mean preprocess_cfg.mean?", "editclip reads only preprocess_cfg.size"]),
    ("unknown key, no close match", _config(frobnicate=1), ["unknown key frobnicate;"]),
    ("layers as a string", _config(**{"vision_cfg.layers": "4"}), ["vision_cfg.layers must be a positive integer",
     'got "4"']),
    ("embed_dim as a float", _config(embed_dim=32.0), ["embed_dim must be a positive integer, got 32.0"]),
    ("mean not a list", _config(preprocess_cfg={"mean": 0.5}), ["preprocess_cfg.mean must be a list of numbers"]),
    ("zero std", _config(preprocess_cfg={"std": [0, 1, 1]}), ["preprocess_cfg.std must be a list of positive"]),
    ("unknown interpolation", _config(preprocess_cfg={"interpolation": "lanczos"}),
     ["preprocess_cfg.interpolation must be one of 'bicubic', 'bilinear'"]),
    ("section not a mapping", _config(vision_cfg=[1, 2]), ["vision_cfg must be a mapping"]),
    ("missing section", {"embed_dim": 32, "vision_cfg": TINY_CONFIG["vision_cfg"]}, ["lacks text_cfg"]),
    ("hub layout, preprocess inside", {"model_cfg": {**TINY_CONFIG, "preprocess_cfg": {}}},
     ["preprocess_cfg goes beside model_cfg"]),
    ("hub layout, unknown key beside", {"model_cfg": TINY_CONFIG, "preproces_cfg": {}},
     ["did you mean preprocess_cfg?"]),
    ("not an object", [1, 2, 3], ["expected a JSON object"]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "config", "fragments"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_model_config_is_refused_naming_file_and_key(
    kind: str,
    config: Any,
    fragments: list[str],
    tmp_path: Path,
    tiny_waterbirds: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    argv = ["decompose", "--model-config", str(path), "--data", str(tiny_waterbirds), "--out", str(tmp_path / "s")]
    err = cli_fails(argv, tmp_path, capsys, f"model config {str(path)!r}", *fragments)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(("kind", "config", "fragments"), BAD_CONFIGS[:8], ids=[c[0] for c in BAD_CONFIGS[:8]])
def test_bad_model_config_in_a_spec(
    kind: str, config: Any, fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(config))
    (tmp_path / "imgs").mkdir()
    spec = {
        "editclip": 1,
        "model": {"config": "model.json"},
        "calibration": {"data": {"root": "imgs"}},
        "edits": [{"mean_ablate": ["L1.H1"]}],
    }
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    cli_fails(
        ["validate", "spec.yaml"], tmp_path, capsys, "model.config (line 1): model config 'model.json'", *fragments
    )


def test_key_tables_match_open_clip() -> None:
    import inspect

    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg
    from open_clip.transform import PreprocessCfg

    assert set(VISION) == {f.name for f in dataclasses.fields(CLIPVisionCfg)}
    assert set(TEXT) == {f.name for f in dataclasses.fields(CLIPTextCfg)}
    assert set(PREPROCESS) == {f.name for f in dataclasses.fields(PreprocessCfg)}
    clip_args = set(inspect.signature(open_clip.CLIP.__init__).parameters) - {"self", "cast_dtype"}
    assert clip_args == set(TOP_LEVEL) - {"custom_text", "multimodal_cfg", "preprocess_cfg"}
    for cls, table in ((CLIPVisionCfg, VISION), (CLIPTextCfg, TEXT), (PreprocessCfg, PREPROCESS)):
        for f in dataclasses.fields(cls):  # open_clip's own defaults pass the checks (tuples as JSON lists)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            assert table[f.name].check(json.loads(json.dumps(default))), (cls.__name__, f.name, default)


def test_every_shipped_open_clip_config_passes() -> None:
    import open_clip

    folder = Path(open_clip.__file__).parent / "model_configs"
    configs = sorted(folder.glob("*.json"))
    assert len(configs) > 50
    for path in configs:
        read_model_config(path)


def test_a_good_config_keeps_its_preprocessing(tmp_path: Path) -> None:
    import editclip

    config = _config(preprocess_cfg={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"})
    path = tmp_path / "model.json"
    path.write_text(json.dumps(config))
    model_cfg, preprocess = read_model_config(path)
    assert preprocess == config["preprocess_cfg"] and "preprocess_cfg" not in model_cfg
    bb = editclip.load(config=path)
    pp = bb.source["preprocess_cfg"]
    assert list(pp["mean"]) == [0.5] * 3 and list(pp["std"]) == [0.25] * 3 and pp["interpolation"] == "bilinear"
    hub = {"model_cfg": TINY_CONFIG, "preprocess_cfg": config["preprocess_cfg"]}
    assert check_model_config(hub, "hub") == (TINY_CONFIG, config["preprocess_cfg"])
    with pytest.raises(EditclipError, match="the config dict: unknown key preprocess "):
        editclip.load(config=_config(preprocess={}))


def test_every_problem_of_a_config_in_one_line(tmp_path: Path) -> None:
    config = _config(preprocess={}, **{"vision_cfg.layers": "4", "text_cfg.widht": 3})
    with pytest.raises(EditclipError) as info:
        check_model_config(config, "m.json")
    message = str(info.value)
    assert "\n" not in message
    assert all(s in message for s in ("preprocess", "vision_cfg.layers", "text_cfg.widht")), message


# ---------------------------------------------------------------------------------------------------
# Calibration must not overlap evaluation


def _run_spec(tiny_files: tuple[Path, Path], calibration: dict[str, Any], evaluation: dict[str, Any]) -> dict:
    checkpoint, config = tiny_files
    return {
        "editclip": 1,
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": calibration,
        "edits": [{"mean_ablate": ["L3.H1"]}],
        "evaluate": {"data": evaluation, "classes": ["landbird", "waterbird"], "templates": ["a photo of a {}."],
                     "label": "y", "groups": ["y", "place"]},
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["same split", "overlapping max_images", "same files through a link"])
def test_calibration_overlapping_evaluation_is_refused(
    kind: str, tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    calibration: dict[str, Any] = {"data": {"root": str(tiny_waterbirds), "split": "test"}}
    evaluation: dict[str, Any] = {"root": str(tiny_waterbirds), "split": "test"}
    count = "16 of the 16"
    if kind == "overlapping max_images":
        calibration["max_images"] = 3
        count = "3 of the 16"
    elif kind == "same files through a link":
        (tmp_path / "linked").symlink_to(tiny_waterbirds)
        evaluation["root"] = str(tmp_path / "linked")  # another root: only the resolved files tell
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps(_run_spec(tiny_files, calibration, evaluation)))
    fragments = [f"calibration and evaluation share {count} evaluation images", "calibration.transductive: true"]
    cli_fails(["validate", "spec.yaml"], tmp_path, capsys, *fragments)
    cli_fails(["run", "spec.yaml", "--out", "out", "--cache", "cache"], tmp_path, capsys, *fragments)


def test_disjoint_splits_and_other_roots_are_not_overlap(tiny_files, tiny_waterbirds: Path, tmp_path: Path) -> None:
    from editclip.spec import EditSpec
    from editclip.spec_data import check_calibration_overlap

    spec = _run_spec(tiny_files, {"data": {"root": str(tiny_waterbirds), "split": "val"}},
                     {"root": str(tiny_waterbirds), "split": "test"})  # fmt: skip
    assert check_calibration_overlap(EditSpec.from_dict(spec)) == 0
    other = write_waterbirds(tmp_path / "other")  # the same ids (0..47) in another table are other images
    spec["calibration"]["data"] = {"root": str(other), "split": "test"}
    assert check_calibration_overlap(EditSpec.from_dict(spec)) == 0


def test_transductive_calibration_is_allowed_and_reported(
    tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    calibration = {"data": {"root": str(tiny_waterbirds), "split": "test"}, "transductive": True}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        json.dumps(_run_spec(tiny_files, calibration, {"root": str(tiny_waterbirds), "split": "test"}))
    )
    assert cli.main(["validate", "spec.yaml"]) == 0
    assert "transductive: 16 evaluation images are also calibration images" in capsys.readouterr().out
    assert cli.main(["run", "spec.yaml", "--out", "out", "--cache", "cache"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["calibration_overlap"] == {"transductive": True, "shared_images": 16}
    assert (
        "transductive: calibration includes 16 of the evaluated images" in (tmp_path / "out" / "report.md").read_text()
    )
