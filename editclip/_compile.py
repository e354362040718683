"""Compile an edit spec into an edited model: the spec's edits + calibration statistics -> CompiledEdit.

Statistics (part means, TextSpan bases) come from a decomposition of the calibration images in the
``exact`` convention, cached as a decomposition store keyed by the weights fingerprint and the images,
or from a statistics file of those images (``calibration.stats``, :mod:`editclip.stats`), which serves
the means (mean-ablation, projection offsets) and TextSpan bases (from each head's mean and scatter)
without a per-image store.

Two targets:

- ``wrapper``: :class:`~editclip.edited.EditedCLIP`, the paper's direct-effect semantics.
- ``weights``: a patched state dict of the base model (the tower description names the keys to patch),
  where a head's own output is changed at *every token*
  (total effect): with o_h the head's attention output (before out_proj, head_dim wide) and mu_o its
  calibration mean at CLS, the head outputs ``o_h A + mu_o (I - A)``. Mean-ablation is A = 0; a
  projection with output-space projector P uses A = M P M^+ (M = the head's map from o_h to the
  output space, M^+ its pseudo-inverse), the closest head_dim-space map. This is folded into
  out_proj: ``W_O[:, h] <- W_O[:, h] A^T`` and ``b_O += W_O[:, h] (I - A)^T mu_o``. An MLP's ablation
  sets c_proj to output its CLS mean everywhere. The embedding term and the out_proj biases are
  constants in the residual stream, so their ablation changes no weight. The CLS-source attention
  (``L<i>.attn.cls``) is an image's attention weight on the CLS token times that token's value, so no
  weight change expresses its ablation: it is refused here (wrapper target only). Because later layers read
  the changed outputs too, this differs from the direct semantics: :meth:`CompiledEdit.fidelity`
  measures by how much.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from . import families
from ._textspan import HeadMoments, stats_heads, textspan
from .backbone import Backbone
from .baselines import embedding_projection
from .data import ImageDataset
from .edited import EditedCLIP, EditTensors
from .errors import EditclipError
from .names import POOL_MLP, HeadRef, parse_cls_source, parse_head, parse_mlp
from .spec import DataSpec, EditSpec, MeanAblate, Project
from .spec.edit_spec import WEIGHTS_CANNOT_CLS
from .spec.edits import EMBEDDING
from .spec_data import spec_dataset
from .stats import PartStats
from .store import DecompositionStore, decompose_dataset, model_source
from .text import cache_root, encode_texts, load_pool
from .tower import Tower
from .vit import fold_weights, run


@dataclass
class CompiledEdit:
    """An edit ready to apply: its tensors, the spec, where the statistics came from, the base weights."""

    tensors: EditTensors
    spec: EditSpec
    backbone: Backbone
    provenance: dict[str, Any]
    fingerprint: str
    convention: str = "exact"
    raw_stats: dict[str, Tensor] = field(default_factory=dict, repr=False)  # for the weights target
    head_edits: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)  # output-space A

    def __repr__(self) -> str:
        calibration = self.provenance.get("data") or {}
        source = f"{calibration.get('name', '?')} ({calibration.get('split') or 'all'})" if calibration else "?"
        name = f"{self.spec.name}: " if self.spec.name else ""
        return (f"CompiledEdit({name}{self.backbone.model_id} [{self.fingerprint}], target {self.spec.target}, "
                f"{self.convention}; {len(self.spec.edits)} edits -> {self.tensors!r}; calibration {source}, "
                f"{self.provenance.get('count', '?')} images)")  # fmt: skip

    def wrapper(self) -> EditedCLIP:
        """The edited model with direct-effect semantics."""
        return EditedCLIP(self.backbone.model, self.tensors)

    def metadata(self) -> dict[str, str]:
        """String metadata for artifacts: spec, provenance, convention, base model and fingerprint."""
        return {
            "editclip_spec": self.spec.to_yaml(),
            "editclip_provenance": json.dumps(self.provenance),
            "editclip_convention": self.convention,
            "editclip_base_model": json.dumps(model_source(self.backbone)),
            "editclip_base_fingerprint": self.fingerprint,
            "editclip_preprocessing": json.dumps(self.backbone.preprocessing),
            "editclip_precision": self.backbone.precision,
            "editclip_target": self.spec.target,
        }

    def patched_state_dict(self) -> dict[str, Tensor]:
        """A stock state dict of the base model whose heads and MLPs carry the edit at every token (total effect).

        The keys patched are the ones the family adapter names in the tower description (out projection and
        MLP output projection of each edited layer), so the result loads into the base model's own class.
        """
        if self.tensors.ablate_cls_source.numel():
            raise EditclipError(WEIGHTS_CANNOT_CLS)
        if not self.raw_stats:
            raise EditclipError("this compiled edit has no raw calibration statistics; compile with target weights")
        bb = self.backbone
        state = {k: v.detach().clone() for k, v in bb.model.state_dict().items()}
        tower = bb.tower
        folded = fold_weights(tower)
        head_dim = bb.shape.head_dim
        head_mean = self.raw_stats["head_outputs"]  # [L, H, hd]
        for (layer, head), a_out in self.head_edits.items():
            w_key, b_key = _patch_keys(tower, layer, "out_weight", "out_bias")
            w = state[w_key].float()
            cols = slice(head * head_dim, (head + 1) * head_dim)
            m = folded.head_maps[layer][head]  # [hd, D]
            a = m @ a_out @ torch.linalg.pinv(m) if a_out.numel() else torch.zeros(head_dim, head_dim)
            w_h = w[:, cols]
            shift = (head_mean[layer, head] @ (torch.eye(head_dim) - a)) @ w_h.t()
            state[b_key] = (state[b_key].float() + shift).to(state[b_key].dtype)
            w[:, cols] = w_h @ a.t()
            state[w_key] = w.to(state[w_key].dtype)
        for layer in self.tensors.ablate_mlps.tolist():
            w_key, b_key = _patch_keys(tower, layer, "fc2_weight", "fc2_bias")
            mean = self.raw_stats["mlp_outputs"][layer]
            gamma_key = tower.blocks[layer].names.get("ls_2")
            if gamma_key is not None:
                mean = mean / state[gamma_key].float()
            state[w_key] = torch.zeros_like(state[w_key])
            state[b_key] = mean.to(state[b_key].dtype)
        if self.tensors.embedding_projector.numel():  # z (I - P) = ln_post(x) @ (proj (I - P)): exact in proj
            if tower.proj is None:
                raise EditclipError("this tower has no output projection to fold the embedding projection into")
            key = next(k for k, v in bb.model.state_dict(keep_vars=True).items() if v is tower.proj)
            proj = state[key].float()
            state[key] = (proj - proj @ self.tensors.embedding_projector).to(state[key].dtype)
        if bool(self.tensors.ablate_pool_mlp):
            _patch_pool_mlp(state, tower, self.tensors.pool_mlp_mean)
        return state

    def patched_model(self) -> torch.nn.Module:
        """A copy of the base model with :meth:`patched_state_dict` loaded."""
        model = copy.deepcopy(self.backbone.model)
        model.load_state_dict(self.patched_state_dict())
        return model.eval()

    @torch.no_grad()
    def fidelity(self, images: Tensor, batch_size: int = 32) -> dict[str, float]:
        """How far the weights target is from the direct semantics on ``images``: cosine of embeddings."""
        wrapper, patched = self.wrapper(), self.patched_model()
        cos = []
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(self.backbone.device, self.backbone.dtype)
            cos.append(F.cosine_similarity(wrapper.encode_image(batch), families.encode_image(patched, batch).float()))
        cos_all = torch.cat(cos)
        return {"cosine_mean": float(cos_all.mean()), "cosine_min": float(cos_all.min()), "images": len(cos_all)}


def _patch_keys(tower: Tower, layer: int, weight: str, bias: str) -> tuple[str, str]:
    """The state-dict keys of a layer's weight and bias that the weights target rewrites."""
    names = tower.blocks[layer].names
    if weight not in names or bias not in names:
        raise EditclipError(
            f"the weights target needs the {weight.split('_')[0]} projection of layer {layer} to have a bias; "
            "this model has none there (use target: wrapper)"
        )
    return names[weight], names[bias]


def calibration_dataset(data: DataSpec, max_images: int | None) -> ImageDataset:
    """The calibration images a spec names."""
    return spec_dataset(data, max_images)


def calibration_store(
    bb: Backbone, dataset: ImageDataset, cache_dir: str | Path | None = None, batch_size: int = 32
) -> DecompositionStore:
    """The exact-convention decomposition of ``dataset``, computed once and cached.

    The cache key holds everything that changes the numbers: the weights fingerprint, the preprocessing, the
    precision, the convention and storage dtype, and the images (ids, paths, sizes and modification times).
    """
    files = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in dataset.paths]  # regenerated data -> new key
    # "fields": stores that hold cls_source get keys of their own, so cached stores made before it are not reused
    numbers = {"fingerprint": bb.fingerprint, "preprocessing": bb.preprocessing, "precision": bb.precision,
               "convention": "exact", "dtype": "float32", "fields": "cls_source"}  # fmt: skip
    key = hashlib.sha256(json.dumps([numbers, dataset.describe(), dataset.ids, files]).encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "stores"
    return decompose_dataset(bb, dataset, root / f"{bb.fingerprint}-{key}", batch_size=batch_size, wait=True)


def compile_edit(
    spec: EditSpec,
    bb: Backbone,
    store: DecompositionStore | PartStats | None = None,
    *,
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
) -> CompiledEdit:
    """Compile ``spec`` for the model ``bb``; the calibration statistics come from ``store`` (a decomposition store
    or a :class:`~editclip.stats.PartStats`) when given, else from ``calibration.stats``, else a cached store."""
    shape = bb.shape
    parts = spec.resolved_parts(shape.layers, shape.heads)
    dataset = calibration_dataset(spec.calibration.data, spec.calibration.max_images)
    if store is None and spec.calibration.stats is not None:
        store = PartStats.load(spec.calibration.stats)
        _check_stats_images(store, dataset)
    if store is None:
        store = calibration_store(bb, dataset, cache_dir, batch_size)
    what = "calibration statistics" if isinstance(store, PartStats) else "calibration store"
    store.check_backbone(bb, what)
    if store.convention != "exact":
        raise EditclipError(f"{what} {str(store.root)!r} uses the {store.convention!r} convention; edits need 'exact'")

    dim = shape.embed_dim
    layer_axis = {}  # head part -> its layer's position on head_means' layer axis (fewer in a layer-subset store)
    for part in parts:
        if part.part not in (EMBEDDING, "embed", POOL_MLP) and not part.part.endswith(".mlp") and (
            parse_cls_source(part.part, shape.layers) is None
        ):
            ref = parse_head(part.part, shape.layers, shape.heads)
            layer_axis[part.part] = _layer_position(store, ref)
    head_means = store.mean("heads")  # [L, H, D] (the store's head layers)
    ablate_heads, ablate_head_means, proj_heads, proj_linear, proj_offset = [], [], [], [], []
    ablate_mlps, ablate_embed, ablate_pool_mlp, ablate_cls = [], False, False, []
    head_edits: dict[tuple[int, int], Tensor] = {}
    bases: dict[str, Any] = {}
    embedding_projector = torch.zeros(0, dim)
    for part in tqdm(parts, desc="compile", unit="part", disable=len(parts) < 8):
        if part.part == EMBEDDING:  # the whole-embedding baseline: z' = z - z P
            texts = list(part.action.basis.texts or [])
            embedding_projector = embedding_projection(encode_texts(bb, texts, progress=False))
            bases[EMBEDDING] = {"texts": texts, "rank": round(float(embedding_projector.trace()))}
        elif part.part == "embed":
            ablate_embed = True
        elif part.part == POOL_MLP:
            if shape.pool != "attn":
                raise EditclipError(
                    f"{POOL_MLP}: model {bb.model_id!r} pools with {shape.pool!r}; only attention-pooled towers "
                    "(SigLIP) have a pool MLP"
                )
            ablate_pool_mlp = True
        elif part.part.endswith(".mlp"):
            ablate_mlps.append(parse_mlp(part.part, shape.layers))
        elif (layer := parse_cls_source(part.part, shape.layers)) is not None:
            _check_cls_source(bb, store, part.part)
            ablate_cls.append(layer)
        else:
            ref = parse_head(part.part, shape.layers, shape.heads)
            mean = head_means[layer_axis[part.part], ref.head]
            if isinstance(part.action, MeanAblate):
                ablate_heads.append(ref.layer * shape.heads + ref.head)
                ablate_head_means.append(mean)
                head_edits[(ref.layer, ref.head)] = torch.zeros(0)
            else:
                basis, info = _basis(bb, store, part.action, ref.layer, ref.head)
                bases[part.part] = info
                projector = basis.t() @ basis  # [D, D]
                a = projector if part.action.mode == "onto" else torch.eye(dim) - projector
                proj_heads.append(ref.layer * shape.heads + ref.head)
                proj_linear.append(a)
                proj_offset.append(mean - mean @ a)
                head_edits[(ref.layer, ref.head)] = a
    heads_per_layer = Counter(i // shape.heads for i in set(ablate_heads))
    full_layers = sorted(layer for layer, n in heads_per_layer.items() if n == shape.heads)
    bias_means = store.mean("biases")  # [L, D]
    tensors = EditTensors(
        ablate_heads=torch.tensor(ablate_heads, dtype=torch.long),
        ablate_head_means=_stack(ablate_head_means, (0, dim)),
        project_heads=torch.tensor(proj_heads, dtype=torch.long),
        project_linear=_stack(proj_linear, (0, dim, dim)),
        project_offset=_stack(proj_offset, (0, dim)),
        ablate_mlps=torch.tensor(sorted(ablate_mlps), dtype=torch.long),
        ablate_mlp_means=store.mean("mlps")[sorted(ablate_mlps)] if ablate_mlps else torch.zeros(0, dim),
        ablate_biases=torch.tensor(full_layers, dtype=torch.long),
        ablate_bias_means=bias_means[full_layers] if full_layers else torch.zeros(0, dim),
        ablate_embed=torch.tensor(ablate_embed),
        embed_mean=store.mean("embed"),
        embedding_projector=embedding_projector,
        ablate_pool_mlp=torch.tensor(ablate_pool_mlp),
        pool_mlp_mean=store.mean("pool_mlp") if ablate_pool_mlp else None,
        ablate_cls_source=torch.tensor(sorted(ablate_cls), dtype=torch.long),
        cls_source_means=store.mean("cls_source")[sorted(ablate_cls)] if ablate_cls else None,
    )
    provenance = {
        "data": store.meta["dataset"],
        "count": store.count,
        ("stats" if isinstance(store, PartStats) else "store"): str(store.root),
        "bases": bases,
    }
    compiled = CompiledEdit(tensors, spec, bb, provenance, bb.fingerprint, head_edits=head_edits)
    if spec.target == "weights":
        compiled.raw_stats = raw_cls_means(bb, dataset, batch_size)
    return compiled


def _check_cls_source(bb: Backbone, store: DecompositionStore | PartStats, part: str) -> None:
    """A CLS-source ablation needs a tower that reads out its class token and statistics that hold the part."""
    if bb.shape.pool != "cls":
        raise EditclipError(
            f"{part}: model {bb.model_id!r} pools with {bb.shape.pool!r} and reads out no class token, so it has no "
            "CLS-source attention to ablate; this edit is for CLS-pooled towers"
        )
    has = "sum.cls_source" in store.tensors if isinstance(store, PartStats) else store.has_field("cls_source")
    if not has:
        raise EditclipError(
            f"{part}: calibration statistics {str(store.root)!r} hold no CLS-source parts (made by an editclip that "
            "did not record them); make them again (`editclip decompose` / `editclip stats`)"
        )


def _patch_pool_mlp(state: dict[str, Tensor], tower: Tower, mean: Tensor) -> None:
    """Make the attention pool's MLP output its calibration mean (exact: nothing reads it but the output)."""
    head = tower.readout
    w_key, b_key = head.names.get("fc2_weight"), head.names.get("fc2_bias")
    if head.proj is not None or w_key is None or b_key is None:
        raise EditclipError(
            f"{POOL_MLP} in the weights target needs a pool without output projection whose fc2 keys the adapter "
            "names; use the wrapper target"
        )
    state[w_key] = torch.zeros_like(state[w_key])
    state[b_key] = mean.to(state[b_key])


def _layer_position(store: DecompositionStore | PartStats, ref: HeadRef) -> int:
    """Where the layer of head ``ref`` is on the calibration means' layer axis; a layer-subset store refuses a
    head of a layer whose heads it holds only summed."""
    if isinstance(store, PartStats):
        return ref.layer
    return store.head_positions([ref.layer], f"the spec's head {ref}")[0]


def _check_stats_images(stats: PartStats, dataset: ImageDataset) -> None:
    """Refuse statistics of other images than the spec's calibration data."""
    if stats.meta.get("ids") != dataset.ids:
        made = stats.meta.get("dataset", {})
        raise EditclipError(
            f"calibration.stats {str(stats.root)!r} holds {stats.count} images of {made.get('name')!r} "
            f"(split {made.get('split')}); the spec's calibration data is {len(dataset)} images of {dataset.name!r} "
            f"(split {dataset.split}): make the statistics of those images with `editclip stats`"
        )


def _stack(items: list[Tensor], empty_shape: tuple[int, ...]) -> Tensor:
    return torch.stack(items).float() if items else torch.zeros(empty_shape)


def _basis(
    bb: Backbone, store: DecompositionStore | PartStats, action: Project, layer: int, head: int
) -> tuple[Tensor, dict]:
    """An orthonormal [m, D] basis for a projection, with a description of where it came from."""
    source = action.basis
    if source.texts is not None:
        emb = encode_texts(bb, list(source.texts), progress=False)
        q, r = torch.linalg.qr(emb.double().t())
        keep = r.diagonal().abs() > 1e-6
        return q.t()[keep].float(), {"texts": list(source.texts)}
    ts = source.textspan
    data: Tensor | HeadMoments
    if isinstance(store, PartStats):  # TextSpan reads only the head's mean and scatter
        moments = stats_heads(store, [layer])[0]
        data = HeadMoments(moments.mean[head], moments.scatter[head], moments.count)
    else:
        data = store.read("heads", index=(layer, head))
    pool = load_pool(ts.pool)
    if ts.m > len(pool):
        raise EditclipError(f"TextSpan m={ts.m} is more than the {len(pool)} texts of pool {ts.pool!r}")
    texts_emb = encode_texts(bb, pool)
    result = textspan(data, texts_emb, m=ts.m, variant=ts.variant, texts=pool)
    info = {"pool": ts.pool, "m": ts.m, "variant": ts.variant, "texts": result.texts,
            "explained": float(result.explained[-1])}  # fmt: skip
    return result.basis.float(), info


@torch.no_grad()
def raw_cls_means(bb: Backbone, dataset: ImageDataset, batch_size: int = 32) -> dict[str, Tensor]:
    """Means over ``dataset`` of the raw CLS head outputs [L, H, hd] and MLP outputs [L, W] (weights target)."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset.with_transform(bb.preprocess), batch_size=batch_size)
    heads_sum, mlps_sum, count = None, None, 0
    for images, _ in tqdm(loader, desc="calibration (raw)", unit="batch"):
        out = run(bb.tower, images.to(bb.device), parts=False, cls_raw=True)
        h, m = out.head_outputs.double().sum(0).cpu(), out.mlp_outputs.double().sum(0).cpu()
        heads_sum = h if heads_sum is None else heads_sum + h
        mlps_sum = m if mlps_sum is None else mlps_sum + m
        count += images.shape[0]
    return {"head_outputs": (heads_sum / count).float(), "mlp_outputs": (mlps_sum / count).float()}
