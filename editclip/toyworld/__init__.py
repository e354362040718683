"""The toy world: a synthetic spurious-correlation dataset and a tiny CLIP trained on it, shipped.

Two shapes play Waterbirds' classes (``CLASSES``: y=0 "landbird", y=1 "waterbird"), land-like and
water-like textures play its places. In the captioned training stream each class sits on "its" place
95% of the time, so the shipped CLIP leans on the background; some of its late heads carry it.
Nothing here needs the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .world import CLASSES, PLACES

if TYPE_CHECKING:
    from ..backbone import Backbone

__all__ = [
    "ASSETS", "CLASSES", "CONFIG_PATH", "PLACES", "POOL_PATH", "TEMPLATES", "TRAINING_PATH", "WEIGHTS_PATH",
    "is_shipped_model", "load",
]

ASSETS = Path(__file__).parent / "assets"
CONFIG_PATH = ASSETS / "config.json"  # open_clip model config of the tiny CLIP
WEIGHTS_PATH = ASSETS / "toyclip.safetensors"  # its trained weights (fp16)
TRAINING_PATH = ASSETS / "training.json"  # how they were produced, and what they measure
POOL_PATH = ASSETS / "pool.txt"  # toy-world descriptions for TextSpan

# Zero-shot prompts for CLASSES: the wordings the training captions use for a lone object.
TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "there is a {}.")


def is_shipped_model(checkpoint: str | Path | None) -> bool:
    """Whether ``checkpoint`` is the shipped toy CLIP's weight file."""
    return checkpoint is not None and Path(checkpoint).resolve() == WEIGHTS_PATH.resolve()


def load(device: str = "cpu", precision: str = "fp32") -> Backbone:
    """The shipped tiny CLIP, loaded through :func:`editclip.load` like any local checkpoint."""
    from ..backbone import load as load_backbone

    return load_backbone(checkpoint=WEIGHTS_PATH, config=CONFIG_PATH, device=device, precision=precision)
