"""``editclip toyworld make | train | report``: the synthetic world, its tiny CLIP, and the phenomenon."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .._io import prepare_output
from ..errors import EditclipError
from ._common import add_overwrite_arg


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "toyworld",
        help="the synthetic spurious-correlation world and the tiny CLIP shipped with editclip",
        description="Generate the toy world as a Waterbirds-layout folder, train its tiny CLIP, or measure one.",
    )
    jobs = parser.add_subparsers(dest="job", metavar="JOB", required=True)

    make = jobs.add_parser("make", help="write a Waterbirds-layout folder (metadata.csv, images, masks)")
    make.add_argument("--out", required=True, help="folder to create (atomically)")
    make.add_argument("--seed", type=int, default=0, help="seed of the world (every image is a function of it)")
    make.add_argument("--n-train", type=int, default=2000, help="training images (95%% on their class's place)")
    make.add_argument("--n-val", type=int, default=800, help="validation images (group-balanced)")
    make.add_argument("--n-test", type=int, default=2000, help="val and test cycle through the 4 groups")
    add_overwrite_arg(make, "a non-empty --out", alias="--force")
    make.set_defaults(func=run_make)

    train = jobs.add_parser("train", help="train the tiny CLIP contrastively on the captioned toy world (CPU)")
    train.add_argument("--out", required=True, help="folder for config.json, toyclip.safetensors, training.json")
    train.add_argument("--seed", type=int, default=0, help="seed of the training run")
    train.add_argument("--steps", type=int, help="optimiser steps (default: the shipped model's)")
    train.add_argument("--batch-size", type=int, help="captioned images per step (default: the shipped model's)")
    train.add_argument("--n-images", type=int, help="images rendered once and re-captioned at each use")
    train.add_argument("--config", help="open_clip model-config JSON (default: the shipped one)")
    train.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    add_overwrite_arg(train, "config.json, toyclip.safetensors and training.json in --out", alias="--force")
    train.set_defaults(func=run_train)

    rep = jobs.add_parser("report", help="per-group zero-shot accuracy and the place heads of a toy-world CLIP")
    rep.add_argument("--model-dir", help="a folder written by 'toyworld train' (default: the shipped model)")
    rep.add_argument("--n-heads", type=int, default=3, help="how many place heads to mean-ablate")
    rep.add_argument("--heads", dest="n_heads", type=int, help=argparse.SUPPRESS)  # the old name of --n-heads
    rep.set_defaults(func=run_report)


def run_make(args: argparse.Namespace) -> int:
    from ..toyworld.write import write_dataset

    counts = (args.n_train, args.n_val, args.n_test)
    out = write_dataset(args.out, seed=args.seed, counts=counts, overwrite=args.overwrite)
    print(f"{out}: toy world seed {args.seed}, train/val/test {counts[0]}/{counts[1]}/{counts[2]} images")
    return 0


def run_train(args: argparse.Namespace) -> int:
    import torch

    from ..evaluate import format_table
    from ..toyworld import CONFIG_PATH
    from ..toyworld.ship import save_run
    from ..toyworld.train import TrainConfig, train

    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size), ("n_images", args.n_images))
                 if v is not None}  # fmt: skip
    if any(v <= 0 for v in overrides.values()) or args.threads <= 0:
        raise EditclipError("--steps, --batch-size, --n-images and --threads must be positive")
    config_path = Path(args.config) if args.config else CONFIG_PATH
    if not config_path.is_file():
        raise EditclipError(f"--config {str(config_path)!r} does not exist")
    out = Path(args.out)
    _check_train_out(out, args.overwrite)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(seed=args.seed, **overrides)
    if cfg.batch_size > cfg.n_images:
        raise EditclipError(f"--batch-size {cfg.batch_size} is larger than --n-images {cfg.n_images}")
    model_cfg = json.loads(config_path.read_text(encoding="utf-8"))
    result = train(model_cfg, cfg)
    command = shlex.join(["editclip", *sys.argv[1:]]) if sys.argv[1:2] == ["toyworld"] else None
    record = save_run(out, model_cfg, result, cfg, args.threads, command)
    print(format_table({"zero-shot": record.phenomenon.base}))
    print(f"{out}: {cfg.steps} steps in {result.seconds:.0f} s, final loss {record.final_loss:.3f}")
    return 0


def _check_train_out(out: Path, overwrite: bool) -> None:
    from ..toyworld.ship import RUN_FILES

    prepare_output(out, overwrite=True, kind="dir")  # creatable and writable; only its run files are replaced
    present = [name for name in RUN_FILES if (out / name).exists()]
    if present and not overwrite:
        raise EditclipError(f"--out {str(out)!r} already has {present}; pass --overwrite to replace them")


def run_report(args: argparse.Namespace) -> int:
    from ..backbone import load
    from ..evaluate import format_table
    from ..toyworld import CONFIG_PATH, WEIGHTS_PATH
    from ..toyworld.measure import measure

    if args.n_heads <= 0:
        raise EditclipError("--n-heads must be positive")
    folder = Path(args.model_dir) if args.model_dir else None
    config = folder / CONFIG_PATH.name if folder else CONFIG_PATH
    weights = folder / WEIGHTS_PATH.name if folder else WEIGHTS_PATH
    for path in (config, weights):
        if not path.is_file():
            raise EditclipError(f"{str(path)!r} does not exist; --model-dir takes a folder written by 'toyworld train'")
    result = measure(load(checkpoint=weights, config=config), k=args.n_heads)
    heads = ", ".join(str(h) for h in result.heads)
    print(format_table({"zero-shot": result.base, f"{heads} mean-ablated": result.ablated}))
    return 0
