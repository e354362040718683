"""``editclip segment``, ``editclip headmap`` and ``editclip segment-eval``: heatmaps from per-token parts."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .._constants import TEMPLATE_SETS
from .._io import prepare_output, save_figure, staged_dir, write_json
from ..classnames import classes_from_values, resolve_classes
from ..errors import EditclipError
from ..names import parse_head
from ._common import (
    add_classes_arg,
    add_model_args,
    add_overwrite_arg,
    add_templates_arg,
    backbone_from_args,
    list_item,
    templates_from_args,
)

if TYPE_CHECKING:
    from torch import Tensor

    from ..backbone import Backbone
    from ..segmetrics import GtSegs, MaskedFolder, SegmentationScores

METHODS = ("decomposition", "raw attention", "rollout")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="zero-shot segmentation heatmaps of images for the predicted class",
        description="Per-patch direct contributions (summed over the chosen layers and heads) projected on the "
        "predicted class's text direction minus the mean over the classes; one PNG per image (image | overlay) "
        "and segment.json with the predicted classes.",
    )
    add_model_args(p)
    p.add_argument("--image", nargs="+", required=True, help="image files")
    add_classes_arg(p, required=True, help="candidate class names (at least two), or one class source: imagenet, "
                    "imagefolder:PATH, cub:PATH")
    _add_map_args(p)
    p.add_argument("--heads", nargs="+", type=list_item("head names"), metavar="HEAD",
                   help="only these heads, e.g. L11.H3 L10.H0 (default: all in --layers)")
    p.set_defaults(func=run_segment)

    p = sub.add_parser(
        "headmap",
        help="where one head writes along a text direction, as a heatmap per image",
        description="Per-patch direct contributions of one head projected on a text's embedding; one PNG per image.",
    )
    add_model_args(p)
    p.add_argument("--image", nargs="+", required=True, help="image files")
    p.add_argument("--head", required=True, help="the head, e.g. L22.H2 (0-based)")
    p.add_argument("--text", required=True, help="the text whose direction is mapped")
    p.add_argument("--templates", nargs="+", metavar="TEMPLATE", help="templates with {} to fill --text into, or "
                   "a set name (default: none, the text is used as written: it is a text, not a class name)")
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite_arg(p, "the files of a non-empty --out")
    p.set_defaults(func=run_headmap)

    p = sub.add_parser(
        "segment-eval",
        help="pixel accuracy, mIoU and mAP of decomposition heatmaps against attention baselines",
        description="Evaluate zero-shot segmentation on images with binary masks: the decomposition heatmaps, raw "
        "last-layer CLS attention and attention rollout, with Chefer et al.'s protocol. Writes "
        "segment_eval.json and examples.png.",
    )
    add_model_args(p)
    p.add_argument("--data", required=True, help="a toy-world folder (metadata.csv + masks) or gtsegs_ijcv.mat")
    p.add_argument("--split", help="toy-world folder only: train, val or test (default: all)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    add_classes_arg(p, help="candidate classes, or one class source: imagenet, imagefolder:PATH, cub:PATH "
                    "(default: the toy world's 8 shapes, world.json's classes, or ImageNet's 1,000)")
    _add_map_args(p)
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--examples", type=int, default=6, help="images in the example grid")
    p.set_defaults(func=run_eval)


def _add_map_args(p: argparse.ArgumentParser) -> None:
    add_templates_arg(p)
    p.add_argument("--layers", default="all", help="layers whose heads are summed: all, last:4, L8-11")
    p.add_argument("--out", required=True, help="output folder")
    add_overwrite_arg(p, "the files of a non-empty --out")


def _templates(values: Sequence[str] | None) -> str | list[str] | None:
    if not values:
        return None
    return values[0] if len(values) == 1 and values[0] in TEMPLATE_SETS else list(values)


def _check_images(paths: Sequence[str]) -> list[Path]:
    files = [Path(p) for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise EditclipError(f"image {missing[0]!r} does not exist{more}")
    return files


def _normalisation(bb: Backbone) -> tuple[Tensor, Tensor]:
    """The (mean, std) [3, 1, 1] of the model's preprocess."""
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    norm = next((t for t in getattr(bb.preprocess, "transforms", []) if hasattr(t, "mean") and hasattr(t, "std")), None)
    mean, std = (norm.mean, norm.std) if norm is not None else (OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)
    return torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)


def _read_images(bb: Backbone, files: Sequence[Path]) -> tuple[Tensor, Tensor]:
    """Model inputs [N, 3, H, W] through the model's preprocess, and the same pixels for display [N, H, W, 3]."""
    import torch
    from PIL import Image

    inputs = []
    for path in files:
        try:
            inputs.append(bb.preprocess(Image.open(path)))
        except OSError as err:
            raise EditclipError(f"cannot read image {str(path)!r}: {err}") from err
    x = torch.stack(inputs)
    mean, std = _normalisation(bb)
    return x, (x * std + mean).clamp(0, 1).permute(0, 2, 3, 1)


def _out_names(files: Sequence[Path], suffix: str = "") -> list[str]:
    stems = [f.stem for f in files]
    return [f"{s}{suffix}.png" if stems.count(s) == 1 else f"{s}-{i}{suffix}.png" for i, s in enumerate(stems)]


def _overlay_figure(image: Tensor, heatmap: Tensor, title: str) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.4))
    axes[0].imshow(image.numpy(), interpolation="nearest")
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(image.numpy(), interpolation="nearest")
    shown = axes[1].imshow(heatmap.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    axes[1].set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.04, label="score (min-max normalised)")
    return fig


def run_segment(args: argparse.Namespace) -> int:
    from ..spatial import class_embeddings, head_mask, heatmaps

    out = prepare_output(args.out, args.overwrite, "dir")
    files = _check_images(args.image)
    bb = backbone_from_args(args)
    head_mask(bb, args.layers, args.heads)  # reject a bad selection before any work
    classes = classes_from_values(args.classes)
    templates = templates_from_args(args.templates, bb)
    class_emb = class_embeddings(bb, classes, templates)
    images, display = _read_images(bb, files)
    result = heatmaps(bb, images, class_emb, layers=args.layers, heads=args.heads)
    names = _out_names(files)
    records = []
    with staged_dir(out) as stage:
        for i, path in enumerate(files):
            target = int(result.target[i])
            cosines = {c: round(float(v), 5) for c, v in zip(classes, result.logits[i], strict=True)}
            title = f"{classes[target]} (cos {cosines[classes[target]]:.3f}), layers {args.layers}"
            save_figure(_overlay_figure(display[i], result.maps[i], title), stage / names[i])
            records.append({"image": str(path), "png": names[i], "class": classes[target], "cosines": cosines})
        write_json(stage / "segment.json", {"model": bb.model_id, "layers": args.layers, "heads": args.heads,
                                            "templates": templates, "images": records})  # fmt: skip
    print(f"{out}: {len(files)} heatmaps ({bb.model_id}, layers {args.layers})")
    return 0


def run_headmap(args: argparse.Namespace) -> int:
    from ..spatial import head_map

    out = prepare_output(args.out, args.overwrite, "dir")
    files = _check_images(args.image)
    parse_head(args.head)  # the syntax, before loading the model
    bb = backbone_from_args(args)
    ref = parse_head(args.head, bb.shape.layers, bb.shape.heads)
    images, display = _read_images(bb, files)
    result = head_map(bb, images, ref, args.text, templates=_templates(args.templates))
    with staged_dir(out) as stage:
        for i, name in enumerate(_out_names(files, f"_{ref}")):
            low, high = float(result.patch_scores[i].min()), float(result.patch_scores[i].max())
            title = f"{ref} along {args.text!r}\npatch scores {low:.3g} .. {high:.3g}"
            save_figure(_overlay_figure(display[i], result.maps[i], title), stage / name)
    print(f"{out}: {len(files)} head maps of {ref} along {args.text!r} ({bb.model_id})")
    return 0


def _open_data(path: str, split: str | None) -> tuple[GtSegs | MaskedFolder, list[str] | None, str]:
    """The dataset, its candidate classes and its kind (``toyworld`` or ``imagenet-seg``).

    Candidates are the model's label vocabulary, as in the paper (ImageNet's 1,000 classes: None here):
    for a folder made by ``editclip toyworld make`` every shape of the world, else world.json's classes.
    """
    from ..segmetrics import GtSegs, load_masked_folder

    root = Path(path)
    if root.is_file():
        if split is not None:
            raise EditclipError("--split applies to toy-world folders only, not to gtsegs_ijcv.mat")
        return GtSegs(root), None, "imagenet-seg"
    if not root.is_dir():
        raise EditclipError(f"--data {path!r} does not exist")
    ds = load_masked_folder(root, split)
    world = json.loads((root / "world.json").read_text()) if (root / "world.json").is_file() else {}
    if world.get("generator") == "editclip.toyworld":
        from ..toyworld.draw import SHAPES

        return ds, list(SHAPES), "toyworld"
    return ds, world.get("classes"), "toyworld"


def _load_pairs(bb: Backbone, ds: GtSegs | MaskedFolder, indices: range) -> tuple[Tensor, Tensor, Tensor]:
    """Images squashed to the model's size like Chefer et al. (normalised [N, 3, H, W], display [N, H, W, 3])
    and their masks resized by nearest neighbour [N, H, W] bool."""
    import numpy as np
    import torch
    from PIL import Image

    h, w = bb.shape.image_size
    mean, std = _normalisation(bb)
    pixels, masks = [], []
    for i in indices:
        image, mask = ds[i]
        pixels.append(np.asarray(image.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0)
        masks.append(np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST)) > 0)
    display = torch.from_numpy(np.stack(pixels)).clamp(0, 1)
    return (display.permute(0, 3, 1, 2) - mean) / std, display, torch.from_numpy(np.stack(masks))


def run_eval(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..attention_maps import attention_maps
    from ..segmetrics import SegmentationMeter
    from ..spatial import class_embeddings, head_mask, heatmaps, to_image

    if args.batch_size < 1 or (args.max_images is not None and args.max_images < 1) or args.examples < 0:
        raise EditclipError("--batch-size and --max-images must be >= 1 and --examples >= 0")
    out = prepare_output(args.out, args.overwrite, "dir")
    ds, data_classes, kind = _open_data(args.data, args.split)
    classes = classes_from_values(args.classes) if args.classes else data_classes
    if classes is None and kind == "imagenet-seg":
        classes = resolve_classes("imagenet")
    elif classes is None:
        raise EditclipError(f"--data {args.data!r} names no classes (no world.json); give --classes")
    bb = backbone_from_args(args)
    templates = templates_from_args(args.templates, bb)
    head_mask(bb, args.layers)
    class_emb = class_embeddings(bb, classes, templates)
    count = len(ds) if args.max_images is None else min(args.max_images, len(ds))

    meters = {m: SegmentationMeter() for m in METHODS}
    examples: dict[str, list[Tensor]] = {k: [] for k in ("image", "mask", *METHODS)}
    predicted: list[Tensor] = []
    for start in tqdm(range(0, count, args.batch_size), desc="segment-eval", unit="batch"):
        images, display, masks = _load_pairs(bb, ds, range(start, min(count, start + args.batch_size)))
        decomposition = heatmaps(bb, images, class_emb, layers=args.layers, batch_size=args.batch_size, progress=False)
        attention = attention_maps(bb, images, batch_size=args.batch_size, progress=False)
        maps = {
            "decomposition": decomposition.maps,
            "raw attention": to_image(attention.raw, bb.shape.image_size),
            "rollout": to_image(attention.rollout, bb.shape.image_size),
        }
        for method, m in maps.items():
            meters[method].update(m, masks)
        predicted.append(decomposition.target)
        keep = max(0, args.examples - start)
        for key, value in (("image", display), ("mask", masks.float()), *maps.items()):
            examples[key].append(value[:keep])
    scores = {m: meters[m].result() for m in METHODS}

    counts = torch.bincount(torch.cat(predicted), minlength=len(classes))
    with staged_dir(out) as stage:
        write_json(stage / "segment_eval.json", {
            "model": bb.model_id, "fingerprint": bb.fingerprint, "data": str(args.data), "kind": kind,
            "split": args.split, "n_images": count, "layers": args.layers,
            "templates": templates if isinstance(templates, str) else list(templates),
            "classes": classes,
            "predicted_class_counts": {classes[i]: int(n) for i, n in enumerate(counts) if n > 0},
            "protocol": "Chefer et al.: min-max maps, foreground = map > its mean; IoU and pixel accuracy summed over "
            "images; mAP = mean per-image AP of [1 - map, map] against one-hot [bg, fg]",
            "methods": {m: s.as_dict() for m, s in scores.items()},
        })  # fmt: skip
        if args.examples > 0:
            save_figure(_examples_figure({k: torch.cat(v) for k, v in examples.items()}), stage / "examples.png")
    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
    print(f"{bb.model_id} on {args.data} ({count} images, {kind}, layers {args.layers}):")
    print(f"{len(classes)} candidate classes: {shown}")
    print(format_scores(scores))
    return 0


def format_scores(scores: dict[str, SegmentationScores]) -> str:
    """A fixed-width table of the methods' pixel accuracy, mIoU and mAP in percent."""
    lines = [f"{'method':<16} {'pixel acc':>9} {'mIoU':>7} {'mAP':>7}"]
    for method, s in scores.items():
        lines.append(f"{method:<16} {100 * s.pixel_acc:>9.2f} {100 * s.miou:>7.2f} {100 * s.map:>7.2f}")
    return "\n".join(lines)


def _examples_figure(rows: dict[str, Tensor]) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = rows["image"].shape[0]
    columns = list(rows)
    fig, axes = plt.subplots(n, len(columns), figsize=(1.8 * len(columns), 1.8 * n), squeeze=False)
    for r in range(n):
        for c, key in enumerate(columns):
            ax = axes[r, c]
            if key == "image":
                ax.imshow(rows[key][r].numpy(), interpolation="nearest")
            elif key == "mask":
                ax.imshow(rows[key][r].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(rows["image"][r].numpy(), interpolation="nearest")
                shown = ax.imshow(rows[key][r].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.axis("off")
            if r == 0:
                ax.set_title(key, fontsize=9)
    fig.colorbar(shown, ax=axes, fraction=0.02, pad=0.02, label="map (min-max normalised)")
    return fig

