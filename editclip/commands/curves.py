"""``editclip curves``: the paper's mean-ablation and TextSpan-reconstruction accuracy curves."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._io import staged_dir, write_json
from ..errors import EditclipError
from ._common import add_classes_arg, add_overwrite_arg, add_templates_arg, templates_from_args
from .textspan import add_store_arg, add_textspan_args, check_out, open_store, open_store_or_stats


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "curves",
        help="zero-shot accuracy under mean-ablation (paper Fig. 2, the CLS-source table) and TextSpan "
        "reconstruction (Fig. 3)",
        description="Compute the paper's accuracy curves on a stored decomposition with a zero-shot classifier "
        "and write curves.json and curves.png.",
    )
    add_store_arg(parser)
    parser.add_argument("--calibration", help="store or statistics file (`editclip stats`) whose means and TextSpan "
                        "bases are used (default: the --store itself)")  # fmt: skip
    add_classes_arg(parser, required=True, help="class names in label order (index = label), one file with one "
                    "name per line, or one class source: imagenet, imagefolder:PATH, cub:PATH")
    parser.add_argument("--label", default="y", help="store column with each image's class index")
    parser.add_argument("--label-column", dest="label", help=argparse.SUPPRESS)  # the old name of --label
    add_templates_arg(parser)
    parser.add_argument("--only", choices=("ablation", "textspan"), help="compute only one of the two curves")
    parser.add_argument("--pool", default="general", help="TextSpan pool: general, toyworld, or a text file")
    parser.add_argument("--last", type=int, default=4, help="layers whose heads are reconstructed")
    parser.add_argument("--m", nargs="+", type=int, default=[10, 20, 30, 40, 50, 60], metavar="M",
                        help="texts per head, one curve point each (e.g. --m 10 20 30)")
    add_textspan_args(parser)
    parser.add_argument("--device", default="cpu", help="device for the text tower and TextSpan")
    parser.add_argument("--out", required=True, help="output folder")
    add_overwrite_arg(parser, "the files of a non-empty --out")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..classnames import is_class_source, resolve_classes
    from ..curves import ablation_curve, check_calibration, plot_curves, textspan_curve
    from ..store import backbone_for_store
    from ..text import encode_texts, load_pool, read_lines

    out = check_out(args)
    why = "it scores the edited embedding of every image"
    store = open_store(args.store, "curves", why)
    calibration = open_store_or_stats(args.calibration) if args.calibration else store
    check_calibration(store, calibration)
    labels = torch.from_numpy(store.column(args.label))
    one = args.classes[0] if len(args.classes) == 1 else None
    if one is not None and is_class_source(one):
        classes = resolve_classes(one)
    elif one is not None and Path(one).is_file():
        classes = read_lines(one, "class list")
    else:
        classes = list(args.classes)
    if len(classes) < 2:
        raise EditclipError(f"--classes needs at least two classes or a class source (imagenet, imagefolder:PATH, "
                            f"cub:PATH); got {classes}")  # fmt: skip
    if labels.min() < 0 or labels.max() >= len(classes):
        raise EditclipError(f"column {args.label!r} has labels {int(labels.min())}..{int(labels.max())} "
                            f"but {len(classes)} classes were given")  # fmt: skip
    do_textspan = args.only != "ablation"
    if do_textspan:
        pool = load_pool(args.pool)
        m_values = list(args.m)
        n_layers = int(store.meta["shape"]["layers"])
        if not 1 <= args.last <= n_layers:
            raise EditclipError(f"--last {args.last} is out of range: this model has {n_layers} layers")
        limit = min(len(pool), args.k) if args.variant == "official" else len(pool)
        if min(m_values) < 1 or max(m_values) > limit:
            why = f"pool {args.pool!r} has {len(pool)} texts"
            why += f", --k is {args.k}" if args.variant == "official" else ""
            raise EditclipError(f"--m values must be in 1..{limit} ({why}); got {' '.join(map(str, args.m))}")

    bb = backbone_for_store(store, args.device)
    templates = templates_from_args(args.templates, bb)
    classifier = encode_texts(bb, classes, templates)
    ablation = ablation_curve(store, classifier, labels, calibration) if args.only != "textspan" else None
    reconstruction = None
    if do_textspan:
        reconstruction = textspan_curve(store, classifier, labels, encode_texts(bb, pool), m_values, last=args.last,
                                        variant=args.variant, k=args.k, strict_k=args.insist_k,
                                        calibration=calibration, device=args.device,
                                        precision=args.textspan_precision, names=pool)  # fmt: skip
        reconstruction["pool"] = args.pool

    setup = {"classes": classes, "label_column": args.label, "templates": templates}
    with staged_dir(out) as stage:
        write_json(stage / "curves.json", {**setup, "ablation": ablation, "textspan": reconstruction})
        plot_curves(ablation, reconstruction, stage / "curves.png")
    if ablation is not None:
        print("attention layers ablated 0..L: " + " ".join(f"{100 * a:.1f}" for a in ablation["attention"]))
        print("MLPs ablated 0..L:             " + " ".join(f"{100 * a:.1f}" for a in ablation["mlps"]))
        print(f"all MLPs and the embedding term: {100 * ablation['all_mlps_and_embed']:.1f}")
        table = ablation["cls_ablation"]
        if table is None:
            print(f"no CLS-source ablation: {ablation['cls_ablation_missing']}")
        else:
            print(f"baseline {100 * table['baseline']:.1f}; mean-ablated: MLPs and the embedding term "
                  f"{100 * table['mlps']:.1f}, CLS-source attention {100 * table['cls_source']:.1f}, "
                  f"both {100 * table['mlps_and_cls_source']:.1f}")  # fmt: skip
    if reconstruction is not None:
        pairs = zip(reconstruction["m"], reconstruction["accuracy"], strict=True)
        by_m = ", ".join(f"{m}: {100 * a:.1f}" for m, a in pairs)
        print(f"original {100 * reconstruction['original']:.1f}, early layers ablated "
              f"{100 * reconstruction['early_ablated']:.1f}; by m: {by_m}")  # fmt: skip
    print(f"means from {calibration.root} ({(ablation or reconstruction)['means_from']}); wrote {out}/curves.json, "
          "curves.png")  # fmt: skip
    return 0

