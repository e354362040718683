"""A zero-shot classifier as one ONNX graph: images -> class probabilities.

The graph is the (edited) image tower, L2 normalisation, the text classifier (one unit embedding per
class, averaged over the prompt templates) scaled by the model's logit scale, and a softmax. It is what
a service deploys for a debiased classifier: no text tower, no editclip and no torch at inference. It
is checked against torch like the image encoders (:func:`editclip.export.export_onnx`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from . import families
from .edited import ImageEncoder
from .errors import EditclipError

if TYPE_CHECKING:
    from .backbone import Backbone
    from .export import ExportReport

OUTPUT_NAME = "probabilities"
TASK = "zero-shot-classification"


class ZeroShotClassifier(ImageEncoder):
    """images [N, 3, H, W] -> probabilities [N, C]: ``softmax(scale * normalize(encode_image(x)) @ W^T)``."""

    output_name = OUTPUT_NAME

    def __init__(self, model: nn.Module, classifier: Tensor, logit_scale: float) -> None:
        super().__init__(model, normalize=True)
        if classifier.ndim != 2:
            raise EditclipError(f"the classifier must be [classes, dim]; got {list(classifier.shape)}")
        self.register_buffer("classifier", classifier.detach().float().clone())
        self.logit_scale = float(logit_scale)

    def forward(self, image: Tensor) -> Tensor:
        z = super().forward(image)
        return torch.softmax(self.logit_scale * z @ self.classifier.T, dim=-1)


def build_classifier(model: nn.Module, bb: Backbone, classes: Sequence[str],
                     templates: str | Sequence[str]) -> ZeroShotClassifier:  # fmt: skip
    """The classifier of ``model`` (the base, an EditedCLIP or patched weights of ``bb``) over ``classes``,
    with text embeddings from ``bb``'s text tower and its logit scale."""
    from .evaluate import zero_shot_classifier

    if len(classes) < 2:
        raise EditclipError(f"a classifier needs at least two classes; got {list(classes)}")
    if len(set(classes)) != len(classes):
        raise EditclipError(f"repeated class names in {list(classes)}")
    weights = zero_shot_classifier(bb, list(classes), templates)
    scale = float(families.logit_scale(bb.model).detach().float().exp())
    return ZeroShotClassifier(model, weights, scale)


def export_classifier(
    model: nn.Module,
    bb: Backbone,
    classes: Sequence[str],
    templates: str | Sequence[str],
    path: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    **options: Any,
) -> ExportReport:
    """Export the zero-shot classifier of ``model`` to ONNX (``options`` as for ``export_onnx``: opset, fp16,
    check, batch_sizes...); the classes, templates and logit scale are in the file's metadata."""
    from .export import export_onnx

    classifier = build_classifier(model, bb, classes, templates)
    meta = {
        **(metadata or {}),
        "task": TASK,
        "classes": list(classes),
        "templates": templates if isinstance(templates, str) else list(templates),
        "logit_scale": classifier.logit_scale,
    }
    return export_onnx(classifier, path, metadata=meta, **options)
