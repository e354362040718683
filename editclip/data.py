"""Image datasets: Waterbirds/WILDS ``metadata.csv`` roots, CSV manifests and image folders.

Every dataset gives images in a fixed order with string ids, their paths, and integer label/group
columns (``y``, ``place``...) that the group metrics read.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ._constants import FORMATS
from .errors import EditclipError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLIT_NAMES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
_WATERBIRDS_REQUIRED = ("img_filename", "y", "split")


@dataclass
class ImageDataset(Dataset):
    """Images in a fixed order with ids and integer columns; ``ds[i] -> (image, i)``."""

    name: str
    root: Path
    format: str
    split: str | None
    ids: list[str]
    paths: list[Path]
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    transform: Callable[[Image.Image], Any] | None = None
    train_columns: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise EditclipError(f"cannot read image {str(path)!r} (item {self.ids[index]}): {err}") from err
        return (self.transform(image) if self.transform else image), index

    def with_transform(self, transform: Callable[[Image.Image], Any] | None) -> ImageDataset:
        """The same images through another transform."""
        return ImageDataset(
            self.name,
            self.root,
            self.format,
            self.split,
            self.ids,
            self.paths,
            self.columns,
            transform,
            self.train_columns,
        )

    def subset(self, indices: list[int] | np.ndarray) -> ImageDataset:
        """The images at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return ImageDataset(
            self.name,
            self.root,
            self.format,
            self.split,
            [self.ids[i] for i in idx],
            [self.paths[i] for i in idx],
            {k: v[idx] for k, v in self.columns.items()},
            self.transform,
            self.train_columns,
        )

    def group_counts(self, columns: list[str] | tuple[str, ...]) -> dict[tuple[int, ...], int] | None:
        """Sizes of the (columns...) groups in the dataset's *training* split, when it has one."""
        if not self.train_columns or any(c not in self.train_columns for c in columns):
            return None
        keys = zip(*(self.train_columns[c].tolist() for c in columns), strict=True)
        return dict(Counter(keys))

    def describe(self) -> dict[str, Any]:
        """JSON-friendly provenance."""
        return {
            "name": self.name,
            "root": str(self.root),
            "format": self.format,
            "split": self.split,
            "count": len(self),
        }


def load_dataset(
    root: str | Path,
    *,
    format: str = "auto",
    split: str | int | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    max_images: int | None = None,
    path_column: str = "path",
) -> ImageDataset:
    """Open a dataset.

    - ``waterbirds``: a folder with ``metadata.csv`` (img_filename, y, split, place...); ``split`` is
      train/val/test or 0/1/2.
    - ``csv``: a CSV manifest with an image path column (``path_column``, relative to the CSV's folder)
      and any integer label/group columns; an optional ``split`` column is filtered like Waterbirds'.
    - ``folder``: an image folder; each sub-folder is a class (column ``y``, sorted names).
    """
    root = Path(root)
    if format not in FORMATS:
        raise EditclipError(f"dataset format {format!r} is unknown; choose one of {FORMATS}")
    if not root.exists():
        raise EditclipError(f"dataset path {str(root)!r} does not exist")
    if format == "auto":
        format = _detect_format(root)
    if format == "waterbirds":
        csv_path = root / "metadata.csv" if root.is_dir() else root
        ds = _from_csv(csv_path, "img_filename", split, transform, "waterbirds", required=_WATERBIRDS_REQUIRED)
    elif format == "csv":
        if root.is_dir():
            raise EditclipError(f"format 'csv' needs a CSV file, but {str(root)!r} is a folder")
        ds = _from_csv(root, path_column, split, transform, "csv", required=(path_column,))
    else:
        ds = _from_folder(root, transform)
    if max_images is not None:
        if max_images <= 0:
            raise EditclipError(f"max_images must be positive, got {max_images}")
        ds = ds.subset(list(range(min(max_images, len(ds)))))
    if len(ds) == 0:
        raise EditclipError(f"dataset {str(root)!r} (split {split!r}) has no images")
    return ds


def _detect_format(root: Path) -> str:
    if root.is_file():
        return "csv"
    if (root / "metadata.csv").is_file():
        return "waterbirds"
    return "folder"


def _split_code(split: str | int) -> int:
    if isinstance(split, int) or str(split).isdigit():
        return int(split)
    if str(split) not in SPLIT_NAMES:
        raise EditclipError(f"split {split!r} is unknown; use train, val, test or 0, 1, 2")
    return SPLIT_NAMES[str(split)]


def _read_rows(csv_path: Path, required: tuple[str, ...]) -> tuple[list[dict[str, str]], list[str]]:
    if not csv_path.is_file():
        raise EditclipError(f"metadata file {str(csv_path)!r} does not exist")
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    missing = [c for c in required if c not in header]
    if missing:
        raise EditclipError(f"{str(csv_path)!r} lacks the column(s) {missing}; it has {header}")
    return rows, header


def _int_columns(rows: list[dict[str, str]], header: list[str], skip: set[str]) -> dict[str, np.ndarray]:
    columns = {}
    for name in header:
        if name in skip:
            continue
        try:
            columns[name] = np.array([int(float(r[name])) for r in rows], dtype=np.int64)
        except (TypeError, ValueError):
            continue  # not an integer column (file names, free text)
    return columns


def _from_csv(
    csv_path: Path,
    path_column: str,
    split: str | int | None,
    transform: Callable | None,
    fmt: str,
    required: tuple[str, ...],
) -> ImageDataset:
    rows, header = _read_rows(csv_path, required)
    base = csv_path.parent
    all_columns = _int_columns(rows, header, skip={path_column})
    train_columns: dict[str, np.ndarray] = {}
    if "split" in header:
        split_codes = np.array([_split_code(r["split"]) for r in rows])
        train_columns = {k: v[split_codes == 0] for k, v in all_columns.items()}
        if split is not None:
            keep = np.nonzero(split_codes == _split_code(split))[0]
            rows = [rows[i] for i in keep]
            all_columns = {k: v[keep] for k, v in all_columns.items()}
    elif split is not None:
        raise EditclipError(f"split {split!r} was asked for, but {str(csv_path)!r} has no 'split' column")
    ids = [r.get("img_id") or r[path_column] for r in rows]
    paths = [base / r[path_column] for r in rows]
    return ImageDataset(
        csv_path.parent.name if fmt == "waterbirds" else csv_path.stem,
        csv_path.parent if fmt == "waterbirds" else csv_path,
        fmt,
        None if split is None else str(split),
        [str(i) for i in ids],
        paths,
        all_columns,
        transform,
        train_columns,
    )


def _from_folder(root: Path, transform: Callable | None) -> ImageDataset:
    if not root.is_dir():
        raise EditclipError(f"{str(root)!r} is not a folder of images")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    labels: list[int] = []
    if classes:
        for label, name in enumerate(classes):
            found = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += found
            labels += [label] * len(found)
    else:
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    columns = {"y": np.array(labels, dtype=np.int64)} if classes else {}
    ids = [str(p.relative_to(root)) for p in paths]
    return ImageDataset(root.name, root, "folder", None, ids, paths, columns, transform)


def shared_images(a: ImageDataset, b: ImageDataset) -> list[int]:
    """Indices of `a`'s images that are also in `b`: the same file (resolved, so links and ``..`` do not
    hide it) or, for two selections of one table (the same root), the same id."""
    paths = {p.resolve() for p in b.paths}
    ids = set(b.ids) if Path(a.root).resolve() == Path(b.root).resolve() else set()
    pairs = enumerate(zip(a.paths, a.ids, strict=True))
    return [i for i, (path, id_) in pairs if id_ in ids or path.resolve() in paths]
