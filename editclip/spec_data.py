"""The datasets an edit spec names, and the check that keeps calibration apart from evaluation:
statistics taken on evaluated images make the evaluation optimistic. The check reads only the data's
tables (no torch, no image decoded), so ``editclip validate`` runs it too."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .data_index import DatasetIndex, ImageList, index_dataset, shared_images
from .errors import EditclipError
from .spec import DataSpec, EditSpec

if TYPE_CHECKING:
    from .data import ImageDataset


def spec_index(data: DataSpec, max_images: int | None) -> DatasetIndex:
    """The images a spec's data section names, indexed without reading them."""
    return index_dataset(data.root, format=data.format, split=data.split, max_images=max_images,
                         allow_outside_root=data.allow_outside_root)  # fmt: skip


def spec_dataset(data: DataSpec, max_images: int | None) -> ImageDataset:
    """The images a spec's data section names, as a dataset."""
    from .data import load_dataset

    return load_dataset(data.root, format=data.format, split=data.split, max_images=max_images,
                        allow_outside_root=data.allow_outside_root)  # fmt: skip


def check_calibration_overlap(spec: EditSpec, evaluation: ImageList | None = None) -> int:
    """The number of evaluation images that are also calibration images; raise when there are any and
    the spec does not say ``calibration.transductive: true``. `evaluation` is indexed when not given; the
    calibration data is indexed in any case, so that its table's problems are found too."""
    calibration = spec_index(spec.calibration.data, spec.calibration.max_images)
    if spec.evaluate is None:
        return 0
    if evaluation is None:
        evaluation = spec_index(spec.evaluate.data, spec.evaluate.max_images)
    shared = shared_images(evaluation, calibration)
    if shared and not spec.calibration.transductive:
        first = shared[0]
        raise EditclipError(
            f"calibration and evaluation share {len(shared)} of the {len(evaluation.ids)} evaluation images "
            f"(e.g. id {evaluation.ids[first]!r}, {str(evaluation.paths[first])!r}); the edit's means would be "
            "taken on the evaluated images: calibrate on another split, or set calibration.transductive: true "
            "(the official code's protocol), which the report records"
        )
    return len(shared)
