"""What a dataset holds, read without torch and without decoding an image: the ids, the image paths
(resolved and kept inside the dataset's root), the label and group columns and the table rows they came
from. :func:`editclip.data.load_dataset` wraps it as a torch dataset; ``editclip validate`` reads it to
check that calibration and evaluation images are apart.

Tables are UTF-8 CSV files (``metadata.csv`` of a Waterbirds folder, or a manifest). Every problem names
the file and the row (its line in the file): a file that is not UTF-8, a missing column, a short row,
a duplicate id, a split that is not train/val/test or an integer, an image path that is absolute or
leaves the root (unless allowed). A column of integers is a column of integers; any other column that
is not a file name is a column of names, coded 0, 1, ... in sorted order, its names kept in
:attr:`DatasetIndex.label_names`, never dropped.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ._constants import FORMATS
from .errors import EditclipError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLIT_NAMES = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2}
PATH_COLUMNS = ("img_filename", "place_filename", "mask_filename", "mask")
"""Columns that hold file names (beside a manifest's own path column): never label columns."""
WATERBIRDS_REQUIRED = ("img_filename", "y", "split")
OUTSIDE_ROOT_HINT = "pass --allow-outside-root (allow_outside_root: true in a spec's data) to allow it"
_INT_RE = re.compile(r"^-?[0-9]+(\.0*)?$")  # 3 or 3.0 (as pandas writes integers with gaps)
_SPLIT_CODE_RE = re.compile(r"^[0-9]+$")


@dataclass
class DatasetIndex:
    """A dataset's images in order: ids, paths, integer columns (as lists) and where each came from."""

    name: str
    root: Path
    format: str
    split: str | None
    ids: list[str]
    paths: list[Path]
    columns: dict[str, list[int]] = field(default_factory=dict)
    label_names: dict[str, list[str]] = field(default_factory=dict)
    """For a column of names: the name of each code (code i is label_names[column][i])."""
    sources: list[str] = field(default_factory=list)
    """Where each image was listed: ``row 7 of /data/wb/metadata.csv``, or its path for a folder."""
    train_columns: dict[str, list[int]] = field(default_factory=dict)
    """The columns over the table's training split (for training-group sizes), when it has splits."""


class ImageList(Protocol):
    """Anything with a root, ids and image paths: a :class:`DatasetIndex` or an ``ImageDataset``."""

    root: Path
    ids: list[str]
    paths: list[Path]


def shared_images(a: ImageList, b: ImageList) -> list[int]:
    """Indices of `a`'s images that are also in `b`: the same file (resolved, so links and ``..`` do
    not hide it) or, for two selections of one table (the same root), the same id."""
    paths = {p.resolve() for p in b.paths}
    ids = set(b.ids) if Path(a.root).resolve() == Path(b.root).resolve() else set()
    pairs = enumerate(zip(a.paths, a.ids, strict=True))
    return [i for i, (path, id_) in pairs if id_ in ids or path.resolve() in paths]


@dataclass
class Table:
    """A CSV file's header and rows, each row with its line in the file."""

    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    lines: list[int]

    def where(self, i: int) -> str:
        """``row L of PATH`` for the i-th row."""
        return f"row {self.lines[i]} of {str(self.path)!r}"


def read_table(path: Path, required: tuple[str, ...] = ()) -> Table:
    """Read a UTF-8 CSV file with a header; refuse, naming the file and row, anything malformed."""
    if not path.is_file():
        raise EditclipError(f"metadata file {str(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EditclipError(f"cannot read metadata file {str(path)!r}: {err.strerror or err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise EditclipError(
            f"metadata file {str(path)!r} is not UTF-8: byte 0x{data[err.start]:02x} at offset {err.start} "
            f"(line {line}); save it as UTF-8 (e.g. iconv -f latin1 -t utf-8) and point editclip at that file"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        records = [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise EditclipError(f"metadata file {str(path)!r} is not valid CSV at line {reader.line_num}: {err}") from None
    records = [(line, row) for line, row in records if row and any(v.strip() for v in row)]
    if not records:
        raise EditclipError(f"metadata file {str(path)!r} is empty; it needs a header row and one row per image")
    header = [name.strip() for name in records[0][1]]
    repeated = sorted({n for n in header if header.count(n) > 1})
    if repeated or "" in header:
        what = f"repeats the column(s) {repeated}" if repeated else "has a column without a name"
        raise EditclipError(f"metadata file {str(path)!r}: the header (line {records[0][0]}) {what}")
    missing = [c for c in required if c not in header]
    if missing:
        raise EditclipError(f"metadata file {str(path)!r} lacks the column(s) {missing}; its columns are {header}")
    rows, lines = [], []
    for line, row in records[1:]:
        if len(row) != len(header):
            raise EditclipError(
                f"row {line} of {str(path)!r} has {len(row)} fields but the header has {len(header)} columns"
            )
        rows.append({name: value.strip() for name, value in zip(header, row, strict=True)})
        lines.append(line)
    if not rows:
        raise EditclipError(f"metadata file {str(path)!r} has a header but no rows")
    return Table(path, header, rows, lines)


def resolve_image(root: Path, value: str, where: str, column: str, allow_outside_root: bool = False) -> Path:
    """The file a table's `column` names (relative to `root`), refusing an empty value, an absolute
    path, or one that leaves `root` once ``..`` and links are resolved, unless `allow_outside_root`."""
    if not value:
        raise EditclipError(f"{where}: {column} is empty")
    path = Path(value)
    if path.is_absolute() and not allow_outside_root:
        raise EditclipError(
            f"{where}: {column} {value!r} is an absolute path; paths are relative to {str(root)!r} "
            f"({OUTSIDE_ROOT_HINT})"
        )
    full = root / path
    if not allow_outside_root and not full.resolve().is_relative_to(root.resolve()):
        raise EditclipError(
            f"{where}: {column} {value!r} leads outside the dataset root {str(root)!r} "
            f"(to {str(full.resolve())!r}; {OUTSIDE_ROOT_HINT})"
        )
    return full


def split_code(value: str | int, where: str = "") -> int:
    """``train``/``val``/``test`` (or ``valid``/``validation``) or an integer (ASCII digits) as a code."""
    text = str(value).strip()
    if _SPLIT_CODE_RE.match(text):
        return int(text)
    if text in SPLIT_NAMES:
        return SPLIT_NAMES[text]
    prefix = f"{where}: " if where else ""
    raise EditclipError(f"{prefix}split {text!r} is unknown; use train, val, test or 0, 1, 2")


def index_dataset(
    root: str | Path,
    *,
    format: str = "auto",
    split: str | int | None = None,
    max_images: int | None = None,
    path_column: str = "path",
    allow_outside_root: bool = False,
) -> DatasetIndex:
    """Index a dataset (layouts as in :func:`editclip.data.load_dataset`) without reading an image."""
    root = Path(root)
    if format not in FORMATS:
        raise EditclipError(f"dataset format {format!r} is unknown; choose one of {FORMATS}")
    if not root.exists():
        raise EditclipError(f"dataset path {str(root)!r} does not exist")
    if format == "auto":
        format = "csv" if root.is_file() else "waterbirds" if (root / "metadata.csv").is_file() else "folder"
    if format == "waterbirds":
        table = read_table(root / "metadata.csv" if root.is_dir() else root, WATERBIRDS_REQUIRED)
        index = _from_table(table, "img_filename", split, "waterbirds", allow_outside_root)
    elif format == "csv":
        if root.is_dir():
            raise EditclipError(f"format 'csv' needs a CSV file, but {str(root)!r} is a folder")
        index = _from_table(read_table(root, (path_column,)), path_column, split, "csv", allow_outside_root)
    else:
        index = _from_folder(root)
    if max_images is not None:
        if max_images <= 0:
            raise EditclipError(f"max_images must be positive, got {max_images}")
        index = _first(index, max_images)
    if not index.ids:
        raise EditclipError(f"dataset {str(root)!r} (split {split!r}) has no images")
    return index


def _from_table(
    table: Table, path_column: str, split: str | int | None, fmt: str, allow_outside_root: bool
) -> DatasetIndex:
    base = table.path.parent
    skip = {path_column, *PATH_COLUMNS}
    columns, label_names = {}, {}
    for name in table.header:
        if name in skip:
            continue
        values = [row[name] for row in table.rows]
        if all(_INT_RE.match(v) for v in values):
            columns[name] = [int(float(v)) for v in values]
        elif name == "img_id":
            continue  # ids that are not integers are the dataset's ids, not a column
        else:  # names (or numbers that are not all integers): code them in sorted order, keep the names
            names = sorted(set(values))
            code = {v: i for i, v in enumerate(names)}
            columns[name], label_names[name] = [code[v] for v in values], names
    ids = [row.get("img_id") or row[path_column] for row in table.rows]
    _check_unique(ids, table, "img_id" if "img_id" in table.header else path_column)
    keep = list(range(len(table.rows)))
    train_columns: dict[str, list[int]] = {}
    if "split" in table.header:
        codes = [split_code(row["split"], table.where(i)) for i, row in enumerate(table.rows)]
        columns.pop("split", None)
        train = [i for i, c in enumerate(codes) if c == 0]
        train_columns = {k: [v[i] for i in train] for k, v in columns.items()}
        if split is not None:
            wanted = split_code(split)
            keep = [i for i, c in enumerate(codes) if c == wanted]
            columns["split"] = [wanted] * len(keep)
        else:
            columns["split"] = codes
    elif split is not None:
        raise EditclipError(f"split {split!r} was asked for, but {str(table.path)!r} has no 'split' column")
    paths = [resolve_image(base, table.rows[i][path_column], table.where(i), path_column, allow_outside_root)
             for i in keep]  # fmt: skip
    return DatasetIndex(
        name=base.name if fmt == "waterbirds" else table.path.stem,
        root=base if fmt == "waterbirds" else table.path,
        format=fmt,
        split=None if split is None else str(split),
        ids=[str(ids[i]) for i in keep],
        paths=paths,
        columns={k: v if k == "split" else [v[i] for i in keep] for k, v in columns.items()},
        label_names=label_names,
        sources=[table.where(i) for i in keep],
        train_columns=train_columns,
    )


def _check_unique(ids: list[str], table: Table, column: str) -> None:
    seen: dict[str, int] = {}
    for i, id_ in enumerate(ids):
        if id_ in seen:
            first = table.lines[seen[id_]]
            raise EditclipError(f"{table.where(i)}: {column} {id_!r} is already used by row {first}; ids are unique")
        seen[id_] = i


def _from_folder(root: Path) -> DatasetIndex:
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
    outside = [p for p in paths if not p.resolve().is_relative_to(root.resolve())]
    if outside:
        raise EditclipError(
            f"image {str(outside[0])!r} of folder {str(root)!r} links outside it ({len(outside)} such files); "
            "copy the images into the folder"
        )
    columns = {"y": labels} if classes else {}
    label_names = {"y": classes} if classes else {}
    ids = [str(p.relative_to(root)) for p in paths]
    return DatasetIndex(root.name, root, "folder", None, ids, paths, columns, label_names, [str(p) for p in paths])


def _first(index: DatasetIndex, n: int) -> DatasetIndex:
    return DatasetIndex(
        index.name,
        index.root,
        index.format,
        index.split,
        index.ids[:n],
        index.paths[:n],
        {k: v[:n] for k, v in index.columns.items()},
        index.label_names,
        index.sources[:n],
        index.train_columns,
    )
