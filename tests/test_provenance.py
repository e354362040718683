"""Preprocessing is part of the model: it is recorded in every store, report, artifact and ONNX file, it is
part of every cache key and compatibility check, and ``export --edit`` rebuilds it from the artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG
from PIL import Image

import editclip
from editclip import cli
from editclip._compile import calibration_store
from editclip.data import load_dataset
from editclip.errors import EditclipError
from editclip.export import OnnxImageEncoder, load_edit, read_edit
from editclip.runner import run_spec
from editclip.spec import EditSpec
from editclip.store import DecompositionStore, decompose_dataset

CUSTOM_PP = {"mean": [0.5, 0.25, 0.125], "std": [0.2, 0.3, 0.4], "interpolation": "bilinear"}


@pytest.fixture(scope="module")
def custom_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny architecture with its own normalisation (same weights as tiny_files' checkpoint)."""
    path = tmp_path_factory.mktemp("pp") / "tiny-pp.json"
    path.write_text(json.dumps({**TINY_CONFIG, "preprocess_cfg": CUSTOM_PP}))
    return path


@pytest.fixture(scope="module")
def custom_bb(tiny_files: tuple[Path, Path], custom_config: Path) -> editclip.Backbone:
    return editclip.load(checkpoint=tiny_files[0], config=custom_config)


def test_the_record_holds_what_changes_pixels(tiny_bb: editclip.Backbone, custom_bb: editclip.Backbone) -> None:
    assert custom_bb.fingerprint == tiny_bb.fingerprint  # same weights: only the preprocessing differs
    record = custom_bb.preprocessing
    assert record == {"size": [32, 32], "mode": "RGB", "mean": CUSTOM_PP["mean"], "std": CUSTOM_PP["std"],
                      "interpolation": "bilinear", "resize_mode": "shortest", "fill_color": 0}  # fmt: skip
    assert tiny_bb.preprocessing["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073])
    image = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    pixel = custom_bb.preprocess(image)[:, 0, 0]  # the transform uses the record
    want = (128 / 255 - torch.tensor(CUSTOM_PP["mean"])) / torch.tensor(CUSTOM_PP["std"])
    torch.testing.assert_close(pixel, want, atol=1e-5, rtol=0)


def test_changing_only_the_preprocessing_invalidates_the_cache_and_the_store(
    tiny_bb: editclip.Backbone, custom_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    ds = load_dataset(tiny_waterbirds, split="val", max_images=6)
    default = calibration_store(tiny_bb, ds, tmp_path / "cache")
    custom = calibration_store(custom_bb, ds, tmp_path / "cache")
    assert default.root != custom.root  # a new key: the old numbers are not served
    assert custom.meta["preprocessing"] == custom_bb.preprocessing and custom.meta["precision"] == "fp32"
    assert custom.describe()["preprocessing"] == custom_bb.preprocessing
    assert not torch.equal(default.read("heads"), custom.read("heads"))
    assert calibration_store(custom_bb, ds, tmp_path / "cache").root == custom.root  # same inputs: reused

    with pytest.raises(EditclipError, match=r"'preprocessing' differs: the store has 32x32 RGB, mean \[0\.5, 0\.25"):
        decompose_dataset(tiny_bb, ds, custom.root)
    with pytest.raises(EditclipError, match=r"other preprocessing: .*mean \[0\.5.*preprocesses with .*0\.4815"):
        custom.check_backbone(tiny_bb)


def _spec(tiny_files: tuple[Path, Path], config: Path, data: Path, export_dir: Path) -> EditSpec:
    return EditSpec.from_dict({
        "editclip": 1,
        "name": "pp",
        "model": {"checkpoint": str(tiny_files[0]), "config": str(config)},
        "calibration": {"data": {"root": str(data), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H1", "L2.H0"]}],
        "evaluate": {"data": {"root": str(data), "split": "test"}, "classes": ["landbird", "waterbird"],
                     "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]},
        "export": {"formats": ["safetensors"], "dir": str(export_dir)},
    })  # fmt: skip


def test_reports_artifacts_and_onnx_carry_the_run_preprocessing(
    tiny_files: tuple[Path, Path],
    custom_config: Path,
    custom_bb: editclip.Backbone,
    tiny_bb: editclip.Backbone,
    tiny_waterbirds: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = _spec(tiny_files, custom_config, tiny_waterbirds, tmp_path / "export")
    run_spec(spec, tmp_path / "run", cache_dir=tmp_path / "cache", log=lambda _: None)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["model"]["preprocessing"] == custom_bb.preprocessing
    assert "mean [0.5, 0.25, 0.125], std [0.2, 0.3, 0.4], bilinear" in (tmp_path / "run" / "report.md").read_text()
    store = DecompositionStore.open(tmp_path / "run" / report["calibration"]["store"])  # relative to the report
    assert store.meta["preprocessing"] == custom_bb.preprocessing

    artifact = tmp_path / "export" / "edit.safetensors"
    _, meta = read_edit(artifact)
    assert json.loads(meta["editclip_preprocessing"]) == custom_bb.preprocessing
    with pytest.raises(EditclipError, match=r"calibrated with preprocessing .*mean \[0\.5, .*with .*0\.4815"):
        load_edit(artifact, tiny_bb)  # same weights, other normalisation: refused, both named
    edited = load_edit(artifact, custom_bb)

    # export with no model arguments rebuilds the model *and* its preprocessing from the artifact
    onnx_path = tmp_path / "edited.onnx"
    assert cli.main(["export", "--edit", str(artifact), "--out", str(onnx_path), "--check-batch-sizes", "2"]) == 0
    encoder = OnnxImageEncoder(onnx_path, providers="cpu")
    np.testing.assert_allclose(encoder.mean, CUSTOM_PP["mean"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(encoder.std, CUSTOM_PP["std"], rtol=0, atol=1e-7)
    assert encoder.interpolation == "bilinear"
    assert json.loads(encoder.metadata["editclip_preprocessing"]) == custom_bb.preprocessing
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 36, 3), dtype=np.uint8)) for _ in range(3)]
    with torch.no_grad():
        want = edited.encode_image(torch.stack([custom_bb.preprocess(im) for im in images])).numpy()
    np.testing.assert_allclose(encoder(images), want, atol=1e-4, rtol=0)

    # with model arguments of another preprocessing, the export is refused and writes nothing
    refused = tmp_path / "refused.onnx"
    args = ["--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1])]
    assert cli.main(["export", "--edit", str(artifact), *args, "--out", str(refused)]) == 2
    assert "preprocessing" in capsys.readouterr().err and not refused.exists()


def test_an_artifact_without_a_preprocessing_record_is_refused(
    tiny_bb: editclip.Backbone, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from editclip.edited import EditTensors
    from editclip.export import FINGERPRINT_KEY, save_edit

    old_meta = {FINGERPRINT_KEY: tiny_bb.fingerprint, "editclip_base_model": json.dumps({"name": "tiny"})}
    path = save_edit(tmp_path / "old.safetensors", EditTensors.empty(tiny_bb.shape.embed_dim), old_meta)
    with pytest.raises(EditclipError, match="does not record the preprocessing"):
        load_edit(path, tiny_bb)
    assert cli.main(["export", "--edit", str(path), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "does not record the preprocessing" in capsys.readouterr().err
