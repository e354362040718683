"""Edits on attention-pooled (SigLIP) towers: a mean-ablation spec and a projection spec compile, run
(fast path == exact path), export to ONNX with parity; the weights target patches the timm checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import editclip
from editclip._compile import calibration_store, compile_edit
from editclip.data import load_dataset
from editclip.evaluation_paths import exact_embeddings, fast_embeddings
from editclip.export import export_onnx
from editclip.runner import run_spec
from editclip.spec import EditSpec
from tests.test_pooled_towers import CASES, load_tiny

EVALUATE = {"classes": ["landbird", "waterbird"], "templates": ["a photo of a {}."], "label": "y",
            "groups": ["y", "place"]}  # fmt: skip


@pytest.fixture(scope="module")
def siglip_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny random-weight SigLIP (timm tower with an output projection) as checkpoint + config."""
    root = tmp_path_factory.mktemp("tiny-siglip")
    config = root / "siglip.json"
    config.write_text(json.dumps(CASES["siglip-tanh-proj"]))
    bb = load_tiny(CASES["siglip-tanh-proj"], seed=3)
    checkpoint = root / "siglip.safetensors"
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()}, str(checkpoint))
    return checkpoint, config


@pytest.fixture(scope="module")
def siglip_bb(siglip_files: tuple[Path, Path]) -> editclip.Backbone:
    load_tiny(CASES["siglip"])  # registers the tiny timm models
    checkpoint, config = siglip_files
    return editclip.load(checkpoint=checkpoint, config=config)


def _spec(files: tuple[Path, Path], data: Path, edits: list, target: str = "wrapper", **extra) -> EditSpec:
    checkpoint, config = files
    return EditSpec.from_dict({
        "editclip": 1, "name": "tiny-siglip", "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(data), "split": "val"}}, "edits": edits, "target": target,
        "evaluate": {"data": {"root": str(data), "split": "test"}, **EVALUATE}, **extra,
    })  # fmt: skip


MEAN_ABLATE = [{"mean_ablate": ["L1.H2", "L0.H1"]}, {"mean_ablate": {"layers": "L0", "parts": "mlp"}}]
PROJECT = [{"project": {"head": "L1.H3", "away_from": {"texts": ["water", "a forest"]}}}]


@pytest.mark.parametrize("edits", [MEAN_ABLATE, PROJECT], ids=["mean-ablate", "project"])
def test_siglip_edit_compiles_runs_and_exports(
    edits: list, siglip_files: tuple[Path, Path], siglip_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    spec = _spec(siglip_files, tiny_waterbirds, edits)
    compiled = compile_edit(spec, siglip_bb, cache_dir=tmp_path / "cache", batch_size=8)
    dataset = load_dataset(tiny_waterbirds, split="test")
    store = calibration_store(siglip_bb, dataset, tmp_path / "cache")
    fast = fast_embeddings(store, compiled.tensors, progress=False)
    exact = exact_embeddings(compiled.wrapper().encode_image, dataset, siglip_bb.preprocess, progress=False)
    torch.testing.assert_close(fast, exact, atol=1e-5, rtol=1e-5)
    base = exact_embeddings(siglip_bb.encode_image, dataset, siglip_bb.preprocess, progress=False)
    assert (fast - base).abs().max() > 1e-4  # the edit did something
    report = export_onnx(compiled.wrapper(), tmp_path / "edited.onnx")
    assert report.parity.passed and report.parity.max_abs_diff <= 1e-4, report.summary()


def test_siglip_weights_target_and_run(
    siglip_files: tuple[Path, Path], siglip_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    export = {"formats": ["onnx"], "dir": str(tmp_path / "export")}
    spec = _spec(siglip_files, tiny_waterbirds, MEAN_ABLATE + PROJECT, target="weights", export=export)
    run_spec(spec, tmp_path / "run", cache_dir=tmp_path / "cache", batch_size=8, log=lambda _: None)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["export"]["onnx"]["parity"]["passed"]
    fidelity = report["evaluation"]["checks"]["weights_fidelity"]
    assert fidelity["cosine_mean"] > 0.5
    compiled = compile_edit(spec, siglip_bb, cache_dir=tmp_path / "cache", batch_size=8)
    patched = compiled.patched_model()
    images = torch.randn(2, 3, 32, 32)
    assert (patched.encode_image(images) - siglip_bb.encode_image(images)).abs().max() > 1e-4
    # the patched checkpoint is a stock open_clip state dict of the same architecture
    assert set(compiled.patched_state_dict()) == set(siglip_bb.model.state_dict())


def test_official_store_and_textspan_of_pool_heads(
    siglip_files: tuple[Path, Path], siglip_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from editclip import cli
    from editclip.store import DecompositionStore

    checkpoint, config = siglip_files
    model = ["--checkpoint", str(checkpoint), "--model-config", str(config)]
    store_dir = tmp_path / "official"
    args = ["decompose", *model, "--data", str(tiny_waterbirds), "--split", "val", "--convention", "official",
            "--out", str(store_dir), "--batch-size", "8"]  # fmt: skip
    assert cli.main(args) == 0
    store = DecompositionStore.open(store_dir)
    d = store.load()
    assert d.pool_heads.shape == (16, 4, 48) and d.heads.shape[1] == 0
    torch.testing.assert_close(d.total(), store.read("embedding"), atol=1e-5, rtol=0)
    out = tmp_path / "report"
    assert cli.main(["textspan", "--store", str(store_dir), "--layers", "pool", "--pool", "toyworld",
                     "--m", "3", "--out", str(out)]) == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert [row["head"] for row in report["heads"]] == ["pool.H0", "pool.H1", "pool.H2", "pool.H3"]
    # an exact-convention store has no pool heads: said in one line
    exact_dir = tmp_path / "exact"
    exact_args = ["decompose", *model, "--data", str(tiny_waterbirds), "--split", "val", "--out", str(exact_dir)]
    assert cli.main(exact_args) == 0
    capsys.readouterr()
    code = cli.main(["textspan", "--store", str(exact_dir), "--layers", "pool", "--pool", "toyworld",
                     "--m", "3", "--out", str(tmp_path / "never")])  # fmt: skip
    assert code == 2 and "has no pool heads" in capsys.readouterr().err
    assert DecompositionStore.open(exact_dir).load().pool_mlp is not None


def test_pool_mlp_mean_ablation_wrapper_and_weights(
    siglip_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path
) -> None:
    """pool.mlp: read by the output alone, so its weights-target ablation equals the direct one exactly."""
    load_tiny(CASES["siglip"])
    root = tmp_path / "noproj"
    root.mkdir()
    config = root / "siglip.json"
    config.write_text(json.dumps(CASES["siglip"]))
    bb = load_tiny(CASES["siglip"], seed=5)
    checkpoint = root / "siglip.safetensors"
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()}, str(checkpoint))
    spec = _spec((checkpoint, config), tiny_waterbirds, [{"mean_ablate": {"pool_mlp": True}}], target="weights")
    assert spec.resolved_parts(2, 4)[0].part == "pool.mlp"
    compiled = compile_edit(spec, bb, cache_dir=tmp_path / "cache", batch_size=8)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    d = editclip.decompose(bb, images)
    direct = compiled.wrapper().encode_image(images)
    assert (direct - (d.total() - d.pool_mlp + compiled.tensors.pool_mlp_mean)).abs().max() <= 1e-5
    assert (direct - d.total()).abs().max() > 1e-3
    assert (compiled.patched_model().encode_image(images) - direct).abs().max() <= 1e-5
    # a CLS tower has no pool MLP
    with pytest.raises(editclip.EditclipError, match="only attention-pooled towers"):
        compile_edit(spec, load_tiny(CASES["vit-token"]), cache_dir=tmp_path / "cache2")
