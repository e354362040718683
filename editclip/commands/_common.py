"""Argument groups shared by several sub-commands: which model, which data."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .._constants import FORMATS
from ..errors import EditclipError

if TYPE_CHECKING:
    from ..backbone import Backbone
    from ..data import ImageDataset


def add_model_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--model/--pretrained, or --checkpoint/--model-config, or --toyworld; --device, --precision."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="open_clip model name, e.g. ViT-B-16 (or the architecture of --checkpoint), or hf-hub:ORG/NAME / "
        "local-dir:DIR (open_clip or transformers format, with their weights)",
    )
    group.add_argument("--pretrained", help="open_clip pretrained tag or checkpoint path; omit for random weights")
    group.add_argument("--checkpoint", help="local checkpoint (.safetensors, .pt, .bin)")
    group.add_argument(
        "--model-config",
        help="open_clip model-config JSON for --checkpoint (custom architectures), or a transformers config.json "
        "(random weights)",
    )
    group.add_argument("--toyworld", action="store_true", help="the tiny CLIP shipped with editclip")
    group.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    group.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"),
                       help="precision the model runs in")
    parser.set_defaults(_model_required=required)


def backbone_from_args(args: argparse.Namespace) -> Backbone:
    """Load the model the arguments name, with a clear error when they name none or conflict."""
    from ..backbone import load

    device = rank_device(args.device)
    if args.toyworld:
        if args.model or args.checkpoint or args.pretrained:
            raise EditclipError("--toyworld takes no --model, --pretrained or --checkpoint")
        from ..toyworld import load as load_toyworld

        return load_toyworld(device=device, precision=args.precision)
    if args.checkpoint:
        if args.pretrained:
            raise EditclipError("give either --pretrained or --checkpoint, not both")
        return load(args.model, checkpoint=args.checkpoint, config=args.model_config, device=device,
                    precision=args.precision)  # fmt: skip
    if args.model_config and not args.model:
        return load(config=args.model_config, device=device, precision=args.precision)
    if not args.model:
        raise EditclipError(
            "name a model: --model NAME [--pretrained TAG], --checkpoint PATH --model-config JSON, or --toyworld"
        )
    return load(args.model, pretrained=args.pretrained, device=device, precision=args.precision)


def rank_device(device: str) -> str:
    """``cuda`` under torchrun -> this process's own GPU, ``cuda:LOCAL_RANK``; any other device as given."""
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{local}" if device == "cuda" and local is not None else device


def add_overwrite_arg(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, what: str = "the output", *, alias: str | None = None
) -> None:
    """--overwrite: the one flag that lets a command replace existing output (``alias``: a deprecated name)."""
    help_text = f"replace {what} (without it, existing output is refused)"
    parser.add_argument("--overwrite", action="store_true", help=help_text)
    if alias is not None:
        parser.add_argument(alias, dest="overwrite", action=_DeprecatedAlias, help=argparse.SUPPRESS)


class _DeprecatedAlias(argparse.Action):
    """A store_true flag kept under an old name: it warns and sets the new one."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: object) -> None:
        print(f"{parser.prog}: warning: {self.option_strings[0]} is deprecated; use --overwrite", file=sys.stderr)
        setattr(namespace, self.dest, True)


TEMPLATES_HELP = (
    "prompt templates with {} for the class name, or a set name (openai_imagenet, simple_imagenet); default: "
    "the model's own, i.e. the toy world's templates for the toy CLIP and openai_imagenet for other models"
)


def list_item(what: str) -> Callable[[str], str]:
    """An argparse ``type`` for one item of a space-separated list (``--classes triangle circle``): an item
    with a comma is refused with a hint, since lists are never comma-separated."""

    def check(value: str) -> str:
        if "," in value:
            spaced = " ".join(part.strip() for part in value.split(",") if part.strip())
            raise argparse.ArgumentTypeError(f"{value!r}: give {what} separated by spaces ({spaced}), not commas")
        return value

    check.__name__ = what  # argparse names the type in its messages
    return check


def add_classes_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup, required: bool = False,
                    help: str = "class names in label order") -> None:  # fmt: skip
    """--classes NAME [NAME ...]."""
    parser.add_argument("--classes", nargs="+", type=list_item("class names"), required=required, metavar="CLASS",
                        help=help)  # fmt: skip


def add_templates_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--templates TEMPLATE [TEMPLATE ...] (default: :func:`editclip.text.default_templates`)."""
    parser.add_argument("--templates", nargs="+", metavar="TEMPLATE", help=TEMPLATES_HELP)


def templates_from_args(values: Sequence[str] | None, bb: Backbone) -> str | list[str]:
    """The templates ``--templates`` names: one set name, format strings, or the model's default."""
    from .._constants import TEMPLATE_SETS
    from ..text import default_templates

    if not values:
        return default_templates(bb)
    return values[0] if len(values) == 1 and values[0] in TEMPLATE_SETS else list(values)


def add_data_args(parser: argparse.ArgumentParser, prefix: str = "", required: bool = True) -> None:
    """--data ROOT [--format] [--split] [--max-images] [--allow-outside-root] [--max-image-pixels]."""
    group = parser.add_argument_group("data")
    group.add_argument(f"--{prefix}data", required=required, help="Waterbirds root, CSV manifest or image folder")
    group.add_argument(f"--{prefix}format", default="auto", choices=FORMATS,
                       help="dataset layout (auto: from the files)")
    group.add_argument(f"--{prefix}split", help="train, val, test (or 0, 1, 2) for metadata.csv datasets")
    group.add_argument(f"--{prefix}max-images", type=int, help="use only the first N images")
    group.add_argument(f"--{prefix}allow-outside-root", action="store_true",
                       help="allow image paths in the table that are absolute or lead outside its folder")
    group.add_argument(f"--{prefix}max-image-pixels", type=int, metavar="N",
                       help="refuse images larger than N pixels (default $EDITCLIP_MAX_IMAGE_PIXELS or 89478485)")


def dataset_from_args(args: argparse.Namespace, prefix: str = "") -> ImageDataset:
    """The dataset the --data arguments name."""
    from ..data import load_dataset

    key = prefix.replace("-", "_")
    return load_dataset(
        getattr(args, f"{key}data"),
        format=getattr(args, f"{key}format"),
        split=getattr(args, f"{key}split"),
        max_images=getattr(args, f"{key}max_images"),
        allow_outside_root=getattr(args, f"{key}allow_outside_root"),
        max_pixels=getattr(args, f"{key}max_image_pixels"),
    )


def parse_shard(text: str | None) -> tuple[int, int]:
    """``K/N`` -> (K, N); without it, the torchrun rank and world size (or 0/1)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise EditclipError(f"--shard {text!r}: expected K/N, e.g. 0/4") from None
    if not 0 <= k < n:
        raise EditclipError(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def add_estimate_args(parser: argparse.ArgumentParser, command: str) -> None:
    """--estimate [--images N] [--no-time] [--time-images K]: print the run's cost, write nothing."""
    group = parser.add_argument_group("cost estimate")
    group.add_argument("--estimate", action="store_true",
                       help=f"print what `{command}` would cost (bytes per image, disk, peak memory, time from a "
                       "short timed batch) and exit without writing anything")  # fmt: skip
    group.add_argument("--images", type=int, metavar="N",
                       help="with --estimate: the number of images (default: those of --data; no data needed)")
    group.add_argument("--no-time", action="store_true", help="with --estimate: skip the timed batch")
    group.add_argument("--time-images", type=int, default=1, metavar="K",
                       help="with --estimate: images in the timed batch (default 1)")


def estimate_inputs(args: argparse.Namespace) -> tuple[ImageDataset | None, int]:
    """The dataset (None without --data) and the image count an estimate is for."""
    if args.images is not None and args.images <= 0:
        raise EditclipError(f"--images must be positive; got {args.images}")
    if args.time_images <= 0:
        raise EditclipError(f"--time-images must be positive; got {args.time_images}")
    if args.data is None and args.images is None:
        raise EditclipError("--estimate needs --data ROOT or --images N (the number of images)")
    dataset = dataset_from_args(args) if args.data is not None else None
    return dataset, args.images if args.images is not None else len(dataset)


def require_data(args: argparse.Namespace) -> None:
    """Refuse a real run without --data (only --estimate --images N runs without images)."""
    if args.data is None:
        raise EditclipError("--data ROOT is required (only --estimate --images N runs without images)")
    for name in ("images", "no_time"):
        if getattr(args, name, None):
            raise EditclipError(f"--{name.replace('_', '-')} only goes with --estimate")
