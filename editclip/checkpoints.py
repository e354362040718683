"""Why a weights file could not be read, in one line: missing, empty, truncated or corrupt (safetensors
or PyTorch zip), or a pickle that ``torch.load(weights_only=True)`` refuses because it would run code."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

from safetensors import SafetensorError

from .errors import EditclipError

_CORRUPT_TORCH = ("PytorchStreamReader", "central directory", "unexpected EOF", "invalid load key")


def check_readable(path: str | Path, what: str = "checkpoint") -> Path:
    """`path` as a Path; raise when it is missing or empty (before any loader sees it)."""
    path = Path(path)
    if not path.is_file():
        raise EditclipError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise EditclipError(f"{what} {str(path)!r} is an empty file (0 bytes); re-create or re-download it")
    return path


def read_error(path: str | Path, err: BaseException, what: str = "checkpoint") -> EditclipError | None:
    """The clear error for `err`, raised while reading the weights file `path`; None when `err` is not
    a problem of the file itself (e.g. weights that do not fit the model)."""
    where = f"{what} {str(path)!r}"
    if isinstance(err, SafetensorError):
        return EditclipError(f"{where} is truncated or corrupt (not a complete safetensors file: {err}); "
                             "re-create or re-download it")  # fmt: skip
    found = re.search(r"GLOBAL ([\w.]+)", str(err)) if isinstance(err, pickle.UnpicklingError) else None
    if found:  # the safe unpickler met a reference to code, not damage
        return EditclipError(
            f"{where} is not loadable safely: it is a pickle holding Python objects beyond tensors (it refers "
            f"to {found.group(1)}), which torch.load(weights_only=True) refuses to run; convert it to "
            "safetensors (where you trust its source) and load that"
        )
    if isinstance(err, (EOFError, zipfile.BadZipFile, pickle.UnpicklingError)) or (
        isinstance(err, RuntimeError) and any(s in str(err) for s in _CORRUPT_TORCH)
    ):
        return EditclipError(f"{where} is truncated or corrupt (not a complete PyTorch checkpoint); "
                             "re-create or re-download it")  # fmt: skip
    return None
