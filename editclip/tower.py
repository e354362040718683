"""The family-neutral description of a ViT image tower, which editclip's instrumented forward consumes.

Each model family has an adapter in :mod:`editclip.families` that reads its parameters *by name* into a
:class:`Tower`: the patch embedding, class and positional embeddings, pre-norm, the blocks (fused or split
q/k/v with their biases, out projection, two norms with their own eps, layer scales, an MLP fc1 -> act ->
fc2), the pooling, the final norm and the projection. The tensors are the model's own parameters (not
copies), so a forward written from a Tower follows the model's weights, dtype and device, and an ONNX trace
of it records them as the model's parameters. :mod:`editclip.vit` is written once against this description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UnsupportedModelError

if TYPE_CHECKING:
    from .pooling import PooledHead

ACTIVATIONS = ("gelu", "gelu_tanh", "quickgelu")
POOLS = ("cls", "attn", "mean")  # the class token; an attention pool (SigLIP); the mean over tokens


@dataclass
class Norm:
    """A LayerNorm over the last ``width`` features by its parameters (weight/bias may be None) and its own eps;
    applied in fp32 and cast back (open_clip's LayerNormFp32)."""

    weight: Tensor | None
    bias: Tensor | None
    eps: float
    width: int

    def __call__(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), (self.width,), weight, bias, self.eps).to(x.dtype)


@dataclass
class Block:
    """A pre-LN transformer block: x += ls_1 * out(attn(ln_1(x))); x += ls_2 * fc2(act(fc1(ln_2(x)))).

    q/k/v come either fused (``qkv_weight`` [3W, W] in q, k, v order, open_clip's in_proj) or split
    (``q_weight``... [W, W] each, Hugging Face's q_proj/k_proj/v_proj); biases may be None. ``names`` maps
    ``out_weight``, ``out_bias``, ``fc2_weight``, ``fc2_bias`` (and ``ls_2`` when present) to the model's
    state-dict keys, which the weights target of an edit patches.
    """

    heads: int
    ln_1: Norm
    out_weight: Tensor  # [W, W]  output rows, head-major input columns
    out_bias: Tensor | None
    ln_2: Norm
    fc1_weight: Tensor  # [M, W]
    fc1_bias: Tensor | None
    act: str
    fc2_weight: Tensor  # [W, M]
    fc2_bias: Tensor | None
    qkv_weight: Tensor | None = None
    qkv_bias: Tensor | None = None
    q_weight: Tensor | None = None
    q_bias: Tensor | None = None
    k_weight: Tensor | None = None
    k_bias: Tensor | None = None
    v_weight: Tensor | None = None
    v_bias: Tensor | None = None
    ls_1: Tensor | None = None  # [W] layer scale of the attention branch
    ls_2: Tensor | None = None  # [W] layer scale of the MLP branch
    names: dict[str, str] = field(default_factory=dict)

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [N, H, T, hd] of the normed input ``h`` [N, T, W]."""
        n, t, width = h.shape
        if self.qkv_weight is not None:
            q, k, v = F.linear(h, self.qkv_weight, self.qkv_bias).chunk(3, dim=-1)
        else:
            q = F.linear(h, self.q_weight, self.q_bias)
            k = F.linear(h, self.k_weight, self.k_bias)
            v = F.linear(h, self.v_weight, self.v_bias)
        return tuple(x.view(n, t, self.heads, width // self.heads).transpose(1, 2) for x in (q, k, v))  # type: ignore[return-value]

    def out(self, attn: Tensor) -> Tensor:
        """The attention branch's contribution to the residual from the merged heads ``attn`` [N, T, W]."""
        o = F.linear(attn, self.out_weight, self.out_bias)
        return o * self.ls_1 if self.ls_1 is not None else o

    def mlp(self, x: Tensor) -> Tensor:
        """The MLP branch's contribution to the residual of the stream ``x`` [N, T, W]."""
        return self.mlp_out(self.mlp_hidden(x)[1])

    def mlp_hidden(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The fc1 outputs and the neuron activations [N, T, M] of the stream ``x`` [N, T, W]."""
        pre = F.linear(self.ln_2(x), self.fc1_weight, self.fc1_bias)
        return pre, activate(self.act, pre)

    def mlp_out(self, hidden: Tensor) -> Tensor:
        """The MLP branch's contribution to the residual from the neuron activations ``hidden`` [N, T, M]."""
        m = F.linear(hidden, self.fc2_weight, self.fc2_bias)
        return m * self.ls_2 if self.ls_2 is not None else m


@dataclass
class Tower:
    """A ViT image tower: embed -> blocks -> pool -> ln_post -> proj. ``module`` owns the parameters."""

    family: str
    module: nn.Module
    image_size: tuple[int, int]
    patch_weight: Tensor  # [W, 3, ph, pw]
    patch_bias: Tensor | None
    class_embedding: Tensor | None  # [W]; None for towers without a class token (SigLIP)
    pos_embedding: Tensor  # [T, W] (zero rows where a family adds none, e.g. on timm's prefix tokens)
    ln_pre: Norm | None
    blocks: list[Block]
    ln_post: Norm
    proj: Tensor | None  # [W, D] (row-vector convention: z = ln_post(x) @ proj)
    pool: str = "cls"
    readout: PooledHead | None = None  # the pool of "attn" and "mean" towers (its norm is ln_post, its proj proj)
    extras: dict[str, Any] = field(default_factory=dict)  # family-specific facts an adapter wants recorded

    @property
    def width(self) -> int:
        return self.patch_weight.shape[0]

    @property
    def prefix_tokens(self) -> int:
        """Tokens before the patch tokens (the class token)."""
        return 0 if self.class_embedding is None else 1

    @property
    def patch_size(self) -> tuple[int, int]:
        return tuple(self.patch_weight.shape[-2:])  # type: ignore[return-value]

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    @property
    def embed_dim(self) -> int:
        return self.proj.shape[1] if self.proj is not None else self.width

    def embed(self, images: Tensor) -> Tensor:
        """Tokens [N, T, W] after patch, class and positional embeddings and ln_pre."""
        x = F.conv2d(images.to(self.patch_weight.dtype), self.patch_weight, self.patch_bias, stride=self.patch_size)
        x = x.flatten(2).transpose(1, 2)  # [N, grid*grid, W]
        if self.class_embedding is not None:
            cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1)
        x = x + self.pos_embedding.to(x.dtype)
        return self.ln_pre(x) if self.ln_pre is not None else x

    def head(self, pooled: Tensor) -> Tensor:
        """The embedding [N, D] (fp32) of the pooled residual [N, W]."""
        y = self.ln_post(pooled)
        return (y @ self.proj if self.proj is not None else y).float()


def activate(name: str, x: Tensor) -> Tensor:
    """The MLP activation ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "quickgelu":
        return x * torch.sigmoid(1.702 * x)
    return F.gelu(x, approximate="tanh" if name == "gelu_tanh" else "none")


@dataclass(frozen=True)
class VitShape:
    """The dimensions of a ViT image tower."""

    layers: int
    heads: int
    width: int
    head_dim: int
    embed_dim: int
    mlp_width: int
    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    grid: tuple[int, int]
    n_tokens: int
    pool: str
    act: str
    layer_scale: bool
    prefix_tokens: int = 1  # tokens before the patch grid (1: the class token; 0: SigLIP)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def tower_shape(tower: Tower, model_id: str = "model") -> VitShape:
    """The dimensions of ``tower``; refuses towers vit.run cannot decompose exactly."""
    first = tower.blocks[0]
    heads, width = first.heads, tower.width
    if width % heads:
        raise UnsupportedModelError(f"model {model_id!r}: width {width} is not divisible by {heads} heads")
    if tower.pool not in POOLS or (tower.pool != "cls") != (tower.readout is not None):
        raise UnsupportedModelError(
            f"model {model_id!r}: the image tower pools with {tower.pool!r}; editclip splits {', '.join(POOLS)}"
        )
    for i, block in enumerate(tower.blocks):
        if block.act not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise UnsupportedModelError(
                f"model {model_id!r}: block {i} MLP activation {block.act!r} is not supported ({allowed})"
            )
        if block.heads != heads:
            raise UnsupportedModelError(f"model {model_id!r}: block {i} has {block.heads} heads, block 0 {heads}")
    grid = tower.grid
    return VitShape(
        layers=len(tower.blocks),
        heads=heads,
        width=width,
        head_dim=width // heads,
        embed_dim=tower.embed_dim,
        mlp_width=first.fc1_weight.shape[0],
        image_size=tuple(tower.image_size),
        patch_size=tower.patch_size,
        grid=grid,
        n_tokens=tower.prefix_tokens + grid[0] * grid[1],
        pool=tower.pool,
        act=first.act,
        layer_scale=any(b.ls_1 is not None or b.ls_2 is not None for b in tower.blocks),
        prefix_tokens=tower.prefix_tokens,
    )
