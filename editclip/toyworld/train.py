"""Contrastive training of the tiny CLIP on the captioned toy-world stream (CPU, deterministic per seed)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from tqdm import tqdm

from .world import WorldConfig, caption, render_many, scene_rng, training_scene

TRAIN_STREAM = 0  # scene_rng stream of the training images
CAPTION_STREAM = 1  # scene_rng stream of the per-step caption draws


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    seed: int = 0
    steps: int = 1500
    batch_size: int = 128
    n_images: int = 20000  # rendered once; captions are redrawn every time an image is used
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.05
    world: WorldConfig = field(default_factory=WorldConfig)


@dataclass
class TrainResult:
    """The trained model (fp32, eval mode) and how the run went."""

    model: open_clip.CLIP
    losses: list[float]
    seconds: float  # wall clock
    cpu_seconds: float  # process CPU time (all threads)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, S, S, 3] -> float [N, 3, S, S], normalised like open_clip's default preprocess."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def soft_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE whose targets spread evenly over the batch entries that share a caption."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    index: dict[str, int] = {}
    ids = torch.tensor([index.setdefault(c, len(index)) for c in captions])
    same = (ids[:, None] == ids[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class _CachedTokenizer:
    """open_clip's tokenizer with a cache: the toy world has few distinct captions."""

    def __init__(self, context_length: int):
        self._tok = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
        self._cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            self._cache.update(zip(missing, self._tok(missing), strict=True))
        return torch.stack([self._cache[t] for t in texts])


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(model_cfg: dict, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Train a fresh open_clip CLIP built from `model_cfg` (an open_clip model-config dict)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    model = open_clip.CLIP(**model_cfg)
    tokenizer = _CachedTokenizer(model_cfg["text_cfg"]["context_length"])
    rngs = [scene_rng(cfg.seed, TRAIN_STREAM, i) for i in range(cfg.n_images)]
    scenes = [training_scene(r, cfg.world) for r in rngs]
    images = render_many(scenes, rngs, progress)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6,
    )
    order = np.random.default_rng([cfg.seed, CAPTION_STREAM]).permutation
    losses: list[float] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc="train", disable=not progress)
    pos, perm = cfg.n_images, np.arange(0)
    for step in bar:
        if pos + cfg.batch_size > cfg.n_images:
            perm, pos = order(cfg.n_images), 0
        idx = perm[pos : pos + cfg.batch_size]
        pos += cfg.batch_size
        cap_rngs = [scene_rng(cfg.seed, CAPTION_STREAM, step * cfg.batch_size + k) for k in range(len(idx))]
        captions = [caption(scenes[i], r, cfg.world) for i, r in zip(idx, cap_rngs, strict=True)]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        img, txt, scale = model(to_tensor(images[idx]), tokenizer(captions))
        loss = soft_clip_loss(img, txt, scale, captions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    model.eval()
    return TrainResult(model, losses, time.perf_counter() - start, time.process_time() - cpu_start)
