"""The package face: ``__all__`` is the public API, each name resolves (lazily), no public name shadows
a submodule, and ``help(editclip)`` shows the API."""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import pydoc
import types
from pathlib import Path

import pytest

import editclip
from editclip._compile import CompiledEdit, compile_edit
from editclip.spec import EditSpec


def test_all_names_resolve_and_are_listed_by_dir() -> None:
    assert len(editclip.__all__) == len(set(editclip.__all__))
    for name in editclip.__all__:
        assert getattr(editclip, name) is not None
    assert set(editclip.__all__) <= set(dir(editclip))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        _ = editclip.nonexistent


@pytest.mark.parametrize("name", editclip.__all__)
def test_no_public_name_shadows_a_submodule(name: str) -> None:
    """``import editclip.<name>`` is either no module at all or the module ``editclip.<name>`` is."""
    if importlib.util.find_spec(f"editclip.{name}") is None:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"editclip.{name}")
        return
    module = importlib.import_module(f"editclip.{name}")
    assert isinstance(module, types.ModuleType)
    assert getattr(editclip, name) is module


def test_no_submodule_is_shadowed_by_a_package_attribute() -> None:
    for info in pkgutil.walk_packages(editclip.__path__, "editclip."):
        module = importlib.import_module(info.name)
        parent, _, short = info.name.rpartition(".")
        value = getattr(importlib.import_module(parent), short)
        assert value is module, f"{parent}.{short} is {value!r}, not the module {info.name}"


def test_compile_is_compile_edit(
    tiny_files: tuple[Path, Path], tiny_bb: editclip.Backbone, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    assert editclip.compile is compile_edit
    checkpoint, config = tiny_files
    spec = {
        "editclip": 1,
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H1"]}],
    }
    compiled = editclip.compile(EditSpec.from_dict(spec), tiny_bb, cache_dir=tmp_path / "cache")
    assert isinstance(compiled, CompiledEdit)
    assert compiled.tensors.ablate_heads.tolist() == [3 * tiny_bb.shape.heads + 1]


def test_help_shows_the_api() -> None:
    text = pydoc.render_doc(editclip, renderer=pydoc.plaintext)
    for name in ("decompose", "textspan", "run_spec", "EditSpec", "DecompositionStore", "OnnxImageEncoder"):
        assert name in text
    assert "_EXPORTS" not in text
