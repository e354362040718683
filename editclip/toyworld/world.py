"""The toy world's scenes: what is drawn where, how it is described, and how often things co-occur.

Two target shapes (``CLASSES``) play Waterbirds' "landbird" (y=0) and "waterbird" (y=1); two groups of
backgrounds play its places (place 0 land: grass, forest; place 1 water: water, sea). Other shapes
and backgrounds appear in the captioned training stream only, to give the model a richer world.
Every scene is a pure function of (seed, stream, index), so any image can be regenerated alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .draw import BACKGROUNDS, COLOURS, IMAGE_SIZE, PATCH, SHAPES, background, compose, shape_mask

CLASSES: tuple[str, str] = ("triangle", "circle")
PLACES: tuple[str, str] = ("land", "water")
PLACE_BACKGROUNDS: tuple[tuple[str, ...], tuple[str, ...]] = (("grass", "forest"), ("water", "sea"))
OTHER_SHAPES: tuple[str, ...] = tuple(s for s in SHAPES if s not in CLASSES)

BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "water": ("water", "a lake", "a pond", "blue water"),
    "sea": ("the sea", "the ocean", "waves"),
    "grass": ("grass", "a lawn", "a meadow"),
    "forest": ("a forest", "trees", "the woods"),
    "sand": ("sand", "a desert", "sand dunes"),
    "snow": ("snow", "a snowfield", "white snow"),
    "brick": ("a brick wall", "bricks", "a red wall"),
    "night": ("the night sky", "a dark night", "darkness"),
}
DATASET_STREAMS: tuple[int, int, int] = (10, 11, 12)  # scene_rng streams of the train, val, test splits
_OBJECT_ONLY = ("a photo of {o}.", "{o}.", "a picture of {o}.", "there is {o}.", "an image of {o}.")
_OBJECT_AND_PLACE = (
    "{o} on {b}.", "a photo of {o} on {b}.", "{o} in front of {b}.", "{B} with {o}.", "{o} over {b}.",
)
_PLACE_ONLY = ("a photo of {b}.", "{b}.", "a view of {b}.", "an image of {b}.")


@dataclass(frozen=True)
class WorldConfig:
    """How the world is sampled; the defaults are the world the shipped model was trained on."""

    correlation: float = 0.95  # P(place == y) for target objects in training
    target_fraction: float = 0.2  # share of target objects in the captioned training stream
    target_radius: tuple[float, float] = (2.6, 3.8)  # outer radius in pixels of target objects (small)
    other_radius: tuple[float, float] = (3.8, 5.8)
    jitter: float = 1.0  # largest offset in pixels of an object's centre from its grid cell's centre
    p_object_only: float = 0.6  # caption mixture: object only, object and background, background only
    p_object_and_place: float = 0.25
    p_colour: float = 0.5  # P(the colour is named | the object is named)


@dataclass(frozen=True)
class Scene:
    """One image's content. `y` and `place` are -1 where the scene has no target object / place."""

    shape: str
    colour: str
    background: str
    radius: float
    center: tuple[float, float]
    angle: float
    y: int
    place: int


def scene_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of one scene: independent of how many other scenes are drawn."""
    return np.random.default_rng([seed, stream, index])


def _object(rng: np.random.Generator, shape: str, radius: tuple[float, float], jitter: float) -> dict:
    cell = rng.integers(IMAGE_SIZE // PATCH, size=2)
    center = PATCH * cell + PATCH / 2 + rng.uniform(-jitter, jitter, size=2)
    return {
        "shape": shape,
        "colour": str(rng.choice(list(COLOURS))),
        "radius": float(rng.uniform(*radius)),
        "center": (float(center[0]), float(center[1])),
        "angle": float(rng.uniform(-np.pi, np.pi) if shape == "moon" else rng.uniform(-0.35, 0.35)),
    }


def target_scene(rng: np.random.Generator, y: int, place: int, cfg: WorldConfig) -> Scene:
    """A target object of class `y` on a background of `place`."""
    kind = str(rng.choice(PLACE_BACKGROUNDS[place]))
    return Scene(background=kind, y=y, place=place, **_object(rng, CLASSES[y], cfg.target_radius, cfg.jitter))


def spurious_scene(rng: np.random.Generator, cfg: WorldConfig) -> Scene:
    """A target object whose place agrees with its class with probability `cfg.correlation`."""
    y = int(rng.integers(2))
    place = y if rng.random() < cfg.correlation else 1 - y
    return target_scene(rng, y, place, cfg)


def training_scene(rng: np.random.Generator, cfg: WorldConfig) -> Scene:
    """A scene of the captioned training stream: a spurious target scene or any other shape anywhere."""
    if rng.random() < cfg.target_fraction:
        return spurious_scene(rng, cfg)
    kind = str(rng.choice(BACKGROUNDS))
    place = next((p for p, kinds in enumerate(PLACE_BACKGROUNDS) if kind in kinds), -1)
    return Scene(
        background=kind, y=-1, place=place, **_object(rng, str(rng.choice(OTHER_SHAPES)), cfg.other_radius, cfg.jitter)
    )


class Rendered(NamedTuple):
    """A scene's pixels: [S, S, 3] uint8 image, [S, S] bool object mask, [S, S, 3] uint8 bare background."""

    image: np.ndarray
    mask: np.ndarray
    background: np.ndarray


def render(scene: Scene, rng: np.random.Generator) -> Rendered:
    """Draw the scene (the background texture consumes `rng`)."""
    mask = shape_mask(scene.shape, scene.center, scene.radius, scene.angle)
    back = background(scene.background, rng)
    return Rendered(compose(back, mask, COLOURS[scene.colour]), mask, back)


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(scene: Scene, rng: np.random.Generator, cfg: WorldConfig) -> str:
    """A caption naming the object, its colour and/or the background, in varied wording."""
    noun = f"{scene.colour} {scene.shape}" if rng.random() < cfg.p_colour else scene.shape
    obj = _article(noun)
    back = str(rng.choice(BACKGROUND_WORDS[scene.background]))
    u = rng.random()
    if u < cfg.p_object_only:
        template = str(rng.choice(_OBJECT_ONLY))
    elif u < cfg.p_object_only + cfg.p_object_and_place:
        template = str(rng.choice(_OBJECT_AND_PLACE))
    else:
        template = str(rng.choice(_PLACE_ONLY))
    return template.format(o=obj, b=back, B=back[0].upper() + back[1:])


def render_many(
    scenes: Sequence[Scene], rngs: Sequence[np.random.Generator], progress: bool = False
) -> np.ndarray:
    """Images [N, S, S, 3] uint8 of several scenes."""
    pairs = tqdm(zip(scenes, rngs, strict=True), total=len(scenes), desc="render", disable=not progress)
    return np.stack([render(s, r).image for s, r in pairs])


def dataset_scene(seed: int, split: int, index: int, cfg: WorldConfig) -> tuple[Scene, np.random.Generator]:
    """Scene `index` of a Waterbirds-layout split (0 train: spurious; 1 val, 2 test: groups in turn).

    Returns the scene and its generator, ready for :func:`render`.
    """
    rng = scene_rng(seed, DATASET_STREAMS[split], index)
    if split == 0:
        return spurious_scene(rng, cfg), rng
    group = index % 4
    return target_scene(rng, group // 2, group % 2, cfg), rng
