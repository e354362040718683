"""Edit specs: every malformed spec gets a specific message with its field path (and line) and exit 2
from the CLI with nothing written; valid specs round-trip through YAML; the JSON Schema documents itself."""

from __future__ import annotations

import ast
import copy
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from editclip import cli
from editclip.errors import EditclipError
from editclip.names import HeadRef, parse_head, parse_layers, parse_mlp
from editclip.spec import EditSpec, MeanAblate, Project

METADATA = """img_id,img_filename,y,split,place,place_filename
1,a/1.jpg,0,0,0,x
2,a/2.jpg,1,0,1,x
3,b/3.jpg,0,1,1,x
4,b/4.jpg,1,1,0,x
5,c/5.jpg,1,2,1,x
6,c/6.jpg,0,2,0,x
"""

# A 6-layer, 4-head image tower (the spec reads only the shape from the config JSON).
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": 6, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a Waterbirds-layout dataset, a tiny model config and a pool; the current folder."""
    (tmp_path / "wb").mkdir()
    (tmp_path / "wb" / "metadata.csv").write_text(METADATA)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY_CONFIG))
    (tmp_path / "pool.txt").write_text("water\nforest\nsky\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def base_spec() -> dict[str, Any]:
    """A valid spec for the tiny model that uses every kind of edit."""
    return {
        "editclip": 1,
        "name": "tiny",
        "model": {"config": "tiny.json"},
        "calibration": {"data": {"format": "waterbirds", "root": "wb", "split": "val"}, "max_images": 100},
        "edits": [
            {"mean_ablate": ["L5.H1", "L4.H2"]},
            {"mean_ablate": {"layers": "L0-2", "parts": "attention"}},
            {"mean_ablate": {"parts": "mlp", "embed": True}},
            {"project": {"head": "L5.H3", "onto": {"textspan": {"pool": "pool.txt", "m": 2}}}},
            {"project": {"head": "L4.H0", "away_from": {"texts": ["a photo taken near water", "a forest"]}}},
        ],
        "target": "wrapper",
        "evaluate": {
            "data": {"format": "waterbirds", "root": "wb", "split": "test"},
            "classes": ["landbird", "waterbird"],
            "templates": ["a photo of a {}."],
            "label": "y",
            "groups": ["y", "place"],
        },
        "export": {"formats": ["safetensors", "onnx"], "dir": "exports/tiny"},
    }


def _walk(spec: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container holding the last key of `path` (dots and [i]) and that key."""
    keys = [int(k) if k.isdigit() else k for k in re.findall(r"[^.\[\]]+", path)]
    target = spec
    for key in keys[:-1]:
        target = target[key]
    return target, keys[-1]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets `path` in the spec dict."""

    def mutate(spec: dict[str, Any]) -> None:
        target, key = _walk(spec, path)
        target[key] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    """A mutation that removes `path` from the spec dict."""

    def mutate(spec: dict[str, Any]) -> None:
        target, key = _walk(spec, path)
        del target[key]

    return mutate


def _append_edit(edit: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec["edits"].append(edit)


# (kind, mutation, the field path named, a fragment of its message)
MALFORMED: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("bad version", _set("editclip", 2), "editclip", "unsupported spec version 2"),
    ("missing version", _delete("editclip"), "editclip", "required field missing"),
    ("unknown top-level key", _set("outputs", "x"), "outputs", "unknown key; allowed keys: editclip, name"),
    ("unknown nested key", _set("model.pretrianed", "x"), "model.pretrianed", "unknown key"),
    ("wrong type: int", _set("calibration.max_images", "many"), "calibration.max_images", "expected an integer"),
    ("wrong type: mapping", _set("calibration", ["wb"]), "calibration", "expected a mapping"),
    ("wrong type: list", _set("edits", {"mean_ablate": ["L5.H1"]}), "edits", "expected a list"),
    ("wrong type: bool", _set("edits[2].mean_ablate.embed", "yes"), "edits[2].mean_ablate.embed", "true or false"),
    ("non-positive max_images", _set("calibration.max_images", 0), "calibration.max_images", "greater than 0"),
    ("bad head name", _set("edits[0].mean_ablate", ["L5H1"]), "edits[0].mean_ablate.heads[0]", "bad head name 'L5H1'"),
    ("head not a string", _set("edits[3].project.head", 7), "edits[3].project.head", "expected a string"),
    ("bad layer range", _set("edits[1].mean_ablate.layers", "L3-1"), "edits[1].mean_ablate.layers", "before the start"),
    ("bad layer syntax", _set("edits[1].mean_ablate.layers", "first:3"), "edits[1].mean_ablate.layers", "'first:3'"),
    ("bad parts", _set("edits[1].mean_ablate.parts", "attn"), "edits[1].mean_ablate.parts", "'attention', 'mlp'"),
    ("layers without parts", _delete("edits[1].mean_ablate.parts"), "edits[1].mean_ablate", "layers needs parts"),
    ("empty ablation", _set("edits[2].mean_ablate", {}), "edits[2].mean_ablate", "nothing to ablate"),
    ("empty head list", _set("edits[0].mean_ablate", []), "edits[0].mean_ablate.heads", "empty head list"),
    ("unknown edit kind", _set("edits[0]", {"zero_ablate": ["L5.H1"]}), "edits[0].zero_ablate", "mean_ablate, project"),
    ("two kinds in one edit", _set("edits[0].project", {"head": "L1.H1", "onto": {"texts": ["a"]}}), "edits[0]",
     "exactly one of: mean_ablate, project"),
    ("empty edit", _set("edits[0]", {}), "edits[0]", "exactly one of: mean_ablate, project"),
    ("empty edits", _set("edits", []), "edits", "no edits"),
    ("m <= 0", _set("edits[3].project.onto.textspan.m", 0), "edits[3].project.onto.textspan.m", "greater than 0"),
    ("m > pool", _set("edits[3].project.onto.textspan.m", 5), "edits[3].project.onto.textspan.m",
     "m=5 is more than the 3 texts"),
    ("missing pool file", _set("edits[3].project.onto.textspan.pool", "pools/none.txt"),
     "edits[3].project.onto.textspan.pool", "pools/none.txt does not exist"),
    ("bad TextSpan variant", _set("edits[3].project.onto.textspan.variant", "fast"),
     "edits[3].project.onto.textspan.variant", "'paper' or 'official'"),
    ("empty texts", _set("edits[4].project.away_from.texts", []), "edits[4].project.away_from.texts",
     "empty text list"),
    ("blank text", _set("edits[4].project.away_from.texts", ["  "]), "edits[4].project.away_from.texts[0]",
     "empty text"),
    ("onto and away_from", _set("edits[4].project.onto", {"texts": ["a"]}), "edits[4].project",
     "exactly one of onto, away_from"),
    ("basis with two sources", _set("edits[4].project.away_from.textspan", {"pool": "pool.txt", "m": 1}),
     "edits[4].project.away_from", "exactly one of textspan, texts"),
    ("ablate and project one head", _append_edit({"project": {"head": "L4.H2", "onto": {"texts": ["a"]}}}),
     "edits[5].project.head", "mean-ablated by edits[0]"),
    ("two projections of one head", _append_edit({"project": {"head": "L5.H3", "away_from": {"texts": ["a"]}}}),
     "edits[5].project.head", "already by edits[3]"),
    ("layer-range ablation and project", _append_edit({"project": {"head": "L2.H0", "onto": {"texts": ["a"]}}}),
     "edits[5].project.head", "mean-ablated by edits[1] (mean_ablate attention of layers L0-2)"),
    ("bad target", _set("target", "weight"), "target", "'wrapper' or 'weights'"),
    ("bad convention", _set("convention", "paper"), "convention", "'exact' or 'official'"),
    ("bad export format", _set("export.formats", ["safetensors", "onx"]), "export.formats[1]",
     "'safetensors' or 'onnx'"),
    ("repeated export format", _set("export.formats", ["onnx", "onnx"]), "export.formats", "listed twice"),
    ("missing calibration data", _set("calibration.data.root", "data/nowhere"), "calibration.data.root",
     "data/nowhere does not exist"),
    ("missing evaluation data", _set("evaluate.data.root", "elsewhere"), "evaluate.data.root",
     "elsewhere does not exist"),
    ("missing checkpoint", _set("model", {"checkpoint": "w.safetensors", "config": "tiny.json"}), "model.checkpoint",
     "w.safetensors does not exist"),
    ("missing pretrained file", _set("model", {"name": "ViT-B-32", "pretrained": "weights/b32.pt"}),
     "model.pretrained", "weights/b32.pt does not exist"),
    ("bad Waterbirds split", _set("calibration.data.split", "valid"), "calibration.data.split",
     "unknown Waterbirds split 'valid'"),
    ("unknown label column", _set("evaluate.label", "label"), "evaluate.label", "no column 'label' in "),
    ("unknown group column", _set("evaluate.groups", ["y", "background"]), "evaluate.groups", "no column 'background'"),
    ("label values beyond classes", _set("evaluate.label", "split"), "evaluate.label",
     "value(s) 2 but classes has 2 names"),
    ("one class", _set("evaluate.classes", ["bird"]), "evaluate.classes", "at least 2 classes"),
    ("repeated class", _set("evaluate.classes", ["bird", "bird"]), "evaluate.classes", "repeated class names: bird"),
    ("template without {}", _set("evaluate.templates", ["a photo"]), "evaluate.templates", "exactly one '{}'"),
    ("unknown template set", _set("evaluate.templates", "imagenet"), "evaluate.templates", "unknown template set"),
    ("no model source", _set("model", {"precision": "fp16"}), "model", "no model"),
    ("unknown open_clip model", _set("model", {"name": "ViT-L-41"}), "model", "unknown open_clip model 'ViT-L-41'"),
    ("toyworld with a name", _set("model", {"toyworld": True, "name": "ViT-B-32"}), "model", "toyworld: true takes no"),
    ("head out of range", _set("edits[0].mean_ablate", ["L6.H1"]), "edits[0].mean_ablate.heads[0]",
     "this model has layers 0..5"),
    ("head index out of range", _set("edits[4].project.head", "L4.H4"), "edits[4].project.head",
     "this model has heads 0..3"),
    ("layer range out of range", _set("edits[1].mean_ablate.layers", "L6-7"), "edits[1].mean_ablate.layers",
     "layer 6 is out of range; this model has layers 0..5"),
    ("last:k beyond the model", _set("edits[1].mean_ablate.layers", "last:9"), "edits[1].mean_ablate.layers",
     "k must be in 1..6"),
    ("full-width digit in a head", _set("edits[0].mean_ablate", ["L5.H1", "L\uff13.H1"]),
     "edits[0].mean_ablate.heads[1]", "bad head name 'L\uff13.H1'"),
    ("full-width digits in a projected head", _set("edits[4].project.head", "L\uff14.H\uff10"),
     "edits[4].project.head", "bad head name"),
    ("Arabic-Indic digit in layers", _set("edits[1].mean_ablate.layers", "L0-\u0662"), "edits[1].mean_ablate.layers",
     "bad layer selection"),
    ("huge layer range", _set("edits[1].mean_ablate.layers", "L0-999999999"), "edits[1].mean_ablate.layers",
     "layer 999999999 is out of range"),
    ("huge layer index in a head", _set("edits[0].mean_ablate", ["L99999999999999.H1"]),
     "edits[0].mean_ablate.heads[0]", "far out of range"),
    ("huge head index", _set("edits[4].project.head", "L1.H400000"), "edits[4].project.head",
     "head 400000 is out of range"),
    ("huge last:k", _set("edits[1].mean_ablate.layers", "last:99999999"), "edits[1].mean_ablate.layers",
     "k is out of range"),
    ("last:k ablation and project", _set("edits[1].mean_ablate.layers", "last:2"), "edits[3].project.head",
     "mean-ablated by edits[1] (mean_ablate attention of layers last:2)"),
]  # fmt: skip


def _write(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_base_spec_is_valid(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(workdir / "spec.yaml", base_spec())
    assert cli.main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {path}")
    assert "6 layers x 4 heads" in out
    assert "[1] mean_ablate attention of layers L0-2 -> 12 heads" in out
    assert "[2] mean_ablate MLPs of all layers; embed -> 6 MLPs, embed" in out


def test_malformed_table_has_enough_kinds() -> None:
    assert len(MALFORMED) >= 20
    assert len({kind for kind, *_ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(("kind", "mutate", "field", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_spec(
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
    fragment: str,
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec = copy.deepcopy(base_spec())
    mutate(spec)
    path = _write(workdir / "spec.yaml", spec)
    before = _tree(workdir)

    assert cli.main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert _tree(workdir) == before
    problems = [line.strip() for line in captured.err.splitlines()[1:]]
    matching = [p for p in problems if p.startswith(f"{field} (line ") and fragment in p]
    assert matching, f"{kind}: no problem at {field!r} with {fragment!r} in:\n{captured.err}"
    line = int(re.match(r".*?\(line (\d+)\)", matching[0]).group(1))  # type: ignore[union-attr]
    assert 1 <= line <= len(path.read_text().splitlines())


def test_error_lines_point_at_the_field(workdir: Path) -> None:
    text = """\
editclip: 1
model: {config: tiny.json}
calibration:
  data: {root: wb, split: val}
edits:
  - mean_ablate: [L5.H1]
  - project:
      head: L5.H9
      onto: {texts: [water]}
  - mean_ablate: {layers: L0-3, parts: attention, extra: 1}
"""
    (workdir / "spec.yaml").write_text(text)
    with pytest.raises(EditclipError) as info:
        EditSpec.from_yaml("spec.yaml")
    # one pass: the head out of the config's range is reported with the unknown key, in file order
    assert str(info.value).splitlines() == [
        "invalid edit spec spec.yaml (2 problems):",
        "  edits[1].project.head (line 8): head L5.H9: head 9 is out of range; this model has heads 0..3",
        "  edits[2].mean_ablate.extra (line 10): unknown key; allowed keys: heads, layers, parts, embed, pool_mlp,"
        " cls_source",
    ]

    (workdir / "spec.yaml").write_text(
        text.replace(", extra: 1", "").replace("config: tiny.json", "name: hf-hub:org/m")
    )
    spec = EditSpec.from_yaml("spec.yaml")  # a hub model's shape is known once it is loaded
    with pytest.raises(EditclipError) as info:
        spec.check_against(6, 4)
    assert "edits[1].project.head (line 8): head L5.H9: head 9 is out of range; this model has heads 0..3" in str(
        info.value
    )


def test_every_problem_is_reported(workdir: Path) -> None:
    spec = base_spec()
    spec["target"] = "both"
    spec["edits"][0] = {"mean_ablate": ["L5.H1", "H2"]}
    spec["export"]["formats"] = []
    with pytest.raises(EditclipError) as info:
        EditSpec.from_dict(spec)
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid edit spec (3 problems):"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "edits[0].mean_ablate.heads[1]",
        "target",
        "export.formats",
    ]
    assert "got 'both'" in lines[2]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "is empty"),
        ("- editclip: 1\n", "spec (line 1): expected a mapping"),
        ("editclip: 1\nedits: [\n", "not valid YAML"),
        ("editclip: 1\ntarget: wrapper\ntarget: weights\n", "target (line 3): duplicate key (first at line 2)"),
    ],
)
def test_unreadable_files(text: str, fragment: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "spec.yaml").write_text(text)
    assert cli.main(["validate", "spec.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert fragment in captured.err


def test_missing_spec_file(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "nope.yaml"]) == 2
    assert "spec file nope.yaml does not exist" in capsys.readouterr().err


def test_yaml_round_trip(workdir: Path) -> None:
    spec = EditSpec.from_dict(base_spec())
    text = spec.to_yaml()
    (workdir / "again.yaml").write_text(text)
    again = EditSpec.from_yaml("again.yaml")
    assert again == spec
    assert again.to_yaml() == text
    assert EditSpec.from_dict(yaml.safe_load(text)) == spec
    # the shorthand list reads as {heads: [...]}, defaults are written out, the Waterbirds split named
    data = yaml.safe_load(text)
    assert data["edits"][0] == {"mean_ablate": {"heads": ["L5.H1", "L4.H2"], "embed": False}}
    assert data["convention"] == "exact"


def test_round_trip_keeps_canonical_names_and_splits(workdir: Path) -> None:
    spec = base_spec()
    spec["edits"][0] = {"mean_ablate": ["L05.H01"]}
    spec["edits"][1]["mean_ablate"]["layers"] = 2
    spec["evaluate"]["data"]["split"] = 2
    parsed = EditSpec.from_dict(spec)
    assert parsed.edits[0].action.heads == ["L5.H1"]  # type: ignore[union-attr]
    assert parsed.edits[1].action.layers == "L2"  # type: ignore[union-attr]
    assert parsed.evaluate is not None and parsed.evaluate.data.split == "test"
    assert EditSpec.from_dict(yaml.safe_load(parsed.to_yaml())) == parsed


def test_resolved_parts(workdir: Path) -> None:
    spec = EditSpec.from_dict(base_spec())
    resolved = spec.resolved_parts(6, 4)
    names = [r.part for r in resolved]
    assert len(names) == len(set(names))
    assert names[:2] == ["L5.H1", "L4.H2"]
    assert [r.part for r in resolved if r.edit == 1] == [f"L{l}.H{h}" for l in range(3) for h in range(4)]
    assert [r.part for r in resolved if r.edit == 2] == [f"L{l}.mlp" for l in range(6)] + ["embed"]
    projections = [(r.part, r.action.mode, r.edit) for r in resolved if isinstance(r.action, Project)]
    assert projections == [("L5.H3", "onto", 3), ("L4.H0", "away_from", 4)]
    assert all(isinstance(r.action, MeanAblate) for r in resolved if r.edit < 3)
    assert len(resolved) == 2 + 12 + 7 + 2


def test_repeated_ablation_counts_once(workdir: Path) -> None:
    spec = base_spec()
    spec["edits"].append({"mean_ablate": {"heads": ["L5.H1", "L1.H0", "L3.H3"], "layers": "last:1", "parts": "mlp"}})
    resolved = EditSpec.from_dict(spec).resolved_parts(6, 4)
    by_part = {r.part: r.edit for r in resolved}
    assert len(by_part) == len(resolved)
    assert (by_part["L5.H1"], by_part["L1.H0"], by_part["L3.H3"], by_part["L5.mlp"]) == (0, 1, 5, 2)


def test_check_against_names_the_valid_range(workdir: Path) -> None:
    spec = base_spec()
    spec["model"] = {"name": "ViT-B-16"}
    spec["edits"] = [{"mean_ablate": ["L11.H6", "L12.H0"]}, {"mean_ablate": {"layers": "L0-12", "parts": "mlp"}}]
    with pytest.raises(EditclipError) as info:
        EditSpec.from_dict(spec)  # ViT-B-16's config declares 12 layers of 12 heads
    message = str(info.value)
    assert (
        "edits[0].mean_ablate.heads[1]: head L12.H0: layer 12 is out of range; this model has layers 0..11" in message
    )
    assert "edits[1].mean_ablate.layers: 'L0-12': layer 12 is out of range" in message

    spec["model"] = {"name": "hf-hub:org/model"}  # shape unknown until the model is loaded
    parsed = EditSpec.from_dict(spec)
    assert parsed.model.vision_layers_heads() is None
    with pytest.raises(EditclipError) as info:
        parsed.check_against(12, 12)
    assert str(info.value) == message
    parsed.check_against(24, 16)


def test_paper_waterbirds_l14_edit_is_a_few_lines(workdir: Path) -> None:
    text = """\
editclip: 1
model: {name: ViT-L-14, pretrained: laion2b_s32b_b82k}
calibration: {data: {format: waterbirds, root: wb, split: val}}
edits:
  - mean_ablate: [L21.H1, L22.H12, L22.H13, L21.H11, L21.H14, L23.H6, L21.H3, L21.H6, L21.H8, L21.H13,
                  L22.H2, L22.H15, L23.H1, L23.H3, L23.H5]
  - mean_ablate: {parts: mlp, embed: true}
  - mean_ablate: {layers: L0-19, parts: attention}
evaluate: {data: {root: wb, split: test}, classes: [landbird, waterbird], label: y, groups: [y, place]}
"""
    (workdir / "l14.yaml").write_text(text)
    resolved = EditSpec.from_yaml("l14.yaml").resolved_parts(24, 16)
    assert sum(r.part.endswith(".mlp") for r in resolved) == 24
    assert sum(".H" in r.part for r in resolved) == 15 + 20 * 16
    assert "embed" in [r.part for r in resolved]


def test_json_schema_documents_every_field(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = EditSpec.json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["properties"]["editclip"]["const"] == 1
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        assert obj["additionalProperties"] is False, obj["title"]
        for name, prop in obj["properties"].items():
            assert prop.get("description"), f"{obj['title']}.{name} has no description"
    assert schema["$defs"]["Edit"]["maxProperties"] == 1
    assert {"type": "array", "items": {"type": "string", "pattern": r"^L\d+\.H\d+$"}, "minItems": 1} in (
        schema["$defs"]["Edit"]["properties"]["mean_ablate"]["anyOf"]
    )

    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema
    assert cli.main(["schema", "--out", "out/schema.json"]) == 0
    assert json.loads((workdir / "out" / "schema.json").read_text()) == schema
    assert [p.name for p in (workdir / "out").iterdir()] == ["schema.json"]


def test_spec_package_does_not_import_torch() -> None:
    import editclip.spec

    package = Path(editclip.spec.__file__).parent
    modules = [*sorted(package.glob("*.py")), package.parent / "model_config.py"]
    assert len(modules) > 5, modules
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any(m.split(".")[0] in ("torch", "open_clip", "numpy") for m in imported), (module, imported)
        editclip_modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 2}
        # classnames imports open_clip only when `imagenet` is asked for
        torch_free = {"_constants", "errors", "names", "model_config", "classnames"}
        assert editclip_modules <= torch_free, (module, editclip_modules)
        assert not any(m.startswith("editclip") for m in imported), (module, imported)


def _laughs(levels: int, width: int = 9) -> str:
    """A "billion laughs" document: each level's list holds `width` aliases of the level below."""
    rows = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        rows.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(rows) + "\n"


BOMBS = {
    "alias bomb at the top": "editclip: 1\n" + _laughs(10),
    "alias bomb inside edits": "editclip: 1\n" + _laughs(10).replace("a9: &a9", "edits: &a9"),
    "nested alias bomb in a field": "editclip: 1\nname:\n  k: &n0 [a, b, c, d, e, f, g, h]\n"
    + "".join(
        f"  k{i}: &n{i} [*n{i - 1}, *n{i - 1}, *n{i - 1}, *n{i - 1}, *n{i - 1}, *n{i - 1}]\n" for i in range(1, 12)
    ),
    "deep nesting": "editclip: 1\nname: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep mapping nesting": "editclip: 1\n" + "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x\n",
    "recursive alias": "editclip: 1\nname: &r [*r]\n",
}


@pytest.mark.parametrize("kind", list(BOMBS))
def test_yaml_bombs_fail_fast(kind: str, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = BOMBS[kind]
    assert len(text) < 60_000
    (workdir / "bomb.yaml").write_text(text)
    before = _tree(workdir)
    start = time.perf_counter()
    assert cli.main(["validate", "bomb.yaml"]) == 2
    assert time.perf_counter() - start < 5  # generous; it takes milliseconds
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bomb.yaml" in captured.err
    assert re.search(r"alias|nested more than|not valid YAML", captured.err), captured.err
    assert "Traceback" not in captured.err
    assert _tree(workdir) == before


def test_a_small_alias_bomb_is_refused_by_size(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "editclip: 1\n" + _laughs(9)  # 9 ** 8 = 43 million values from 400 bytes
    assert len(text) < 1024
    (workdir / "bomb.yaml").write_text(text)
    assert cli.main(["validate", "bomb.yaml"]) == 2
    assert "its aliases expand to more than 100000 values" in capsys.readouterr().err


def test_modest_aliases_are_fine(workdir: Path) -> None:
    spec = base_spec()
    text = yaml.safe_dump(spec, sort_keys=False)
    text = text.replace(
        "  data:\n    format: waterbirds\n    root: wb\n    split: val\n",
        "  data: &cal\n    format: waterbirds\n    root: wb\n    split: val\n",
        1,
    )
    assert "&cal" in text
    (workdir / "spec.yaml").write_text(text)
    assert EditSpec.from_yaml("spec.yaml") == EditSpec.from_dict(spec)


@pytest.mark.parametrize(
    ("layers", "model", "fragment"),
    [
        ("L0-999999999", {"config": "tiny.json"}, "layer 999999999 is out of range"),
        ("L0-999999999", {"name": "hf-hub:org/m"}, "layer 999999999 is out of range"),
        ("L5,L7-99999999999999999999", {"config": "tiny.json"}, "far out of range"),
        ("last:99999999", {"config": "tiny.json"}, "k is out of range"),
        ("last:99999999", {"name": "hf-hub:org/m"}, "k is out of range"),
        ("last:" + "9" * 5000, {"config": "tiny.json"}, "k is out of range"),
    ],
)
def test_huge_layer_ranges_fail_fast(
    layers: str, model: dict[str, Any], fragment: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = base_spec()
    spec["model"] = model
    spec["edits"][1]["mean_ablate"]["layers"] = layers
    path = _write(workdir / "spec.yaml", spec)
    start = time.perf_counter()
    assert cli.main(["validate", str(path)]) == 2
    assert time.perf_counter() - start < 5
    err = capsys.readouterr().err
    assert "edits[1].mean_ablate.layers (line" in err and fragment in err, err


def test_validate_reports_every_problem_in_one_pass(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = base_spec()
    spec["target"] = "both"  # a field problem
    spec["calibration"]["max_images"] = 0  # another
    spec["edits"][0] = {"mean_ablate": ["L5.H1", "L9.H0"]}  # out of the config's range
    spec["edits"][1]["mean_ablate"]["layers"] = "L0-1,L6-7"  # out of range too
    spec["edits"][4]["project"]["head"] = "L4.H8"  # head index out of range
    spec["edits"].append({"mean_ablate": {"heads": ["L1.H1"], "extra": 1}})  # unknown key
    path = _write(workdir / "spec.yaml", spec)
    assert cli.main(["validate", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert "(6 problems)" in lines[0], "\n".join(lines)
    fields = [line.split(" (line")[0].strip() for line in lines[1:]]
    assert fields == [  # in file order
        "calibration.max_images",
        "edits[0].mean_ablate.heads[1]",
        "edits[1].mean_ablate.layers",
        "edits[4].project.head",
        "edits[5].mean_ablate.extra",
        "target",
    ]


@pytest.mark.parametrize("text", ["L\uff13.H1", "L3.H\uff11", "L\u0663.H1", "L3.H1\u00b9", "Ｌ3.H1"])
def test_head_names_are_ascii(text: str) -> None:
    with pytest.raises(EditclipError, match="bad head name"):
        parse_head(text)


@pytest.mark.parametrize("text", ["L\uff13", "L0-\uff13", "last:\uff12", "L\u0663.mlp"])
def test_layer_and_mlp_names_are_ascii(text: str) -> None:
    with pytest.raises(EditclipError, match=r"bad (layer selection|MLP name)"):
        parse_mlp(text) if text.endswith(".mlp") else parse_layers(text, 12)


def test_layer_ranges_are_checked_before_lists_are_built() -> None:
    start = time.perf_counter()
    for text, n_layers in [("L0-999999999", 12), ("L0-999999999", None), ("last:999999999", 12)]:
        with pytest.raises(EditclipError, match=r"out of range|k must be"):
            parse_layers(text, n_layers)
    assert time.perf_counter() - start < 1
    assert parse_layers("L0-2,last:2", 12) == [0, 1, 2, 10, 11]
    assert parse_mlp("L3.mlp", 4) == 3
    assert parse_head("L05.H01") == HeadRef(5, 1)
