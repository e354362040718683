"""Write the toy world as a Waterbirds-layout folder: metadata.csv, images, object masks, bare backgrounds."""

from __future__ import annotations

import csv
import os
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .._io import prepare_output, temp_dir, write_json
from ..errors import EditclipError
from .world import CLASSES, WorldConfig, dataset_scene, render

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
COLUMNS: tuple[str, ...] = (
    "img_id", "img_filename", "y", "split", "place", "place_filename", "mask_filename", "background", "colour",
)


def write_dataset(
    out: str | os.PathLike[str],
    *,
    seed: int = 0,
    counts: tuple[int, int, int] = (2000, 800, 2000),
    cfg: WorldConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate train/val/test splits of `counts` images into `out`, atomically (temp folder, then rename).

    A non-empty `out` is replaced only with ``overwrite``. The temporary folder is named like every editclip
    temporary, so one left by a killed run is removed by the next.

    Train keeps the spurious correlation (place == y with probability ``cfg.correlation``); val and
    test cycle through the four (y, place) groups, so their group sizes differ by at most one.
    """
    cfg = cfg or WorldConfig()
    out = Path(out)
    if any(n < 0 for n in counts):
        raise EditclipError(f"image counts must be >= 0, got {counts}")
    prepare_output(out, overwrite, "dir")
    tmp = temp_dir(out)
    try:
        rows = _write_images(tmp, seed, counts, cfg, progress)
        with open(tmp / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        groups = Counter((SPLIT_NAMES[r["split"]], r["y"], r["place"]) for r in rows)
        write_json(tmp / "world.json", {
            "generator": "editclip.toyworld", "seed": seed, "counts": dict(zip(SPLIT_NAMES, counts, strict=True)),
            "classes": list(CLASSES), "world": asdict(cfg),
            "groups": {f"{s} y={y} place={p}": n for (s, y, p), n in sorted(groups.items())},
        })
        _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def _write_images(root: Path, seed: int, counts: tuple[int, int, int], cfg: WorldConfig, progress: bool) -> list[dict]:
    rows: list[dict] = []
    total = sum(counts)
    bar = tqdm(total=total, desc="toyworld make", disable=not progress)
    for split, n in enumerate(counts):
        for index in range(n):
            scene, rng = dataset_scene(seed, split, index, cfg)
            drawn = render(scene, rng)
            img_id = len(rows) + 1
            stem = f"{CLASSES[scene.y]}/{img_id:05d}.png"
            paths = {"img_filename": f"images/{stem}", "mask_filename": f"masks/{stem}",
                     "place_filename": f"places/{scene.background}/{img_id:05d}.png"}
            for key, array in (("img_filename", drawn.image), ("mask_filename", drawn.mask.astype("uint8") * 255),
                               ("place_filename", drawn.background)):
                path = root / paths[key]
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(path)
            rows.append({"img_id": img_id, "y": scene.y, "split": split, "place": scene.place,
                         "background": scene.background, "colour": scene.colour, **paths})
            bar.update()
    bar.close()
    return rows


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` onto `out`; an old `out` is only removed once the new one is in place."""
    if out.is_dir() and any(out.iterdir()):
        old = temp_dir(out)
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)
