"""Edits on transformers CLIP and SigLIP models, named by a local-dir: id in the spec: mean-ablation and projection
specs compile, run (fast and exact paths agree) and export to ONNX with parity; the weights target is a folder that
stock transformers loads and that equals the patched model; validate describes schema ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import editclip
from editclip import cli
from editclip._compile import compile_edit
from editclip.export import export_compiled
from editclip.families import encode_image
from editclip.runner import run_spec
from editclip.spec import EditSpec

transformers = pytest.importorskip("transformers")

EDITS = {
    "mean-ablation": [{"mean_ablate": ["L2.H1", "L1.H0"]}, {"mean_ablate": {"layers": "L0", "parts": "both"}}],
    "projection": [{"project": {"head": "L2.H3", "onto": {"texts": ["water", "a forest", "sky"]}}},
                   {"project": {"head": "L1.H2", "away_from": {"texts": ["a bird"]}}}],
}  # fmt: skip


@pytest.fixture(scope="module", params=["CLIPModel", "SiglipModel"])
def family(request: pytest.FixtureRequest) -> tuple[Path, editclip.Backbone, str]:
    """(folder, its Backbone, its transformers class) of a tiny CLIP or SigLIP with a text tower, 3 layers x 4 heads."""
    if request.param == "CLIPModel":
        return request.getfixturevalue("hf_folder"), request.getfixturevalue("hf_bb"), request.param
    folder = request.getfixturevalue("siglip_folder")
    return folder, editclip.load(f"local-dir:{folder}"), request.param


def _spec(hf_folder: Path, waterbirds: Path, edits: list, **extra: object) -> dict:
    return {
        "editclip": 1,
        "name": "hf",
        "model": {"name": f"local-dir:{hf_folder}"},
        "calibration": {"data": {"root": str(waterbirds), "split": "val"}},
        "edits": edits,
        "evaluate": {"data": {"root": str(waterbirds), "split": "test"}, "classes": ["landbird", "waterbird"],
                     "templates": ["a photo of a {}."], "label": "y", "groups": ["y", "place"]},
        **extra,
    }  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_hf_specs_compile_run_and_export_with_parity(family, tiny_waterbirds, tmp_path, kind):
    raw = _spec(family[0], tiny_waterbirds, EDITS[kind],
                export={"formats": ["safetensors", "onnx"], "dir": str(tmp_path / "export")})  # fmt: skip
    result = run_spec(EditSpec.from_dict(raw), tmp_path / "run", cache_dir=tmp_path / "cache", log=lambda _: None)
    report = result.report
    assert report["evaluation"]["checks"]["exact_vs_fast"]["disagreements"] == 0
    assert report["evaluation"]["checks"]["exact_vs_fast"]["max_abs_diff"] <= 1e-5
    parity = report["export"]["onnx"]["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= 1e-4
    assert Path(report["export"]["safetensors"]).is_file()


def test_hf_weights_target_is_a_folder_stock_transformers_loads(family, tiny_waterbirds, tmp_path, capsys):
    hf_folder, hf_bb, cls = family
    edits = [{"mean_ablate": ["L2.H1", "L0.H3"]}, {"mean_ablate": {"layers": "L1", "parts": "mlp"}},
             {"project": {"head": "L2.H0", "onto": {"texts": ["water", "a forest", "sky"]}}}]  # fmt: skip
    spec = EditSpec.from_dict(_spec(hf_folder, tiny_waterbirds, edits, target="weights"))
    compiled = compile_edit(spec, hf_bb, cache_dir=tmp_path / "cache")
    written = export_compiled(compiled, tmp_path / "export", ("safetensors", "onnx"))
    folder = Path(written["safetensors"])
    assert folder.name == "patched" and (folder / "config.json").is_file() and (folder / "editclip.json").is_file()
    stock = getattr(transformers, cls).from_pretrained(str(folder)).eval()
    patched = compiled.patched_model()
    state = patched.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in stock.state_dict().items())
    base = hf_bb.model.state_dict()
    changed = sorted(k for k, v in state.items() if not torch.equal(v, base[k]))
    assert changed == ["vision_model.encoder.layers.0.self_attn.out_proj.bias",
                       "vision_model.encoder.layers.0.self_attn.out_proj.weight",
                       "vision_model.encoder.layers.1.mlp.fc2.bias", "vision_model.encoder.layers.1.mlp.fc2.weight",
                       "vision_model.encoder.layers.2.self_attn.out_proj.bias",
                       "vision_model.encoder.layers.2.self_attn.out_proj.weight"]  # fmt: skip
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want, got = encode_image(patched, images), encode_image(stock, images)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (got - encode_image(hf_bb.model, images)).abs().max() > 1e-3  # the edit changed the features
    assert written["onnx"]["parity"]["passed"]
    # the folder is a model editclip loads again, with the processor and tokenizer carried along
    again = editclip.load(f"local-dir:{folder}")
    assert again.fingerprint == json.loads((folder / "editclip.json").read_text())["weights_fingerprint"]
    torch.testing.assert_close(again.encode_text(["a bird"]), hf_bb.encode_text(["a bird"]), atol=1e-6, rtol=0)
    assert again.source["preprocess_cfg"]["mean"] == hf_bb.source["preprocess_cfg"]["mean"]
    assert cli.main(["export", "--model", f"local-dir:{folder}", "--out", str(tmp_path / "patched.onnx")]) == 0
    assert capsys.readouterr().out.startswith(f"patched local-dir:{hf_folder}: ")  # kind patched, of its base
    fidelity = compiled.fidelity(images)  # the weights target is measured against the direct semantics
    assert fidelity["images"] == 4 and -1 <= fidelity["cosine_min"] <= fidelity["cosine_mean"] <= 1


def test_validate_describes_schema_ids(hf_folder, tiny_waterbirds, tmp_path, capsys):
    for name, says in ((f"local-dir:{hf_folder}", "(weights in the folder), fp32: 3 layers x 4 heads"),
                       ("hf-hub:someone/clip", "hf-hub:someone/clip (hub weights)")):  # fmt: skip
        raw = _spec(hf_folder, tiny_waterbirds, EDITS["mean-ablation"])
        raw["model"] = {"name": name}
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(raw))
        assert cli.main(["validate", str(path)]) == 0
        out = capsys.readouterr().out
        assert says in out and "random weights" not in out
    raw["model"] = {"name": "hf-hub:someone/clip", "pretrained": "openai"}
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["validate", str(path)]) == 2
    assert "carries its own weights" in capsys.readouterr().err
    raw["model"] = {"name": f"local-dir:{tmp_path / 'nothing'}"}
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["validate", str(path)]) == 2
    assert "does not exist" in capsys.readouterr().err
