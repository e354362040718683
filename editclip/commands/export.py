"""``editclip export``: the image tower of a base model, a saved edit or a patched checkpoint as ONNX."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._constants import PARITY_BATCH_SIZES
from .._io import prepare_output
from ..errors import EditclipError
from ._common import (
    add_classes_arg,
    add_model_args,
    add_overwrite_arg,
    add_templates_arg,
    backbone_from_args,
    templates_from_args,
)

if TYPE_CHECKING:
    from torch import nn

    from ..backbone import Backbone


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export an image encoder (base, edited or weights-patched) to ONNX, checked against torch",
        description="Export the image tower to ONNX (dynamic batch, fp32 in and out) and check it with "
        "onnxruntime against torch on held-out inputs. The model is the one the model arguments name (a "
        "patched checkpoint made by the weights target is given as --checkpoint), or with --edit, a saved "
        "edit artifact on its base model (loaded from the source the artifact records when no model "
        "arguments are given, with the preprocessing and weights fingerprint it records).",
    )
    add_model_args(p, required=False)
    p.add_argument("--edit", help="edit artifact (.safetensors written by save_edit / editclip run)")
    p.add_argument("--out", required=True, help="output .onnx file (weights over 2 GB go to <out>.data)")
    add_overwrite_arg(p, "an existing --out file")
    p.add_argument("--fp16", action="store_true", help="fp16 weights and activations (input and output stay fp32)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise the output embeddings")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset, 17..20 (default 18)")
    p.add_argument(
        "--check-batch-sizes",
        default=",".join(map(str, PARITY_BATCH_SIZES)),
        help="batch sizes of the parity check (default %(default)s)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    classifier = p.add_argument_group("zero-shot classifier (images -> class probabilities, text classifier baked in)")
    add_classes_arg(classifier, help="export a classifier over these classes instead of the embeddings")
    add_templates_arg(classifier)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        batch_sizes = [int(b) for b in args.check_batch_sizes.split(",")]
    except ValueError:
        raise EditclipError(f"--check-batch-sizes {args.check_batch_sizes!r}: expected integers like 1,3,8") from None
    if not str(args.out).endswith(".onnx"):
        raise EditclipError(f"--out {args.out!r} should end in .onnx")
    for path in (args.out, f"{args.out}.data"):  # both checked before the model is loaded
        prepare_output(path, args.overwrite, "file")
    from ..export import export_onnx

    if args.templates and not args.classes:
        raise EditclipError("--templates go with --classes (the zero-shot classifier export)")
    if args.classes and args.normalize:
        raise EditclipError("--normalize is for embeddings; a classifier (--classes) outputs probabilities")
    model, metadata, bb = model_from_args(args)
    options = {"opset": args.opset, "fp16": args.fp16, "check": not args.no_check, "batch_sizes": batch_sizes}
    if args.classes:
        from ..zero_shot_export import export_classifier

        templates = templates_from_args(args.templates, bb)
        report = export_classifier(model, bb, args.classes, templates, args.out, metadata=metadata, **options)
        print(f"{metadata['kind']} {metadata['model_id']} classifier over {len(args.classes)} classes: "
              f"{report.summary()}")  # fmt: skip
        return 0
    report = export_onnx(model, args.out, normalize=args.normalize, metadata=metadata, **options)
    print(f"{metadata['kind']} {metadata['model_id']}: {report.summary()}")
    return 0


def _has_model_args(args: argparse.Namespace) -> bool:
    return bool(args.model or args.checkpoint or args.model_config or args.toyworld)


def model_from_args(args: argparse.Namespace) -> tuple[nn.Module, dict[str, str], Backbone]:
    """The model to export, its metadata and the backbone it came from (whose text tower names classes): an
    EditedCLIP for --edit, else the model the arguments name (kind 'patched' when it is a checkpoint written
    by save_patched_checkpoint)."""
    from ..edited import EditedCLIP
    from ..export import CHECKPOINT_FORMAT, check_base, model_metadata, read_edit, read_metadata

    if args.edit:
        tensors, meta = read_edit(args.edit)
        bb = backbone_from_args(args) if _has_model_args(args) else _base_of(meta, args)
        check_base(meta, bb, args.edit)
        return EditedCLIP(bb.model, tensors), {**model_metadata(bb, "edited"), **_without_format(meta)}, bb
    bb = backbone_from_args(args)
    if args.checkpoint and str(args.checkpoint).endswith(".safetensors"):
        meta = read_metadata(args.checkpoint)
    else:
        meta = _patched_folder_metadata(args.model)
    if meta.get("format") == CHECKPOINT_FORMAT:
        return bb.model, {
            **model_metadata(bb, "patched"),
            **_without_format(meta),
            "weights_fingerprint": bb.fingerprint,
        }, bb
    return bb.model, model_metadata(bb, "base"), bb


def _patched_folder_metadata(model: str | None) -> dict[str, str]:
    """The editclip.json of a weights-target folder (transformers families) named as local-dir:DIR."""
    if not model or not model.startswith("local-dir:"):
        return {}
    path = Path(model[len("local-dir:") :]) / "editclip.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _base_of(meta: dict[str, str], args: argparse.Namespace) -> Backbone:
    from ..export import FINGERPRINT_KEY, recorded_preprocessing
    from ..store import load_backbone

    if "editclip_base_model" not in meta:
        raise EditclipError(f"{args.edit!r} does not record its base model; give the model arguments")
    source = json.loads(meta["editclip_base_model"])
    recorded = recorded_preprocessing(meta)
    if recorded is None:
        raise EditclipError(
            f"{args.edit!r} does not record the preprocessing it was calibrated with (an older editclip made it); "
            "compile it again with `editclip run`, or give the model arguments"
        )
    return load_backbone({**source, "preprocessing": recorded}, args.device, fingerprint=meta[FINGERPRINT_KEY])


def _without_format(meta: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in meta.items() if k != "format"}
