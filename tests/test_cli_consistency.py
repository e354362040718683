"""One command line: one list syntax, one flag name per concept, help with defaults for every flag, one
template-default rule, progress bars only for work and none with --quiet, the zero-shot classifier export,
and onnxruntime's quiet provider fallback."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import editclip
from editclip import cli
from editclip.cli import build_parser
from editclip.text import default_templates
from editclip.toyworld import TEMPLATES


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


ALL = list(_parsers(build_parser()))


def test_every_flag_has_help_and_help_shows_defaults() -> None:
    for path, parser in ALL:
        for action in parser._actions:
            if action.option_strings and action.help is not argparse.SUPPRESS:
                assert action.help, f"editclip {' '.join(path)} {action.option_strings[0]} has no help"
        text = parser.format_help()
        assert "issue" not in text, path
        for action in parser._actions:
            shown = action.option_strings and action.help is not argparse.SUPPRESS
            if shown and action.default not in (None, False, argparse.SUPPRESS) and action.dest != "help":
                assert "default" in parser._get_formatter()._get_help_string(action), (path, action.dest)
    textspan = dict(ALL)[("textspan",)].format_help()
    assert "(default: general)" in textspan and "(default: float64)" in textspan


def test_one_flag_name_per_concept() -> None:
    """Stores are --store, labels --label, storage --store-dtype, TextSpan arithmetic --textspan-precision, model
    precision --precision (fp32/fp16/bf16), and --heads takes head names; the old names parse but are hidden."""
    for path, parser in ALL:
        flags = {s: a for a in parser._actions for s in a.option_strings if a.help is not argparse.SUPPRESS}
        for old in ("--decomposition", "--label-column", "--dtype"):
            assert old not in flags, (path, old)
        if "--precision" in flags:
            assert set(flags["--precision"].choices) == {"fp32", "fp16", "bf16"}, path
        if "--heads" in flags:
            assert flags["--heads"].type is not int and flags["--heads"].nargs == "+", path
    parser = build_parser()
    old = parser.parse_args(["textspan", "--decomposition", "s", "--precision", "float32", "--out", "o"])
    new = parser.parse_args(["textspan", "--store", "s", "--textspan-precision", "float32", "--out", "o"])
    assert (old.store, old.textspan_precision) == (new.store, new.textspan_precision) == ("s", "float32")
    assert parser.parse_args(["curves", "--store", "s", "--classes", "a", "b", "--label-column", "c",
                              "--out", "o"]).label == "c"  # fmt: skip
    assert parser.parse_args(["decompose", "--toyworld", "--data", "d", "--out", "o", "--dtype", "float16"]
                             ).store_dtype == "float16"  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "--toyworld", "--image", "a.png", "--classes", "triangle,circle", "--out", "o"],
        ["curves", "--store", "s", "--classes", "triangle,circle", "--out", "o"],
        ["export", "--toyworld", "--classes", "a,b", "--out", "o.onnx"],
        ["suggest", "--store", "s", "--spurious", "place", "--classes", "a, b"],
        ["segment", "--toyworld", "--image", "a.png", "--classes", "a", "b", "--heads", "L3.H1,L3.H2", "--out", "o"],
    ],
    ids=["segment", "curves", "export", "suggest", "heads"],
)
def test_lists_are_space_separated(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "separated by spaces" in err and "not commas" in err


def test_curves_takes_m_as_a_list() -> None:
    args = build_parser().parse_args(["curves", "--store", "s", "--classes", "a", "b", "--m", "5", "10", "--out", "o"])
    assert args.m == [5, 10] and args.classes == ["a", "b"]


def test_one_template_default_rule(tiny_bb: editclip.Backbone) -> None:
    assert default_templates(editclip.toyworld.load()) == list(TEMPLATES)
    assert default_templates(tiny_bb) == "openai_imagenet"


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from editclip.toyworld.write import write_dataset

    return write_dataset(tmp_path_factory.mktemp("toy") / "toy", seed=0, counts=(0, 16, 16), progress=False)


def test_quiet_and_no_empty_progress_bars(toy_world: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    argv = ["decompose", "--toyworld", "--data", str(toy_world), "--split", "val", "--out", str(tmp_path / "s")]
    assert cli.main(["--quiet", *argv]) == 0
    err = capfd.readouterr().err
    assert "decompose" not in err and "it/s" not in err and "img/s" not in err
    assert cli.main(argv) == 0  # the store is complete: nothing to do, no bar
    assert "img" not in capfd.readouterr().err
    (tmp_path / "s" / "chunks" / "chunk-00000.safetensors").unlink()
    assert cli.main(argv) == 0  # work again: its bar shows
    assert "decompose" in capfd.readouterr().err


def test_curves_uses_the_template_rule(toy_world: Path, tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert cli.main(["-q", "decompose", "--toyworld", "--data", str(toy_world), "--split", "test",
                     "--out", str(store)]) == 0  # fmt: skip
    out = tmp_path / "c"
    assert cli.main(["-q", "curves", "--store", str(store), "--classes", "triangle", "circle", "--only", "ablation",
                     "--out", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "curves.json").read_text())["templates"] == list(TEMPLATES)


def test_classifier_export(toy_world: Path, tmp_path: Path) -> None:
    """images -> probabilities in one ONNX graph: rows sum to 1 and match torch's zero-shot classifier."""
    from editclip.data import load_dataset
    from editclip.evaluate import zero_shot_classifier

    path = tmp_path / "clf.onnx"
    assert cli.main(["-q", "export", "--toyworld", "--classes", "triangle", "circle", "--out", str(path)]) == 0
    classify = editclip.OnnxImageEncoder(path, providers="cpu")
    assert classify.classes == ["triangle", "circle"] and classify.output_name == "probabilities"
    assert json.loads(classify.metadata["templates"]) == list(TEMPLATES)
    bb = editclip.toyworld.load()
    ds = load_dataset(toy_world, split="test", transform=bb.preprocess)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    probs = classify.run(images.numpy())
    assert probs.shape == (16, 2)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        z = torch.nn.functional.normalize(bb.model.encode_image(images), dim=-1)
        logits = bb.model.logit_scale.exp() * z @ zero_shot_classifier(bb, ["triangle", "circle"], list(TEMPLATES)).T
    np.testing.assert_allclose(probs, logits.softmax(-1).numpy(), atol=1e-4)


def test_classifier_export_of_an_edit(toy_world: Path, tmp_path: Path) -> None:
    """--edit with --classes: the edited tower's classifier (differs from the base's)."""
    import yaml

    spec = {"editclip": 1, "model": {"toyworld": True}, "calibration": {"data": {"root": str(toy_world),
            "split": "val"}}, "edits": [{"mean_ablate": ["L3.H3", "L3.H1"]}],
            "export": {"formats": ["safetensors"], "dir": str(tmp_path / "export")}}  # fmt: skip
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    assert cli.main(["-q", "run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "run"),
                     "--cache", str(tmp_path / "cache")]) == 0  # fmt: skip
    edited, base = tmp_path / "edited.onnx", tmp_path / "base.onnx"
    assert cli.main(["-q", "export", "--edit", str(tmp_path / "export" / "edit.safetensors"), "--classes", "triangle",
                     "circle", "--out", str(edited)]) == 0  # fmt: skip
    assert cli.main(["-q", "export", "--toyworld", "--classes", "triangle", "circle", "--out", str(base)]) == 0
    x = np.random.default_rng(0).standard_normal((4, 3, 48, 48)).astype(np.float32)
    a, b = (editclip.OnnxImageEncoder(p, providers="cpu").run(x) for p in (edited, base))
    assert not np.allclose(np.log(a), np.log(b), atol=1e-2)  # probabilities saturate: compare log-probabilities


def test_export_refuses_templates_without_classes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--toyworld", "--templates", "a {}.", "--out", "x.onnx"]) == 2
    assert "--templates go with --classes" in capsys.readouterr().err


def test_auto_providers_fall_back_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A GPU provider that cannot start (here: one this onnxruntime lacks) -> CPU, and one line that says so."""
    from editclip import _onnx
    from editclip.export import export_onnx

    bb = editclip.toyworld.load()
    path = tmp_path / "m.onnx"
    export_onnx(bb.model, path, check=False)
    capfd.readouterr()
    monkeypatch.setattr(_onnx, "select_providers", lambda providers: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    encoder = editclip.OnnxImageEncoder(path, providers="auto")
    assert encoder.providers[0] == "CPUExecutionProvider"
    err = capfd.readouterr().err.strip().splitlines()
    assert err == ["editclip: m.onnx runs on CPUExecutionProvider (CUDAExecutionProvider is not usable on this "
                   "machine)"]  # fmt: skip
