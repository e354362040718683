"""The command line starts without torch: every parser is built from light imports, heavy modules are
imported inside the commands that use them. Each check runs a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import editclip
from editclip.cli import build_parser
from editclip.commands._bench_startup import HEAVY_MODULES, child_env, command_lines, probe, write_light_spec

BOUND_S = 10.0  # generous: the targets (1 s, 2 s) are shown by `editclip bench startup`, not by a timed test


def test_every_parser_and_help_text_builds_without_heavy_imports() -> None:
    lines = [" ".join(argv) for argv in command_lines(build_parser())]
    code = f"""
import contextlib, io, sys
from editclip.cli import build_parser
from editclip.commands._bench_startup import command_lines
parser = build_parser()
for argv in command_lines(parser):
    with contextlib.redirect_stdout(io.StringIO()) as text:
        try:
            parser.parse_args(list(argv))
        except SystemExit as exit:
            assert exit.code == 0, argv
    assert "usage: editclip" in text.getvalue(), argv
print(",".join(m for m in {HEAVY_MODULES!r} if m in sys.modules))
"""
    assert _python("-c", code).strip() == ""
    assert {"--help", "decompose --help", "bench startup --help", "toyworld make --help"} <= set(lines)


@pytest.mark.parametrize("argv", [("--help",), ("run", "--help"), ("segment-eval", "--help"), ("schema",)])
def test_help_and_schema_start_without_torch(argv: tuple[str, ...], tmp_path: Path) -> None:
    run = probe(argv, cwd=tmp_path)
    assert run.exit_code == 0
    assert run.heavy == ()
    assert run.seconds < BOUND_S


def test_validate_of_a_spec_with_a_known_shape_starts_without_torch(tmp_path: Path) -> None:
    spec = write_light_spec(tmp_path)
    run = probe(("validate", spec.name), cwd=tmp_path)
    assert run.exit_code == 0
    assert run.heavy == ()
    assert run.seconds < BOUND_S


def test_probe_sees_heavy_imports(tmp_path: Path) -> None:
    """The probe is not blind: a command that loads a model reports torch."""
    run = probe(("toyworld", "report", "--n-heads", "0"), cwd=tmp_path)
    assert run.exit_code == 2  # refused after its imports
    assert "torch" in run.heavy


def test_import_editclip_is_light() -> None:
    code = f"import sys, editclip; print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    assert _python("-c", code).strip() == ""


def _python(*args: str) -> str:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True, env=child_env()).stdout


def test_version_and_python_m_editclip() -> None:
    assert _python("-m", "editclip", "--version").strip() == f"editclip {editclip.__version__}"
    assert "demo" in _python("-m", "editclip", "--help")
