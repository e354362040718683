"""The one exception type users see: a clear, specific message instead of a deep traceback."""

from __future__ import annotations


class EditclipError(Exception):
    """Bad input or an unsupported model, explained: which thing, which value, what is allowed.

    The command line prints the message and exits with status 2; the Python API lets it propagate.
    """


class UnsupportedModelError(EditclipError):
    """The model's image tower cannot be decomposed into per-head direct effects."""
