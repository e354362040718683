"""The package face: ``__all__`` is the public API, each name resolves (lazily), no public name shadows
a submodule, and ``help(editclip)`` shows the API."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import pydoc
import types
from pathlib import Path

import pytest
import torch
from conftest import tiny_spec

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


# ----- results print as summaries, plots return Figures, run_spec can write nothing ------------------


@pytest.fixture(scope="module")
def run_result(tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path_factory: pytest.TempPathFactory):
    """run_spec on the tiny model with out=None, from a fresh working folder (that must stay empty)."""
    spec = EditSpec.from_dict(tiny_spec(tiny_files, tiny_waterbirds,
                                        export={"formats": ["safetensors"], "dir": "export"}))
    work = tmp_path_factory.mktemp("run-nothing")
    cache = tmp_path_factory.mktemp("run-cache")
    cwd = Path.cwd()
    os.chdir(work)
    try:
        result = editclip.run_spec(spec, None, cache_dir=cache, log=lambda _: None)
    finally:
        os.chdir(cwd)
    return result, work


def _short(obj: object, limit: int = 400) -> str:
    text = repr(obj)
    assert len(text) <= limit and "\n" not in text and "tensor(" not in text, text
    return text


def test_run_spec_without_out_writes_nothing_and_returns_the_metrics(run_result) -> None:
    result, work = run_result
    assert list(work.iterdir()) == []  # no report, no export folder
    assert result.out is None and "export" not in result.report
    assert set(result.reports) == {"baseline", "edited"}
    delta = result.report["evaluation"]["delta"]
    assert delta["acc_wg"] == pytest.approx(result.reports["edited"].acc_wg - result.reports["baseline"].acc_wg)
    assert isinstance(result.compiled, CompiledEdit)
    text = _short(result)
    assert text.startswith("RunResult(tiny, baseline: average ") and "nothing written" in text
    assert f"{100 * result.reports['edited'].acc_wg:.1f}%" in text


def test_result_objects_print_as_short_summaries(run_result, tiny_bb: editclip.Backbone) -> None:
    result, _ = run_result
    report = result.reports["baseline"]
    text = _short(report)
    assert f"{report.count} images" in text and f"worst group {100 * report.acc_wg:.1f}% ({report.worst.name})" in text
    text = _short(result.compiled)
    assert "tiny: " in text and "2 heads mean-ablated" in text and "calibration waterbirds (val)" in text
    assert _short(result.compiled.tensors).startswith("EditTensors(D=32, 2 heads mean-ablated")
    assert _short(editclip.EditTensors.empty(8)) == "EditTensors(D=8, no edits)"
    store = editclip.DecompositionStore.open(result.report["evaluation"]["store"])
    text = _short(store)
    assert f"{store.count} images" in text and "4 layers x 4 heads" in text and text.endswith("complete)")
    assert _short(tiny_bb).startswith("Backbone(") and "4 layers x 4 heads" in _short(tiny_bb)

    images = torch.randn(5, 3, 32, 32)
    d = editclip.decompose(tiny_bb, images, token_layers=[3])
    assert _short(d) == "Decomposition(5 images, 4 layers x 4 heads, D=32, exact, float32, tokens of L3 [17 each])"
    texts = torch.nn.functional.normalize(torch.randn(12, 32), dim=-1)
    names = [f"text {i}" for i in range(12)]
    many = editclip.textspan(d.heads[:, 3].transpose(0, 1), texts, m=4, texts=names)
    text = _short(many)
    assert text.startswith("TextSpanResult(paper, 4 heads, m=4, D=32, explained ") and "first head: 'text" in text
    one = editclip.textspan(d.heads[:, 3, 0], texts, m=2, texts=names)
    assert f"explained {100 * float(one.explained[-1]):.1f}%" in _short(one)


def test_plot_functions_return_figures_and_save_only_when_given_a_path(
    run_result, tiny_waterbirds: Path, tmp_path: Path
) -> None:
    from matplotlib.figure import Figure

    from editclip._textspan import head_report, plot_head_overview
    from editclip.curves import plot_curves
    from editclip.evaluate import plot_groups
    from editclip.names import HeadRef
    from editclip.retrieval import contact_sheet

    result, _ = run_result
    c = torch.randn(2, 30, 16)
    texts = torch.nn.functional.normalize(torch.randn(10, 16), dim=-1)
    report = head_report(editclip.textspan(c, texts, m=3, texts=[f"t{i}" for i in range(10)]),
                         [HeadRef(0, 0), HeadRef(0, 1)], variant="paper")  # fmt: skip
    curve = {"attention": [0.9, 0.8], "mlps": [0.9, 0.5], "all_mlps_and_embed": 0.1, "means_from": "val",
             "evaluated": {"path": "a", "count": 3}, "calibration": {"path": "b"}}  # fmt: skip
    images = sorted((tiny_waterbirds / "img").glob("*.png"))[:3]
    plots = {
        "groups": lambda path: plot_groups(result.reports, path, title="tiny"),
        "overview": lambda path: plot_head_overview(report, path),
        "curves": lambda path: plot_curves(curve, None, path),
        "sheet": lambda path: contact_sheet(images, ["a", "b", "c"], path, title="three"),
    }
    for saved, (name, plot) in enumerate(plots.items()):
        assert isinstance(plot(None), Figure), name
        assert len(list(tmp_path.iterdir())) == saved, name  # nothing written without a path
        fig = plot(tmp_path / f"{name}.png")
        assert isinstance(fig, Figure) and (tmp_path / f"{name}.png").stat().st_size > 1000, name


def test_map_results_print_shapes_not_values() -> None:
    from editclip.attention_maps import AttentionMaps
    from editclip.spatial import Heatmaps, ScoreParts

    maps = Heatmaps(torch.rand(2, 8, 8), torch.rand(2, 2, 2), torch.rand(2), target=torch.tensor([0, 1]))
    assert _short(maps) == ("Heatmaps(maps=[2, 8, 8] float32, patch_scores=[2, 2, 2] float32, cls_scores=[2] float32, "
                            "target=[2] int64)")  # fmt: skip
    assert _short(ScoreParts(torch.rand(3, 5), torch.rand(3), torch.rand(3))).startswith("ScoreParts(tokens=[3, 5]")
    attention = AttentionMaps(torch.rand(1, 2, 2), torch.rand(1, 2, 2), torch.rand(1, 4, dtype=torch.float64))
    assert _short(attention).endswith("embedding=[1, 4] float64)")
