"""Outputs: every command that writes refuses to replace existing output without --overwrite, checks that its
output can be created and written before any work, and turns OS errors into one line (exit 2) with nothing
left half-written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import write_export_spec

import editclip
from editclip import cli
from editclip._io import clean_stale_temporaries, prepare_output, staged_dir, temp_dir
from editclip.errors import EditclipError
from editclip.export import OnnxImageEncoder, export_onnx

# Each writing command with the least arguments that reach its output check; {out} is the output path.
FOLDER_COMMANDS = {
    "textspan": ["textspan", "--store", "nowhere", "--out", "{out}"],
    "curves": ["curves", "--store", "nowhere", "--classes", "a", "b", "--out", "{out}"],
    "retrieve": ["retrieve", "--store", "nowhere", "--head", "L0.H0", "--text", "x", "--out", "{out}"],
    "segment": ["segment", "--toyworld", "--image", "nowhere.png", "--classes", "a", "b", "--out", "{out}"],
    "headmap": ["headmap", "--toyworld", "--image", "nowhere.png", "--head", "L0.H0", "--text", "x", "--out", "{out}"],
    "segment-eval": ["segment-eval", "--toyworld", "--data", "nowhere", "--out", "{out}"],
    "toyworld make": ["toyworld", "make", "--out", "{out}", "--n-train", "1", "--n-val", "1", "--n-test", "1"],
    "demo": ["demo", "--out", "{out}"],
}
FILE_COMMANDS = {
    "export": ["export", "--toyworld", "--out", "{out}"],
    "capture": ["capture", "--toyworld", "--data", "nowhere", "--points", "L0.attn.q", "--out", "{out}"],
    "suggest --json": ["suggest", "--store", "nowhere", "--spurious", "place", "--label", "y", "--json", "{out}"],
}


def _fill(args: list[str], out: Path) -> list[str]:
    return [a.replace("{out}", str(out)) for a in args]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(FOLDER_COMMANDS))
def test_a_non_empty_folder_is_refused_without_overwrite(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_bytes(b"the user's own file\n")
    before = _snapshot(tmp_path)
    assert cli.main(_fill(FOLDER_COMMANDS[name], out)) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before  # byte-identical, nothing added


@pytest.mark.parametrize("name", sorted(FILE_COMMANDS))
def test_an_existing_file_is_refused_without_overwrite(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / ("m.onnx" if name == "export" else "ranking.json")
    out.write_bytes(b"precious\n")
    before = _snapshot(tmp_path)
    assert cli.main(_fill(FILE_COMMANDS[name], out)) == 2
    err = capsys.readouterr().err
    assert f"{str(out)!r} exists; pass --overwrite" in err
    assert _snapshot(tmp_path) == before


def test_export_overwrites_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old\n")
    assert cli.main(["export", "--toyworld", "--out", str(out), "--check-batch-sizes", "1", "--overwrite"]) == 0
    assert OnnxImageEncoder(out).metadata["kind"] == "base"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temporaries left


@pytest.mark.parametrize("name", sorted({**FOLDER_COMMANDS, **FILE_COMMANDS}))
def test_an_output_under_a_file_fails_before_any_work(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    out = blocker / "sub" / ("m.onnx" if name == "export" else "out")
    assert cli.main(_fill({**FOLDER_COMMANDS, **FILE_COMMANDS}[name], out)) == 2
    err = capsys.readouterr().err
    assert f"{str(blocker)!r} is a file, not a folder" in err and err.count("\n") == 1
    assert blocker.read_bytes() == b"x"



def test_run_under_a_file_fails_before_the_pipeline(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    cache = tmp_path / "cache"
    for out, export_dir in ((blocker / "report", tmp_path / "export"), (tmp_path / "report", blocker / "export")):
        spec = write_export_spec(tmp_path, tiny_files, tiny_waterbirds, export_dir)
        assert cli.main(["run", str(spec), "--out", str(out), "--cache", str(cache)]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
        assert not cache.exists()  # nothing was computed
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "spec.yaml"]


def test_run_stages_report_and_export(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that fails at its last step leaves neither report nor export; the rerun is not refused."""
    from editclip import runner

    spec = write_export_spec(tmp_path, tiny_files, tiny_waterbirds, tmp_path / "export")
    args = ["run", str(spec), "--out", str(tmp_path / "report"), "--cache", str(tmp_path / "cache"), "--no-exact-check"]

    def fail(*_: object, **__: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runner, "markdown", fail)  # the very last file of the report
    assert cli.main(args) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "spec.yaml"]  # export was staged, then dropped
    monkeypatch.undo()
    assert cli.main(args) == 0
    assert (tmp_path / "export" / "edit.safetensors").is_file() and (tmp_path / "export" / "model.onnx").is_file()
    meta = editclip.export.read_edit(tmp_path / "export" / "edit.safetensors")[1]
    assert meta["editclip_preprocessing"] and meta["editclip_base_fingerprint"]
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == sorted(runner.REPORT_FILES)
    assert not [p for p in tmp_path.rglob(".editclip-tmp-*")]


def test_prepare_output_creates_nothing_and_cleans_stale_temporaries(tmp_path: Path) -> None:
    assert prepare_output(tmp_path / "a" / "b" / "c.json") == tmp_path / "a" / "b" / "c.json"
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / ".editclip-tmp-999999999@nohost-x.abc"  # another host's: kept
    stale.mkdir()
    dead = temp_dir(tmp_path / "out")
    os.rename(dead, tmp_path / dead.name.replace(f"-{os.getpid()}@", "-999999999@", 1))  # a dead pid of this host
    live = temp_dir(tmp_path / "out")  # this (live) process: kept
    prepare_output(tmp_path / "out", kind="dir")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([stale.name, live.name])
    assert clean_stale_temporaries(tmp_path) == []


def test_staged_dir_moves_into_place_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_dir(target) as stage:
        (stage / "a.txt").write_text("a")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("a")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "a.txt").read_text() == "a"


# ----- OS errors ---------------------------------------------------------------------------------------------


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only; the test is skipped where it cannot)."""
    mounted: list[Path] = []
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("making a small file system needs root and mount(8)")

    def make(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_file_system_is_one_line_and_leaves_nothing(
    mount: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    full = mount("size=160k")
    out = full / "m.onnx"
    assert cli.main(["export", "--toyworld", "--out", str(out), "--check-batch-sizes", "1"]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and str(out) in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(full.iterdir()) == []  # the staged export and its temporaries are gone


def test_a_read_only_file_system_is_refused_before_work(
    mount: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = mount("size=1m")
    (folder / "m.onnx").write_bytes(b"precious\n")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    for args in (["export", "--toyworld", "--out", str(folder / "m.onnx"), "--overwrite"],
                 ["toyworld", "make", "--out", str(folder / "world")],
                 ["textspan", "--store", "nowhere", "--out", str(folder / "ts")]):  # fmt: skip
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert "the file system is read-only" in err and err.count("\n") == 1
    assert (folder / "m.onnx").read_bytes() == b"precious\n"


def test_a_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """Without root, a folder without write permission; as root (who may write anyway), the probe's error."""
    import tempfile

    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
    else:
        real = tempfile.mkstemp

        def denied(*args: object, **kwargs: object) -> object:
            if Path(str(kwargs.get("dir", ""))) == folder:
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", denied)
    try:
        assert cli.main(["export", "--toyworld", "--out", str(folder / "m.onnx")]) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        folder.chmod(0o755)


def test_os_errors_are_one_line_and_unexpected_ones_keep_their_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from editclip.commands import textspan

    for code, words in ((errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"), (errno.ENOTDIR, "not a folder"),
                        (errno.EEXIST, "already exists"), (errno.EACCES, "permission denied")):  # fmt: skip

        def raise_it(_: object, code: int = code) -> None:
            raise OSError(code, os.strerror(code), str(tmp_path / "x"))

        monkeypatch.setattr(textspan, "open_store", raise_it)
        assert cli.main(["textspan", "--decomposition", "s", "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("editclip textspan: error: ") and words in err and str(tmp_path / "x") in err
    def io_error(_: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(textspan, "open_store", io_error)
    with pytest.raises(OSError, match="I/O error"):
        cli.main(["textspan", "--decomposition", "s", "--out", str(tmp_path / "o")])


def test_a_truncated_onnx_file_is_one_line(tiny_bb: editclip.Backbone, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    export_onnx(tiny_bb.model, path, check=False)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 64, len(data) - 1, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(EditclipError, match=f"{path}"):
            OnnxImageEncoder(path, providers="cpu")
