"""Segmentation metrics of heatmaps against binary masks, and the datasets that provide the masks.

The protocol is Chefer et al.'s (CVPR 2021, ``imagenet_seg_eval.py``), which the paper follows (docs/method.md
section 6): each map is min-max normalised and thresholded at its own mean (foreground: map > mean);
pixel accuracy and the per-class (background, foreground) intersections and unions are summed over
all images before dividing, mIoU is the mean of the two IoUs; mAP is the mean over images of the
average precision of the scores ``[1 - map, map]`` against the one-hot masks ``[bg, fg]``, taken
together as one ranking.

Data with masks:

- ImageNet-segmentation (``gtsegs_ijcv.mat``, 4,276 images, Guillaumin et al.): a MATLAB v7.3 file,
  i.e. HDF5. ``/value/img`` is an [N, 1] dataset of object references; reference i points to a
  uint8 dataset stored [3, W, H] (MATLAB's column-major [H, W, 3], read back transposed).
  ``/value/gt`` is an [N, 1] dataset of references to [1, 1] cell datasets whose one reference points
  to the mask, stored [W, H] (0 background, 1 foreground). :class:`GtSegs` reads it lazily.
- a toy-world folder (``editclip toyworld make``): ``metadata.csv`` with the images and one mask
  image per image (see :func:`load_masked_folder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .data_index import read_table, resolve_image, split_code
from .errors import EditclipError
from .images import open_image

MASK_COLUMNS = ("mask_filename", "mask")


def binarise(maps: Tensor) -> Tensor:
    """[N, H, W] bool foreground: each map above its own mean (Chefer et al.'s threshold)."""
    return maps > maps.mean((1, 2), keepdim=True)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of a ranking by `scores` (any shape) of binary `labels`: sum over score thresholds
    of (recall step) x precision, tied scores taken together (scikit-learn's definition). 0 without positives."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if labels.size != scores.size:
        raise EditclipError(f"scores and labels differ in size: {scores.size} vs {labels.size}")
    if not labels.any():
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tp = np.cumsum(hits)[last_of_tie]
    precision = tp / (last_of_tie + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def image_ap(heatmap: Tensor, mask: Tensor) -> float:
    """Chefer et al.'s per-image AP: the [H, W] map min-max normalised, scores [1 - map, map] ranked
    together against the one-hot [background, foreground] of the [H, W] bool mask."""
    low, high = heatmap.min(), heatmap.max()
    m = (heatmap - low) / (high - low) if high > low else torch.zeros_like(heatmap)
    scores = torch.stack([1 - m, m]).double().numpy()
    fg = mask.bool().numpy()
    return average_precision(scores, np.stack([~fg, fg]))


@dataclass
class SegmentationScores:
    """Pixel accuracy, mIoU (mean of background and foreground IoU) and mAP, as fractions."""

    pixel_acc: float
    miou: float
    map: float
    iou: tuple[float, float]  # background, foreground
    n_images: int

    def as_dict(self) -> dict[str, Any]:
        return {"pixel_acc": self.pixel_acc, "miou": self.miou, "map": self.map,
                "iou_background": self.iou[0], "iou_foreground": self.iou[1], "n_images": self.n_images}  # fmt: skip


@dataclass
class SegmentationMeter:
    """Accumulates the protocol's sums over batches of maps and masks."""

    correct: int = 0
    labelled: int = 0
    inter: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    union: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    aps: list[float] = field(default_factory=list)

    def update(self, maps: Tensor, masks: Tensor) -> None:
        """Add maps [N, H, W] (any real scores) against bool masks [N, H, W] of the same size."""
        if maps.shape != masks.shape or maps.ndim != 3:
            shapes = f"{list(maps.shape)} and {list(masks.shape)}"
            raise EditclipError(f"maps and masks must both be [N, H, W] of one size; got {shapes}")
        maps, masks = maps.detach().float().cpu(), masks.bool().cpu()
        pred = binarise(maps)
        self.correct += int((pred == masks).sum())
        self.labelled += masks.numel()
        for cls, (p, t) in enumerate(((~pred, ~masks), (pred, masks))):
            self.inter[cls] += int((p & t).sum())
            self.union[cls] += int((p | t).sum())
        self.aps.extend(image_ap(m, t) for m, t in zip(maps, masks, strict=True))

    def result(self) -> SegmentationScores:
        """The scores of everything added so far."""
        if not self.aps:
            raise EditclipError("no maps were added to the segmentation meter")
        iou = self.inter / np.maximum(self.union, 1)
        return SegmentationScores(
            pixel_acc=self.correct / self.labelled,
            miou=float(iou.mean()),
            map=float(np.mean(self.aps)),
            iou=(float(iou[0]), float(iou[1])),
            n_images=len(self.aps),
        )


def segmentation_scores(maps: Tensor, masks: Tensor) -> SegmentationScores:
    """Scores of maps [N, H, W] against bool masks [N, H, W]."""
    meter = SegmentationMeter()
    meter.update(maps, masks)
    return meter.result()


class GtSegs:
    """ImageNet-segmentation's ``gtsegs_ijcv.mat`` (layout in the module docstring), read lazily with h5py.

    ``ds[i]`` is (RGB PIL image, [H, W] bool mask).
    """

    def __init__(self, path: str | Path) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise EditclipError(f"segmentation file {str(self.path)!r} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                self._length = len(f["/value/img"])
                if len(f["/value/gt"]) != self._length:
                    raise EditclipError(f"{str(self.path)!r}: /value/img and /value/gt differ in length")
        except (OSError, KeyError) as err:
            raise EditclipError(
                f"{str(self.path)!r} is not an ImageNet-segmentation file (HDF5 with /value/img and /value/gt): {err}"
            ) from err
        self._file: Any = None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> tuple[Image.Image, np.ndarray]:
        import h5py

        if not 0 <= index < self._length:
            raise IndexError(index)
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        f = self._file
        img = np.asarray(f[f["/value/img"][index, 0]]).transpose(2, 1, 0)
        cell = f[f["/value/gt"][index, 0]]
        mask = np.asarray(f[cell[0, 0]]).transpose(1, 0)
        return Image.fromarray(img.astype(np.uint8)).convert("RGB"), mask > 0


class MaskedFolder:
    """A folder of images with one mask image each, listed in ``metadata.csv``; ``ds[i]`` as :class:`GtSegs`."""

    def __init__(self, root: Path, images: list[Path], masks: list[Path], sources: list[str] | None = None) -> None:
        self.root, self.images, self.masks = root, images, masks
        self.sources = sources or [str(p) for p in images]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, np.ndarray]:
        image = open_image(self.images[index], self.sources[index])
        path = self.masks[index]
        if path.suffix == ".npy":
            try:
                mask = np.load(path) > 0
            except (OSError, ValueError) as err:
                raise EditclipError(
                    f"mask {str(path)!r} ({self.sources[index]}) is not a readable .npy: {err}"
                ) from None
        else:
            mask = np.asarray(open_image(path, self.sources[index], mode="L")) > 127
        return image, mask


def load_masked_folder(
    root: str | Path, split: str | int | None = None, allow_outside_root: bool = False
) -> MaskedFolder:
    """A toy-world style folder: ``metadata.csv`` with ``img_filename`` and a mask column (one of
    ``MASK_COLUMNS``, paths relative to the folder and kept inside it unless `allow_outside_root`; masks
    are images with foreground > 127, or ``.npy`` arrays with foreground > 0); `split` filters the
    ``split`` column (train/val/test or 0/1/2) when given."""
    root = Path(root)
    csv_path = root / "metadata.csv"
    if not csv_path.is_file():
        raise EditclipError(f"{str(root)!r} has no metadata.csv (expected a toy-world folder with masks)")
    table = read_table(csv_path, ("img_filename",))
    column = next((c for c in MASK_COLUMNS if c in table.header), None)
    if column is None:
        raise EditclipError(f"{str(csv_path)!r} needs the columns img_filename and one of {MASK_COLUMNS}")
    keep = list(range(len(table.rows)))
    if split is not None:
        if "split" not in table.header:
            raise EditclipError(f"split {split!r} was asked for, but {str(csv_path)!r} has no 'split' column")
        wanted = split_code(split)
        keep = [i for i in keep if split_code(table.rows[i]["split"], table.where(i)) == wanted]
    images = [resolve_image(root, table.rows[i]["img_filename"], table.where(i), "img_filename", allow_outside_root)
              for i in keep]  # fmt: skip
    masks = [resolve_image(root, table.rows[i][column], table.where(i), column, allow_outside_root) for i in keep]
    missing = [(str(p), table.where(i)) for i, p in zip(keep + keep, images + masks, strict=True) if not p.is_file()]
    if missing:
        path, where = missing[0]
        raise EditclipError(f"{len(missing)} files listed in {str(csv_path)!r} are missing, e.g. {path!r} ({where})")
    if not images:
        raise EditclipError(f"{str(csv_path)!r} lists no images (split {split!r})")
    return MaskedFolder(root, images, masks, [table.where(i) for i in keep])
