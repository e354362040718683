"""Class lists by name or from a dataset's own files, so zero-shot classifiers need no hand-written lists.

A class source is one string:

- ``imagenet``: the 1,000 ImageNet class names of open_clip's zero-shot metadata (``IMAGENET_CLASSNAMES``),
  as open_clip has them: two names appear twice (missile 657/744, sunglasses 836/837), so label i is name i;
- ``imagefolder:PATH``: the sub-folder names of an ImageFolder root, sorted as torchvision's
  ``ImageFolder`` sorts them (plain string order), so label i is the i-th folder;
- ``cub:PATH``: CUB-200-2011's ``classes.txt`` (PATH is the file or the folder that holds it). Its lines
  read ``1 001.Black_footed_Albatross``; the name is cleaned by dropping the line number and the
  ``NNN.`` prefix and turning underscores into spaces ("Black footed Albatross"). Label i is line i + 1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import EditclipError

CLASS_LISTS = ("imagenet",)
CLASS_SOURCES = ("imagefolder", "cub")
_CUB_LINE = re.compile(r"^(\d+)\s+(?:\d+\.)?(\S.*)$")


def is_class_source(value: str) -> bool:
    """Whether `value` names a class list (``imagenet``) or a dataset source (``imagefolder:``, ``cub:``)."""
    kind, colon, _ = value.partition(":")
    return value in CLASS_LISTS or (bool(colon) and kind in CLASS_SOURCES)


def classes_from_values(values: list[str]) -> list[str]:
    """Class names as given on a command line: two or more names, or one class source (one class is never
    a classifier, so a single unknown name is refused with the sources that exist)."""
    return resolve_classes(values[0]) if len(values) == 1 else list(values)


def resolve_classes(source: str) -> list[str]:
    """The class names of a class source (see the module docstring), in label order."""
    if source == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)
    kind, _, path = source.partition(":")
    if kind == "imagefolder" and path:
        return imagefolder_classes(path)
    if kind == "cub" and path:
        return cub_classes(path)
    raise EditclipError(
        f"unknown class list {source!r}: use {', '.join(CLASS_LISTS)}, imagefolder:PATH or cub:PATH "
        "(or give the class names themselves)"
    )


def imagefolder_classes(root: str | os.PathLike[str]) -> list[str]:
    """The sub-folder names of an ImageFolder root, sorted (torchvision's ``ImageFolder`` label order)."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise EditclipError(f"ImageFolder root {str(folder)!r} is not a folder")
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not names:
        raise EditclipError(f"ImageFolder root {str(folder)!r} has no class sub-folders")
    return names


def cub_classes(path: str | os.PathLike[str]) -> list[str]:
    """CUB-200-2011's class names from ``classes.txt`` (the file, or the folder holding it), cleaned:
    ``1 001.Black_footed_Albatross`` -> ``Black footed Albatross``. Lines must be numbered 1, 2, ... in order."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "classes.txt"
    if not file.is_file():
        raise EditclipError(f"CUB class file {str(file)!r} does not exist (expected CUB_200_2011/classes.txt)")
    try:
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as err:
        raise EditclipError(f"CUB class file {str(file)!r} is not UTF-8 text: {err}") from None
    names = []
    for row, line in enumerate((line for line in lines if line), start=1):
        match = _CUB_LINE.match(line)
        if match is None or int(match.group(1)) != row:
            raise EditclipError(
                f"CUB class file {str(file)!r}, entry {row}: {line[:60]!r} is not '{row} NNN.Class_name'"
            )
        names.append(match.group(2).replace("_", " ").strip())
    if not names:
        raise EditclipError(f"CUB class file {str(file)!r} is empty")
    return names
