"""Faults: a run killed with SIGKILL is finished (decompose: bit for bit) or redone by a plain rerun; two
decompose runs into one folder take turns through the lock; a failed decompose leaves no store behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_export_spec

from editclip import cli
from editclip.store import LOCK_NAME, DecompositionStore

ROOT = Path(__file__).resolve().parents[1]

# Runs the editclip command line with one function wrapped: after it returns, the wrapper writes the marker
# file and then waits until the release file exists (or for ever), so the test can kill it or let it go.
HARNESS = """
import importlib, sys, time, pathlib
module_name, attr, marker, release = sys.argv[1:5]
owner = importlib.import_module(module_name)
cls_name, _, func_name = attr.rpartition(".")
holder = getattr(owner, cls_name) if cls_name else owner
original = getattr(holder, func_name)
def wrapped(*args, **kwargs):
    result = original(*args, **kwargs)
    pathlib.Path(marker).write_text("reached")
    while not (release and pathlib.Path(release).exists()):
        time.sleep(0.05)
    return result
setattr(holder, func_name, wrapped)
from editclip import cli
sys.exit(cli.main(sys.argv[5:]))
"""


ENV = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}


def _start(target: str, args: list[str], marker: Path, release: Path | None = None) -> subprocess.Popen:
    """The command line in a fresh process, held after ``target`` (``module:Class.function``) returns."""
    module, _, attr = target.partition(":")
    return subprocess.Popen([sys.executable, "-c", HARNESS, module, attr, str(marker), str(release or ""), *args],
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _cli(args: list[str], log: Path | None = None) -> subprocess.Popen:
    """The command line in a fresh process (default threads, like the killed one), its output into ``log``."""
    out = log.open("w") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "editclip.cli", *args], env=ENV, cwd=ROOT, stdout=out,
                            stderr=subprocess.STDOUT)  # fmt: skip


def _wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL


def _decompose_args(tiny_files: tuple[Path, Path], data: Path, out: Path) -> list[str]:
    model = ["--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1])]
    return ["decompose", *model, "--data", str(data), "--split", "val", "--out", str(out), "--batch-size", "4",
            "--chunk-size", "4"]  # fmt: skip


def _one_error_line(err: str) -> bool:
    """One line says what went wrong (progress bars aside), and there is no traceback."""
    return "Traceback" not in err and len([line for line in err.splitlines() if ": error: " in line]) == 1


def _store_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a store (chunks, const, meta) byte for byte; nothing else may be there."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted decomposition of the val split in 4 chunks, in a fresh process."""
    out = tmp_path_factory.mktemp("reference") / "store"
    assert _cli(_decompose_args(tiny_files, tiny_waterbirds, out)).wait(timeout=300) == 0
    return _store_bytes(out)


@pytest.mark.slow
def test_sigkill_mid_decompose_then_rerun_equals_an_uninterrupted_run(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, reference: dict
) -> None:
    out = tmp_path / "store"
    args = _decompose_args(tiny_files, tiny_waterbirds, out)
    process = _start("editclip.store:DecompositionStore.write_chunk", args, tmp_path / "marker")
    _wait_for((tmp_path / "marker").exists, "the first chunk")
    _kill(process)
    assert (out / "chunks" / "chunk-00000.safetensors").is_file() and not DecompositionStore.open(out).complete
    assert (out / LOCK_NAME).is_file()  # the dead run's lock is still there
    assert _cli(args).wait(timeout=300) == 0  # takes the stale lock over and computes the rest
    assert _store_bytes(out) == reference  # bit for bit, and no lock or temporary left


@pytest.mark.slow
def test_two_decompose_runs_take_turns(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, reference: dict,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "store"
    args = _decompose_args(tiny_files, tiny_waterbirds, out)
    first = _start("editclip.store:DecompositionStore.write_chunk", args, tmp_path / "marker", tmp_path / "go")
    try:
        _wait_for((tmp_path / "marker").exists, "the first run's first chunk")
        assert cli.main(args) == 2  # the second run fails at once, naming the owner
        err = capsys.readouterr().err
        assert f"is locked by pid {first.pid} on " in err and "--wait" in err
        log = tmp_path / "waiter.log"
        waiter = _cli([*args, "--wait"], log)
        _wait_for(lambda: "waiting" in log.read_text(), "the third run to wait")
        (tmp_path / "go").write_text("")
        assert first.wait(timeout=240) == 0 and waiter.wait(timeout=240) == 0
    finally:
        (tmp_path / "go").write_text("")
        first.kill()
    assert "complete" in log.read_text()
    assert _store_bytes(out) == reference


def test_a_lock_of_another_live_owner_is_not_taken_over(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "store"
    out.mkdir()
    lock = {"pid": 1, "host": "another-machine", "time": "2026-01-01T00:00:00"}  # pid 1 lives, but elsewhere
    (out / LOCK_NAME).write_text(json.dumps(lock))
    assert cli.main(_decompose_args(tiny_files, tiny_waterbirds, out)) == 2
    assert "locked by pid 1 on another-machine since 2026-01-01" in capsys.readouterr().err
    assert json.loads((out / LOCK_NAME).read_text()) == lock and sorted(p.name for p in out.iterdir()) == [LOCK_NAME]


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "not-an-image"])
def test_a_bad_image_leaves_no_store_and_the_fixed_rerun_succeeds(
    damage: str, tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "wb"
    shutil.copytree(tiny_waterbirds, data)
    victim = data / "img" / "1_005.png"
    good = victim.read_bytes()
    victim.write_bytes({"zero-byte": b"", "truncated": good[: len(good) // 2], "not-an-image": b"hello"}[damage])
    out = tmp_path / "store"
    args = _decompose_args(tiny_files, data, out)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and _one_error_line(err)
    assert not out.exists()  # no skeleton to block the rerun
    victim.write_bytes(good)
    assert cli.main(args) == 0
    assert DecompositionStore.open(out).complete


def test_a_failure_before_the_first_chunk_removes_the_store_but_later_ones_keep_chunks(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import errno

    from editclip import _store_folder as store_module

    out = tmp_path / "s"
    args = _decompose_args(tiny_files, tiny_waterbirds, out)
    written: list[int] = []
    real_save = store_module.save_file

    def full_after(n: int):
        def save(tensors: dict, path: str, **kwargs: object) -> None:
            if "chunk-" in Path(path).name:
                if len(written) >= n:
                    raise OSError(errno.ENOSPC, "No space left on device")
                written.append(1)
            real_save(tensors, path, **kwargs)

        return save

    monkeypatch.setattr(store_module, "save_file", full_after(0))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and _one_error_line(err)
    assert not out.exists()  # the store it had just created is gone
    monkeypatch.setattr(store_module, "save_file", full_after(2))
    assert cli.main(args) == 2
    assert sorted(p.name for p in (out / "chunks").iterdir()) == ["chunk-00000.safetensors", "chunk-00001.safetensors"]
    monkeypatch.setattr(store_module, "save_file", real_save)
    assert cli.main(args) == 0 and DecompositionStore.open(out).complete



@pytest.mark.slow
@pytest.mark.parametrize("job", ["run", "export", "toyworld make"])
def test_sigkill_mid_write_then_a_plain_rerun_succeeds(
    job: str, tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    spec = write_export_spec(tmp_path, tiny_files, tiny_waterbirds, work / "export")
    target, args = {
        "run": ("editclip.onnx_export:check_parity", ["run", str(spec), "--out", str(work / "report"), "--cache",
                                                 str(tmp_path / "cache")]),
        "export": ("editclip.onnx_export:check_parity", ["export", "--checkpoint", str(tiny_files[0]), "--model-config",
                                                    str(tiny_files[1]), "--out", str(work / "m.onnx")]),
        "toyworld make": ("editclip.toyworld.write:_write_images", ["toyworld", "make", "--out", str(work / "world"),
                                                                   "--n-train", "2", "--n-val", "2", "--n-test", "2"]),
    }[job]  # fmt: skip
    process = _start(target, args, tmp_path / "marker")
    _wait_for((tmp_path / "marker").exists, f"{job} to reach its last step")
    _kill(process)
    left = sorted(p.name for p in work.iterdir())
    assert left and all(name.startswith(".editclip-tmp-") for name in left), left  # recognisable temporaries only
    assert cli.main(args) == 0  # nothing blocks the rerun (no --overwrite needed)
    assert not list(work.rglob(".editclip-tmp-*"))  # and the dead run's temporaries are gone


def test_a_corrupt_store_meta_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "meta.json").write_bytes(b'{"format_version": 1, "count"')
    assert cli.main(["textspan", "--decomposition", str(tmp_path / "s"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "meta.json is not valid JSON" in err and _one_error_line(err) and not (tmp_path / "o").exists()
