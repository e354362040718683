"""Installation: the specs ship inside the package, a missing onnxruntime is refused before any work, and
the built wheel, installed into a fresh virtual environment, runs ``editclip demo`` outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

import editclip
from editclip import cli
from editclip.errors import EditclipError
from editclip.runner import run_spec
from editclip.spec import EditSpec
from editclip.spec.shipped import shipped_dir

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_specs_are_package_data_and_the_repo_folder_points_there() -> None:
    names = editclip.shipped_specs()
    assert {"toyworld", "waterbirds-vit-b-16"} <= set(names)
    assert shipped_dir() == Path(editclip.__file__).parent / "specs"
    assert editclip.shipped_spec("toyworld") == editclip.shipped_spec("toyworld.yaml")
    assert (ROOT / "specs").resolve() == shipped_dir().resolve()
    with pytest.raises(EditclipError, match="no shipped spec named 'nope'; the shipped specs are toyworld"):
        editclip.shipped_spec("nope")


def test_specs_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["specs", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in editclip.shipped_specs())
    assert cli.main(["specs", "show", "toyworld"]) == 0
    assert capsys.readouterr().out == editclip.shipped_spec("toyworld").read_text()
    out = tmp_path / "mine.yaml"
    assert cli.main(["specs", "show", "toyworld", "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["name"] == "toyworld"
    out.write_text("my edits\n")
    assert cli.main(["specs", "show", "toyworld", "--out", str(out)]) == 2  # never replaced silently
    assert out.read_text() == "my edits\n"
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert cli.main(["specs", "show", "toyworld", "--out", str(out), "--overwrite"]) == 0
    assert cli.main(["specs", "show", "nope"]) == 2


def test_demo_without_onnxruntime_stops_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs onnxruntime" in err[0] and "pip install onnxruntime" in err[0]
    assert not out.exists()


def test_run_with_onnx_export_without_onnxruntime_writes_nothing(
    tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, config = tiny_files
    spec = EditSpec.from_dict({
        "editclip": 1,
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H1"]}],
        "export": {"formats": ["onnx"], "dir": str(tmp_path / "export")},
    })  # fmt: skip
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(EditclipError, match=r"ONNX export .* needs onnxruntime"):
        run_spec(spec, tmp_path / "report")
    assert not (tmp_path / "report").exists() and not (tmp_path / "export").exists()


def _copy_sources(dest: Path) -> Path:
    """The files the wheel is built from, copied so that the build leaves the checkout untouched."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "editclip", dest / "editclip", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _fresh_venv(path: Path) -> Path:
    """A new virtual environment without pip that sees this environment's third-party packages through a
    .pth line (after its own site-packages, and without running this environment's .pth files, so an
    editable editclip here stays invisible there). Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_editclip_test_base.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return python


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo_outside_the_repo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")} | {"PYTHONNOUSERSITE": "1"}
    src = _copy_sources(tmp_path / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, env=env)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("editclip-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for shipped in ("editclip/py.typed", "editclip/specs/toyworld.yaml", "editclip/specs/waterbirds-vit-b-16.yaml",
                    "editclip/pools/general.txt", "editclip/toyworld/assets/toyclip.safetensors",
                    "editclip/toyworld/assets/config.json", "editclip/toyworld/assets/pool.txt"):  # fmt: skip
        assert shipped in names, shipped
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: onnxruntime" in metadata

    python = _fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall",
                    str(wheel)], check=True, env=env)  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import editclip; print(editclip.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(tmp_path / "venv"), where
    script = tmp_path / "venv" / "bin" / "editclip"
    listing = subprocess.run([str(script), "specs", "list"], cwd=work, env=env, capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    assert "waterbirds-vit-b-16" in listing and str(tmp_path / "venv") in listing
    demo = subprocess.run([str(script), "demo", "--out", "demo"], cwd=work, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert (work / "demo" / "demo.json").is_file()
    assert any((work / "demo").rglob("*.onnx"))
