"""Read the pooled readout (:class:`~editclip.pooling.PooledHead`) of timm and Hugging Face towers by name.

timm ``VisionTransformer`` (open_clip's timm towers): ``norm``, ``attn_pool.{latent, q, kv, proj, norm,
mlp.fc1, mlp.fc2}`` or ``global_pool: avg`` with ``fc_norm``; open_clip's ``head.proj`` after it.
HF ``SiglipVisionTransformer``: ``post_layernorm``, ``head.{probe, attention.in_proj_weight,
attention.out_proj, layernorm, mlp.fc1, mlp.fc2}``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .errors import UnsupportedModelError
from .pooling import AttentionPool, PooledHead
from .tower import Norm


def norm_of(module: nn.Module, where: str) -> Norm:
    """The parameters of a LayerNorm module (refusing RMSNorm and affine-free norms)."""
    weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
    if not isinstance(module, nn.LayerNorm) or weight is None or bias is None:
        raise UnsupportedModelError(f"{where}: {type(module).__name__} is not an affine LayerNorm")
    return Norm(weight, bias, module.eps, weight.shape[0])


def module_activation(module: nn.Module, where: str) -> str:
    """'gelu', 'gelu_tanh' or 'quickgelu' for a GELU-family activation module."""
    if isinstance(module, nn.GELU):
        return "gelu_tanh" if module.approximate == "tanh" else "gelu"
    kind = type(module).__name__
    if kind == "QuickGELU":
        return "quickgelu"
    if kind in ("GELUTanh", "PytorchGELUTanh", "NewGELUActivation", "GELUTanhActivation"):
        return "gelu_tanh"
    if kind == "GELUActivation":
        return "gelu"
    if kind == "QuickGELUActivation":
        return "quickgelu"
    raise UnsupportedModelError(f"{where}: activation {kind} is not supported (GELU or QuickGELU)")


def _linear(module: nn.Module) -> tuple[Tensor, Tensor]:
    weight = module.weight
    bias = module.bias if module.bias is not None else weight.new_zeros(weight.shape[0])
    return weight, bias


def timm_pooled_head(trunk: nn.Module, head: nn.Module | None, model_id: str) -> PooledHead:
    """The readout of a timm VisionTransformer trunk (``global_pool`` 'map' or 'avg') and open_clip's head."""
    proj, proj_bias = open_clip_head_proj(head, model_id)
    pool_kind = getattr(trunk, "global_pool", "")
    if getattr(trunk, "attn_pool", None) is not None:
        pool = trunk.attn_pool
        where = f"model {model_id!r}: attention pool"
        if getattr(pool, "latent_len", 1) != 1 or getattr(pool, "pos_embed", None) is not None:
            raise UnsupportedModelError(f"{where} has several latent queries or its own position embedding")
        if not isinstance(pool.q_norm, nn.Identity) or not isinstance(pool.k_norm, nn.Identity):
            raise UnsupportedModelError(f"{where} uses qk-norm")
        if getattr(pool, "pool", "token") != "token" or pool.mlp is None:
            raise UnsupportedModelError(f"{where} is not a single-query pool with an MLP")
        if not isinstance(getattr(pool.mlp, "norm", nn.Identity()), nn.Identity):
            raise UnsupportedModelError(f"{where}: its MLP has an inner norm")
        if getattr(trunk, "pool_include_prefix", False) and trunk.num_prefix_tokens:
            raise UnsupportedModelError(f"{where} reads prefix tokens")
        if trunk.num_prefix_tokens:
            raise UnsupportedModelError(f"{where}: towers with class or register tokens before a MAP pool")
        width = pool.kv.weight.shape[1]
        q_weight, q_bias = _linear(pool.q)
        kv_weight, kv_bias = _linear(pool.kv)
        out_weight, out_bias = _linear(pool.proj)
        fc1_weight, fc1_bias = _linear(pool.mlp.fc1)
        fc2_weight, fc2_bias = _linear(pool.mlp.fc2)
        attention = AttentionPool(
            probe=pool.latent.reshape(-1), q_weight=q_weight, q_bias=q_bias,
            k_weight=kv_weight[:width], k_bias=kv_bias[:width], v_weight=kv_weight[width:], v_bias=kv_bias[width:],
            out_weight=out_weight, out_bias=out_bias, heads=pool.num_heads, norm=norm_of(pool.norm, where),
            fc1_weight=fc1_weight, fc1_bias=fc1_bias, fc2_weight=fc2_weight, fc2_bias=fc2_bias,
            act=module_activation(pool.mlp.act, where),
        )  # fmt: skip
        _no_fc_norm(trunk, model_id)
        return PooledHead("attn", norm_of(trunk.norm, f"model {model_id!r}: final norm"), attention,
                          proj=proj, proj_bias=proj_bias)  # fmt: skip
    if pool_kind == "avg":
        start = 0 if getattr(trunk, "pool_include_prefix", False) else trunk.num_prefix_tokens
        if isinstance(trunk.fc_norm, nn.Identity):
            norm = norm_of(trunk.norm, f"model {model_id!r}: final norm")
            return PooledHead("mean", norm, mean_start=start, proj=proj, proj_bias=proj_bias)
        if not isinstance(trunk.norm, nn.Identity):
            raise UnsupportedModelError(f"model {model_id!r}: a norm both before and after the mean pool")
        norm = norm_of(trunk.fc_norm, f"model {model_id!r}: fc_norm")
        return PooledHead("mean", norm, mean_start=start, norm_after_mean=True, proj=proj, proj_bias=proj_bias)
    raise UnsupportedModelError(
        f"model {model_id!r}: timm global_pool {pool_kind!r}; editclip splits 'map' (attention) and 'avg' pools"
    )


def _no_fc_norm(trunk: nn.Module, model_id: str) -> None:
    if not isinstance(getattr(trunk, "fc_norm", nn.Identity()), nn.Identity):
        raise UnsupportedModelError(f"model {model_id!r}: a norm after the attention pool (fc_norm)")


def open_clip_head_proj(head: nn.Module | None, model_id: str) -> tuple[Tensor | None, Tensor | None]:
    """open_clip TimmModel.head: nothing, or one Linear ``proj`` (its ``mlp`` head is not linear)."""
    if head is None or len(list(head.children())) == 0:
        return None, None
    names = {name for name, _ in head.named_children()}
    if names - {"drop", "proj"}:
        raise UnsupportedModelError(
            f"model {model_id!r}: open_clip timm head {sorted(names)} is not a linear projection"
        )
    weight, bias = head.proj.weight, head.proj.bias
    return weight.t(), bias if bias is not None else None


def hf_siglip_pooled_head(vision: nn.Module, model_id: str) -> PooledHead:
    """The readout of a transformers ``SiglipVisionTransformer`` (``post_layernorm`` + ``head``)."""
    head = getattr(vision, "head", None)
    if head is None or not getattr(vision, "use_head", True):
        raise UnsupportedModelError(f"model {model_id!r}: the SigLIP vision tower has no pooling head")
    where = f"model {model_id!r}: pooling head"
    attn = head.attention
    width = attn.embed_dim
    in_w = attn.in_proj_weight
    in_b = attn.in_proj_bias if attn.in_proj_bias is not None else in_w.new_zeros(3 * width)
    out_weight, out_bias = _linear(attn.out_proj)
    fc1_weight, fc1_bias = _linear(head.mlp.fc1)
    fc2_weight, fc2_bias = _linear(head.mlp.fc2)
    attention = AttentionPool(
        probe=head.probe.reshape(-1),
        q_weight=in_w[:width], q_bias=in_b[:width], k_weight=in_w[width : 2 * width], k_bias=in_b[width : 2 * width],
        v_weight=in_w[2 * width :], v_bias=in_b[2 * width :], out_weight=out_weight, out_bias=out_bias,
        heads=attn.num_heads, norm=norm_of(head.layernorm, where), fc1_weight=fc1_weight, fc1_bias=fc1_bias,
        fc2_weight=fc2_weight, fc2_bias=fc2_bias, act=module_activation(head.mlp.activation_fn, where),
    )  # fmt: skip
    return PooledHead("attn", norm_of(vision.post_layernorm, f"model {model_id!r}: post_layernorm"), attention)
