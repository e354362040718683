"""The benchmark helpers measure what they claim, and the decomposition benchmark runs on a tiny model."""

from __future__ import annotations

from pathlib import Path

import torch

from editclip._bench import PeakMemory
from editclip.cli import main


def test_peak_memory_sees_a_tensor_freed_before_the_end() -> None:
    cpu = torch.device("cpu")
    with PeakMemory(cpu) as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so its pages are resident
        del block
    assert 60 * 2**20 <= mem.peak < 160 * 2**20
    with PeakMemory(cpu) as idle:
        pass
    assert idle.peak < 16 * 2**20


def test_bench_decompose_prints_the_per_token_ratio(tiny_files: tuple[Path, Path], capsys) -> None:
    argv = ["bench", "decompose", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]),
            "--batch-size", "2", "--token-layers", "all", "--repeats", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "decompose: + tokens of 4 layers" in out and "exact convention" in out
    assert "per-token parts:" in out and "of which the parts returned take 0 MiB" in out


def test_bench_decompose_runs_on_a_tower_without_a_class_token(siglip_vision_folder: Path, capsys) -> None:
    argv = ["bench", "decompose", "--model", f"local-dir:{siglip_vision_folder}", "--batch-size", "2",
            "--token-layers", "last:2", "--repeats", "1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "decompose: pooled parts" in out and "forward: + capture 2 points" in out


def test_bench_decompose_refuses_a_batch_of_none(tiny_files: tuple[Path, Path], capsys) -> None:
    argv = ["bench", "decompose", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]),
            "--batch-size", "0"]  # fmt: skip
    assert main(argv) == 2
    assert "--batch-size and --repeats must be positive" in capsys.readouterr().err


def test_bench_stats_prints_the_throughput_ratio_and_the_memory_spread(tiny_files: tuple[Path, Path], capsys) -> None:
    model = ["--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1])]
    argv = ["bench", "stats", *model, "--batch-size", "2", "--batches", "2", "--repeats", "1", "--sizes", "40,80"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "stats throughput:" in out and "(target >= 0.9)" in out
    assert "N =      40:" in out and "N =      80:" in out and "largest / smallest - 1:" in out
    assert main(["bench", "stats", *model, "--sizes", "1000,x"]) == 2
    assert "--sizes '1000,x': expected image counts" in capsys.readouterr().err
