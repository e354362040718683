"""Direct effects through a pooled readout: SigLIP's attention pool and mean pooling over tokens.

A CLS tower reads one token through its final LayerNorm. Pooled towers read every token:

- ``attention`` (SigLIP's MAP head, timm ``AttentionPoolLatent`` / HF
  ``SiglipMultiheadAttentionPoolingHead``): a learned probe attends over the post-LayerNorm tokens with
  G pool heads, ``x = sum_g sum_t a[g, t] (y_t Wv_g^T + bv_g) Wo_g^T + bo``, then a residual MLP
  ``out = x + mlp(ln(x))``;
- ``mean``: the mean of the tokens from ``start`` on, with the LayerNorm applied to each token
  (open_clip ``pool_type: avg``) or to the mean (``final_ln_after_pool``, timm's ``fc_norm``).

With the pool's attention weights ``a`` and each token's LayerNorm scale ``sigma_t`` held at their
values in the forward pass, everything before the pool MLP is linear in the residual stream. A part
that writes ``c_t`` to token t of the final residual contributes

    sum_g sum_t w[g, t] (c_t P diag(gamma)) @ read_g @ write_g,      w[g, t] = a[g, t] / sigma_t

(``P`` centres over the width; for the mean pool G = 1 and ``w[t] = 1 / (T' sigma_t)``). The pool MLP
is one more part (``pool.mlp``); LayerNorm betas and the pool's biases make the constant (``sum_t a = 1``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import EditclipError
from .tower import Norm, activate

POOL_KINDS = ("attn", "mean")


@dataclass(frozen=True)
class AttentionPool:
    """A latent-query multi-head attention pool with its residual MLP (nn.Linear weight layout)."""

    probe: Tensor  # [W] the learned query
    q_weight: Tensor  # [W, W]
    q_bias: Tensor  # [W]
    k_weight: Tensor
    k_bias: Tensor
    v_weight: Tensor
    v_bias: Tensor
    out_weight: Tensor  # [W, W]
    out_bias: Tensor  # [W]
    heads: int
    norm: Norm  # the LayerNorm before the MLP
    fc1_weight: Tensor  # [M, W]
    fc1_bias: Tensor
    fc2_weight: Tensor  # [W, M]
    fc2_bias: Tensor
    act: str  # one of editclip.tower.ACTIVATIONS

    def mlp(self, x: Tensor) -> Tensor:
        """The pool MLP applied to ln(x) (fp32)."""
        hidden = F.linear(self.norm(x.float()), self.fc1_weight.float(),
                          self.fc1_bias.float())  # fmt: skip
        return F.linear(activate(self.act, hidden), self.fc2_weight.float(), self.fc2_bias.float())


@dataclass(frozen=True)
class PooledHead:
    """Everything after the last block of a pooled tower: final norm, pool, output projection."""

    kind: str  # "attn" | "mean"
    norm: Norm  # the final LayerNorm (of each token; of the mean when norm_after_mean)
    attention: AttentionPool | None = None
    mean_start: int = 0  # mean pool: first pooled token (prefix tokens are left out)
    norm_after_mean: bool = False
    proj: Tensor | None = None  # [W, D] row-vector output projection (open_clip), or None
    proj_bias: Tensor | None = None  # [D]
    names: dict[str, str] = field(default_factory=dict)  # "fc2_weight"/"fc2_bias": the pool MLP's state-dict keys

    def __post_init__(self) -> None:
        if self.kind not in POOL_KINDS:
            raise EditclipError(f"pool kind {self.kind!r} is unknown; editclip splits {POOL_KINDS}")
        if (self.kind == "attn") != (self.attention is not None):
            raise EditclipError("an attention-pooled head needs its AttentionPool (and a mean pool none)")

    def project(self, x: Tensor) -> Tensor:
        """Apply the output projection (without its bias) to [..., W]."""
        return x if self.proj is None else x @ self.proj.float()

    def projected_bias(self, width: int, device: torch.device) -> Tensor:
        dim = width if self.proj is None else self.proj.shape[1]
        return self.proj_bias.float() if self.proj_bias is not None else torch.zeros(dim, device=device)


@dataclass
class Readout:
    """The pooled readout of one batch, linearised at its forward values.

    ``weights`` [N, G, T] already include 1/sigma; ``read`` [G, W, k] is ``P diag(gamma)`` followed by
    each pool head's value map; ``write`` [G, k, D] is its output map and the projection.
    """

    embedding: Tensor  # [N, D] == the model's pooled embedding
    weights: Tensor  # [N, G, T]
    read: Tensor  # [G, W, k]
    write: Tensor  # [G, k, D]
    const: Tensor  # [D]  LayerNorm betas and pool biases
    pool_mlp: Tensor | None  # [N, D]  the pool MLP's output (attention pool only)
    share: Tensor  # [N, T]  each token's share of the read (pool weights averaged over pool heads)
    attn: Tensor | None = None  # [N, G, T]  the pool's attention weights (official convention)
    values: Tensor | None = None  # [N, G, T, k] the pool's values, biases included (official convention)
    official_const: Tensor | None = None  # [D] the pool's out_proj bias, projected (official convention)

    def _through(self, pooled: Tensor) -> Tensor:
        """[..., G, W] residual vectors read by each pool head -> [..., D] output."""
        return torch.einsum("...gk,gkd->...d", torch.einsum("...gw,gwk->...gk", pooled, self.read), self.write)

    def field(self, c: Tensor) -> Tensor:
        """[N, D] direct effect of a residual-stream field ``c`` [N, T, W] written to every token."""
        return self._through(torch.einsum("ngt,ntw->ngw", self.weights, c.float()))

    def constant(self, b: Tensor) -> Tensor:
        """[N, D] direct effect of a vector ``b`` [W] added to every token (an out_proj bias)."""
        return self._through(self.weights.sum(-1)[..., None] * b.float())

    def heads(self, attn_out: Tensor, out_weight: Tensor, scale: Tensor | None = None) -> Tensor:
        """[N, H, D] direct effects of one layer's heads from their outputs before out_proj.

        attn_out [N, H, T, hd]; out_weight [W, H*hd] (nn.Linear layout); scale [W] a LayerScale.
        """
        n_heads, head_dim = attn_out.shape[1], attn_out.shape[3]
        read_sum = torch.einsum("ngt,nhtk->nhgk", self.weights, attn_out.float())  # [N, H, G, hd]
        w_o = out_weight.float().t().reshape(n_heads, head_dim, -1)  # [H, hd, W]
        if scale is not None:
            w_o = w_o * scale.float()
        return self._through(torch.einsum("nhgk,hkw->nhgw", read_sum, w_o))

    def head_tokens(
        self, probs: Tensor, values: Tensor, out_weight: Tensor, scale: Tensor | None = None, reduce: bool = False
    ) -> Tensor:
        """Each head's direct effect split over the source tokens its attention reads.

        probs [N, H, T, T] the layer's attention (query, source); values [N, H, T, hd]. Returns
        [N, H, T, D], or [N, T, D] summed over heads when ``reduce`` (heads to leave out have zero probs).
        """
        n_heads, head_dim = values.shape[1], values.shape[3]
        src = torch.einsum("ngt,nhts->nhgs", self.weights, probs.float())  # pool-read weight of each source
        w_o = out_weight.float().t().reshape(n_heads, head_dim, -1)
        if scale is not None:
            w_o = w_o * scale.float()
        read = torch.einsum("hkw,gwj->hkgj", w_o, self.read)  # [H, hd, G, k]
        if reduce:
            read_vals = torch.einsum("nhsk,hkgj,nhgs->nsgj", values.float(), read, src)
            return torch.einsum("nsgj,gjd->nsd", read_vals, self.write)
        read_vals = torch.einsum("nhsk,hkgj->nhsgj", values.float(), read) * src.permute(0, 1, 3, 2)[..., None]
        return torch.einsum("nhsgj,gjd->nhsd", read_vals, self.write)

    @torch.no_grad()
    def official(self, tokens: bool = False) -> tuple[Tensor, Tensor | None, Tensor]:
        """The official SigLIP split: pool heads [N, G, D], per-token pool heads [N, G, T, D] (when
        ``tokens``), constant [D].

        Each pool head's output ``sum_t a[g, t] v[g, t] Wo_g^T`` (value biases included, out_proj bias
        not); with ``pool_mlp`` and the constant (out_proj bias, projected) the parts sum to the embedding.
        """
        if self.attn is None or self.values is None:
            raise EditclipError("the official convention is defined for attention-pooled (SigLIP) towers only")
        heads = torch.einsum("ngk,gkd->ngd", torch.einsum("ngt,ngtk->ngk", self.attn, self.values), self.write)
        per_token = torch.einsum("ngt,ngtk,gkd->ngtd", self.attn, self.values, self.write) if tokens else None
        return heads, per_token, self.official_const


def readout(head: PooledHead, resid: Tensor) -> Readout:
    """Pool the final residual stream ``resid`` [N, T, W] as the model does, keeping what the parts need."""
    r = resid.float()
    n, t = r.shape[:2]
    width = head.norm.width  # static in an ONNX trace
    gamma, beta = _affine(head.norm, width, r.device)
    centred_gamma = torch.eye(width, device=r.device) * gamma - gamma / width  # P diag(gamma): [W, W]
    bias = head.projected_bias(width, r.device)
    if head.kind == "mean":
        return _mean_readout(head, r, centred_gamma, bias)
    pool = head.attention
    y = head.norm(r)
    n_heads = pool.heads
    hd = width // n_heads
    q = F.linear(pool.probe.float(), pool.q_weight.float(), pool.q_bias.float()).view(n_heads, 1, hd)
    k = F.linear(y, pool.k_weight.float(), pool.k_bias.float()).view(n, t, n_heads, hd).transpose(1, 2)
    v = F.linear(y, pool.v_weight.float(), pool.v_bias.float()).view(n, t, n_heads, hd).transpose(1, 2)
    attn = torch.softmax((q[None] @ k.transpose(-1, -2))[:, :, 0] * hd**-0.5, dim=-1)  # [N, G, T]
    x = F.linear(torch.einsum("ngt,ngtk->ngk", attn, v).reshape(n, width), pool.out_weight.float(),
                 pool.out_bias.float())  # fmt: skip
    mlp = pool.mlp(x)
    sigma = torch.sqrt(r.var(-1, unbiased=False) + head.norm.eps)  # [N, T]
    w_v = pool.v_weight.float().t().reshape(width, n_heads, hd).permute(1, 0, 2)  # [G, W, hd]
    w_o = pool.out_weight.float().t().reshape(n_heads, hd, width)  # [G, hd, W]
    write = head.project(w_o)  # [G, hd, D]
    value_const = F.linear(beta, pool.v_weight.float(), pool.v_bias.float())  # [W]
    const = head.project(value_const @ pool.out_weight.float().t() + pool.out_bias.float()) + bias
    return Readout(
        embedding=head.project(x + mlp) + bias,
        weights=attn / sigma[:, None, :],
        read=_centre(gamma[None, :, None] * w_v),  # P diag(gamma) Wv_g^T
        write=write,
        const=const,
        pool_mlp=head.project(mlp),
        share=attn.mean(1),
        attn=attn,
        values=v,
        official_const=official_const(head, width, r.device),
    )


def _centre(m: Tensor) -> Tensor:
    """P m: each column of ``m`` [..., W, k] minus its mean over the width."""
    return m - m.mean(dim=-2, keepdim=True)


def _affine(norm: Norm, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """A LayerNorm's (gamma, beta) in fp32, ones / zeros where it has none."""
    gamma = norm.weight.float() if norm.weight is not None else torch.ones(width, device=device)
    beta = norm.bias.float() if norm.bias is not None else torch.zeros(width, device=device)
    return gamma, beta


def _mean_readout(head: PooledHead, r: Tensor, centred_gamma: Tensor, bias: Tensor) -> Readout:
    t, width = r.shape[1], centred_gamma.shape[0]
    start = head.mean_start
    if not 0 <= start < t:
        raise EditclipError(f"mean pool start {start} is out of range for {t} tokens")
    count = t - start
    mask = torch.zeros(t, device=r.device)
    mask[start:] = 1.0 / count
    if head.norm_after_mean:
        pooled = r[:, start:].mean(1)
        embedding = head.project(head.norm(pooled))
        sigma = torch.sqrt(pooled.var(-1, unbiased=False) + head.norm.eps)[:, None]  # [N, 1]
    else:
        embedding = head.project(head.norm(r[:, start:]).mean(1))
        sigma = torch.sqrt(r.var(-1, unbiased=False) + head.norm.eps)  # [N, T]
    eye = torch.eye(width, device=r.device)
    return Readout(
        embedding=embedding + bias,
        weights=(mask[None, :] / sigma)[:, None, :],
        read=centred_gamma[None],
        write=head.project(eye)[None],
        const=head.project(_affine(head.norm, width, r.device)[1]) + bias,
        pool_mlp=None,
        share=mask.expand(r.shape[0], t),
    )


def official_const(head: PooledHead, width: int, device: torch.device) -> Tensor:
    """[D] the constant of the official SigLIP split: the pool's out_proj bias (projected, with the proj bias)."""
    if head.attention is None:
        raise EditclipError("the official convention is defined for attention-pooled (SigLIP) towers only")
    return head.project(head.attention.out_bias.float()) + head.projected_bias(width, device)


def linear_map(head: PooledHead, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(L [W, D], offset [D]): the pool's map of a post-LayerNorm token it reads, ``y @ L + offset``.

    For the attention pool this spreads the attention evenly over the pool heads (a summary for the
    weights target, not the per-image split); for the mean pool it is the projection itself.
    """
    bias = head.projected_bias(width, device)
    if head.kind == "mean":
        return head.project(torch.eye(width, device=device)), bias
    pool = head.attention
    value_out = pool.v_weight.float().t() @ pool.out_weight.float().t()  # [W, W]
    offset = head.project(pool.v_bias.float() @ pool.out_weight.float().t() + pool.out_bias.float())
    return head.project(value_out), offset + bias
