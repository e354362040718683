"""Knowing the cost before paying it: `decompose --estimate` and `stats --estimate` give the sizes real runs
write and write nothing; a run whose output would not fit on its filesystem refuses before it starts."""

from __future__ import annotations

import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from editclip import cli
from editclip._cost import group_value_count, stats_bytes, store_bytes_per_image
from editclip.data import load_dataset
from editclip.stats import accumulate_stats
from editclip.store import decompose_dataset

Usage = namedtuple("Usage", "total used free")


def _model(tiny_files: tuple[Path, Path]) -> list[str]:
    return ["--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1])]


def _chunk_bytes(root: Path) -> int:
    from safetensors import safe_open

    total = 0
    for path in sorted((root / "chunks").iterdir()):
        with safe_open(str(path), framework="pt") as handle:
            total += sum(handle.get_tensor(k).numel() * handle.get_tensor(k).element_size() for k in handle.keys())  # noqa: SIM118
    return total


@pytest.mark.parametrize(
    ("layers", "dtype", "tokens"), [(None, "float32", []), ([2, 3], "float16", []), ([3], "float32", [1])]
)
def test_store_bytes_per_image_are_what_a_run_writes(tiny_bb, tiny_waterbirds: Path, tmp_path: Path, layers,
                                                     dtype: str, tokens: list[int]) -> None:  # fmt: skip
    ds = load_dataset(tiny_waterbirds, split="val")
    store = decompose_dataset(tiny_bb, ds, tmp_path / "s", layers=layers, dtype=dtype, token_layers=tokens,
                              chunk_size=8)  # fmt: skip
    per_image = store_bytes_per_image(tiny_bb, "exact", store.head_layers, tokens, dtype)
    assert per_image * len(ds) == _chunk_bytes(store.root)


def test_stats_bytes_are_those_of_the_file(tiny_bb, tiny_waterbirds: Path, tmp_path: Path) -> None:
    ds = load_dataset(tiny_waterbirds, split="val")
    for layers in ([0, 1, 2, 3], [3]):
        stats = accumulate_stats(tiny_bb, ds, tmp_path / f"s{len(layers)}.safetensors", layers=layers)
        size, scatter = stats_bytes(tiny_bb, "exact", layers, group_value_count(ds))
        assert size == sum(t.numel() * t.element_size() for t in stats.tensors.values())
        assert scatter == stats.tensors["scatter.heads"].numel() * 8


def _number(text: str, label: str) -> str:
    return re.search(rf"{label}:\s+(\S+ \S+)", text).group(1)


def test_decompose_estimate_prints_the_cost_and_writes_nothing(tiny_files, tiny_waterbirds: Path, tmp_path: Path,
                                                                capsys) -> None:  # fmt: skip
    out = tmp_path / "never"
    args = ["decompose", *_model(tiny_files), "--out", str(out), "--estimate"]
    assert cli.main([*args, "--data", str(tiny_waterbirds), "--split", "val", "--layers", "last:2"]) == 0
    text = capsys.readouterr().out
    per_image = store_bytes_per_image(cli_bb(tiny_files), "exact", [2, 3], [], "float32")
    assert f"({per_image:,} bytes)" in text and "16 images" in text and "heads of L2-3" in text
    for label in ("on disk", "peak memory", "time"):
        assert _number(text, label)
    assert "fits" in text and "nothing was written" in text and not out.exists()
    # without the data: the image count is given; --no-time skips the timed batch
    assert cli.main([*args, "--images", "50000", "--no-time"]) == 0
    text = capsys.readouterr().out
    assert "50,000 images" in text and "not measured (--no-time)" in text and "estimated: no data given" in text
    assert not out.exists()
    assert cli.main([*args]) == 2
    assert "--estimate needs --data ROOT or --images N" in capsys.readouterr().err
    assert cli.main([*args, "--images", "0"]) == 2
    assert "--images must be positive" in capsys.readouterr().err
    real = ["decompose", *_model(tiny_files), "--out", str(out)]
    assert cli.main(real) == 2 and "--data ROOT is required" in capsys.readouterr().err
    assert cli.main([*real, "--data", str(tiny_waterbirds), "--images", "5"]) == 2
    assert "--images only goes with --estimate" in capsys.readouterr().err
    assert not out.exists()


def cli_bb(tiny_files):
    import editclip

    return editclip.load(checkpoint=tiny_files[0], config=tiny_files[1])


def test_stats_estimate_prints_the_fixed_file_size(tiny_files, tiny_waterbirds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never.safetensors"
    args = ["stats", *_model(tiny_files), "--out", str(out), "--estimate", "--data", str(tiny_waterbirds),
            "--split", "val", "--layers", "last:1"]  # fmt: skip
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    ds = load_dataset(tiny_waterbirds, split="val")
    size, _ = stats_bytes(cli_bb(tiny_files), "exact", [3], group_value_count(ds))
    assert f"file:        {_fmt(size)}" in text and "heads of L3 (4 heads)" in text
    assert "nothing was written" in text and not out.exists()


def _fmt(n: int) -> str:
    from editclip._cost import format_bytes

    return format_bytes(n)


def test_a_run_that_would_not_fit_refuses_before_it_starts(tiny_files, tiny_waterbirds: Path, tmp_path: Path,
                                                            monkeypatch, capsys) -> None:  # fmt: skip
    import editclip._cost as cost

    real_usage = shutil.disk_usage
    monkeypatch.setattr(cost.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - 1000, 1000))
    data = ["--data", str(tiny_waterbirds), "--split", "val"]
    out = tmp_path / "store"
    assert cli.main(["decompose", *_model(tiny_files), *data, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    per_image = store_bytes_per_image(cli_bb(tiny_files), "exact", range(4), [], "float32")
    assert f"decomposing 16 images into {str(out)!r} needs {_fmt(16 * per_image)} ({16 * per_image:,} bytes)" in err
    assert "has 1 kB (1,000 bytes) free" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # the store it had begun is gone
    stats_out = tmp_path / "stats.safetensors"
    assert cli.main(["stats", *_model(tiny_files), *data, "--out", str(stats_out)]) == 2
    err = capsys.readouterr().err
    assert "(the file and its partial sums) needs" in err and "has 1 kB (1,000 bytes) free" in err
    assert not stats_out.exists() and not list(tmp_path.glob("stats.safetensors*"))
    # enough space: the same runs go through
    monkeypatch.setattr(cost.shutil, "disk_usage", real_usage)
    assert cli.main(["decompose", *_model(tiny_files), *data, "--out", str(out)]) == 0
    # a resumed store needs only its missing chunks: exactly their bytes free is enough
    first = decompose_dataset(cli_bb(tiny_files), load_dataset(tiny_waterbirds, split="test"), tmp_path / "half",
                              chunk_size=8, shard=(0, 2))  # fmt: skip
    assert first.missing_chunks() == [1]
    monkeypatch.setattr(cost.shutil, "disk_usage", lambda path: Usage(10**9, 0, 8 * per_image))
    assert decompose_dataset(cli_bb(tiny_files), load_dataset(tiny_waterbirds, split="test"), tmp_path / "half",
                             chunk_size=8).complete  # fmt: skip
