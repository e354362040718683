"""Where in the image: heatmaps from the per-token direct contributions (docs/method.md section 6).

A patch's score is the part of the image embedding that its token, as an attention *source* of the
CLS row, writes directly (summed over the chosen layers and heads), projected on a text direction:
for zero-shot segmentation the class embedding minus the mean over the candidate classes, for a head
map one text. Scores live in the ``exact`` convention (parts of the unnormalised embedding ``z``).
Only ``token_sum`` [N, T, D] is ever held, never per-head or [T, T] tensors, so memory stays in
megabytes per image even for ViT-H-14.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ._repr import shapes_repr
from .backbone import Backbone
from .errors import EditclipError
from .evaluate import Template
from .names import HeadRef, check_head, parse_head, parse_layers
from .text import encode_texts
from .vit import run as run_vit

HeadSelection = Tensor | Sequence[str | HeadRef] | None


@dataclass
class Heatmaps:
    """Per-image maps of where a text direction is written into the embedding."""

    maps: Tensor  # [N, H_img, W_img]  upsampled bilinearly, min-max normalised to [0, 1]
    patch_scores: Tensor  # [N, gh, gw]  raw patch-token scores (exact convention, row-major grid)
    cls_scores: Tensor  # [N]  score of the CLS token as a source (zero for towers without one, e.g. SigLIP)
    target: Tensor | None = None  # [N] long  class whose direction was used (segmentation only)
    logits: Tensor | None = None  # [N, C]  cosine of each image embedding with each class (segmentation only)

    __repr__ = shapes_repr


@dataclass
class ScoreParts:
    """A class score split into per-source-token terms and everything else; they sum to ``total``."""

    tokens: Tensor  # [N, T]  per-source-token scores of the chosen layers and heads (token 0 = CLS)
    rest: Tensor  # [N]  ln_pre term, MLPs, out_proj biases, ln_post beta and the heads not chosen
    total: Tensor  # [N]  embedding . direction

    __repr__ = shapes_repr


def head_mask(bb: Backbone, layers: str | Sequence[int] = "all", heads: HeadSelection = None) -> Tensor:
    """[L, H] bool: the heads in `layers` (``all``, ``last:k``, ``L8-11`` or indices) that `heads` also selects.

    `heads` is ``None`` (all), an [L, H] bool mask, or head names such as ``["L11.H3", "L10.H0"]``.
    """
    n_layers, n_heads = bb.shape.layers, bb.shape.heads
    if isinstance(layers, str):
        chosen = parse_layers(layers, n_layers)
    else:
        chosen = sorted({int(x) for x in layers})
        for layer in chosen:
            if not 0 <= layer < n_layers:
                raise EditclipError(f"layer {layer} is out of range; this model has layers 0..{n_layers - 1}")
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    mask[chosen] = True
    if heads is None:
        return mask
    if isinstance(heads, Tensor):
        if heads.shape != (n_layers, n_heads):
            raise EditclipError(f"head mask must be [{n_layers}, {n_heads}] for this model; got {list(heads.shape)}")
        selected = heads.bool().cpu()
    else:
        selected = torch.zeros_like(mask)
        for head in heads:
            ref = head if isinstance(head, HeadRef) else parse_head(head)
            check_head(ref, n_layers, n_heads)
            selected[ref.layer, ref.head] = True
    mask &= selected
    if not mask.any():
        raise EditclipError("the layer and head selections have no head in common")
    return mask


def class_embeddings(
    bb: Backbone, classes: Sequence[str] | Tensor, templates: str | Sequence[Template] | None = None
) -> Tensor:
    """[C, D] unit class directions: given embeddings normalised, or the class names through the text tower.

    `templates` is a template-set name (``openai_imagenet``, ``simple_imagenet``) or format strings
    with one ``{}`` (or callables); without it each class text is embedded as written.
    """
    if isinstance(classes, Tensor):
        if classes.ndim != 2 or classes.shape[1] != bb.shape.embed_dim:
            raise EditclipError(
                f"class embeddings must be [C, {bb.shape.embed_dim}]; got {list(classes.shape)}"
            )
        emb = F.normalize(classes.float().cpu(), dim=-1)
    else:
        if not classes or any(not str(c).strip() for c in classes):
            raise EditclipError("class texts must be non-empty strings")
        emb = encode_texts(bb, list(classes), templates, progress=False)
    if emb.shape[0] < 2:
        raise EditclipError("segmentation needs at least two candidate classes (the direction is class minus mean)")
    return emb


def contrast_directions(class_emb: Tensor, target: Tensor) -> Tensor:
    """[N, D]: the target class's embedding minus the mean over all classes. class_emb [C, D], target [N]."""
    return class_emb[target] - class_emb.mean(0, keepdim=True)


def token_scores(token_sum: Tensor, directions: Tensor) -> Tensor:
    """[N, T] projections of per-token parts token_sum [N, T, D] on per-image directions [N, D] (or one [D])."""
    if directions.ndim == 1:
        directions = directions.expand(token_sum.shape[0], -1)
    return torch.einsum("ntd,nd->nt", token_sum, directions.to(token_sum))


def to_image(patch_scores: Tensor, size: tuple[int, int]) -> Tensor:
    """[N, gh, gw] patch scores -> [N, *size] maps: bilinear upsampling, then min-max per image to [0, 1].

    A constant map becomes all zeros.
    """
    up = F.interpolate(patch_scores[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.amin((1, 2), keepdim=True)
    span = up.amax((1, 2), keepdim=True) - low
    return torch.where(span > 0, (up - low) / span.clamp_min(1e-30), torch.zeros_like(up))


def _batches(images: Tensor, batch_size: int, progress: bool, desc: str) -> Iterator[Tensor]:
    if images.ndim != 4:
        raise EditclipError(f"images must be a [N, 3, H, W] tensor; got {list(images.shape)}")
    if batch_size < 1:
        raise EditclipError(f"batch_size must be >= 1; got {batch_size}")
    starts = range(0, images.shape[0], batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress or len(starts) < 2):
        yield images[start : start + batch_size]


def _resolve_target(target: int | Tensor | None, logits: Tensor, start: int) -> Tensor:
    n, n_classes = logits.shape
    if target is None:
        return logits.argmax(-1)
    if isinstance(target, int):
        chosen = torch.full((n,), target, dtype=torch.long)
    else:
        chosen = target[start : start + n].long().cpu()
    if ((chosen < 0) | (chosen >= n_classes)).any():
        raise EditclipError(f"target class index out of range; there are {n_classes} classes (0..{n_classes - 1})")
    return chosen


@torch.no_grad()
def heatmaps(
    bb: Backbone,
    images: Tensor,
    classes: Sequence[str] | Tensor,
    *,
    target: int | Tensor | None = None,
    layers: str | Sequence[int] = "all",
    heads: HeadSelection = None,
    templates: str | Sequence[Template] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Heatmaps:
    """Zero-shot segmentation maps of `images` [N, 3, H, W] for the predicted (or `target`) class.

    Args:
        classes: candidate class texts, or their embeddings [C, D].
        target: ``None`` (each image's predicted class), one class index, or indices [N].
        layers, heads: which heads' per-token parts are summed (see :func:`head_mask`).
    """
    class_emb = class_embeddings(bb, classes, templates)
    if isinstance(target, Tensor) and target.shape != (images.shape[0],):
        raise EditclipError(f"target must be one index per image, [{images.shape[0]}]; got {list(target.shape)}")
    mask = head_mask(bb, layers, heads)
    token_layers = [int(x) for x in mask.any(1).nonzero().flatten()]
    results: list[tuple[Tensor, Tensor, Tensor]] = []
    start = 0
    for batch in _batches(images, batch_size, progress, "heatmaps"):
        out = run_vit(
            bb.tower, batch.to(bb.device, bb.dtype), parts=False, token_layers=token_layers,
            token_reduce="sum", token_head_mask=mask.to(bb.device),
        )  # fmt: skip
        logits = F.normalize(out.embedding.cpu(), dim=-1) @ class_emb.T
        chosen = _resolve_target(target, logits, start)
        scores = token_scores(out.token_sum.cpu(), contrast_directions(class_emb, chosen))
        results.append((scores, chosen, logits))
        start += batch.shape[0]
    scores = torch.cat([r[0] for r in results])
    return _as_heatmaps(bb, scores, torch.cat([r[1] for r in results]), torch.cat([r[2] for r in results]))


@torch.no_grad()
def head_map(
    bb: Backbone,
    images: Tensor,
    head: str | HeadRef,
    text: str | Tensor,
    *,
    templates: str | Sequence[Template] | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> Heatmaps:
    """Where one head writes along a text direction: per-patch parts of `head` projected on `text`.

    `text` is a text (embedded through the text tower, with `templates` if given) or an embedding [D].
    """
    ref = head if isinstance(head, HeadRef) else parse_head(head)
    check_head(ref, bb.shape.layers, bb.shape.heads)
    if isinstance(text, Tensor):
        if text.shape != (bb.shape.embed_dim,):
            raise EditclipError(f"text direction must be [{bb.shape.embed_dim}]; got {list(text.shape)}")
        direction = F.normalize(text.float().cpu(), dim=0)
    else:
        if not text.strip():
            raise EditclipError("the text must be a non-empty string")
        direction = encode_texts(bb, [text], templates, progress=False)[0]
    mask = torch.zeros(bb.shape.layers, bb.shape.heads, dtype=torch.bool)
    mask[ref.layer, ref.head] = True
    scores = []
    for batch in _batches(images, batch_size, progress, f"head map {ref}"):
        out = run_vit(
            bb.tower, batch.to(bb.device, bb.dtype), parts=False, token_layers=[ref.layer],
            token_reduce="sum", token_head_mask=mask.to(bb.device),
        )  # fmt: skip
        scores.append(token_scores(out.token_sum.cpu(), direction))
    return _as_heatmaps(bb, torch.cat(scores))


def _as_heatmaps(bb: Backbone, scores: Tensor, target: Tensor | None = None, logits: Tensor | None = None) -> Heatmaps:
    patches = scores[:, bb.shape.prefix_tokens :].reshape(scores.shape[0], *bb.shape.grid)
    return Heatmaps(
        maps=to_image(patches, bb.shape.image_size),
        patch_scores=patches,
        cls_scores=scores[:, 0] if bb.shape.prefix_tokens else scores.new_zeros(scores.shape[0]),
        target=target,
        logits=logits,
    )


@torch.no_grad()
def score_parts(
    bb: Backbone,
    images: Tensor,
    directions: Tensor,
    *,
    layers: str | Sequence[int] = "all",
    heads: HeadSelection = None,
) -> ScoreParts:
    """Split each image's score ``z . direction`` into per-source-token terms of the chosen heads and the rest.

    images [N, 3, H, W]; directions [N, D] or [D]. ``tokens.sum(-1) + rest == total`` up to rounding:
    the identity behind the heatmaps.
    """
    mask = head_mask(bb, layers, heads)
    token_layers = [int(x) for x in mask.any(1).nonzero().flatten()]
    out = run_vit(
        bb.tower, images.to(bb.device, bb.dtype), parts=True, token_layers=token_layers,
        token_reduce="sum", token_head_mask=mask.to(bb.device),
    )  # fmt: skip
    if directions.ndim == 1:
        directions = directions.expand(images.shape[0], -1)
    directions = directions.to(out.embedding)
    unchosen = out.heads * (~mask).to(out.heads)[None, :, :, None]
    rest = out.embed + out.mlps.sum(1) + out.attn_bias.sum(1) + out.folded.b + unchosen.sum((1, 2))
    if out.pool_mlp is not None:  # attention-pooled towers: the pool MLP is one more part
        rest = rest + out.pool_mlp
    return ScoreParts(
        tokens=token_scores(out.token_sum, directions),
        rest=(rest * directions).sum(-1),
        total=(out.embedding * directions).sum(-1),
    )
