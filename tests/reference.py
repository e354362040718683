"""Independent, deliberately naive transcriptions used as references by the tests.

`naive_components` materialises the full attention matrices head by head (what the official code's
hooks see); `official_parts` applies the official code's post-LN split to them literally;
`official_ablations` is the official `compute_ablations.py`; `official_reference` and `paper_reference`
are TextSpan as the official code and the paper state it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _ln(x: torch.Tensor, module: torch.nn.Module) -> torch.Tensor:
    return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)


@torch.no_grad()
def naive_components(visual: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Residual-stream components at CLS: embed [N,W], attn [N,L,T,H,W] (b_O split over T*H), mlps [N,L,W]."""
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = _ln(torch.cat([cls, x], 1) + visual.positional_embedding, visual.ln_pre)
    n, t, w = x.shape
    embed, attns, mlps = x[:, 0].clone(), [], []
    for block in visual.transformer.resblocks:
        h_count = block.attn.num_heads
        hd = w // h_count
        ls_1 = block.ls_1.gamma if hasattr(block.ls_1, "gamma") else torch.ones(w)
        ls_2 = block.ls_2.gamma if hasattr(block.ls_2, "gamma") else torch.ones(w)
        h = _ln(x, block.ln_1)
        q, k, v = F.linear(h, block.attn.in_proj_weight, block.attn.in_proj_bias).split(w, dim=-1)
        out = torch.zeros(n, t, w)
        per_token_head = torch.zeros(n, t, h_count, w)  # contributions to the CLS output
        for head in range(h_count):
            sl = slice(head * hd, (head + 1) * hd)
            a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / hd**0.5, dim=-1)  # [N, T, T]
            w_o = block.attn.out_proj.weight[:, sl]
            out += (a @ v[..., sl]) @ w_o.t()
            per_token_head[:, :, head] = a[:, 0, :, None] * (v[..., sl] @ w_o.t())
        b_o = block.attn.out_proj.bias
        out = (out + b_o) * ls_1
        per_token_head = (per_token_head + b_o / (t * h_count)) * ls_1
        x = x + out
        m = F.linear(block.mlp[1](F.linear(_ln(x, block.ln_2), block.mlp.c_fc.weight, block.mlp.c_fc.bias)),
                     block.mlp.c_proj.weight, block.mlp.c_proj.bias) * ls_2  # fmt: skip
        x = x + m
        attns.append(per_token_head)
        mlps.append(m[:, 0])
    return {"embed": embed, "attn": torch.stack(attns, 1), "mlps": torch.stack(mlps, 1), "final": x[:, 0]}


@torch.no_grad()
def official_parts(visual: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official code's normalisation, literally: mlps list = [embed, mlp_0..], K = 2L+1, all / |z|."""
    comp = naive_components(visual, images)
    final = comp["final"]
    mean = final.mean(-1)
    std = (final.var(-1, unbiased=False) + visual.ln_post.eps).sqrt()
    gamma, beta, proj = visual.ln_post.weight, visual.ln_post.bias, visual.proj
    mlps = torch.cat([comp["embed"][:, None], comp["mlps"]], 1)  # [N, L+1, W]
    attn = comp["attn"]  # [N, L, T, H, W]
    k = attn.shape[1] + mlps.shape[1]
    spread = attn.shape[2] * attn.shape[3]
    mlps_out = ((mlps - mean[:, None, None] / k) * gamma / std[:, None, None] + beta / k) @ proj
    attn_out = ((attn - mean[:, None, None, None, None] / (k * spread)) * gamma / std[:, None, None, None, None]
                + beta / (k * spread)) @ proj  # fmt: skip
    z = (F.layer_norm(final, (final.shape[-1],), gamma, beta, visual.ln_post.eps)) @ proj
    norm = z.norm(dim=-1)
    return {
        "embed": mlps_out[:, 0] / norm[:, None],
        "mlps": mlps_out[:, 1:] / norm[:, None, None],
        "heads": attn_out.sum(2) / norm[:, None, None, None],
        "tokens": attn_out.transpose(2, 3) / norm[:, None, None, None, None],  # [N, L, H, T, D]
        "attentions": attn_out / norm[:, None, None, None, None],  # [N, L, T, H, D]: PRSLogger.finalize's order
        "z": z,
    }


@torch.no_grad()
def exact_parts(visual: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each component centred by its own mean, scaled by the image's ln_post sigma, mapped by proj."""
    comp = naive_components(visual, images)
    final = comp["final"]
    std = (final.var(-1, unbiased=False) + visual.ln_post.eps).sqrt()
    gamma, proj = visual.ln_post.weight, visual.proj

    def out(c: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (c.ndim - 1)
        return ((c - c.mean(-1, keepdim=True)) * gamma / std.view(shape)) @ proj

    heads_no_bias = comp["attn"].sum(2)  # [N, L, H, W] includes the bias share; remove it for exact heads
    biases = []
    for layer, block in enumerate(visual.transformer.resblocks):
        ls_1 = block.ls_1.gamma if hasattr(block.ls_1, "gamma") else torch.ones(final.shape[-1])
        biases.append(block.attn.out_proj.bias * ls_1)
        heads_no_bias[:, layer] -= biases[-1] / heads_no_bias.shape[2]
    bias = torch.stack(biases)[None].expand(final.shape[0], -1, -1)
    return {"embed": out(comp["embed"]), "mlps": out(comp["mlps"]), "heads": out(heads_no_bias), "biases": out(bias)}


@torch.no_grad()
def exact_cls_source(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """[N, L, D] each layer's heads at the CLS token as source (bias share removed), centred by its own mean."""
    comp = naive_components(visual, images)
    final, attn = comp["final"], comp["attn"]  # attn [N, L, T, H, W], b_O * ls_1 / (T H) in every entry
    std = (final.var(-1, unbiased=False) + visual.ln_post.eps).sqrt()
    t = attn.shape[2]
    rows = []
    for layer, block in enumerate(visual.transformer.resblocks):
        ls_1 = block.ls_1.gamma if hasattr(block.ls_1, "gamma") else torch.ones(final.shape[-1])
        rows.append(attn[:, layer, 0].sum(1) - block.attn.out_proj.bias * ls_1 / t)
    cls = torch.stack(rows, 1)
    return ((cls - cls.mean(-1, keepdim=True)) * visual.ln_post.weight / std[:, None, None]) @ visual.proj


def official_cls_attn(attentions: np.ndarray) -> np.ndarray:
    """compute_prs.py (clip_text_span): ``cls_to_cls_results.append(np.sum(attentions[:, :, 0], axis=2))``,
    "the cls->cls attention, reduce the heads": attentions [b, l, n, h, d] -> [b, l, d]."""
    return np.sum(attentions[:, :, 0], axis=2)


def _official_accuracy(output: torch.Tensor, target: torch.Tensor) -> float:
    """utils/misc.py ``accuracy`` (clip_text_span), top-1 (``.item()`` where the original calls ``float()`` on a
    one-element array, which this numpy refuses)."""
    pred = output.topk(1, 1, True, True)[1].t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return correct[:1].reshape(-1).float().sum(0, keepdim=True).cpu().numpy().item() / len(target)


def official_ablations(
    attns: np.ndarray, mlps: np.ndarray, cls_attn: np.ndarray, classifier: np.ndarray, labels: np.ndarray
) -> dict[str, tuple[np.ndarray, float]]:
    """``main`` of compute_ablations.py (clip_text_span) up to the layer loop, transcribed line by line.

    attns [b, l, h, d], mlps [b, l+1, d] (the embedding term first), cls_attn [b, l, d], classifier [d, c],
    labels [b]. Returns, per printed row, the embeddings and the accuracy in percent.
    """
    baseline = attns.sum(axis=(1, 2)) + mlps.sum(axis=1)
    baseline_acc = _official_accuracy(torch.from_numpy(baseline @ classifier).float(), torch.from_numpy(labels)) * 100
    mlps_mean = np.repeat(mlps.mean(axis=0)[np.newaxis], attns.shape[0], axis=0)  # einops "l d -> b l d"
    mlps_ablation = attns.sum(axis=(1, 2)) + mlps_mean.sum(axis=1)
    mlps_ablation_acc = (
        _official_accuracy(torch.from_numpy(mlps_ablation @ classifier).float(), torch.from_numpy(labels)) * 100
    )
    mlps_no_layers = mlps.sum(axis=1)
    attns_no_cls = attns.sum(axis=2)
    attns_no_cls = attns_no_cls - cls_attn + cls_attn.mean(axis=0)[np.newaxis, :, :]
    no_cls_ablation = attns_no_cls.sum(axis=1) + mlps_no_layers
    no_cls_acc = (
        _official_accuracy(torch.from_numpy(no_cls_ablation @ classifier).float(), torch.from_numpy(labels)) * 100
    )
    mlp_and_no_cls_ablation = attns_no_cls.sum(axis=1) + mlps_mean.sum(axis=1)
    mlp_and_no_cls_ablation_acc = (
        _official_accuracy(torch.from_numpy(mlp_and_no_cls_ablation @ classifier).float(), torch.from_numpy(labels))
        * 100
    )
    return {
        "Baseline": (baseline, baseline_acc),
        "+ MLPs ablation": (mlps_ablation, mlps_ablation_acc),
        "+ CLS ablation": (no_cls_ablation, no_cls_acc),
        "+ MLPs + CLS ablation": (mlp_and_no_cls_ablation, mlp_and_no_cls_ablation_acc),
    }


def official_reference(data: np.ndarray, text_features: np.ndarray, iters: int, rank: int):
    """The official ``replace_with_iterative_removal`` (clip_text_span), transcribed in numpy.

    Returns the chosen text indices and the reconstruction of `data`.
    """
    _, _, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]
    text_features = vh.T.dot(np.linalg.inv(vh.dot(vh.T)).dot(vh)).dot(text_features.T).T
    mean_data = data.mean(axis=0, keepdims=True)
    data = data - mean_data
    reconstruct = np.repeat(mean_data, data.shape[0], axis=0)
    results = []
    for _ in range(iters):
        projection = data @ text_features.T
        top_n = int(np.argmax(projection.std(axis=0)))
        results.append(top_n)
        text_norm = text_features[top_n] @ text_features[top_n].T
        removed = (data @ text_features[top_n] / text_norm)[:, None] * text_features[top_n][None, :]
        reconstruct += removed
        data = data - removed
        text_features = (
            text_features
            - (text_features @ text_features[top_n] / text_norm)[:, None] * text_features[top_n][None, :]
        )
    return results, reconstruct


def paper_reference(data: np.ndarray, texts: np.ndarray, iters: int):
    """Algorithm 1 as the paper states it (docs/method.md section 3), texts renormalised after each deflation."""
    data = data - data.mean(axis=0, keepdims=True)
    texts = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    results = []
    for _ in range(iters):
        variance = (data @ texts.T).var(axis=0)
        variance[results] = -np.inf
        top = int(np.argmax(variance))
        results.append(top)
        t = texts[top] / np.linalg.norm(texts[top])
        data = data - np.outer(data @ t, t)
        texts = texts - np.outer(texts @ t, t)
        norms = np.linalg.norm(texts, axis=1, keepdims=True)
        texts = np.divide(texts, norms, out=np.zeros_like(texts), where=norms > 1e-9)
    return results
