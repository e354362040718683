"""Every ``editclip ...`` command in the code blocks of README.md and docs/*.md parses, and runs.

The commands of one document run in order in one empty folder (so that a later example can use what an
earlier one wrote, as a reader would), on the toy world, with the substitutions below. An example that
cannot run offline says so in the document with a trailing ``# not run offline: <why>`` comment; it is
still parsed. Nothing is skipped silently: a command that neither runs nor carries the mark fails.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from editclip.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OFFLINE_MARK = re.compile(r"#\s*not run offline:\s*(\S.*)$")

# Examples that name pretrained weights (which cannot be downloaded here) run on the shipped toy CLIP.
MODEL_SUBSTITUTES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("--model", "ViT-B-16", "--pretrained", "laion2b_s34b_b88k"): ("--toyworld",),
}
# Sizes the documents give for full runs, capped so that every example runs in seconds.
CAPS = {"--n-train": 40, "--n-val": 40, "--n-test": 40, "--steps": 2, "--n-images": 64, "--batch-size": 8}
# Flags added where a document leaves a size at its (full-run) default: sub-command -> flags.
SMALL_DEFAULTS: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {
    ("toyworld", "make"): {"--n-train": ("40",), "--n-val": ("40",), "--n-test": ("40",)},
    ("toyworld", "train"): {"--n-images": ("64",), "--batch-size": ("8",), "--steps": ("2",)},
    ("demo",): {"--counts": ("40", "40", "40")},
    ("bench", "controls"): {"--images": ("200",), "--repeats": ("1",)},
}


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    argv: tuple[str, ...]  # without the leading "editclip"
    offline_reason: str | None  # set when the document marks the example as not runnable offline

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: editclip {shlex.join(self.argv)}"


def examples(path: Path, root: Path = ROOT) -> list[Example]:
    """The ``editclip`` command lines of the non-Python fenced code blocks of a Markdown file (named
    relative to ``root``)."""
    found: list[Example] = []
    fence: str | None = None
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            fence = None if fence is not None else (line[3:].strip() or "text")
            continue
        if fence is None or fence == "python":
            continue
        if not pending and not line.startswith("editclip "):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        text = " ".join(pending)
        pending = []
        mark = OFFLINE_MARK.search(text)
        argv = shlex.split(text, comments=True)[1:]
        found.append(Example(path.relative_to(root).as_posix(), start, tuple(argv), mark and mark.group(1)))
    return found


def for_the_toy_world(argv: tuple[str, ...]) -> list[str]:
    """The example with pretrained models replaced by the toy CLIP and its sizes capped."""
    args = list(argv)
    for pattern, replacement in MODEL_SUBSTITUTES.items():
        for i in range(len(args) - len(pattern) + 1):
            if tuple(args[i : i + len(pattern)]) == pattern:
                args[i : i + len(pattern)] = replacement
                break
    for i, arg in enumerate(args[:-1]):
        if arg in CAPS and args[i + 1].isdigit():
            args[i + 1] = str(min(int(args[i + 1]), CAPS[arg]))
    for command, defaults in SMALL_DEFAULTS.items():
        if tuple(args[: len(command)]) == command:
            for flag, values in defaults.items():
                args += [] if flag in args else [flag, *values]
    return args


ALL = [example for doc in DOCS for example in examples(doc)]


def test_the_documents_have_examples() -> None:
    """The extractor finds the examples (so the tests below cannot pass by finding none)."""
    docs = {example.doc for example in ALL}
    assert {"README.md", "docs/segmentation.md", "docs/toyworld.md"} <= docs
    assert len(ALL) >= 10
    assert any(e.offline_reason for e in ALL) and not all(e.offline_reason for e in ALL)


@pytest.mark.parametrize("example", ALL, ids=str)
def test_example_parses(example: Example) -> None:
    """Every example, runnable or not, is valid command-line syntax (flags, choices, arguments)."""
    parser = build_parser()
    parser.parse_args(list(example.argv))
    parser.parse_args(for_the_toy_world(example.argv))


@pytest.mark.slow
@pytest.mark.parametrize("doc", sorted({e.doc for e in ALL if not e.offline_reason}))
def test_examples_run(doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runnable examples of one document, in order, in one fresh folder, on the toy world."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").symlink_to(ROOT / "specs")
    for example in (e for e in ALL if e.doc == doc and not e.offline_reason):
        argv = for_the_toy_world(example.argv)
        assert main(argv) == 0, f"{example} failed (run as: editclip {shlex.join(argv)})"


def test_substitutions() -> None:
    """The table maps a pretrained model to the toy CLIP and caps sizes; other arguments stay."""
    argv = ("segment-eval", "--model", "ViT-B-16", "--pretrained", "laion2b_s34b_b88k", "--batch-size", "64")
    assert for_the_toy_world(argv) == ["segment-eval", "--toyworld", "--batch-size", "8"]
    assert for_the_toy_world(("toyworld", "make", "--out", "t")) == [
        "toyworld", "make", "--out", "t", "--n-train", "40", "--n-val", "40", "--n-test", "40"
    ]  # fmt: skip
    small = for_the_toy_world(("toyworld", "make", "--out", "t", "--n-test", "5"))
    assert small[small.index("--n-test") + 1] == "5" and small.count("--n-test") == 1


def test_extractor(tmp_path: Path) -> None:
    """Continuation lines join, comments go, Python blocks and non-editclip lines are ignored, marks are read."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "```python\neditclip.load('x')\n```\n"
        "```bash\nmake demo\neditclip a --b 'c d' \\\n    --e f   # comment\n"
        "editclip g   # not run offline: needs a file\n```\n"
        "editclip outside a block\n",
        encoding="utf-8",
    )
    found = [(e.argv, e.offline_reason, e.line) for e in examples(doc, tmp_path)]
    assert found == [(("a", "--b", "c d", "--e", "f"), None, 6), (("g",), "needs a file", 8)]
