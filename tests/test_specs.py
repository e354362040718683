"""Every spec shipped in specs/ is valid against its model's shape, and the Waterbirds ones are the paper's.

The data folders the specs name (data/waterbirds, data/toyworld) are not in the repository, so each spec
is read with its data roots pointed at a small Waterbirds-layout folder; everything else is as shipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_waterbirds

from editclip.spec import EditSpec

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))

# The paper's Waterbirds heads (docs/method.md section 6): (layer, head), 0-based, and how many layers each model has.
PAPER_HEADS = {
    "ViT-B-16": (12, [(11, 6), (11, 0), (11, 3), (10, 11), (10, 10), (9, 8), (9, 6)]),
    "ViT-L-14": (24, [(21, 1), (22, 12), (22, 13), (21, 11), (21, 14), (23, 6), (21, 3), (21, 6), (21, 8),
                      (21, 13), (22, 2), (22, 15), (23, 1), (23, 3), (23, 5)]),
    "ViT-H-14": (32, [(31, 8), (30, 15), (30, 12), (30, 6), (29, 14), (29, 8), (31, 12), (30, 11), (29, 4)]),
}  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_waterbirds(tmp_path_factory.mktemp("specs") / "data", n_per_split=4)


def _with_root(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """The spec's data with every data root replaced by ``root``."""
    for section in ("calibration", "evaluate"):
        if section in data:
            data[section]["data"]["root"] = str(root)
    return data


def _load(path: Path, root: Path) -> EditSpec:
    return EditSpec.from_dict(_with_root(yaml.safe_load(path.read_text()), root))


def test_there_are_the_paper_specs_a_projection_and_the_toy_world() -> None:
    names = {p.stem for p in SPECS}
    assert {"waterbirds-vit-b-16", "waterbirds-vit-l-14", "waterbirds-vit-h-14", "toyworld"} <= names
    assert any("projection" in n for n in names)


def test_toyworld_spec_matches_the_toy_world(data_root: Path) -> None:
    from editclip.toyworld import CLASSES, TEMPLATES

    spec = _load(Path(__file__).parent.parent / "specs" / "toyworld.yaml", data_root)
    assert spec.model.toyworld
    assert spec.evaluate.classes == list(CLASSES) and spec.evaluate.templates == list(TEMPLATES)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_is_valid_for_its_model(path: Path, data_root: Path) -> None:
    spec = _load(path, data_root)
    shape = spec.model.vision_layers_heads()
    assert shape is not None, f"{path.name}: the model's shape is unknown"
    parts = spec.resolved_parts(*shape)  # checks every head and layer against the model
    assert parts
    assert spec.evaluate is not None and spec.evaluate.label == "y" and spec.evaluate.group_columns == ["y", "place"]
    assert spec.name == path.stem
    assert EditSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec


@pytest.mark.parametrize("model", sorted(PAPER_HEADS))
def test_waterbirds_specs_are_the_published_runs(model: str, data_root: Path) -> None:
    spec = _load(Path(__file__).parent.parent / "specs" / f"waterbirds-{model.lower()}.yaml", data_root)
    n_layers, heads = PAPER_HEADS[model]
    assert spec.model.name == model and spec.model.pretrained.startswith("laion2b")
    assert spec.calibration.data.split == "val" and spec.evaluate.data.split == "test"
    assert spec.evaluate.classes == ["landbird", "waterbird"]
    assert spec.edits[0].mean_ablate.heads == [f"L{layer}.H{head}" for layer, head in heads]
    n_heads = spec.model.vision_layers_heads()[1]
    parts = {p.part for p in spec.resolved_parts(n_layers, n_heads)}
    attention = {f"L{layer}.H{h}" for layer in range(n_layers - 4) for h in range(n_heads)}
    mlps = {f"L{layer}.mlp" for layer in range(n_layers)}
    assert parts == attention | mlps | {"embed"} | {f"L{layer}.H{head}" for layer, head in heads}


def test_spec_data_roots_are_still_checked(data_root: Path) -> None:
    """Substituting the root is what makes the specs load here: as shipped, the missing folder is refused."""
    path = Path(__file__).parent.parent / "specs" / "waterbirds-vit-b-16.yaml"
    data = yaml.safe_load(path.read_text())
    data["calibration"]["data"]["root"] = str(data_root / "missing")
    with pytest.raises(Exception, match="does not exist"):
        EditSpec.from_dict(data)
