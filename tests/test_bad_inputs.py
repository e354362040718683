"""Bad inputs at the boundary with the user's own files: model configs, checkpoints and artifacts, data
tables, image paths and images. Each is refused through the CLI with exit 2 and one message naming the
file, field or row; no traceback, nothing written, the user's files byte-identical."""

from __future__ import annotations

import dataclasses
import json
import os
import time
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
        "| transductive | calibration includes 16 of the evaluated images"
        in (tmp_path / "out" / "report.md").read_text()
    )


# ---------------------------------------------------------------------------------------------------
# Data tables and image paths

HEADER = "img_id,img_filename,y,split,place\n"


def _dataset(root: Path, rows: list[str], images: int = 3, header: str = HEADER) -> Path:
    """A Waterbirds-layout folder with `images` real PNGs (img/0.png ...) and metadata rows as given."""
    from PIL import Image

    (root / "img").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / "img" / f"{i}.png")
    (root / "metadata.csv").write_text(header + "".join(r + "\n" for r in rows))
    return root


GOOD_ROWS = ["0,img/0.png,0,2,0", "1,img/1.png,1,2,1", "2,img/2.png,0,2,1"]


def _decompose(tiny_files: tuple[Path, Path], data: Path, out: Path, *extra: str) -> list[str]:
    checkpoint, config = tiny_files
    return ["decompose", "--checkpoint", str(checkpoint), "--model-config", str(config), "--data", str(data),
            "--out", str(out), *extra]  # fmt: skip


def _outside(tmp_path: Path) -> Path:
    from PIL import Image

    (tmp_path / "elsewhere").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "elsewhere" / "secret.png")
    return tmp_path / "elsewhere" / "secret.png"


@pytest.mark.parametrize("kind", ["dot-dot traversal", "deep traversal", "absolute path", "symlink out"])
def test_image_paths_outside_the_root_are_refused(
    kind: str, tiny_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = _outside(tmp_path)
    root = tmp_path / "wb"
    value = {"dot-dot traversal": "../elsewhere/secret.png", "deep traversal": "img/../../../../../../etc/passwd",
             "absolute path": str(secret), "symlink out": "img/link.png"}[kind]  # fmt: skip
    _dataset(root, [GOOD_ROWS[0], f"1,{value},1,2,1", GOOD_ROWS[2]])
    if kind == "symlink out":
        (root / "img" / "link.png").symlink_to(secret)
    why = "is an absolute path" if kind == "absolute path" else "leads outside the dataset root"
    fragments = [f"row 3 of {str(root / 'metadata.csv')!r}: img_filename {value!r} {why}", "--allow-outside-root"]
    cli_fails(_decompose(tiny_files, root, tmp_path / "store"), tmp_path, capsys, *fragments)
    # the opt-in reads it
    from editclip.data import load_dataset

    ds = load_dataset(root, allow_outside_root=True)
    assert ds[1][0].size == (8, 8) if kind != "deep traversal" else len(ds) == 3


def test_paths_inside_the_root_are_fine(tmp_path: Path) -> None:
    from editclip.data import load_dataset

    root = _dataset(tmp_path / "wb", ["0,img/../img/0.png,0,2,0", "1,./img/1.png,1,2,1", "2,img//2.png,0,2,1"])
    (root / "img" / "inner.png").symlink_to(root / "img" / "0.png")  # a link that stays inside
    (root / "metadata.csv").write_text(HEADER + "0,img/../img/0.png,0,2,0\n1,img/inner.png,1,2,1\n")
    ds = load_dataset(root)
    assert [ds[i][0].size for i in range(len(ds))] == [(8, 8), (8, 8)]


def test_outside_paths_in_manifests_masks_folders_and_specs(tmp_path: Path, capsys, monkeypatch) -> None:
    from editclip.data import load_dataset
    from editclip.segmetrics import load_masked_folder

    secret = _outside(tmp_path)
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path,y\n{secret},0\nlocal.png,1\n")
    with pytest.raises(EditclipError, match=r"row 2 of .*list.csv.*: path .* is an absolute path"):
        load_dataset(manifest)
    assert load_dataset(manifest, allow_outside_root=True).paths[0] == secret

    root = _dataset(tmp_path / "seg", [], header="")
    (root / "metadata.csv").write_text("img_filename,mask_filename,split\nimg/0.png,../elsewhere/secret.png,2\n")
    with pytest.raises(EditclipError, match=r"row 2 of .*: mask_filename '../elsewhere/secret.png' leads outside"):
        load_masked_folder(root)
    assert len(load_masked_folder(root, allow_outside_root=True)) == 1

    folder = tmp_path / "folder"
    (folder / "cls").mkdir(parents=True)
    (folder / "cls" / "x.png").symlink_to(secret)
    with pytest.raises(EditclipError, match="links outside it"):
        load_dataset(folder)

    monkeypatch.chdir(tmp_path)
    _dataset(tmp_path / "wb", ["9,../elsewhere/secret.png,0,1,0", *GOOD_ROWS])
    spec = {"editclip": 1, "model": {"toyworld": True}, "calibration": {"data": {"root": "wb", "split": "val"}},
            "edits": [{"mean_ablate": ["L1.H1"]}],
            "evaluate": {"data": {"root": "wb", "split": "test"}, "classes": ["a", "b"], "label": "y"}}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    cli_fails(["validate", "spec.yaml"], tmp_path, capsys, "row 2 of 'wb/metadata.csv'", "leads outside")
    spec["calibration"]["data"]["allow_outside_root"] = True
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    assert cli.main(["validate", "spec.yaml"]) == 0


BAD_TABLES = [
    ("Latin-1 metadata", HEADER.encode() + "0,img/0.png,0,2,caf\xe9\n".encode("latin-1"),
     ["is not UTF-8: byte 0xe9 at offset 53 (line 2)", "iconv"]),
    ("zero-byte metadata", b"", ["is empty; it needs a header row"]),
    ("header only", HEADER.encode(), ["has a header but no rows"]),
    ("blank lines only", b"\n\n  \n", ["is empty"]),
    ("missing split column", b"img_id,img_filename,y\n0,img/0.png,0\n", ["lacks the column(s) ['split']"]),
    ("missing img_filename column", b"img_id,y,split\n0,0,2\n", ["lacks the column(s) ['img_filename']"]),
    ("short row", (HEADER + GOOD_ROWS[0] + "\n1,img/1.png,1\n").encode(), ["row 3 of", "has 3 fields"]),
    ("long row", (HEADER + GOOD_ROWS[0] + ",extra\n").encode(), ["row 2 of", "has 6 fields"]),
    ("duplicate ids", (HEADER + "0,img/0.png,0,2,0\n0,img/1.png,1,2,1\n").encode(),
     ["row 3 of", "img_id '0' is already used by row 2"]),
    ("duplicate column", b"img_id,img_filename,y,y,split\n0,img/0.png,0,0,2\n", ["repeats the column(s) ['y']"]),
    ("unknown split name", (HEADER + GOOD_ROWS[0] + "\n1,img/1.png,1,trian,1\n").encode(),
     ["row 3 of", "split 'trian' is unknown"]),
    ("full-width split digit", (HEADER + "0,img/0.png,0,\uff12,0\n").encode(),
     ["row 2 of", "split '\uff12' is unknown"]),
    ("empty image path", (HEADER + "0,,0,2,0\n").encode(), ["row 2 of", "img_filename is empty"]),
    ("bad quoting", (HEADER + '0,"img/0.png,0,2,0\n').encode(), ["row 2 of", "has 2 fields"]),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "content", "fragments"), BAD_TABLES, ids=[t[0] for t in BAD_TABLES])
def test_bad_tables_name_the_file_and_row(
    kind: str, content: bytes, fragments: list[str], tiny_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset(tmp_path / "wb", [])
    (root / "metadata.csv").write_bytes(content)
    err = cli_fails(_decompose(tiny_files, root, tmp_path / "store"), tmp_path, capsys, *fragments)
    assert str(root / "metadata.csv") in err and len(err.strip().splitlines()) == 1


def test_string_labels_are_coded_and_mapped_to_the_classes(tmp_path: Path) -> None:
    from editclip.data import load_dataset
    from editclip.evaluation_paths import targets

    rows = ["0,img/0.png,waterbird,2,sea", "1,img/1.png,landbird,2,forest", "2,img/2.png,waterbird,1,forest"]
    root = _dataset(tmp_path / "wb", rows)
    ds = load_dataset(root, split="test")
    assert ds.label_names == {"y": ["landbird", "waterbird"], "place": ["forest", "sea"]}
    assert ds.columns["y"].tolist() == [1, 0] and ds.columns["place"].tolist() == [1, 0]
    assert ds.describe()["label_names"]["y"] == ["landbird", "waterbird"]
    # the classes' order decides the class index, not the sorted codes
    assert targets(ds, "y", ["y", "place"], classes=["waterbird", "landbird"]).label.tolist() == [0, 1]
    assert targets(ds, "y", classes=["landbird", "waterbird"]).label.tolist() == [1, 0]
    with pytest.raises(EditclipError, match=r"'waterbird' \(row 2 of .*metadata.csv'\), which is not one of"):
        targets(ds, "y", classes=["landbird", "seabird"])
    with pytest.raises(EditclipError, match="holds names"):
        targets(ds, "y")
    with pytest.raises(EditclipError, match="no label or group column 'colour'"):
        targets(ds, "y", ["y", "colour"], classes=["landbird", "waterbird"])
    # integers written as floats stay integers; other numbers are named, never truncated
    (root / "metadata.csv").write_text(HEADER + "0,img/0.png,1.0,2,0.5\n1,img/1.png,0.0,2,1.5\n")
    ds = load_dataset(root)
    assert ds.columns["y"].tolist() == [1, 0] and "y" not in ds.label_names
    assert ds.label_names["place"] == ["0.5", "1.5"]


def test_string_labels_run_end_to_end(tiny_files, tmp_path: Path, monkeypatch) -> None:
    """A spec over a table whose labels are class names evaluates with the classes' indices."""
    import csv
    import shutil

    from editclip.runner import run_spec
    from editclip.spec import EditSpec

    monkeypatch.chdir(tmp_path)
    root = write_waterbirds(tmp_path / "wb", n_per_split=8)
    with (root / "metadata.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    named = root.parent / "named"
    named.mkdir()
    shutil.copytree(root / "img", named / "img")  # (a linked folder would lead outside the root)
    with (named / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "y": ["landbird", "waterbird"][int(r["y"])]} for r in rows)
    spec = _run_spec(tiny_files, {"data": {"root": str(root), "split": "val"}}, {"root": str(root), "split": "test"})
    numbers = run_spec(EditSpec.from_dict(spec), tmp_path / "a", cache_dir=tmp_path / "cache", log=lambda s: None)
    spec["evaluate"]["data"]["root"] = str(named)
    names = run_spec(EditSpec.from_dict(spec), tmp_path / "b", cache_dir=tmp_path / "cache", log=lambda s: None)
    assert names.report["evaluation"]["metrics"] == numbers.report["evaluation"]["metrics"]
    assert names.report["evaluation"]["data"]["label_names"]["y"] == ["landbird", "waterbird"]


# ---------------------------------------------------------------------------------------------------
# Images


def _png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (its data is a few bytes, not that)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _bad_image(kind: str, path: Path) -> str:
    """Make image `path` bad in one way; a fragment of the message it must give."""
    from PIL import Image

    if kind == "decompression bomb":
        path.write_bytes(_png_header(20000, 20000))
        return "claims 20000x20000 = 400000000 pixels, more than the limit of 89478485; raise the limit"
    if kind == "zero-byte":
        path.write_bytes(b"")
        return "is an empty file (0 bytes)"
    if kind == "missing":
        path.unlink()
        return "does not exist"
    if kind == "not an image":
        path.write_bytes(b"these bytes are not an image\n" * 10)
        return "is not an image file PIL can read"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path, format="PNG", compress_level=0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if kind == "truncated" else data[:40] + b"\xff" * 200 + data[240:])
    return "is truncated or corrupt" if kind == "truncated" else "corrupt"


IMAGE_FAULTS = ["decompression bomb", "zero-byte", "missing", "not an image", "truncated", "corrupt"]


@pytest.mark.parametrize("kind", IMAGE_FAULTS)
def test_bad_images_name_the_file_and_row(kind: str, tmp_path: Path) -> None:
    from editclip.data import load_dataset

    root = _dataset(tmp_path / "wb", GOOD_ROWS)
    fragment = _bad_image(kind, root / "img" / "1.png")
    ds = load_dataset(root)
    assert ds[0][0].size == (8, 8)
    with pytest.raises(EditclipError) as info:
        ds[1]
    message = str(info.value)
    assert message.startswith(f"image {str(root / 'img' / '1.png')!r} (row 3 of {str(root / 'metadata.csv')!r})")
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("kind", ["decompression bomb", "truncated", "missing"])
def test_bad_images_through_decompose(kind: str, tiny_files, tmp_path: Path, capsys) -> None:
    root = _dataset(tmp_path / "wb", GOOD_ROWS)
    fragment = _bad_image(kind, root / "img" / "2.png")
    assert cli.main(_decompose(tiny_files, root, tmp_path / "store", "--batch-size", "1")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"(row 4 of {str(root / 'metadata.csv')!r})" in err and fragment in err, err
    assert not (tmp_path / "store").exists()  # the images are checked before a store is created


def test_the_pixel_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from editclip.data import load_dataset
    from editclip.images import MAX_PIXELS_ENV

    start = time.perf_counter()
    root = _dataset(tmp_path / "wb", GOOD_ROWS)
    (root / "img" / "1.png").write_bytes(_png_header(20000, 20000))
    with pytest.raises(EditclipError, match="more than the limit of 89478485"):
        load_dataset(root)[1]
    assert load_dataset(root, max_pixels=64)[0][0].size == (8, 8)  # 8x8 = 64 pixels: at the limit
    with pytest.raises(EditclipError, match="claims 8x8 = 64 pixels, more than the limit of 63; raise"):
        load_dataset(root, max_pixels=63)[0]
    # raised (by argument or environment), the header passes and the fake data is found corrupt
    with pytest.raises(EditclipError, match="truncated or corrupt"):
        load_dataset(root, max_pixels=400_000_000)[1]
    monkeypatch.setenv(MAX_PIXELS_ENV, "400000000")
    with pytest.raises(EditclipError, match="truncated or corrupt"):
        load_dataset(root)[1]
    assert time.perf_counter() - start < 5  # nothing of the claimed size was decoded
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(EditclipError, match="EDITCLIP_MAX_IMAGE_PIXELS='lots' is not a positive integer"):
        load_dataset(root)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    from PIL import Image

    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's own limit is left as it was


def test_max_image_pixels_flag(tiny_files, tmp_path: Path, capsys) -> None:
    root = _dataset(tmp_path / "wb", GOOD_ROWS)
    argv = _decompose(tiny_files, root, tmp_path / "store", "--max-image-pixels", "10")
    assert cli.main(argv) == 2
    assert "claims 8x8 = 64 pixels, more than the limit of 10" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# Checkpoints and edit artifacts


class _Code:
    """Something a pickle would run on load."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (os.getcwd, ())


def _bad_weights(kind: str, folder: Path, good: Path) -> tuple[Path, str]:
    """A weights file broken in one way, and a fragment of the message it must give."""
    import torch
    from safetensors.torch import load_file

    if kind == "unsafe pickle":
        path = folder / "unsafe.pt"
        torch.save({"state_dict": load_file(good), "extra": _Code()}, path)
        return path, "is not loadable safely: it is a pickle holding Python objects"
    suffix = ".pt" if kind.endswith(".pt") else ".safetensors"
    path = folder / f"bad{suffix}"
    data = good.read_bytes()
    if suffix == ".pt":
        torch.save(load_file(good), path)
        data = path.read_bytes()
    if kind.startswith("zero-byte"):
        path.write_bytes(b"")
        return path, "is an empty file (0 bytes)"
    if kind.startswith("truncated"):
        path.write_bytes(data[: len(data) // 2])
        return path, "is truncated or corrupt"
    path.write_bytes(b"\x00\x01garbage" * 50)
    return path, "is truncated or corrupt"


WEIGHT_FAULTS = ["truncated .safetensors", "zero-byte .safetensors", "garbage .safetensors", "truncated .pt",
                 "zero-byte .pt", "garbage .pt", "unsafe pickle"]  # fmt: skip


@pytest.mark.parametrize("kind", WEIGHT_FAULTS)
def test_bad_checkpoints_are_one_line(
    kind: str, tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, config = tiny_files
    path, fragment = _bad_weights(kind, tmp_path, good)
    argv = ["decompose", "--checkpoint", str(path), "--model-config", str(config), "--data", str(tiny_waterbirds),
            "--out", str(tmp_path / "store")]  # fmt: skip
    err = cli_fails(argv, tmp_path, capsys, f"checkpoint {str(path)!r} {fragment}")
    assert len(err.strip().splitlines()) == 1
    assert "weights_only=False" not in err and "Re-running" not in err


def test_unsafe_pickle_as_pretrained(tiny_files, tmp_path: Path) -> None:
    import editclip

    path, fragment = _bad_weights("unsafe pickle", tmp_path, tiny_files[0])
    with pytest.raises(EditclipError, match=f"checkpoint '{path}' {fragment}") as info:
        editclip.load("ViT-B-32", pretrained=str(path))
    assert "weights_only=False" not in str(info.value) and "convert it to safetensors" in str(info.value)


@pytest.mark.parametrize("kind", ["truncated .safetensors", "zero-byte .safetensors", "garbage .safetensors"])
def test_bad_edit_artifacts_are_one_line(
    kind: str, tiny_files, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch
    from safetensors.torch import save_file

    from editclip.export import read_edit

    good = tmp_path / "edit.safetensors"
    save_file({"w": torch.zeros(1000)}, str(good), metadata={"format": "editclip-edit"})
    path, _ = _bad_weights(kind, tmp_path, good)
    with pytest.raises(EditclipError, match=f"'{path}'.*(empty file|truncated or corrupt)"):
        read_edit(path)
    out = tmp_path / "m.onnx"
    cli_fails(["export", "--edit", str(path), "--out", str(out)], tmp_path, capsys, str(path))


def test_validate_reads_the_calibration_table_without_an_evaluation(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    root = _dataset(tmp_path / "wb", [])
    (root / "metadata.csv").write_bytes(HEADER.encode() + "0,img/0.png,0,1,caf\xe9\n".encode("latin-1"))
    spec = {"editclip": 1, "model": {"toyworld": True}, "calibration": {"data": {"root": "wb", "split": "val"}},
            "edits": [{"mean_ablate": ["L1.H1"]}]}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(json.dumps(spec))
    cli_fails(["validate", "spec.yaml"], tmp_path, capsys, "metadata file 'wb/metadata.csv' is not UTF-8", "line 2")
