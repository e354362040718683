"""Where images come from: the data section of a spec, and reading a dataset's metadata table (header
and columns) without torch to check split names and the columns a spec names."""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, field_validator

from .fields import ExistingPath, PositiveInt, StrictModel

WATERBIRDS_SPLITS = {"0": "train", "1": "val", "2": "test"}


@functools.lru_cache(maxsize=16)
def _read_csv(path: str, _stamp: tuple[int, int]) -> dict[str, list[str]] | None:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader)
            columns: dict[str, list[str]] = {name.strip(): [] for name in header}
            names = list(columns)
            for row in reader:
                for name, value in zip(names, row, strict=False):
                    columns[name].append(value)
    except (OSError, UnicodeDecodeError, StopIteration, csv.Error):
        return None
    return columns


def read_table(path: Path) -> dict[str, list[str]] | None:
    if not path.is_file():
        return None
    stat = path.stat()
    return _read_csv(str(path), (stat.st_mtime_ns, stat.st_size))


def detect_format(root: Path) -> str | None:
    """What ``auto`` means: a folder with metadata.csv is Waterbirds, a .csv file a manifest, another
    folder an image folder."""
    if (root / "metadata.csv").is_file():
        return "waterbirds"
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if root.is_dir():
        return "folder"
    return None


class DataSpec(StrictModel):
    """Where images (and their label and group columns) come from."""

    format: Literal["auto", "waterbirds", "csv", "folder"] = Field(
        "auto",
        description="Dataset layout: 'waterbirds' (a folder with a WILDS-style metadata.csv), 'csv' "
        "(a manifest file with an image-path column plus label/group columns), 'folder' (one subfolder "
        "per class) or 'auto' (detected from root).",
    )
    root: ExistingPath = Field(
        description="The dataset: a Waterbirds folder, a CSV manifest or an image folder. Must exist."
    )
    split: Annotated[
        str | None,
        BeforeValidator(lambda v: str(v) if type(v) is int else v),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
    ] = Field(
        None,
        description="The split to use (Waterbirds: train, val, test or 0, 1, 2); all images when absent.",
    )

    allow_outside_root: bool = Field(
        False,
        description="Allow image paths in the data's table that are absolute or lead outside its folder "
        "(refused by default).",
    )

    @property
    def resolved_format(self) -> str | None:
        """``format``, with ``auto`` resolved from what lies at ``root``."""
        return detect_format(Path(self.root)) if self.format == "auto" else self.format

    def metadata(self) -> tuple[Path, dict[str, list[str]]] | None:
        """The metadata table (path, columns) when the layout has one and it is readable."""
        fmt, root = self.resolved_format, Path(self.root)
        path = root / "metadata.csv" if fmt == "waterbirds" else root if fmt == "csv" and root.is_file() else None
        table = read_table(path) if path is not None else None
        return (path, table) if path is not None and table is not None else None

    @field_validator("split")
    @classmethod
    def _check_split(cls, split: str | None, info: ValidationInfo) -> str | None:
        if split is None or "root" not in info.data:
            return split
        root = Path(info.data["root"])
        fmt = info.data.get("format", "auto")
        fmt = detect_format(root) if fmt == "auto" else fmt
        if fmt != "waterbirds":
            return split
        split = WATERBIRDS_SPLITS.get(split, split)
        if split not in WATERBIRDS_SPLITS.values():
            raise ValueError(f"unknown Waterbirds split {split!r}: use train, val or test (or 0, 1, 2)")
        table = read_table(root / "metadata.csv")
        if table is not None and "split" in table:
            code = {name: code for code, name in WATERBIRDS_SPLITS.items()}[split]
            if not any(v.strip() in (code, split) for v in table["split"]):
                raise ValueError(f"split {split!r} has no images in {root / 'metadata.csv'}")
        return split


class CalibrationSpec(StrictModel):
    """The images the edit's statistics (means, TextSpan bases) are computed on."""

    data: DataSpec = Field(description="Calibration images; keep them apart from the evaluation images.")
    max_images: PositiveInt | None = Field(None, description="Use at most this many images (all when absent).")
    transductive: bool = Field(
        False,
        description="Allow calibration images that are also evaluated (the official code's protocol); "
        "refused by default, and recorded in the report when allowed.",
    )
    stats: ExistingPath | None = Field(
        None,
        description="A statistics file of these images (`editclip stats`): mean-ablation and projections read "
        "its means, TextSpan bases its head scatters, instead of a per-image decomposition store.",
    )
