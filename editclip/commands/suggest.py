"""``editclip suggest``: rank heads as candidates for an edit and print a ready spec fragment."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import prepare_output, write_json
from .._selection import CUTOFF, MAX_AVG_DROP, MAX_K, SCORES, TOLERANCE
from ..errors import EditclipError
from ._common import (
    add_classes_arg,
    add_data_args,
    add_model_args,
    add_overwrite_arg,
    add_templates_arg,
    backbone_from_args,
    dataset_from_args,
    templates_from_args,
)

if TYPE_CHECKING:
    from ..backbone import Backbone
    from ..stats import PartStats
    from ..store import DecompositionStore
    from ..suggest import HeadScore, WordScore


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "suggest",
        help="rank heads whose direct part follows a spurious attribute (or given texts); print a spec fragment",
        description="Rank the heads by how much of their direct contribution follows a spurious attribute "
        "rather than the label (--spurious/--label: between-group variances of the calibration images; --score "
        "difference, variance-weighted, or ratio, the mean-difference ratio), by their variance along given "
        "texts (--texts), by the share of their variance explained by TextSpan texts that name given words "
        "(--words: whole words heading their phrase, so 'water' does not match 'water pistol' nor 'field' "
        "'depth of field'), or by the share of their TextSpan reconstruction inside the span of given texts "
        "(--semantic). The difference and texts scores are relative to the unit embedding's total variance "
        "(--by embedding) or to each head's own (--by head). The spec fragment takes the heads scoring at least "
        "--cutoff times the best score; with --classes and --pick (labels needed), the number of heads is "
        "chosen on the calibration images instead: the smallest k within --tolerance of the best worst-group "
        "accuracy, with the average within --max-avg-drop (the rule of `editclip sweep`).",
    )
    source = parser.add_argument_group("calibration decomposition (a store, or a model and data)")
    source.add_argument("--store", help="a decomposition store (`editclip decompose`), or a statistics file "
                        "(`editclip stats`; not with --pick)")  # fmt: skip
    add_model_args(parser, required=False)
    add_data_args(parser, required=False)
    parser.add_argument("--cache", help="folder for the decomposition of --data (default: editclip's cache)")
    how = parser.add_argument_group("ranking")
    how.add_argument("--spurious", help="column of the spurious attribute (e.g. place)")
    how.add_argument("--label", help="column of the label (e.g. y); its explained variance is subtracted")
    how.add_argument("--texts", nargs="+", metavar="TEXT", help="rank by variance along these texts (or, with "
                     "--spurious, measure the groups inside their span)")  # fmt: skip
    how.add_argument("--words", nargs="+", metavar="WORD", help="rank by TextSpan texts naming these words")
    how.add_argument("--semantic", nargs="+", metavar="TEXT", help="rank by the share of each head's TextSpan "
                     "reconstruction inside the span of these texts")  # fmt: skip
    how.add_argument("--pool", default="general", help="description pool for --words/--semantic (default general)")
    how.add_argument("--m", type=int, default=10, help="TextSpan texts per head for --words/--semantic (default 10)")
    how.add_argument("--score", choices=SCORES, default="difference", help="groups ranking: difference "
                     "(variance-weighted, default) or ratio (mean-difference ratio; needs --label)")  # fmt: skip
    how.add_argument("--by", choices=("embedding", "head"), default="embedding",
                     help="normalise by the embedding's total variance (default) or by each head's")  # fmt: skip
    how.add_argument("--layers", help="only heads of these layers, e.g. last:4 or L8-11 (default all)")
    add_classes_arg(how, help="zero-shot class names in label order (for --pick and --along-classes), or one "
                    "class source: imagenet, imagefolder:PATH, cub:PATH")
    add_templates_arg(how)
    how.add_argument("--along-classes", action="store_true",
                     help="measure the groups only along the class-embedding differences (what the classifier "
                     "reads)")  # fmt: skip
    out = parser.add_argument_group("output")
    out.add_argument("--cutoff", type=float, default=CUTOFF, help="fragment: heads scoring at least this fraction "
                     f"of the best score (default {CUTOFF})")  # fmt: skip
    out.add_argument("--top", type=int, help="at most this many heads in the cut-off fragment (not --pick; "
                     "default: no cap)")  # fmt: skip
    out.add_argument("--pick", action="store_true", help="choose how many heads on the calibration images")
    out.add_argument("--max-k", type=int, default=MAX_K, help=f"largest k --pick tries (default {MAX_K}, as for "
                     "`editclip sweep`; not --top)")  # fmt: skip
    out.add_argument("--tolerance", type=float, default=TOLERANCE, help="worst-group accuracy (fraction) --pick "
                     f"gives up for fewer heads (default {TOLERANCE})")  # fmt: skip
    out.add_argument("--max-avg-drop", type=float, default=MAX_AVG_DROP, help="largest average-accuracy loss "
                     f"--pick accepts (fraction, default {MAX_AVG_DROP})")  # fmt: skip
    out.add_argument("--show", type=int, default=20, help="rows of the ranking to print (default 20)")
    out.add_argument("--json", metavar="FILE", help="also write the ranking (and pick) as JSON")
    add_overwrite_arg(out, "an existing --json file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..classnames import classes_from_values
    from ..evaluate import zero_shot_classifier
    from ..store import DecompositionStore, backbone_for_store
    from ..suggest import (
        head_scores,
        pick_top_k,
        relative_cutoff,
        require_paper_scale,
        semantic_scores,
        spec_fragment,
        word_scores,
    )
    from ..text import encode_texts, load_pool

    if args.json:
        prepare_output(args.json, args.overwrite, "file", what="--json")
    _check_args(args)
    store, bb = _store_and_backbone(args)
    if args.words or args.semantic or args.texts or args.along_classes:
        flag = "--words" if args.words else "--semantic" if args.semantic else "--texts / --along-classes"
        require_paper_scale(store, flag)
    need_model = bool(args.texts or args.words or args.semantic or args.classes)
    if need_model and bb is None:
        bb = backbone_for_store(store, args.device)
    classifier = None
    if args.classes:
        templates = templates_from_args(args.templates, bb)
        classifier = zero_shot_classifier(bb, classes_from_values(args.classes), templates)

    ranking: list[HeadScore] | list[WordScore]
    if args.words:
        pool = load_pool(args.pool)
        ranking = word_scores(store, pool, encode_texts(bb, pool), args.words, m=args.m, layers=args.layers)
    elif args.semantic:
        pool = load_pool(args.pool)
        query = encode_texts(bb, list(args.semantic), progress=False)
        ranking = semantic_scores(store, pool, encode_texts(bb, pool), query, m=args.m, layers=args.layers)
    else:
        directions = encode_texts(bb, args.texts, progress=False) if args.texts else None
        if args.along_classes:
            directions = classifier - classifier.mean(0, keepdim=True)
        ranking = head_scores(store, spurious=args.spurious, label=args.label, directions=directions, by=args.by,
                              score=args.score, layers=args.layers)  # fmt: skip
    print(_table(ranking[: args.show]))
    candidates = [r.head for r in ranking if r.score > 0]
    source = "store" if isinstance(store, DecompositionStore) else "stats"
    report: dict[str, Any] = {source: store.describe(), "ranking": [asdict(r) for r in ranking]}
    if args.pick:
        if args.label is None or args.spurious is None:
            raise EditclipError("--pick needs --label and --spurious (the groups whose worst accuracy it raises)")
        pick = pick_top_k(store, candidates, classifier, args.label, [args.label, args.spurious], max_k=args.max_k,
                          max_avg_drop=args.max_avg_drop, tolerance=args.tolerance)  # fmt: skip
        print("\nmean-ablating the top k on the calibration images:")
        print("\n".join(f"  k={k:<3d} average {100 * r.acc_avg:5.1f}  worst group {100 * r.acc_wg:5.1f} "
                        f"({r.worst.name})" for k, r in pick.trials))  # fmt: skip
        heads = list(pick.heads)  # --top caps only the cut-off fragment: the pick is the pick
        report["pick"] = {"k": pick.k, "tolerance": args.tolerance, "max_avg_drop": args.max_avg_drop,
                          "trials": [{"k": k, **r.as_dict()} for k, r in pick.trials]}  # fmt: skip
    else:
        heads = relative_cutoff(ranking, args.cutoff)[: args.top]
        report["cutoff"] = args.cutoff
    print(f"\nspec fragment ({len(heads)} head{'s' if len(heads) != 1 else ''}):\n{spec_fragment(heads)}")
    report["heads"] = heads
    if args.json:
        write_json(args.json, json.loads(json.dumps(report, default=str)))
    return 0


def _check_args(args: argparse.Namespace) -> None:
    modes = [bool(args.spurious), bool(args.words), bool(args.semantic)]
    if sum(modes) > 1:
        raise EditclipError("give one of --spurious (with --label), --words and --semantic, not several")
    if not any(modes) and not args.texts:
        raise EditclipError("nothing to rank by: give --spurious COLUMN [--label COLUMN], --texts ..., --words ... "
                            "or --semantic ...")  # fmt: skip
    if (args.words or args.semantic) and args.texts:
        raise EditclipError("--texts is a ranking of its own; give it without --words or --semantic")
    if args.along_classes and (not args.classes or not args.spurious or args.texts):
        raise EditclipError("--along-classes needs --classes and --spurious (and no --texts)")
    if args.pick and not args.classes:
        raise EditclipError("--pick needs --classes (the zero-shot classifier whose worst group it raises)")
    if (args.top is not None and args.top < 1) or (args.max_k is not None and args.max_k < 1) or args.show < 1 \
            or args.m < 1:  # fmt: skip
        raise EditclipError("--top, --max-k, --show and --m must be positive")
    if not 0 < args.cutoff <= 1 or args.tolerance < 0:
        raise EditclipError(f"--cutoff {args.cutoff} must be in (0, 1] and --tolerance {args.tolerance} >= 0")
    if not 0 <= args.max_avg_drop <= 1:
        raise EditclipError(f"--max-avg-drop {args.max_avg_drop} must be a fraction in 0..1")
    if bool(args.store) == bool(args.data):
        raise EditclipError("give the calibration images as --store DIR, or as a model and --data ROOT (not both)")


def _store_and_backbone(args: argparse.Namespace) -> tuple[DecompositionStore | PartStats, Backbone | None]:
    from .._compile import calibration_store
    from ..stats import PartStats
    from ..store import DecompositionStore

    if args.store and Path(args.store).is_file():
        if args.pick:
            raise EditclipError(
                f"--pick mean-ablates the top k heads on every calibration image, which the statistics file "
                f"{args.store!r} does not hold: give a decomposition store folder, or a model and --data"
            )
        return PartStats.load(args.store), None
    if args.store:
        return DecompositionStore.open(args.store), None
    dataset = dataset_from_args(args)
    bb = backbone_from_args(args)
    return calibration_store(bb, dataset, args.cache), bb


def _table(rows: list[HeadScore] | list[WordScore]) -> str:
    from ..suggest import WordScore

    if rows and isinstance(rows[0], WordScore):
        lines = [f"{'rank':>4}  {'head':<8} {'score':>7}  texts"]
        lines += [f"{i:>4}  {r.head:<8} {r.score:7.4f}  {'; '.join(r.texts)}" for i, r in enumerate(rows, 1)]
        return "\n".join(lines)
    groups = bool(rows) and rows[0].spurious is not None
    header = f"{'rank':>4}  {'head':<8} {'score':>8} {'share':>7}"
    header += f" {'eta2 spurious':>13} {'eta2 label':>10}" if groups else ""
    lines = [header]
    for i, r in enumerate(rows, 1):
        line = f"{i:>4}  {r.head:<8} {r.score:8.4f} {r.share:7.4f}"
        if groups:
            line += f" {r.spurious:13.3f} " + (f"{r.label:10.3f}" if r.label is not None else f"{'-':>10}")
        lines.append(line)
    return "\n".join(lines)

