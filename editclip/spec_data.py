"""The datasets an edit spec names, loaded (tables only, no images decoded), and the check that keeps
calibration apart from evaluation: statistics taken on evaluated images make the evaluation optimistic."""

from __future__ import annotations

from .data import ImageDataset, load_dataset, shared_images
from .errors import EditclipError
from .spec import DataSpec, EditSpec


def spec_dataset(data: DataSpec, max_images: int | None) -> ImageDataset:
    """The images a spec's data section names."""
    return load_dataset(data.root, format=data.format, split=data.split, max_images=max_images)


def check_calibration_overlap(spec: EditSpec, evaluation: ImageDataset | None = None) -> int:
    """The number of evaluation images that are also calibration images; raise when there are any and
    the spec does not say ``calibration.transductive: true``. `evaluation` is loaded when not given."""
    if spec.evaluate is None:
        return 0
    if evaluation is None:
        evaluation = spec_dataset(spec.evaluate.data, spec.evaluate.max_images)
    calibration = spec_dataset(spec.calibration.data, spec.calibration.max_images)
    shared = shared_images(evaluation, calibration)
    if shared and not spec.calibration.transductive:
        first = shared[0]
        raise EditclipError(
            f"calibration and evaluation share {len(shared)} of the {len(evaluation)} evaluation images "
            f"(e.g. id {evaluation.ids[first]!r}, {str(evaluation.paths[first])!r}); the edit's means would be "
            "taken on the evaluated images: calibrate on another split, or set calibration.transductive: true "
            "(the official code's protocol), which the report records"
        )
    return len(shared)
