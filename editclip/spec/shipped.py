"""The edit specs shipped inside the package (``editclip/specs/*.yaml``): their names, paths and summaries.

They are package data, so an installed wheel has them too; ``editclip specs list`` and ``editclip specs
show NAME --out FILE`` are the command-line face. Their data roots are relative (``data/waterbirds``):
copy a spec into your project folder and run it there.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..errors import EditclipError


def shipped_dir() -> Path:
    """The folder that holds the shipped specs."""
    return Path(str(resources.files("editclip").joinpath("specs")))


def shipped_specs() -> list[str]:
    """Names of the shipped specs (file names without ``.yaml``), sorted."""
    return sorted(p.stem for p in shipped_dir().glob("*.yaml"))


def shipped_spec(name: str) -> Path:
    """The path of the shipped spec ``name`` (e.g. ``toyworld``, ``waterbirds-vit-b-16``)."""
    names = shipped_specs()
    stem = name.removesuffix(".yaml")
    if stem not in names:
        raise EditclipError(f"no shipped spec named {name!r}; the shipped specs are {', '.join(names)}")
    return shipped_dir() / f"{stem}.yaml"


def summary(path: Path, width: int = 90) -> str:
    """What the spec is: its leading comment's first clause (up to a colon), at most `width` characters."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("# ").strip().split(": ")[0]
        if text:
            return text if len(text) <= width else text[: width - 3].rstrip() + "..."
    return ""
