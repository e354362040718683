"""Export: ONNX parity with torch for base, wrapper-edited and weights-patched models (batch 1, 3, 8 from one
file, fp32 and fp16), external weights, failed exports leave nothing, edit artifacts round-trip and refuse
other weights, patched checkpoints load in stock open_clip, the runtime's preprocessing matches open_clip's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from PIL import Image

import editclip
from editclip import cli, export, onnx_export
from editclip._compile import CompiledEdit, compile_edit
from editclip.edited import EditedCLIP, EditTensors, ImageEncoder
from editclip.errors import EditclipError
from editclip.export import (
    OnnxImageEncoder,
    export_onnx,
    load_edit,
    model_metadata,
    read_edit,
    read_metadata,
    save_edit,
    save_patched_checkpoint,
)
from editclip.spec import EditSpec


def hand_edit(bb: editclip.Backbone, seed: int = 0) -> EditTensors:
    """Ablate three heads, the embedding term and one MLP with random means; project one head onto a random span."""
    gen = torch.Generator().manual_seed(seed)
    dim, n = bb.shape.embed_dim, bb.shape.layers * bb.shape.heads
    edit = EditTensors.empty(dim)
    edit.ablate_heads = torch.tensor([0, n // 2, n - 1])
    edit.ablate_head_means = torch.randn(3, dim, generator=gen)
    basis = torch.linalg.qr(torch.randn(dim, dim // 4, generator=gen))[0]
    edit.project_heads = torch.tensor([n - 2])
    edit.project_linear = (basis @ basis.t())[None]
    edit.project_offset = torch.randn(1, dim, generator=gen)
    edit.ablate_mlps = torch.tensor([1])
    edit.ablate_mlp_means = torch.randn(1, dim, generator=gen)
    edit.ablate_embed = torch.tensor(True)
    edit.embed_mean = torch.randn(dim, generator=gen)
    return edit


@pytest.fixture(scope="module")
def compiled_weights(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path_factory: pytest.TempPathFactory
) -> CompiledEdit:
    """A weights-target edit of the tiny model compiled from a spec (mean-ablations and a text projection)."""
    checkpoint, config = tiny_files
    root = tmp_path_factory.mktemp("compile")
    spec = EditSpec.from_dict(
        {
            "editclip": 1,
            "name": "tiny-weights",
            "model": {"checkpoint": str(checkpoint), "config": str(config)},
            "calibration": {"data": {"format": "waterbirds", "root": str(tiny_waterbirds), "split": "val"}},
            "edits": [
                {"mean_ablate": ["L3.H1", "L2.H0"]},
                {"mean_ablate": {"layers": "L1", "parts": "mlp"}},
                {"project": {"head": "L3.H2", "away_from": {"texts": ["water", "a forest"]}}},
            ],
            "target": "weights",
        }
    )
    bb = editclip.load(checkpoint=checkpoint, config=config)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDITCLIP_CACHE", str(root / "cache"))
        return compile_edit(spec, bb, cache_dir=root / "cache", batch_size=8)


def _kinds(bb: editclip.Backbone, compiled: CompiledEdit | None = None) -> dict[str, torch.nn.Module]:
    if compiled is not None:
        patched = compiled.patched_model()
    else:  # a weights-patched model made by hand: one head's out_proj columns scaled, its bias shifted
        import copy

        patched = copy.deepcopy(bb.model)
        attn = patched.visual.transformer.resblocks[-1].attn
        with torch.no_grad():
            attn.out_proj.weight[:, : bb.shape.head_dim] *= 0.1
            attn.out_proj.bias.add_(0.05)
    return {"base": bb.model, "edited": EditedCLIP(bb.model, hand_edit(bb)), "patched": patched}


def _check_file(report: export.ExportReport, kind: str) -> None:
    assert report.parity is not None and report.parity.passed, report.summary()
    assert report.parity.batch_sizes == (1, 3, 8)
    model = onnx.load(str(report.path), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert model.opset_import[0].version >= 17
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["kind"] == kind
    assert json.loads(meta["image_size"]) == list(report.image_size)
    assert len(json.loads(meta["mean"])) == 3 and len(json.loads(meta["std"])) == 3
    assert meta["interpolation"] and meta["normalize"] in ("true", "false")


@pytest.mark.parametrize("kind", ["base", "edited", "patched"])
def test_onnx_parity_tiny(
    kind: str, tiny_bb: editclip.Backbone, compiled_weights: CompiledEdit, tmp_path: Path
) -> None:
    model = _kinds(tiny_bb, compiled_weights)[kind]
    report = export_onnx(model, tmp_path / f"{kind}.onnx", metadata={"kind": kind})
    _check_file(report, kind)
    assert report.parity.max_abs_diff <= 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{kind}.onnx"]  # no temporary files left


@pytest.mark.slow
def test_onnx_parity_vit_b32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    bb = editclip.load("ViT-B-32")
    for kind, model in _kinds(bb).items():
        _check_file(export_onnx(model, tmp_path / f"{kind}.onnx", metadata={"kind": kind}), kind)
        (tmp_path / f"{kind}.onnx").unlink()
    report = export_onnx(
        EditedCLIP(bb.model, hand_edit(bb)), tmp_path / "edited16.onnx", fp16=True, metadata={"kind": "edited"}
    )
    assert report.parity.fp16 and report.parity.min_cosine >= 0.999, report.summary()


@pytest.mark.parametrize("kind", ["base", "edited"])
def test_fp16_parity_normalized(kind: str, tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    model = _kinds(tiny_bb)[kind]
    report = export_onnx(model, tmp_path / "m.onnx", fp16=True, normalize=True, metadata={"kind": kind})
    _check_file(report, kind)
    assert report.parity.fp16 and report.parity.min_cosine >= 0.999
    enc = OnnxImageEncoder(report.path, providers="cpu")
    assert enc.precision == "fp16" and enc.normalize
    # onnxruntime's CPU provider has crashed on fp16 graphs at ORT_ENABLE_ALL: fp16 files get 'extended'
    level = enc.session.get_session_options().graph_optimization_level
    assert level == onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    out = enc(np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32), batch_size=2)
    assert out.dtype == np.float32 and out.shape == (5, tiny_bb.shape.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3)
    fp16_inits = [i for i in onnx.load(str(report.path)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_inits


def test_external_data_single_file(tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    target = tmp_path / "ext.onnx"
    report = export_onnx(tiny_bb.model, target, external_data_threshold=0, metadata={"kind": "base"})
    assert report.data_path == tmp_path / "ext.onnx.data" and report.data_path.stat().st_size > 100_000
    assert target.stat().st_size < 200_000  # the graph only
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx", "ext.onnx.data"]
    _check_file(report, "base")
    again = export_onnx(tiny_bb.model, target, check=False)  # inline now: the stale weights file goes
    assert again.data_path is None and sorted(p.name for p in tmp_path.iterdir()) == ["ext.onnx"]


def test_failed_parity_leaves_nothing(
    tiny_bb: editclip.Backbone, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_export, "FP32_ATOL", 0.0)  # Parity reads it there
    with pytest.raises(EditclipError, match=r"failed its parity check.*max abs diff .*nothing was written"):
        export_onnx(tiny_bb.model, tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments(tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    with pytest.raises(EditclipError, match="opset 16 is not supported"):
        export_onnx(tiny_bb.model, tmp_path / "m.onnx", opset=16)
    with pytest.raises(EditclipError, match=r"should end in \.onnx"):
        export_onnx(tiny_bb.model, tmp_path / "m.bin")
    path = _tiny_onnx(tiny_bb, tmp_path)
    with pytest.raises(EditclipError, match="NopeExecutionProvider not available in this onnxruntime"):
        OnnxImageEncoder(path, providers=["NopeExecutionProvider"])
    with pytest.raises(EditclipError, match=r"expected images \[N, 3, 32, 32\]"):
        OnnxImageEncoder(path).run(np.zeros((1, 3, 16, 16), np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]


def _tiny_onnx(bb: editclip.Backbone, folder: Path) -> Path:
    return export_onnx(ImageEncoder(bb.model), folder / "tiny.onnx", check=False).path


def test_runtime_preprocessing_matches_open_clip(tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    path = _tiny_onnx(tiny_bb, tmp_path)
    enc = OnnxImageEncoder(path)  # auto: CPU here
    assert enc.providers[-1] == "CPUExecutionProvider"
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in ((50, 37), (20, 64), (32, 32))
    ]
    want = torch.stack([tiny_bb.preprocess(im) for im in images]).numpy()
    np.testing.assert_allclose(enc.preprocess(images), want, atol=1e-5)
    with torch.no_grad():
        embeddings = tiny_bb.model.encode_image(torch.from_numpy(want)).numpy()
    np.testing.assert_allclose(enc(images), embeddings, atol=1e-4)


def test_edit_artifact_round_trip_and_refusal(
    tiny_bb: editclip.Backbone, tiny_files: tuple[Path, Path], tmp_path: Path
) -> None:
    edit = hand_edit(tiny_bb)
    meta = {
        **model_metadata(tiny_bb, "edited"),
        "editclip_spec": "name: hand\n",
        "editclip_convention": "exact",
        "editclip_provenance": {"data": "random", "count": 0},
    }
    path = save_edit(tmp_path / "edit.safetensors", edit, meta)
    tensors, stored = read_edit(path)
    for name, value in edit.to_dict().items():
        assert torch.equal(getattr(tensors, name), value), name
    assert (
        stored["editclip_spec"] == "name: hand\n"
        and json.loads(stored["editclip_provenance"])["data"] == "random"
    )
    assert stored["editclip_base_fingerprint"] == tiny_bb.fingerprint
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = EditedCLIP(tiny_bb.model, edit).encode_image(images)
        got = load_edit(path, tiny_bb).encode_image(images)
    assert torch.equal(got, want)

    other = editclip.load(config=tiny_files[1])  # same architecture, other (random) weights
    with pytest.raises(EditclipError, match=f"fingerprint {tiny_bb.fingerprint}.*has fingerprint {other.fingerprint}"):
        load_edit(path, other)
    with pytest.raises(EditclipError, match="is not an editclip edit artifact"):
        read_edit(tiny_files[0])
    with pytest.raises(EditclipError, match="needs 'editclip_base_fingerprint'"):
        save_edit(tmp_path / "x.safetensors", edit, {"editclip_spec": ""})


def test_patched_checkpoint_loads_in_stock_open_clip(
    compiled_weights: CompiledEdit, tiny_files: tuple[Path, Path], tmp_path: Path
) -> None:
    state = compiled_weights.patched_state_dict()
    path = save_patched_checkpoint(tmp_path / "patched.safetensors", state, compiled_weights.metadata())
    assert read_metadata(path)["editclip_target"] == "weights"
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "images.npy", images.numpy())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "editclip-tiny-test.json").write_text(tiny_files[1].read_text())
    script = f"""
import sys, numpy as np, torch, open_clip
open_clip.add_model_config({str(tmp_path / "configs")!r})
model = open_clip.create_model("editclip-tiny-test", pretrained={str(path)!r}).eval()
with torch.no_grad():
    out = model.encode_image(torch.from_numpy(np.load({str(tmp_path / "images.npy")!r})))
np.save({str(tmp_path / "out.npy")!r}, out.numpy())
assert not any(name.startswith("editclip") for name in sys.modules)
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    with torch.no_grad():
        want = compiled_weights.patched_model().encode_image(images).numpy()
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), want)


def test_cli_export_base_edit_and_patched(
    tiny_files: tuple[Path, Path],
    tiny_bb: editclip.Backbone,
    compiled_weights: CompiledEdit,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    checkpoint, config = tiny_files
    model_args = ["--checkpoint", str(checkpoint), "--model-config", str(config)]
    assert cli.main(["export", *model_args, "--out", str(tmp_path / "base.onnx"), "--check-batch-sizes", "1,2"]) == 0
    assert "base tiny: " in capsys.readouterr().out

    edit_path = save_edit(tmp_path / "edit.safetensors", hand_edit(tiny_bb), model_metadata(tiny_bb, "edited"))
    out = tmp_path / "edited.onnx"  # the base model comes from the source the artifact records
    assert (
        cli.main(
            ["export", "--edit", str(edit_path), "--out", str(out), "--fp16", "--normalize", "--check-batch-sizes", "2"]
        )
        == 0
    )
    enc = OnnxImageEncoder(out)
    assert enc.metadata["kind"] == "edited" and enc.precision == "fp16" and enc.normalize

    patched = save_patched_checkpoint(
        tmp_path / "patched.safetensors",
        compiled_weights.patched_state_dict(),
        {**model_metadata(tiny_bb, "patched"), **compiled_weights.metadata()},
    )
    out = tmp_path / "patched.onnx"
    assert (
        cli.main(
            ["export", "--checkpoint", str(patched), "--model-config", str(config), "--out", str(out), "--no-check"]
        )
        == 0
    )
    meta = OnnxImageEncoder(out).metadata
    assert meta["kind"] == "patched" and meta["editclip_base_fingerprint"] == tiny_bb.fingerprint
    assert meta["weights_fingerprint"] != tiny_bb.fingerprint and "editclip_spec" in meta

    other = editclip.load(config=config)
    other_ckpt = tmp_path / "other.safetensors"
    save_patched_checkpoint(other_ckpt, other.model.state_dict())
    args = ["export", "--edit", str(edit_path), "--checkpoint", str(other_ckpt), "--model-config", str(config)]
    assert cli.main([*args, "--out", str(tmp_path / "x.onnx")]) == 2
    assert "fingerprint" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_export_compiled(compiled_weights: CompiledEdit, tmp_path: Path) -> None:
    written = export.export_compiled(compiled_weights, tmp_path)
    assert Path(written["safetensors"]).name == "patched.safetensors"
    assert written["onnx"]["parity"]["passed"]
    meta = OnnxImageEncoder(written["onnx"]["path"]).metadata
    assert meta["kind"] == "patched" and meta["editclip_target"] == "weights"


def test_bench_export_tiny(tiny_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from editclip.commands._bench_export import register_export

    parser = argparse.ArgumentParser()
    register_export(parser.add_subparsers())
    checkpoint, config = tiny_files
    args = parser.parse_args(
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--model-config",
            str(config),
            "--batch-size",
            "2",
            "--repeats",
            "1",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for line in ("torch eager base", "torch EditedCLIP", "onnxruntime base", "onnxruntime edited", "(target <= 1.10)"):
        assert line in out
