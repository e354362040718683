"""Image datasets: Waterbirds/WILDS ``metadata.csv`` roots, CSV manifests and image folders.

Every dataset gives images in a fixed order with string ids, their paths, and integer label/group
columns (``y``, ``place``...) that the group metrics read; a column of names (``y=bird``) is coded
0, 1, ... in sorted order and its names kept in :attr:`ImageDataset.label_names`. How tables are read
and image paths are kept inside the root: :mod:`editclip.data_index`; how images are opened:
:mod:`editclip.images`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .data_index import IMAGE_SUFFIXES, SPLIT_NAMES, index_dataset, shared_images
from .images import DEFAULT_MAX_IMAGE_PIXELS, max_image_pixels, open_image

__all__ = ["IMAGE_SUFFIXES", "SPLIT_NAMES", "ImageDataset", "load_dataset", "shared_images"]


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
    label_names: dict[str, list[str]] = field(default_factory=dict)
    """For a column of names: the name of each code (code i is ``label_names[column][i]``)."""
    sources: list[str] = field(default_factory=list, repr=False)
    """Where each image was listed (``row 7 of '.../metadata.csv'``), for error messages."""
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        where = self.sources[index] if self.sources else f"item {self.ids[index]}"
        image = open_image(self.paths[index], where, self.max_pixels)
        return (self.transform(image) if self.transform else image), index

    def with_transform(self, transform: Callable[[Image.Image], Any] | None) -> ImageDataset:
        """The same images through another transform."""
        return dataclasses.replace(self, transform=transform)

    def subset(self, indices: list[int] | np.ndarray) -> ImageDataset:
        """The images at ``indices``, in that order."""
        idx = [int(i) for i in indices]
        return dataclasses.replace(
            self,
            ids=[self.ids[i] for i in idx],
            paths=[self.paths[i] for i in idx],
            columns={k: v[idx] for k, v in self.columns.items()},
            sources=[self.sources[i] for i in idx] if self.sources else [],
        )

    def group_counts(self, columns: list[str] | tuple[str, ...]) -> dict[tuple[int, ...], int] | None:
        """Sizes of the (columns...) groups in the dataset's *training* split, when it has one."""
        if not self.train_columns or any(c not in self.train_columns for c in columns):
            return None
        keys = zip(*(self.train_columns[c].tolist() for c in columns), strict=True)
        return dict(Counter(keys))

    def describe(self) -> dict[str, Any]:
        """JSON-friendly provenance (with the names of coded columns, when there are any)."""
        out: dict[str, Any] = {
            "name": self.name,
            "root": str(self.root),
            "format": self.format,
            "split": self.split,
            "count": len(self),
        }
        if self.label_names:
            out["label_names"] = self.label_names
        return out


def load_dataset(
    root: str | Path,
    *,
    format: str = "auto",
    split: str | int | None = None,
    transform: Callable[[Image.Image], Any] | None = None,
    max_images: int | None = None,
    path_column: str = "path",
    allow_outside_root: bool = False,
    max_pixels: int | None = None,
) -> ImageDataset:
    """Open a dataset.

    - ``waterbirds``: a folder with ``metadata.csv`` (img_filename, y, split, place...); ``split`` is
      train/val/test or 0/1/2.
    - ``csv``: a CSV manifest with an image path column (``path_column``, relative to the CSV's folder)
      and any label/group columns; an optional ``split`` column is filtered like Waterbirds'.
    - ``folder``: an image folder; each sub-folder is a class (column ``y``, sorted names).

    Image paths that are absolute or lead outside the root are refused unless ``allow_outside_root``;
    images over ``max_pixels`` (default ``$EDITCLIP_MAX_IMAGE_PIXELS`` or PIL's limit) are refused when read.
    """
    index = index_dataset(root, format=format, split=split, max_images=max_images, path_column=path_column,
                          allow_outside_root=allow_outside_root)  # fmt: skip
    return ImageDataset(
        name=index.name,
        root=index.root,
        format=index.format,
        split=index.split,
        ids=index.ids,
        paths=index.paths,
        columns={k: np.array(v, dtype=np.int64) for k, v in index.columns.items()},
        transform=transform,
        train_columns={k: np.array(v, dtype=np.int64) for k, v in index.train_columns.items()},
        label_names=index.label_names,
        sources=index.sources,
        max_pixels=max_image_pixels(max_pixels),
    )
