"""Pixels of the toy world: textured backgrounds, shape masks, and their composition (numpy + PIL)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 48
PATCH = 12  # the tiny CLIP's ViT patch: each object sits in one cell of this grid, so shape is a patch feature
SHAPES: tuple[str, ...] = ("triangle", "circle", "square", "star", "cross", "ring", "diamond", "moon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 190, 60),
    "blue": (40, 80, 230),
    "purple": (140, 50, 190),
    "pink": (250, 140, 200),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "brown": (120, 75, 35),
}
BACKGROUNDS: tuple[str, ...] = ("water", "sea", "grass", "forest", "sand", "snow", "brick", "night")

_SUPERSAMPLE = 4


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a `cells` x `cells` random grid upsampled bilinearly to `size`."""
    grid = rng.random((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _tint(base: tuple[int, int, int], rng: np.random.Generator, jitter: float = 18.0) -> np.ndarray:
    return np.asarray(base, dtype=np.float32) + rng.normal(0.0, jitter, 3).astype(np.float32)


def background(kind: str, rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """A [size, size, 3] uint8 texture of the given kind (one of BACKGROUNDS)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    fine = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    blob = _smooth_noise(rng, size, 4) - 0.5
    phase = rng.uniform(0, 2 * math.pi)
    if kind == "water":
        waves = np.sin(2 * math.pi * (yy * rng.uniform(5, 8) + 0.15 * np.sin(2 * math.pi * xx * 2)) + phase)
        shade = 22 * waves + 30 * blob + 5 * fine
        base = _tint((45, 110, 200), rng)
    elif kind == "sea":
        waves = np.sin(2 * math.pi * ((yy + 0.4 * xx) * rng.uniform(3, 5)) + phase)
        crest = (waves > 0.85) * 60.0
        shade = 18 * waves + crest + 20 * blob + 6 * fine
        base = _tint((20, 75, 120), rng)
    elif kind == "grass":
        blades = np.repeat(rng.normal(0.0, 1.0, (1, size)), size, axis=0)
        shade = 18 * blades + 25 * blob + 14 * fine
        base = _tint((70, 150, 45), rng)
    elif kind == "forest":
        trunks = (np.sin(2 * math.pi * xx * rng.uniform(3, 5) + phase) > 0.8)[..., None]
        shade = 40 * blob + 10 * fine
        leaves = _tint((30, 80, 35), rng) + shade[..., None]
        img = np.where(trunks, _tint((85, 55, 30), rng, 10), leaves)
        return np.clip(img, 0, 255).astype(np.uint8)
    elif kind == "sand":
        dunes = np.sin(2 * math.pi * ((xx - 0.5 * yy) * rng.uniform(1.5, 3)) + phase)
        shade = 14 * dunes + 12 * blob + 8 * fine
        base = _tint((215, 185, 125), rng, 10)
    elif kind == "snow":
        shade = 10 * blob + 4 * fine
        base = _tint((232, 238, 248), rng, 5)
    elif kind == "brick":
        return _brick(rng, size)
    elif kind == "night":
        shade = 15 * blob - 20 * yy + 3 * fine
        base = _tint((15, 20, 55), rng, 6)
        img = base + shade[..., None]
        stars = rng.random((size, size)) < 0.025
        img[stars] = 235
        return np.clip(img, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return np.clip(base + shade[..., None], 0, 255).astype(np.uint8)


def _brick(rng: np.random.Generator, size: int) -> np.ndarray:
    row_h = max(4, size // 8)
    brick_w = 2 * row_h
    yy, xx = np.mgrid[0:size, 0:size]
    dy, dx = rng.integers(0, row_h), rng.integers(0, brick_w)
    row = (yy + dy) // row_h
    col_x = (xx + dx + (row % 2) * (brick_w // 2)) % brick_w
    mortar = ((yy + dy) % row_h == 0) | (col_x == 0)
    per_brick = rng.normal(0.0, 14.0, (size, size + brick_w))
    brick_id = (xx + dx + (row % 2) * (brick_w // 2)) // brick_w
    shade = per_brick[row % size, brick_id % (size + brick_w)] + rng.normal(0.0, 5.0, (size, size))
    bricks = _tint((150, 60, 45), rng, 12) + shade[..., None]
    img = np.where(mortar[..., None], _tint((195, 190, 180), rng, 8), bricks)
    return np.clip(img, 0, 255).astype(np.uint8)


def _star_points(n: int, inner: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(2 * n):
        r = 1.0 if i % 2 == 0 else inner
        a = math.pi * i / n - math.pi / 2
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "triangle": [(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)],
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "diamond": [(0.0, -1.0), (0.7, 0.0), (0.0, 1.0), (-0.7, 0.0)],
    "star": _star_points(5, 0.45),
    "cross": [
        (-0.3, -1.0), (0.3, -1.0), (0.3, -0.3), (1.0, -0.3), (1.0, 0.3), (0.3, 0.3),
        (0.3, 1.0), (-0.3, 1.0), (-0.3, 0.3), (-1.0, 0.3), (-1.0, -0.3), (-0.3, -0.3),
    ],
}


def shape_mask(
    shape: str, center: tuple[float, float], radius: float, angle: float, size: int = IMAGE_SIZE
) -> np.ndarray:
    """A [size, size] bool mask of `shape` centred at `center` (pixels) with outer `radius`, rotated by `angle`.

    Drawn at 4x resolution and thresholded at half coverage, so edges are the nearest pixels.
    """
    s = _SUPERSAMPLE
    canvas = Image.new("L", (size * s, size * s), 0)
    pen = ImageDraw.Draw(canvas)
    cx, cy, r = center[0] * s, center[1] * s, radius * s
    if shape in _POLYGONS:
        cos, sin = math.cos(angle), math.sin(angle)
        pts = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in _POLYGONS[shape]]
        pen.polygon(pts, fill=255)
    elif shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "ring":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        pen.ellipse([cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r], fill=0)
    elif shape == "moon":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy = 0.55 * r * math.cos(angle), 0.55 * r * math.sin(angle)
        pen.ellipse([cx + ox - 0.85 * r, cy + oy - 0.85 * r, cx + ox + 0.85 * r, cy + oy + 0.85 * r], fill=0)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    coverage = np.asarray(canvas, dtype=np.float32).reshape(size, s, size, s).mean(axis=(1, 3))
    return coverage >= 127.5


def compose(back: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Paint the object: pixels under `mask` take `colour` exactly, the others keep the background."""
    return np.where(mask[..., None], np.asarray(colour, dtype=np.uint8), back)
