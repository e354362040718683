"""The error of ``decompose --store-dtype float16`` against float32 storage (the numbers in the README).

1. Parts: a random-weight open_clip model (ViT-B-16 by default; norms and biases randomised like the
   tests') decomposes random images into a float32 and a float16 store; per field, the max abs error and the
   max relative error (per image, |fp16 - fp32| / |fp32| of the field's vector), and the same for the
   embedding reconstructed from the float16 parts against the model's own embedding.
2. An edit: the shipped toy CLIP, the toy world's spec edit (mean-ablation of L3.H3, L3.H1, L3.H2, L2.H1),
   compiled on a float32 calibration store; worst-group and average accuracy by the fast path on a float32
   and a float16 store of the test split, and how many predictions differ.

    OMP_NUM_THREADS=1 python scripts/fp16_store_error.py --world DIR [--model ViT-B-16] [--images 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import editclip
from editclip._compile import compile_edit
from editclip.data import load_dataset
from editclip.evaluate import group_metrics, predict, zero_shot_classifier
from editclip.evaluation_paths import fast_embeddings
from editclip.spec import EditSpec
from editclip.store import DecompositionStore, decompose_dataset


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("bias", "gamma")) or ".ln" in name or "ln_" in name or "norm" in name:
                p.add_(torch.randn(p.shape, generator=gen).to(p) * 0.2)


def part_errors(full: DecompositionStore, half: DecompositionStore) -> None:
    fields = ["heads", "mlps", "embed", "biases", "embedding"]
    for name in fields:
        a, b = full.read(name).double(), half.read(name).double()
        diff = (a - b).abs()
        rel = (a - b).norm(dim=-1) / a.norm(dim=-1).clamp_min(1e-30)
        print(f"  {name:10s} max abs {diff.max():.3g}   max relative (per vector) {rel.max():.3g}")
    parts = [half.read(n).double() for n in ("heads", "mlps", "biases")]
    total = half.read("embed").double() + parts[0].sum((1, 2)) + parts[1].sum(1) + parts[2].sum(1)
    total = total + half.const().double()
    if half.has_field("pool_mlp"):
        total = total + half.read("pool_mlp").double()
    z = full.read("embedding").double()
    rel = (total - z).norm(dim=-1) / z.norm(dim=-1)
    print(f"  embedding reconstructed from the fp16 parts: max abs {(total - z).abs().max():.3g}, max relative "
          f"{rel.max():.3g}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", required=True, help="a toy world folder (editclip toyworld make)")
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--images", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        bb = editclip.load(args.model)
        randomise(bb.model)
        images = load_dataset(args.world, split="test", max_images=args.images)
        print(f"{args.model} (random weights), {len(images)} toy-world images:")
        full = decompose_dataset(bb, images, tmp / "f32", batch_size=4)
        half = decompose_dataset(bb, images, tmp / "f16", batch_size=4, dtype="float16")
        part_errors(full, half)

        toy = editclip.toyworld.load()
        spec = EditSpec.from_dict({
            "editclip": 1, "model": {"toyworld": True},
            "calibration": {"data": {"root": args.world, "split": "val"}},
            "edits": [{"mean_ablate": ["L3.H3", "L3.H1", "L3.H2", "L2.H1"]}],
        })  # fmt: skip
        calibration = decompose_dataset(toy, load_dataset(args.world, split="val"), tmp / "cal")
        edit = compile_edit(spec, toy, calibration).tensors
        test = load_dataset(args.world, split="test")
        templates = ["a photo of a {}.", "a {}.", "a picture of a {}.", "an image of a {}.", "there is a {}."]
        classifier = zero_shot_classifier(toy, ["triangle", "circle"], templates)  # the spec's
        groups = {c: test.columns[c] for c in ("y", "place")}
        print(f"toy CLIP, the toy world's edit, {len(test)} test images (fast path):")
        preds = {}
        for dtype in ("float32", "float16"):
            store = decompose_dataset(toy, test, tmp / f"test-{dtype}", dtype=dtype)
            print(f" {dtype} store:")
            part_errors(DecompositionStore.open(tmp / "test-float32"), store) if dtype == "float16" else None
            for name, e in (("unedited", None), ("edited", edit)):
                pred = predict(fast_embeddings(store, e, progress=False), classifier)
                preds[(dtype, name)] = pred
                report = group_metrics(pred, test.columns["y"], groups)
                print(f"  {name:9s} worst-group {100 * report.acc_wg:.2f}  average {100 * report.acc_avg:.2f}")
        for name in ("unedited", "edited"):
            differ = int((preds[("float32", name)] != preds[("float16", name)]).sum())
            print(f" {name}: {differ} of {len(test)} predictions differ between the float32 and float16 stores")


if __name__ == "__main__":
    main()
