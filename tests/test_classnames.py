"""Class lists by name (open_clip's ImageNet names) and from a dataset's own files (ImageFolder folders,
CUB's classes.txt), through the API, edit specs and the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_spec import base_spec, workdir  # noqa: F401  (workdir is a fixture)

import editclip
from editclip import cli
from editclip.classnames import classes_from_values, cub_classes, imagefolder_classes, is_class_source
from editclip.errors import EditclipError
from editclip.spec import EditSpec


def write_cub(root: Path, names: list[str]) -> Path:
    """A CUB_200_2011-layout folder with classes.txt numbered 1.. and NNN. prefixes."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [f"{i} {i:03d}.{name}" for i, name in enumerate(names, start=1)]
    (root / "classes.txt").write_text("\n".join(lines) + "\n")
    return root


def test_imagenet_names_come_from_open_clip() -> None:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = editclip.resolve_classes("imagenet")
    assert len(names) == 1000 and len(set(names)) == 998  # open_clip repeats missile and sunglasses
    assert [i for i, n in enumerate(names) if n in ("missile", "sunglasses")] == [657, 744, 836, 837]
    assert names == list(IMAGENET_CLASSNAMES) and names is not IMAGENET_CLASSNAMES
    names.append("changed")  # the caller's copy, not open_clip's list
    assert len(IMAGENET_CLASSNAMES) == 1000


def test_imagefolder_names_are_sorted_folder_names(tmp_path: Path) -> None:
    for name in ("zebra", "Apple", "cat_2", "cat_10"):
        (tmp_path / "train" / name).mkdir(parents=True)
    (tmp_path / "train" / "readme.txt").write_text("not a class")
    expected = ["Apple", "cat_10", "cat_2", "zebra"]  # torchvision's order: plain sorted(), files ignored
    assert imagefolder_classes(tmp_path / "train") == expected
    assert editclip.resolve_classes(f"imagefolder:{tmp_path / 'train'}") == expected


def test_cub_names_are_cleaned_in_file_order(tmp_path: Path) -> None:
    root = write_cub(tmp_path / "CUB_200_2011", ["Black_footed_Albatross", "Laysan_Albatross", "Least_Auklet"])
    expected = ["Black footed Albatross", "Laysan Albatross", "Least Auklet"]
    assert cub_classes(root) == expected == cub_classes(root / "classes.txt")
    assert editclip.resolve_classes(f"cub:{root}") == expected
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n\n2 Sooty Albatross\n")  # no prefix, blank
    assert cub_classes(root) == ["Black footed Albatross", "Sooty Albatross"]


@pytest.mark.parametrize(
    ("make", "source", "message"),
    [
        (None, "imagenette", "unknown class list 'imagenette'"),
        (None, "imagefolder:", "unknown class list 'imagefolder:'"),
        (None, "cub:{root}/nowhere", "nowhere' does not exist"),
        ("empty-dir", "imagefolder:{root}/d", "has no class sub-folders"),
        ("file", "imagefolder:{root}/f.txt", "is not a folder"),
        ("empty-dir", "cub:{root}/d", "d/classes.txt' does not exist"),
        ("cub-empty", "cub:{root}/d", "is empty"),
        ("cub-gap", "cub:{root}/d", "entry 2: '3 003.Least_Auklet' is not '2 NNN.Class_name'"),
        ("cub-bad", "cub:{root}/d", "entry 1: 'Black_footed_Albatross'"),
    ],
)
def test_bad_class_sources_are_refused(tmp_path: Path, make: str | None, source: str, message: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f.txt").write_text("x")
    contents = {"cub-empty": "\n\n", "cub-gap": "1 001.A\n3 003.Least_Auklet\n", "cub-bad": "Black_footed_Albatross\n"}
    if make in contents:
        (tmp_path / "d" / "classes.txt").write_text(contents[make])
    with pytest.raises(EditclipError) as info:
        editclip.resolve_classes(source.format(root=tmp_path))
    assert message in str(info.value)


def test_classnames_module_imports_no_torch() -> None:
    import ast

    import editclip.classnames

    tree = ast.parse(Path(editclip.classnames.__file__).read_text())
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert top == {"__future__", "os", "re", "pathlib", "errors"}  # specs import it; open_clip only for imagenet


def test_command_line_values() -> None:
    assert classes_from_values(["cat", "dog"]) == ["cat", "dog"]
    assert len(classes_from_values(["imagenet"])) == 1000
    with pytest.raises(EditclipError, match="unknown class list 'cat'"):
        classes_from_values(["cat"])  # one class is no classifier: read as a source
    assert is_class_source("imagenet") and is_class_source("cub:x") and is_class_source("imagefolder:x")
    assert not is_class_source("cub") and not is_class_source("a photo: of x") and not is_class_source("cat,dog")


def test_specs_accept_class_sources(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    for name in ("waterbird", "landbird"):
        (workdir / "folders" / name).mkdir(parents=True)
    write_cub(workdir / "cub", ["Land_bird", "Water_bird"])
    for source, expected in [
        ("imagefolder:folders", ["landbird", "waterbird"]),
        ("cub:cub", ["Land bird", "Water bird"]),
    ]:
        spec = base_spec()
        spec["evaluate"]["classes"] = source
        assert list(EditSpec.from_dict(spec).evaluate.classes) == expected
    spec["evaluate"]["classes"] = "imagenet"  # its repeated names are kept (label i is name i)
    assert EditSpec.from_dict(spec).evaluate.classes == editclip.resolve_classes("imagenet")
    spec["evaluate"]["classes"] = ["bird", "cat", "bird"]
    with pytest.raises(EditclipError, match="repeated class names: bird"):
        EditSpec.from_dict(spec)

    for source, message in [
        ("imagenette", "unknown class list 'imagenette'"),
        ("imagefolder:nowhere", "is not a folder"),
        ("imagefolder:cub", "has no class sub-folders"),
        ("cub:folders", "classes.txt' does not exist"),
    ]:
        spec["evaluate"]["classes"] = source
        (workdir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        assert cli.main(["validate", "spec.yaml"]) == 2
        err = capsys.readouterr().err
        assert "evaluate.classes" in err and message in err
    schema = EditSpec.json_schema()["$defs"]["EvaluateSpec"]["properties"]["classes"]
    assert {"array", "string"} == {choice["type"] for choice in schema["anyOf"]} and "imagenet" in str(schema)
