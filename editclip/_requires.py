"""Checks, before any work, for the runtime libraries a partial installation can lack."""

from __future__ import annotations

import importlib

from .errors import EditclipError


def require_onnxruntime(purpose: str) -> None:
    """Raise one clear error when onnxruntime cannot be used (absent, or half-removed by a CPU/GPU swap)."""
    try:
        module = importlib.import_module("onnxruntime")
        module.InferenceSession  # noqa: B018  (a half-removed install imports as an empty namespace package)
    except (ImportError, AttributeError) as err:
        raise EditclipError(
            f"{purpose} needs onnxruntime, which this Python cannot use ({err}); install it: "
            "pip install onnxruntime (CPU) or pip install --force-reinstall onnxruntime-gpu (CUDA)"
        ) from None
