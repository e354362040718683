"""The CLS-source ablation as an edit: ``mean_ablate: {cls_source: true}`` (parts ``L<i>.attn.cls``), compiled
to the wrapper (fast path == exact path == the official table's embedding), exported to ONNX with parity;
refused for the weights target, pooled towers and overlapping head edits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import editclip
from editclip._compile import calibration_store, compile_edit
from editclip.cli import main
from editclip.curves import cls_ablation_embeddings
from editclip.data import load_dataset
from editclip.edited import EditTensors
from editclip.errors import EditclipError
from editclip.evaluation_paths import exact_embeddings, fast_embeddings
from editclip.spec import EditSpec


def _data(files: tuple[Path, Path], root: Path, edits: list, **extra) -> dict:
    checkpoint, config = files
    return {"editclip": 1, "model": {"checkpoint": str(checkpoint), "config": str(config)},
            "calibration": {"data": {"root": str(root), "split": "test"}, "transductive": True},
            "edits": edits, **extra}  # fmt: skip


def _spec(files: tuple[Path, Path], root: Path, edits: list, **extra) -> EditSpec:
    return EditSpec.from_dict(_data(files, root, edits, **extra))


def test_spec_names_and_layers(tiny_files, tiny_waterbirds) -> None:
    spec = _spec(tiny_files, tiny_waterbirds, [{"mean_ablate": {"cls_source": True}}])
    assert [p.part for p in spec.resolved_parts(4, 4)] == [f"L{i}.attn.cls" for i in range(4)]
    both = _spec(tiny_files, tiny_waterbirds, [{"mean_ablate": {"layers": "L1-2", "parts": "mlp", "cls_source": True,
                                                                "embed": True}}])  # fmt: skip
    assert [p.part for p in both.resolved_parts(4, 4)] == ["L1.mlp", "L1.attn.cls", "L2.mlp", "L2.attn.cls", "embed"]
    assert both.edits[0].mean_ablate.describe() == (
        "mean_ablate MLPs of layers L1-2; CLS-source attention of layers L1-2; embed"
    )
    last = _spec(tiny_files, tiny_waterbirds, [{"mean_ablate": {"layers": "last:1", "cls_source": True}},
                                               {"mean_ablate": ["L1.H2"]}])  # fmt: skip
    assert [p.part for p in last.resolved_parts(4, 4)] == ["L3.attn.cls", "L1.H2"]  # other layers: no overlap
    written = yaml.safe_load(_spec(tiny_files, tiny_waterbirds, [{"mean_ablate": ["L1.H2"]}]).to_yaml())
    assert "cls_source" not in written["edits"][0]["mean_ablate"]
    assert EditSpec.from_dict(yaml.safe_load(both.to_yaml())) == both


BAD = [
    ([{"mean_ablate": {"cls_source": True, "parts": "attention"}}], "lies inside the heads of L0"),
    ([{"mean_ablate": {"cls_source": True, "layers": "L2"}}, {"mean_ablate": ["L2.H1"]}],
     "L2.attn.cls, which lies inside the part of L2.H1, which edits[1] mean-ablates"),
    ([{"mean_ablate": {"cls_source": True}}, {"project": {"head": "L3.H0", "away_from": {"texts": ["water"]}}}],
     "which edits[1] projects"),
    ([{"mean_ablate": {"cls_source": True, "layers": "L7"}}], "layer 7 is out of range; this model has layers 0..3"),
    ([{"mean_ablate": {"cls_source": False}}], "nothing to ablate"),
    ([{"mean_ablate": {"cls_source": "yes"}}], "cls_source"),
    ([{"mean_ablate": {"layers": "L1"}}], "layers needs parts (attention, mlp or both) or cls_source: true"),
]


@pytest.mark.parametrize(("edits", "message"), BAD)
def test_inconsistent_cls_source_edits_are_refused(edits, message, tiny_files, tiny_waterbirds, tmp_path, capsys):
    with pytest.raises(EditclipError, match="edits") as err:
        _spec(tiny_files, tiny_waterbirds, edits)
    assert message in str(err.value)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_data(tiny_files, tiny_waterbirds, edits)))
    assert main(["validate", str(path)]) == 2
    err_text = capsys.readouterr().err
    assert message in err_text and "Traceback" not in err_text


def test_overlap_with_last_k_is_found_with_the_models_shape(tiny_files, tiny_waterbirds, tiny_bb, tmp_path) -> None:
    """A config-less shape (last:k) is checked again when compiled against the model."""
    edits = [{"mean_ablate": {"cls_source": True, "layers": "last:2"}},
             {"mean_ablate": {"layers": "last:1", "parts": "attention"}}]  # fmt: skip
    spec = EditSpec.model_validate(_data(tiny_files, tiny_waterbirds, edits))
    with pytest.raises(EditclipError, match=r"L3\.attn\.cls, which lies inside the heads of L3"):
        compile_edit(spec, tiny_bb, cache_dir=tmp_path / "cache", batch_size=8)


def test_weights_target_is_refused_with_the_reason(tiny_files, tiny_waterbirds, tiny_bb, tmp_path, capsys) -> None:
    edits = [{"mean_ablate": {"cls_source": True}}]
    with pytest.raises(EditclipError, match="the weights target cannot express a CLS-source ablation"):
        _spec(tiny_files, tiny_waterbirds, edits, target="weights")
    compiled = compile_edit(_spec(tiny_files, tiny_waterbirds, edits), tiny_bb, cache_dir=tmp_path / "c", batch_size=8)
    with pytest.raises(EditclipError, match="image-dependent quantities"):
        compiled.patched_state_dict()


@pytest.fixture(scope="module")
def compiled_and_store(tiny_files, tiny_waterbirds, tiny_bb, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cls-cache")
    spec = _spec(tiny_files, tiny_waterbirds, [{"mean_ablate": {"cls_source": True, "parts": "mlp", "embed": True}}])
    compiled = compile_edit(spec, tiny_bb, cache_dir=cache, batch_size=8)
    store = calibration_store(tiny_bb, load_dataset(tiny_waterbirds, split="test"), cache)
    return compiled, store


def test_wrapper_equals_the_fast_path_and_the_official_table(compiled_and_store, tiny_bb, tiny_waterbirds) -> None:
    """Calibrated on the evaluated images (the official protocol), the wrapper's MLPs + embed + CLS-source
    ablation is the table's row "+ MLPs + CLS ablation" in the exact convention."""
    compiled, store = compiled_and_store
    assert compiled.tensors.ablate_cls_source.tolist() == [0, 1, 2, 3]
    dataset = load_dataset(tiny_waterbirds, split="test")
    exact = exact_embeddings(compiled.wrapper().encode_image, dataset, tiny_bb.preprocess, progress=False)
    fast = fast_embeddings(store, compiled.tensors, progress=False)
    table = cls_ablation_embeddings(store)
    torch.testing.assert_close(exact, fast, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, table["mlps_and_cls_source"], atol=1e-5, rtol=1e-5)
    assert (fast - table["mlps"]).abs().max() > 1e-3  # the CLS-source part did change the embedding


def test_onnx_export_of_the_wrapper_has_parity(compiled_and_store, tmp_path) -> None:
    compiled, _ = compiled_and_store
    report = editclip.export_onnx(compiled.wrapper(), tmp_path / "cls.onnx")
    assert report.parity.passed and report.parity.max_abs_diff <= 1e-4, report.summary()


def test_edit_tensors_round_trip_and_old_artifacts(compiled_and_store) -> None:
    compiled, _ = compiled_and_store
    tensors = compiled.tensors.to_dict()
    again = EditTensors.from_dict(tensors)
    torch.testing.assert_close(again.cls_source_means, compiled.tensors.cls_source_means)
    old = {k: v for k, v in tensors.items() if k not in ("ablate_cls_source", "cls_source_means")}
    assert EditTensors.from_dict(old).ablate_cls_source.numel() == 0
    assert "4 layers' CLS-source attention mean-ablated" in repr(compiled.tensors)


def test_pooled_tower_is_refused(tiny_waterbirds, tmp_path) -> None:
    from safetensors.torch import save_file

    from tests.test_pooled_towers import CASES, load_tiny

    bb = load_tiny(CASES["siglip"], seed=2)
    config = tmp_path / "siglip.json"
    config.write_text(json.dumps(CASES["siglip"]))
    checkpoint = tmp_path / "siglip.safetensors"
    save_file({k: v.contiguous() for k, v in bb.model.state_dict().items()}, str(checkpoint))
    spec = _spec((checkpoint, config), tiny_waterbirds, [{"mean_ablate": {"cls_source": True}}])
    with pytest.raises(EditclipError, match="pools with 'attn' and reads out no class token"):
        compile_edit(spec, bb, cache_dir=tmp_path / "cache", batch_size=8)


def test_run_command_runs_a_cls_source_spec(tiny_files, tiny_waterbirds, tmp_path) -> None:
    evaluate = {"data": {"root": str(tiny_waterbirds), "split": "test"}, "classes": ["landbird", "waterbird"],
                "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]}  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_data(tiny_files, tiny_waterbirds, [{"mean_ablate": {"cls_source": True}}],
                                         evaluate=evaluate)))  # fmt: skip
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache")]) == 0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["edited_parts"] == [f"L{i}.attn.cls" for i in range(4)]
    assert report["edits"] == ["mean_ablate CLS-source attention of all layers"]
    check = report["evaluation"]["checks"]["exact_vs_fast"]
    assert check["agreement"] == 1.0 and check["max_abs_diff"] <= 1e-5


def test_random_head_controls_refuse_a_cls_source_edit(compiled_and_store) -> None:
    from editclip.controls import head_action

    with pytest.raises(EditclipError, match="the CLS-source attention"):
        head_action(compiled_and_store[0].tensors)


def test_statistics_file_serves_the_cls_source_means(compiled_and_store, tiny_files, tiny_waterbirds, tiny_bb,
                                                     tmp_path) -> None:  # fmt: skip
    from editclip.stats import accumulate_stats

    compiled, store = compiled_and_store
    stats = accumulate_stats(tiny_bb, load_dataset(tiny_waterbirds, split="test"), tmp_path / "stats.safetensors",
                             batch_size=8)  # fmt: skip
    spec = _spec(tiny_files, tiny_waterbirds, [{"mean_ablate": {"cls_source": True, "parts": "mlp", "embed": True}}])
    from_stats = compile_edit(spec, tiny_bb, stats)
    torch.testing.assert_close(from_stats.tensors.cls_source_means, compiled.tensors.cls_source_means,
                               atol=1e-6, rtol=1e-5)  # fmt: skip
    torch.testing.assert_close(store.mean("cls_source"), stats.mean("cls_source"), atol=1e-6, rtol=1e-5)
    del stats.tensors["sum.cls_source"]  # statistics made before the part was summed
    with pytest.raises(EditclipError, match="hold no CLS-source parts"):
        compile_edit(spec, tiny_bb, stats)
