"""`editclip decompose` under a real torchrun: two CPU processes (gloo) fill one store equal to one process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from editclip.cli import main
from editclip.store import DecompositionStore


@pytest.mark.slow
def test_torchrun_two_processes_fill_one_store_equal_to_one(tiny_files, tiny_waterbirds: Path, tmp_path: Path) -> None:
    common = ["decompose", "--checkpoint", str(tiny_files[0]), "--model-config", str(tiny_files[1]), "--data",
              str(tiny_waterbirds), "--split", "train", "--batch-size", "2", "--chunk-size", "4",
              "--token-layers", "last:1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    two = tmp_path / "two"
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "editclip.cli", *common, "--out", str(two)]  # fmt: skip
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sum(line.startswith(f"{two}: ") for line in done.stdout.splitlines()) == 2  # both ranks wrote to it
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    one, both = DecompositionStore.open(tmp_path / "one"), DecompositionStore.open(two)
    assert both.complete and both.n_chunks == one.n_chunks == 4  # 16 images: ranks took chunks 0, 2 and 1, 3
    assert both.ids == one.ids and both.count == 16
    assert not list(two.glob(".editclip-lock*"))
    meta_one, meta_two = (json.loads((s.root / "meta.json").read_text()) for s in (one, both))
    assert meta_two == meta_one
    for chunk in range(one.n_chunks):
        a, b = load_file(str(one.chunk_path(chunk))), load_file(str(both.chunk_path(chunk)))
        assert sorted(a) == sorted(b) and "tokens_L3" in a and "embedding" in a
        for name, value in a.items():
            torch.testing.assert_close(b[name], value, atol=1e-6, rtol=0, msg=f"chunk {chunk} {name}")


def test_cuda_under_torchrun_is_each_processs_own_gpu(monkeypatch) -> None:
    from editclip.commands._common import rank_device

    monkeypatch.setenv("LOCAL_RANK", "3")
    assert (rank_device("cuda"), rank_device("cuda:1"), rank_device("cpu")) == ("cuda:3", "cuda:1", "cpu")
    monkeypatch.delenv("LOCAL_RANK")
    assert rank_device("cuda") == "cuda"
