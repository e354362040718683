"""Save a trained toy-world CLIP the way it is shipped, and record how it was made and what it measures."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

from .._io import atomic_path, write_json
from ..backbone import Backbone
from ..backbone import load as load_backbone
from .measure import Phenomenon, classifier, measure, report, split_sample
from .train import TrainConfig, TrainResult

CONFIG_NAME, WEIGHTS_NAME, RECORD_NAME = "config.json", "toyclip.safetensors", "training.json"
RUN_FILES = (CONFIG_NAME, WEIGHTS_NAME, RECORD_NAME)
CHECK_SAMPLE = 200  # first test images whose per-group accuracies the tests reproduce


@dataclass
class RunRecord:
    """What training.json says about a run."""

    final_loss: float
    phenomenon: Phenomenon
    data: dict


def check_accuracies(bb: Backbone, n: int = CHECK_SAMPLE) -> dict[str, float]:
    """Per-group zero-shot accuracy on the first `n` test images of seed 0 (``acc_y:0_place:1`` ...)."""
    sample = split_sample("test", n)
    stats = report(bb.encode_image(sample.images), classifier(bb), sample)
    return {k: v for k, v in stats.as_dict().items() if k.startswith("acc_")}


def save_run(out: Path, model_cfg: dict, result: TrainResult, cfg: TrainConfig, threads: int,
             command: str | None) -> RunRecord:  # fmt: skip
    """Write config.json, fp16 toyclip.safetensors and training.json into `out`; measure through editclip.load."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / CONFIG_NAME, model_cfg)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in result.model.state_dict().items()}
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})  # one key: the header's order is then fixed
    bb = load_backbone(checkpoint=out / WEIGHTS_NAME, config=out / CONFIG_NAME)
    phenomenon = measure(bb)
    final_loss = float(np.mean(result.losses[-50:]))
    data = {
        "command": command or f"editclip toyworld train --out {out} --seed {cfg.seed} --steps {cfg.steps}",
        "seed": cfg.seed,
        "steps": cfg.steps,
        "train_config": asdict(cfg),
        "final_loss": final_loss,
        "loss_every_100_steps": [round(float(np.mean(chunk)), 4) for chunk in _chunks(result.losses, 100)],
        "seconds": round(result.seconds, 1),
        "cpu_seconds": round(result.cpu_seconds, 1),
        "threads": threads,
        "versions": {"torch": torch.__version__, "open_clip": open_clip.__version__,
                     "python": platform.python_version()},
        "fingerprint": bb.fingerprint,
        "check": {"split": "test", "seed": 0, "n": CHECK_SAMPLE, **check_accuracies(bb)},
        "phenomenon": phenomenon.as_dict(),
    }
    write_json(out / RECORD_NAME, data)
    return RunRecord(final_loss, phenomenon, data)


def _chunks(values: list[float], size: int) -> list[list[float]]:
    return [values[i : i + size] for i in range(0, len(values), size)]
