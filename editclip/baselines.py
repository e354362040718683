"""Baselines an edit of heads is compared against, evaluated by the same report.

**Projecting the whole embedding away from spurious-attribute texts** (the zero-shot debiasing of
Chuang et al. 2023, "Debiasing Vision-Language Models via Biased Prompts", and of RoboShot, Adila et al.
2024): with P the orthogonal projector onto the span of the given texts' embeddings, the image embedding
becomes ``z' = z - z P = z (I - P)``. No mean is kept: the published baseline removes the directions
outright. Since the classifier reads ``z' . w = z . (I - P) w``, this is the same as projecting the class
embeddings, which is how Chuang et al. apply it (their calibrated variant adds a learned matrix; this is
the plain projection).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import EditclipError


def embedding_projection(directions: Tensor) -> Tensor:
    """[D, D] orthogonal projector onto the span of the rows of ``directions`` [m, D] (dependent rows dropped)."""
    if directions.ndim != 2 or directions.shape[0] < 1:
        raise EditclipError(f"directions must be [m, D] with m >= 1, got shape {tuple(directions.shape)}")
    q, r = torch.linalg.qr(directions.double().t())
    keep = r.diagonal().abs() > 1e-6 * r.diagonal().abs().max().clamp_min(1e-30)
    if not bool(keep.any()):
        raise EditclipError("the directions are all zero")
    basis = q[:, keep]  # [D, r]
    return (basis @ basis.t()).float()


def project_embeddings(z: Tensor, projector: Tensor) -> Tensor:
    """[N, D] embeddings with their component in the projector's span removed: ``z (I - P)``."""
    return z - z @ projector.to(z)
