"""The CLS-source part of each attention layer (what the CLS token reads from itself) and the official
ablation table built on it (clip_text_span's compute_ablations.py), against literal transcriptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import randomise
from reference import exact_cls_source, official_ablations, official_cls_attn, official_parts

import editclip
from editclip.cli import main
from editclip.curves import ablation_curve, cls_ablation_embeddings
from editclip.data import load_dataset
from editclip.errors import EditclipError
from editclip.store import DecompositionStore, decompose_dataset
from editclip.text import encode_texts

ROWS = {"baseline": "Baseline", "mlps": "+ MLPs ablation", "cls_source": "+ CLS ablation",
        "mlps_and_cls_source": "+ MLPs + CLS ablation"}  # editclip's key -> the official script's printed row


@pytest.fixture(scope="module")
def b32() -> editclip.Backbone:
    torch.manual_seed(0)
    bb = editclip.load("ViT-B-32")
    randomise(bb.model, seed=1)
    return bb


@pytest.fixture(scope="module")
def toy_bb() -> editclip.Backbone:
    return editclip.toyworld.load()


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from editclip.toyworld.write import write_dataset

    return write_dataset(tmp_path_factory.mktemp("toy") / "toy", seed=3, counts=(0, 24, 40), progress=False)


def _model(name: str, request: pytest.FixtureRequest) -> editclip.Backbone:
    return request.getfixturevalue({"tiny": "tiny_bb", "toyworld": "toy_bb", "ViT-B-32": "b32"}[name])


def _images(bb: editclip.Backbone, n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, *bb.shape.image_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["tiny", "toyworld", "ViT-B-32"])
@pytest.mark.parametrize("convention", ["exact", "official"])
def test_cls_source_is_every_heads_cls_token(name: str, convention: str, request: pytest.FixtureRequest) -> None:
    """In both conventions cls_source[:, l] is the per-token split at source token 0, summed over heads."""
    bb = _model(name, request)
    last = bb.shape.layers - 1
    d = editclip.decompose(bb, _images(bb), convention=convention, token_layers=[0, last])
    assert d.cls_source.shape == (3, bb.shape.layers, bb.shape.embed_dim)
    for layer in (0, last):
        torch.testing.assert_close(d.cls_source[:, layer], d.tokens[layer][:, :, 0].sum(1), atol=1e-6, rtol=1e-5)
    assert d.cls_source.abs().sum() > 1e-3 * d.heads.abs().sum()  # the CLS token does get attention
    assert d[1:].cls_source.shape[0] == 2 and editclip.Decomposition.concat([d[:1], d[1:]]).cls_source.shape[0] == 3


@pytest.mark.parametrize("name", ["tiny", "toyworld", "ViT-B-32"])
def test_cls_source_matches_the_transcriptions(name: str, request: pytest.FixtureRequest) -> None:
    """official: compute_prs.py's cls_to_cls (the CLS row of the hooked attention at source 0, heads summed);
    exact: the same token's contributions without the bias share, centred by their own mean."""
    bb = _model(name, request)
    images = _images(bb, seed=1)
    official = editclip.decompose(bb, images, convention="official")
    reference = official_cls_attn(official_parts(bb.visual, images)["attentions"].numpy())
    torch.testing.assert_close(official.cls_source, torch.from_numpy(reference), atol=1e-6, rtol=1e-4)
    exact = editclip.decompose(bb, images)
    torch.testing.assert_close(exact.cls_source, exact_cls_source(bb.visual, images), atol=1e-5, rtol=1e-4)


def _store(bb: editclip.Backbone, root: Path, split: str, out: Path, convention: str) -> DecompositionStore:
    dataset = load_dataset(root, split=split)
    return decompose_dataset(bb, dataset, out, convention=convention, chunk_size=16)


def _official_inputs(bb: editclip.Backbone, root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What compute_prs.py saves for these images: attns [b, l, h, d], mlps [b, l+1, d], cls_attn [b, l, d]."""
    dataset = load_dataset(root, split=split, transform=bb.preprocess)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    ref = official_parts(bb.visual, images)
    mlps = torch.cat([ref["embed"][:, None], ref["mlps"]], 1)
    return ref["heads"].numpy(), mlps.numpy(), official_cls_attn(ref["attentions"].numpy())


@pytest.mark.parametrize("name", ["toyworld", "ViT-B-32"])
def test_official_table_matches_compute_ablations(name: str, request, toy_world, tiny_waterbirds, tmp_path) -> None:
    """An official-convention store, means from the evaluated images (the official protocol): the four
    embeddings and accuracies of compute_ablations.py, on the toy world and a random ViT-B-32."""
    bb = _model(name, request)
    if name == "toyworld":
        root, split, labels_column = toy_world, "test", "y"
        classifier = encode_texts(bb, ["triangle", "circle"], list(editclip.toyworld.TEMPLATES))
    else:
        root, split, labels_column = tiny_waterbirds, "test", "y"
        gen = torch.Generator().manual_seed(4)
        classifier = torch.nn.functional.normalize(torch.randn(2, bb.shape.embed_dim, generator=gen), dim=-1)
    store = _store(bb, root, split, tmp_path / "store", "official")
    labels = store.column(labels_column)
    ours = cls_ablation_embeddings(store)
    theirs = official_ablations(*_official_inputs(bb, root, split), classifier.numpy().T, labels)
    for key, row in ROWS.items():
        torch.testing.assert_close(ours[key], torch.from_numpy(theirs[row][0]).float(), atol=2e-6, rtol=1e-4)
    table = ablation_curve(store, classifier, torch.from_numpy(labels))["cls_ablation"]
    assert {key: 100 * table[key] for key in ROWS} == pytest.approx({key: theirs[row][1] for key, row in ROWS.items()})
    assert len({round(v, 6) for v in table.values()}) > 1  # the ablations change the predictions


def test_exact_table_with_a_calibration_store(tiny_bb, tiny_waterbirds, tmp_path) -> None:
    """exact convention, means from a separate store: z - sum_l c_l + sum_l E[c_l] for each row."""
    store = _store(tiny_bb, tiny_waterbirds, "test", tmp_path / "test", "exact")
    calib = _store(tiny_bb, tiny_waterbirds, "train", tmp_path / "train", "exact")
    d, c = store.load(), calib.load()
    z = d.total()
    mlps = z - d.mlps.sum(1) - d.embed + c.mlps.mean(0).sum(0) + c.embed.mean(0)
    cls = z - d.cls_source.sum(1) + c.cls_source.mean(0).sum(0)
    ours = cls_ablation_embeddings(store, calib)
    expected = {"baseline": z, "mlps": mlps, "cls_source": cls, "mlps_and_cls_source": mlps + cls - z}
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["baseline"], store.read("embedding"), atol=1e-5, rtol=1e-5)


def test_curves_command_prints_the_table(tiny_bb, tiny_waterbirds, tmp_path, capsys) -> None:
    import json

    store = _store(tiny_bb, tiny_waterbirds, "test", tmp_path / "s", "exact")
    out = tmp_path / "curves"
    assert main(["curves", "--store", str(store.root), "--classes", "landbird", "waterbird", "--templates",
                 "a photo of a {}.", "--only", "ablation", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads((out / "curves.json").read_text())["ablation"]
    assert set(result["cls_ablation"]) == set(ROWS) and result["cls_ablation_missing"] is None
    assert result["cls_ablation"]["mlps"] == result["all_mlps_and_embed"]
    assert result["cls_ablation"]["baseline"] == result["attention"][0]
    assert "CLS-source attention" in capsys.readouterr().out


def test_pooled_and_old_stores_say_why_there_is_no_table(tiny_bb, tiny_waterbirds, tmp_path) -> None:
    from tests.test_pooled_towers import CASES, load_tiny

    siglip = load_tiny(CASES["siglip"])
    d = editclip.decompose(siglip, _images(siglip))
    assert d.cls_source is None
    pooled = _store(siglip, tiny_waterbirds, "test", tmp_path / "pooled", "exact")
    classifier = torch.nn.functional.normalize(torch.randn(2, siglip.shape.embed_dim), dim=-1)
    labels = torch.from_numpy(pooled.column("y"))
    curve = ablation_curve(pooled, classifier, labels)
    assert curve["cls_ablation"] is None and "no class token is read out" in curve["cls_ablation_missing"]
    with pytest.raises(EditclipError, match="no class token is read out"):
        cls_ablation_embeddings(pooled)

    old = _store(tiny_bb, tiny_waterbirds, "test", tmp_path / "old", "exact")
    from safetensors.torch import load_file, save_file

    for chunk in range(old.n_chunks):  # a store written before cls_source existed
        tensors = load_file(str(old.chunk_path(chunk)))
        tensors.pop("cls_source")
        save_file(tensors, str(old.chunk_path(chunk)))
    classifier = torch.nn.functional.normalize(torch.randn(2, tiny_bb.shape.embed_dim), dim=-1)
    curve = ablation_curve(old, classifier, torch.from_numpy(old.column("y")))
    assert curve["cls_ablation"] is None and "decompose the images again" in curve["cls_ablation_missing"]
