"""Heatmaps from per-token parts, attention baselines, segmentation metrics and data, and their commands."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import editclip
from editclip.attention_maps import attention_maps
from editclip.cli import main
from editclip.commands.segment import _open_data
from editclip.errors import EditclipError
from editclip.segmetrics import (
    GtSegs,
    SegmentationMeter,
    average_precision,
    binarise,
    image_ap,
    load_masked_folder,
    segmentation_scores,
)
from editclip.spatial import contrast_directions, head_map, head_mask, heatmaps, score_parts, to_image, token_scores
from editclip.vit import run as run_vit


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def class_emb() -> torch.Tensor:
    return F.normalize(torch.randn(3, 32, generator=torch.Generator().manual_seed(2)), dim=-1)


# ---------------------------------------------------------------------------------------------------
# Identity and planted cases


@pytest.mark.parametrize(
    ("layers", "heads"), [("all", None), ("last:2", None), ("all", ["L0.H1", "L3.H2"]), ([1, 2], ["L2.H0"])]
)
def test_token_scores_and_rest_sum_to_the_class_score(tiny_bb, images, class_emb, layers, heads) -> None:
    target = torch.tensor([0, 2, 1])
    directions = contrast_directions(class_emb, target)
    parts = score_parts(tiny_bb, images, directions, layers=layers, heads=heads)
    embedding = tiny_bb.encode_image(images)
    assert torch.allclose(parts.total, (embedding * directions).sum(-1), atol=1e-5)
    assert torch.allclose(parts.tokens.sum(-1) + parts.rest, parts.total, atol=1e-5)

    maps = heatmaps(tiny_bb, images, class_emb, target=target, layers=layers, heads=heads, batch_size=2)
    assert torch.allclose(maps.cls_scores, parts.tokens[:, 0], atol=1e-6)
    assert torch.allclose(maps.patch_scores.flatten(1), parts.tokens[:, 1:], atol=1e-6)


def test_heatmaps_use_the_predicted_class_and_are_normalised(tiny_bb, images, class_emb) -> None:
    maps = heatmaps(tiny_bb, images, class_emb, progress=False)
    logits = F.normalize(tiny_bb.encode_image(images), dim=-1) @ class_emb.T
    assert torch.equal(maps.target, logits.argmax(-1))
    assert torch.allclose(maps.logits, logits, atol=1e-5)
    assert maps.maps.shape == (3, 32, 32) and maps.patch_scores.shape == (3, 4, 4)
    assert torch.allclose(maps.maps.amin((1, 2)), torch.zeros(3))
    assert torch.allclose(maps.maps.amax((1, 2)), torch.ones(3))


def test_planted_patch_lights_up_its_region() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = F.normalize(torch.randn(16, generator=gen), dim=0)
    token_sum = 0.1 * torch.randn(1, 17, 16, generator=gen)
    token_sum[0, 1 + 2 * 4 + 1] += 3.0 * direction  # patch at grid row 2, column 1
    maps = to_image(token_scores(token_sum, direction)[:, 1:].reshape(1, 4, 4), (32, 32))
    row, col = divmod(int(maps[0].argmax()), 32)
    assert 16 <= row < 24 and 8 <= col < 16
    fg = binarise(maps)[0]
    assert fg[16:24, 8:16].float().mean() > 0.5 and fg.float().mean() < 0.25


def test_patch_carrying_the_class_direction_lights_up_through_the_model(tiny_bb, images) -> None:
    out = run_vit(tiny_bb.visual, images[:1], parts=False, token_layers=range(4), token_reduce="sum")
    patches = out.token_sum[0, 1:]
    k = int(patches.norm(dim=-1).argmax())  # |c_j . c_k/|c_k|| <= |c_j| <= |c_k|: patch k scores highest
    planted = F.normalize(patches[k], dim=0)
    maps = heatmaps(tiny_bb, images[:1], torch.stack([planted, -planted]), target=0, progress=False)
    assert int(maps.patch_scores[0].flatten().argmax()) == k
    row, col = divmod(int(maps.maps[0].argmax()), 32)
    assert (row // 8, col // 8) == divmod(k, 4)


def test_head_map_is_one_heads_token_parts_along_the_text(tiny_bb, images, class_emb) -> None:
    result = head_map(tiny_bb, images, "L2.H1", class_emb[0] * 3, progress=False)
    out = run_vit(tiny_bb.visual, images, parts=False, token_layers=[2])
    expected = out.tokens[2][:, 1, 1:] @ class_emb[0]
    assert torch.allclose(result.patch_scores.flatten(1), expected, atol=1e-6)
    assert result.target is None and result.maps.shape == (3, 32, 32)


def test_selection_errors(tiny_bb, images, class_emb) -> None:
    with pytest.raises(EditclipError, match="out of range"):
        head_mask(tiny_bb, "L0-9")
    with pytest.raises(EditclipError, match="head 7 is out of range"):
        head_mask(tiny_bb, "all", ["L1.H7"])
    with pytest.raises(EditclipError, match="no head in common"):
        head_mask(tiny_bb, "last:1", ["L0.H0"])
    with pytest.raises(EditclipError, match="at least two"):
        heatmaps(tiny_bb, images, class_emb[:1])
    with pytest.raises(EditclipError, match="out of range"):
        heatmaps(tiny_bb, images, class_emb, target=3)
    with pytest.raises(EditclipError, match="bad head name"):
        head_map(tiny_bb, images, "L2H1", class_emb[0])


# ---------------------------------------------------------------------------------------------------
# Attention baselines


def _reference_attention(bb: editclip.Backbone, images: torch.Tensor) -> list[torch.Tensor]:
    """Head-averaged attention weights [N, T, T] of every layer, from torch's own MultiheadAttention."""
    weights = []
    hooks = [
        block.ln_1.register_forward_hook(
            lambda mod, inp, out, attn=block.attn: weights.append(attn(out, out, out, need_weights=True)[1])
        )
        for block in bb.visual.transformer.resblocks
    ]
    try:
        bb.encode_image(images)
    finally:
        for hook in hooks:
            hook.remove()
    return weights


def test_attention_baselines_match_torch_attention_weights(tiny_bb, images) -> None:
    maps = attention_maps(tiny_bb, images, batch_size=2, progress=False)
    assert torch.allclose(maps.embedding, tiny_bb.encode_image(images), atol=1e-5)
    layers = _reference_attention(tiny_bb, images)
    assert torch.allclose(maps.raw.flatten(1), layers[-1][:, 0, 1:], atol=1e-6)
    eye = torch.eye(17)
    rollout = eye.expand(3, 17, 17)
    for a in layers:
        rollout = ((a + eye) / (a + eye).sum(-1, keepdim=True)) @ rollout
    assert torch.allclose(maps.rollout.flatten(1), rollout[:, 0, 1:], atol=1e-6)


# ---------------------------------------------------------------------------------------------------
# Metrics


def test_average_precision_by_hand() -> None:
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # a tie is one threshold: precision 2/3 at recall 1
    assert average_precision(np.array([0.9, 0.8, 0.8, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.3, 0.1]), np.array([0, 0])) == 0.0


def test_segmentation_metrics_by_hand() -> None:
    map1 = torch.tensor([[[0.9, 0.1], [0.6, 0.2]]])  # mean 0.45: foreground (0,0), (1,0)
    mask1 = torch.tensor([[[True, False], [False, False]]])
    assert image_ap(map1[0], mask1[0]) == pytest.approx(0.95)
    one = segmentation_scores(map1, mask1)
    assert one.pixel_acc == pytest.approx(3 / 4)
    assert one.iou == pytest.approx((2 / 3, 1 / 2))
    assert one.miou == pytest.approx(7 / 12) and one.map == pytest.approx(0.95)

    meter = SegmentationMeter()
    meter.update(map1, mask1)
    meter.update(torch.tensor([[[0.2, 0.8]]]), torch.tensor([[[False, False]]]))  # sums over images
    both = meter.result()
    assert both.pixel_acc == pytest.approx(4 / 6)
    assert both.iou == pytest.approx((3 / 5, 1 / 3))
    assert both.miou == pytest.approx((3 / 5 + 1 / 3) / 2)
    assert both.map == pytest.approx((0.95 + 0.5) / 2) and both.n_images == 2


def test_metrics_refuse_mismatched_shapes() -> None:
    with pytest.raises(EditclipError, match="one size"):
        segmentation_scores(torch.rand(2, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool))
    with pytest.raises(EditclipError, match="no maps"):
        SegmentationMeter().result()


# ---------------------------------------------------------------------------------------------------
# Data with masks


def write_gtsegs(path: Path, images: list[np.ndarray], masks: list[np.ndarray]) -> Path:
    """A file laid out like gtsegs_ijcv.mat: /value/img and /value/gt [N, 1] references, stored column-major."""
    ref = h5py.special_dtype(ref=h5py.Reference)
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        img_refs = f.create_dataset("value/img", (len(images), 1), dtype=ref)
        gt_refs = f.create_dataset("value/gt", (len(images), 1), dtype=ref)
        for i, (img, mask) in enumerate(zip(images, masks, strict=True)):
            img_refs[i, 0] = refs.create_dataset(f"img{i}", data=img.transpose(2, 1, 0)).ref
            mask_ref = refs.create_dataset(f"mask{i}", data=mask.astype(np.uint8).T).ref
            cell = refs.create_dataset(f"cell{i}", (1, 1), dtype=ref)
            cell[0, 0] = mask_ref
            gt_refs[i, 0] = cell.ref
    return path


def _scenes(n: int, size: int = 32, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        img = rng.integers(0, 120, (size, size + 8, 3)).astype(np.uint8)
        mask = np.zeros((size, size + 8), dtype=bool)
        r, c = rng.integers(0, size - 12, 2)
        mask[r : r + 12, c : c + 12] = True
        img[mask] = (230, 40, 40)
        images.append(img)
        masks.append(mask)
    return images, masks


def test_gtsegs_loader_reads_images_and_masks_in_their_orientation(tmp_path) -> None:
    images, masks = _scenes(3)
    ds = GtSegs(write_gtsegs(tmp_path / "gtsegs_ijcv.mat", images, masks))
    assert len(ds) == 3
    for i in range(3):
        image, mask = ds[i]
        assert image.size == (40, 32) and mask.shape == (32, 40) and mask.dtype == bool
        assert np.array_equal(np.asarray(image), images[i]) and np.array_equal(mask, masks[i])
    with pytest.raises(IndexError):
        ds[3]


def test_gtsegs_loader_refuses_other_files(tmp_path) -> None:
    with pytest.raises(EditclipError, match="does not exist"):
        GtSegs(tmp_path / "none.mat")
    (tmp_path / "x.mat").write_text("not hdf5")
    with pytest.raises(EditclipError, match="not an ImageNet-segmentation file"):
        GtSegs(tmp_path / "x.mat")


def write_masked_folder(root: Path, n: int = 5) -> Path:
    """A toy-world style folder: metadata.csv, images/, masks/ and world.json with the classes."""
    images, masks = _scenes(n)
    rows = []
    for i, (img, mask) in enumerate(zip(images, masks, strict=True)):
        for sub, array in (("images", img[:, :32]), ("masks", mask[:, :32].astype(np.uint8) * 255)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / sub / f"{i}.png")
        rows.append({"img_id": i, "img_filename": f"images/{i}.png", "y": i % 2, "split": 2 * (i % 2),
                     "place": 0, "place_filename": "-", "mask_filename": f"masks/{i}.png"})  # fmt: skip
    with (root / "metadata.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (root / "world.json").write_text(json.dumps({"classes": ["square", "circle"]}))
    return root


def test_masked_folder_reads_masks_and_filters_splits(tmp_path) -> None:
    root = write_masked_folder(tmp_path / "toy")
    ds = load_masked_folder(root)
    image, mask = ds[1]
    assert len(ds) == 5 and image.size == (32, 32) and mask.shape == (32, 32) and mask.sum() == 144
    assert len(load_masked_folder(root, "test")) == 2
    with pytest.raises(EditclipError, match="no metadata"):
        load_masked_folder(tmp_path)


# ---------------------------------------------------------------------------------------------------
# Commands


def _model_args(tiny_files) -> list[str]:
    checkpoint, config = tiny_files
    return ["--checkpoint", str(checkpoint), "--model-config", str(config)]


def _image_files(root: Path, n: int = 2) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    images, _ = _scenes(n)
    paths = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(root / f"img{i}.png")
        paths.append(str(root / f"img{i}.png"))
    return paths


def test_segment_and_headmap_write_overlays(tiny_files, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDITCLIP_CACHE", str(tmp_path / "cache"))
    files = _image_files(tmp_path / "in")
    out = tmp_path / "seg"
    argv = ["segment", *_model_args(tiny_files), "--image", *files, "--classes", "a red square", "grass", "sky",
            "--layers", "last:2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png", "segment.json"]
    record = json.loads((out / "segment.json").read_text())["images"][0]
    assert record["class"] in ("a red square", "grass", "sky") and len(record["cosines"]) == 3

    out = tmp_path / "head"
    argv = ["headmap", *_model_args(tiny_files), "--image", files[0], "--head", "L3.H1", "--text", "red",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert [p.name for p in out.iterdir()] == ["img0_L3.H1.png"]


@pytest.mark.parametrize(
    ("command", "extra", "fragment"),
    [
        ("segment", ["--classes", "a", "b", "--layers", "L0-9"], "out of range"),
        ("segment", ["--classes", "a", "b", "--layers", "first:2"], "bad layer selection"),
        ("segment", ["--classes", "a", "b", "--heads", "L9.H0"], "out of range"),
        ("headmap", ["--head", "L3.H9", "--text", "x"], "head 9 is out of range"),
        ("headmap", ["--head", "head3", "--text", "x"], "bad head name"),
    ],
)
def test_commands_refuse_bad_input_and_write_nothing(tiny_files, tmp_path, capsys, command, extra, fragment) -> None:
    files = _image_files(tmp_path / "in", 1)
    out = tmp_path / "out"
    assert main([command, *_model_args(tiny_files), "--image", *files, *extra, "--out", str(out)]) == 2
    assert fragment in capsys.readouterr().err and not out.exists()
    missing = ["--image", str(tmp_path / "none.png")]
    assert main([command, *_model_args(tiny_files), *missing, *extra, "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("kind", ["toyworld", "gtsegs"])
def test_segment_eval_reports_three_methods(tiny_files, tmp_path, monkeypatch, capsys, kind) -> None:
    monkeypatch.setenv("EDITCLIP_CACHE", str(tmp_path / "cache"))
    if kind == "toyworld":
        data = write_masked_folder(tmp_path / "toy")
        extra = []
    else:
        data = write_gtsegs(tmp_path / "gtsegs_ijcv.mat", *_scenes(5))
        extra = ["--classes", "a red square", "grass", "--templates", "a photo of {}."]
    out = tmp_path / "eval"
    argv = ["segment-eval", *_model_args(tiny_files), "--data", str(data), *extra, "--batch-size", "2",
            "--examples", "3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((out / "segment_eval.json").read_text())
    assert report["n_images"] == 5 and list(report["methods"]) == ["decomposition", "raw attention", "rollout"]
    for scores in report["methods"].values():
        assert 0 <= scores["miou"] <= 1 and 0 <= scores["map"] <= 1 and scores["n_images"] == 5
    assert (out / "examples.png").is_file()
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "rollout" in printed


def test_segment_eval_candidate_classes(tmp_path, tiny_files, capsys) -> None:
    root = write_masked_folder(tmp_path / "toy", 2)
    assert _open_data(str(root), None)[1] == ["square", "circle"]
    (root / "world.json").write_text(json.dumps({"generator": "editclip.toyworld", "classes": ["triangle", "circle"]}))
    classes = _open_data(str(root), "test")[1]
    assert len(classes) == 8 and classes[:2] == ["triangle", "circle"]  # the world's shapes, like ImageNet's 1,000
    (root / "world.json").unlink()
    out = tmp_path / "out"
    assert main(["segment-eval", *_model_args(tiny_files), "--data", str(root), "--out", str(out)]) == 2
    assert "give --classes" in capsys.readouterr().err and not out.exists()
