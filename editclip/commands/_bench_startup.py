"""``editclip bench startup``: how long the command line takes to start, and what it imports.

Wired into ``editclip bench`` (editclip/commands/bench.py) through ``register_startup``. Each command
runs in a fresh interpreter, as a user runs it; the probe reports which heavy libraries it imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EditclipError

HEAVY_MODULES = ("torch", "torchvision", "open_clip", "matplotlib", "onnx", "onnxruntime")
HELP_TARGET_S = 1.0  # `editclip --help` and `editclip <cmd> --help`
LIGHT_TARGET_S = 2.0  # `editclip validate` of a spec whose model shape is in its config, `editclip schema`

_MARK = "@@editclip-heavy-modules "
# Runs the command line in the child and reports, on stderr, the heavy modules it imported.
_PROBE = f"""
import sys
from editclip.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = [m for m in {HEAVY_MODULES!r} if m in sys.modules]
sys.stderr.write("\\n{_MARK}" + ",".join(heavy) + "\\n")
sys.exit(code)
"""

_METADATA = "img_filename,y,split,place\n" + "".join(
    f"{split}_{i}.png,{i % 2},{split},{i // 2 % 2}\n" for split in (1, 2) for i in range(4)
)
_SPEC = """editclip: 1
model: {toyworld: true}
calibration: {data: {format: waterbirds, root: data, split: val}}
edits: [{mean_ablate: [L3.H3, L3.H1]}]
evaluate:
  data: {format: waterbirds, root: data, split: test}
  classes: [triangle, circle]
  label: y
  groups: [y, place]
"""


@dataclass(frozen=True)
class StartupRun:
    """One command's wall-clock time in a fresh interpreter, and the heavy modules it imported."""

    argv: tuple[str, ...]
    seconds: float
    exit_code: int
    heavy: tuple[str, ...]


def child_env() -> dict[str, str]:
    """The environment of a child interpreter that imports the same editclip as this process."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def probe(argv: Sequence[str], cwd: str | Path | None = None) -> StartupRun:
    """Run ``editclip ARGV`` in a fresh interpreter; its time, exit code and the heavy modules it imported."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=cwd,
                          env=child_env(), check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    lines = [line for line in done.stderr.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise EditclipError(f"editclip {' '.join(argv)} did not finish (exit {done.returncode}): {done.stderr[-500:]}")
    heavy = tuple(m for m in lines[-1][len(_MARK) :].split(",") if m)
    return StartupRun(tuple(argv), seconds, done.returncode, heavy)


def _reference(cwd: Path) -> float:
    """Seconds to import torch and open_clip in a fresh interpreter (what every command paid before)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, open_clip"], cwd=cwd, check=True, env=child_env())
    return time.perf_counter() - start


def write_light_spec(folder: Path) -> Path:
    """A valid spec (toy-world model, a tiny metadata.csv) in `folder`, for timing ``editclip validate``."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "metadata.csv").write_text(_METADATA, encoding="utf-8")
    spec = folder / "light.yaml"
    spec.write_text(_SPEC, encoding="utf-8")
    return spec


def command_lines(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    """``--help`` for the program and for every sub-command (nested ones too)."""
    found: list[tuple[str, ...]] = [("--help",)]

    def walk(p: argparse.ArgumentParser, prefix: tuple[str, ...]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found.append((*prefix, name, "--help"))
                    walk(child, (*prefix, name))

    walk(parser, ())
    return found


def register_startup(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add the ``startup`` benchmark to the ``bench`` sub-command's parsers."""
    p = bench_subparsers.add_parser(
        "startup",
        help="start-up time of every command's --help, validate and schema, and whether they import torch",
        description="Run `editclip --help`, `editclip <command> --help` for every command, `editclip validate` of "
        "a spec whose model shape is in its config and `editclip schema`, each in a fresh interpreter, and print "
        "the median wall-clock time (interpreter start included), the heavy libraries each imported, and the "
        f"targets (--help < {HELP_TARGET_S:g} s, validate and schema < {LIGHT_TARGET_S:g} s, no torch). The "
        "time of importing torch and open_clip, which every command paid before they were imported lazily, is "
        "measured in the same run for comparison.",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per command; the median is shown (default 3)")
    p.set_defaults(func=run_startup)


def run_startup(args: argparse.Namespace) -> int:
    """Time every command line, print the table; exit 1 when a target is missed."""
    from ..cli import build_parser

    if args.repeats < 1:
        raise EditclipError(f"--repeats must be >= 1; got {args.repeats}")
    with tempfile.TemporaryDirectory(prefix="editclip-startup-") as tmp:
        folder = Path(tmp)
        spec = write_light_spec(folder)
        lines = [(line, HELP_TARGET_S) for line in command_lines(build_parser())]
        lines += [(("validate", spec.name), LIGHT_TARGET_S), (("schema",), LIGHT_TARGET_S)]
        reference = statistics.median(_reference(folder) for _ in range(args.repeats))
        rows, missed = [], 0
        for argv, target in lines:
            runs = [probe(argv, cwd=folder) for _ in range(args.repeats)]
            seconds = statistics.median(r.seconds for r in runs)
            heavy = sorted({m for r in runs for m in r.heavy})
            ok = seconds < target and not heavy and all(r.exit_code == 0 for r in runs)
            missed += not ok
            rows.append((" ".join(("editclip", *argv)), seconds, ", ".join(heavy) or "none", target, ok))
    reference_line = 'python -c "import torch, open_clip"'
    width = max(len(reference_line), *(len(r[0]) for r in rows))
    print(f"editclip start-up, python {sys.version.split()[0]}, median of {args.repeats} fresh interpreters "
          "(ratio: to importing torch and open_clip, measured in the same run):")  # fmt: skip
    print(f"{'command':<{width}}  {'seconds':>7}  {'ratio':>6}  {'target':>7}  heavy imports")
    for command, seconds, heavy, target, ok in rows:
        mark = "" if ok else "  MISSED"
        print(f"{command:<{width}}  {seconds:7.2f}  {seconds / reference:6.3f}  {f'< {target:g} s':>7}  {heavy}{mark}")
    print(f"{reference_line:<{width}}  {reference:7.2f}  {1:6.3f}  {'':>7}  torch, open_clip (reference)")
    print(f"{len(rows) - missed}/{len(rows)} command lines meet their target")
    return 0 if missed == 0 else 1
