"""EditedCLIP: a CLIP (of any family editclip reads) with some direct parts of its image embedding replaced.

This is the paper's semantics. For an image x with unedited embedding z (exact convention, see
:mod:`editclip._decompose`), every edited part c(x) is swapped for an affine function of itself,
computed from the parts captured in one instrumented forward with the unedited pass's ln_post scale:

    z'(x) = z(x) - sum_edited c(x) + sum_edited (A c(x) + beta)

Mean-ablation is A = 0, beta = E[c]; projecting onto a subspace with orthogonal projector P is
A = P, beta = (I - P) E[c] (the mean is kept, the variation outside the span is removed); projecting
away from it is A = I - P, beta = P E[c]. Indirect effects (what a head writes that later layers read)
are untouched: that is what the ``weights`` target of :mod:`editclip._compile` changes instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import families
from .errors import EditclipError
from .vit import run


@dataclass
class EditTensors:
    """The tensors of a compiled edit. Heads are flat indices ``layer * n_heads + head``."""

    ablate_heads: Tensor  # [Ka] long
    ablate_head_means: Tensor  # [Ka, D]
    project_heads: Tensor  # [Kp] long
    project_linear: Tensor  # [Kp, D, D]  A (row-vector convention: c' = c @ A + beta)
    project_offset: Tensor  # [Kp, D]     beta
    ablate_mlps: Tensor  # [Km] long
    ablate_mlp_means: Tensor  # [Km, D]
    ablate_biases: Tensor  # [Kb] long  layers whose out_proj bias part is replaced by its mean
    ablate_bias_means: Tensor  # [Kb, D]
    ablate_embed: Tensor  # [] bool
    embed_mean: Tensor  # [D]
    embedding_projector: Tensor  # [D, D] P of z' = z - z P (applied last), or [0, D] for none
    ablate_pool_mlp: Tensor = field(default_factory=lambda: torch.tensor(False))  # [] bool  (attention pools)
    pool_mlp_mean: Tensor | None = None  # [D]  (zeros of the embed_mean's shape when not given)
    ablate_cls_source: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # [Kc] layers
    cls_source_means: Tensor | None = None  # [Kc, D]  their CLS-source attention means

    def __post_init__(self) -> None:
        if self.pool_mlp_mean is None:
            self.pool_mlp_mean = torch.zeros_like(self.embed_mean)
        if self.cls_source_means is None:
            self.cls_source_means = self.embed_mean.new_zeros(0, self.embed_mean.shape[-1])

    def __repr__(self) -> str:
        parts = [f"D={self.embed_mean.shape[-1]}"]
        counted = {
            "heads mean-ablated": self.ablate_heads,
            "heads projected": self.project_heads,
            "MLPs mean-ablated": self.ablate_mlps,
            "layer biases mean-ablated": self.ablate_biases,
            "layers' CLS-source attention mean-ablated": self.ablate_cls_source,
        }
        for what, index in counted.items():
            if index.numel():
                parts.append(f"{index.numel()} {what}")
        if bool(self.ablate_embed):
            parts.append("embed mean-ablated")
        return f"EditTensors({', '.join(parts) if len(parts) > 1 else parts[0] + ', no edits'})"

    @classmethod
    def empty(cls, dim: int) -> EditTensors:
        """No edit at all (the identity)."""
        long = torch.zeros(0, dtype=torch.long)
        return cls(long, torch.zeros(0, dim), long, torch.zeros(0, dim, dim), torch.zeros(0, dim), long,
                   torch.zeros(0, dim), long, torch.zeros(0, dim), torch.tensor(False), torch.zeros(dim),
                   torch.zeros(0, dim))  # fmt: skip

    def to_dict(self) -> dict[str, Tensor]:
        """Flat name -> tensor mapping (safetensors-ready)."""
        return {f.name: getattr(self, f.name).contiguous() for f in fields(self)}

    @classmethod
    def from_dict(cls, tensors: dict[str, Tensor]) -> EditTensors:
        tensors = dict(tensors)
        if "embedding_projector" not in tensors and "embed_mean" in tensors:  # artifacts from before the field
            tensors["embedding_projector"] = torch.zeros(0, tensors["embed_mean"].shape[0])
        # artifacts written before pooled towers (or the CLS-source ablation) lack these
        optional = ("ablate_pool_mlp", "pool_mlp_mean", "ablate_cls_source", "cls_source_means")
        missing = [f.name for f in fields(cls) if f.name not in tensors and f.name not in optional]
        if missing:
            raise EditclipError(f"edit tensors are missing {missing}")
        return cls(**{f.name: tensors[f.name] for f in fields(cls) if f.name in tensors})

    def apply(
        self,
        z: Tensor,
        heads: Tensor,
        mlps: Tensor,
        biases: Tensor,
        embed: Tensor,
        pool_mlp: Tensor | None = None,
        cls_source: Tensor | None = None,
    ) -> Tensor:
        """Edited embeddings from unedited ones and their exact-convention parts; the whole-embedding projection,
        when there is one, comes last.

        z [N, D]; heads [N, L, H, D]; mlps [N, L, D]; biases [N, L, D]; embed [N, D]; pool_mlp [N, D] (the
        attention pool's MLP part, needed when it is ablated); cls_source [N, L, D] (each layer's CLS-source
        attention, needed when it is ablated).
        """
        flat = heads.flatten(1, 2)  # [N, L*H, D]
        delta = torch.zeros_like(z)
        if self.ablate_heads.numel():
            delta = delta + (self.ablate_head_means[None] - flat[:, self.ablate_heads]).sum(1)
        if self.project_heads.numel():
            parts = flat[:, self.project_heads]  # [N, Kp, D]
            replaced = torch.einsum("nkd,kde->nke", parts, self.project_linear) + self.project_offset[None]
            delta = delta + (replaced - parts).sum(1)
        if self.ablate_mlps.numel():
            delta = delta + (self.ablate_mlp_means[None] - mlps[:, self.ablate_mlps]).sum(1)
        if self.ablate_biases.numel():
            delta = delta + (self.ablate_bias_means[None] - biases[:, self.ablate_biases]).sum(1)
        if bool(self.ablate_embed):
            delta = delta + (self.embed_mean[None] - embed)
        if bool(self.ablate_pool_mlp):
            if pool_mlp is None:
                raise EditclipError("this edit ablates pool.mlp, but the model has no attention pool MLP part")
            delta = delta + (self.pool_mlp_mean[None] - pool_mlp)
        if self.ablate_cls_source.numel():
            if cls_source is None:
                raise EditclipError("this edit ablates CLS-source attention, but the model reads out no class token")
            delta = delta + (self.cls_source_means[None] - cls_source[:, self.ablate_cls_source]).sum(1)
        z = z + delta
        if self.embedding_projector.numel():
            z = z - z @ self.embedding_projector
        return z

    def to(self, device: torch.device | str) -> EditTensors:
        return EditTensors(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


class EditedCLIP(nn.Module):
    """A CLIP with direct-effect edits on its image tower; encode_image / encode_text / forward like open_clip's."""

    def __init__(self, model: nn.Module, edits: EditTensors) -> None:
        super().__init__()
        self.model = model
        for f in fields(edits):
            self.register_buffer(f.name, getattr(edits, f.name).to(families.device_dtype(model)[0]), persistent=True)

    @property
    def visual(self) -> nn.Module:
        """The module that owns the base model's image-tower parameters."""
        return families.tower_module(self.model)

    @property
    def logit_scale(self) -> Tensor:
        return families.logit_scale(self.model)

    @property
    def edits(self) -> EditTensors:
        return EditTensors(**{f.name: getattr(self, f.name) for f in fields(EditTensors)})

    def encode_image(self, image: Tensor, normalize: bool = False) -> Tensor:
        """[N, D] edited image embeddings (fp32)."""
        out = run(families.describe(self.model), image)
        z = self.edits.apply(out.embedding, out.heads, out.mlps, out.attn_bias, out.embed, out.pool_mlp,
                             out.cls_source)  # fmt: skip
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(self, text: Tensor, normalize: bool = False) -> Tensor:
        z = families.encode_text(self.model, text)
        return F.normalize(z, dim=-1) if normalize else z

    def forward(self, image: Tensor | None = None, text: Tensor | None = None) -> tuple[Tensor | None, ...]:
        """(image_features, text_features, logit_scale), unit-normalised, like open_clip's CLIP.forward."""
        image_features = self.encode_image(image, normalize=True) if image is not None else None
        text_features = self.encode_text(text, normalize=True) if text is not None else None
        return image_features, text_features, self.logit_scale.exp()


class ImageEncoder(nn.Module):
    """The image path alone (what ONNX export takes): images -> embeddings, optionally unit-normalised."""

    def __init__(self, model: nn.Module, normalize: bool = False) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, image: Tensor) -> Tensor:
        if isinstance(self.model, EditedCLIP):
            z = self.model.encode_image(image)
        else:
            z = families.encode_image(self.model, image)
        return (F.normalize(z, dim=-1) if self.normalize else z).float()
