"""``editclip sweep SPEC``: the top-k edit for k = 0..K on calibration and evaluation, beside random head sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import prepare_output, staged_dir, write_json, write_text
from .._selection import MAX_AVG_DROP, MAX_K, TOLERANCE
from ..errors import EditclipError
from ._common import add_overwrite_arg, list_item

if TYPE_CHECKING:
    from ..spec import EditSpec
    from ..sweep import Sweep


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="mean-ablate the top k heads of a ranking for k = 0..K, beside random head sets; pick k on calibration",
        description="Take a ranking of heads (the spec's heads in order, --heads, a `suggest --json` file, or "
        "--spurious to rank now), mean-ablate its top k for k = 0..--max-k on the spec's calibration and "
        "evaluation images, score --random-heads random sets of k heads at each k (the random band), and pick "
        "k on the calibration images only: the smallest k within --tolerance of the best calibration worst-group "
        "accuracy, with the average at most --max-avg-drop below the unedited model's. Writes sweep.json, "
        "sweep.md and sweep.png into --out.",
    )
    parser.add_argument("spec", help="an edit spec with calibration and evaluate sections (its model and data)")
    parser.add_argument("--out", required=True, help="output folder")
    ranking = parser.add_argument_group("ranking (default: the spec's heads, in order)")
    ranking.add_argument("--heads", nargs="+", type=list_item("head names"), metavar="HEAD",
                         help="heads in rank order, e.g. L3.H3 L3.H1")  # fmt: skip
    ranking.add_argument("--ranking", metavar="JSON", help="a ranking written by `editclip suggest --json`")
    ranking.add_argument("--spurious", metavar="COLUMN", help="rank by this spurious column against the label now")
    parser.add_argument("--max-k", type=int, default=MAX_K, help=f"largest k (default {MAX_K}, at most the "
                        "ranking's length)")  # fmt: skip
    parser.add_argument("--random-heads", type=int, default=20, help="random head sets per k (default 20; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sets (k adds to it; default 0)")
    parser.add_argument("--controls-layers", default="same", help="layers random sets come from: same (the top-k "
                        "heads' layers, default), all, last:4 ...")  # fmt: skip
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="worst-group accuracy (fraction) a "
                        f"smaller k may give up (default {TOLERANCE})")  # fmt: skip
    parser.add_argument("--max-avg-drop", type=float, default=MAX_AVG_DROP, help="largest average-accuracy loss "
                        f"(fraction) a k may cost (default {MAX_AVG_DROP})")  # fmt: skip
    parser.add_argument("--baseline-texts", nargs="+", metavar="TEXT", help="also evaluate projecting the whole "
                        "embedding away from these spurious-attribute texts (Chuang et al. 2023)")  # fmt: skip
    parser.add_argument("--cache", help="folder for decomposition stores (default: editclip's cache)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    add_overwrite_arg(parser, "the files of a non-empty --out")
    parser.set_defaults(func=run)


def _spec_heads(spec: EditSpec) -> list[str]:
    heads: list[str] = []
    for edit in spec.edits:
        action = edit.action
        names = list(action.heads or []) if edit.kind == "mean_ablate" else [action.head]  # type: ignore[union-attr]
        heads += [h for h in names if h is not None and h not in heads]
    return heads


def _ranking_file(path: str) -> list[str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = data["ranking"]
        return [row["head"] for row in rows if row["score"] > 0]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise EditclipError(f"--ranking {path}: not a ranking written by `editclip suggest --json` ({err})") from None


def run(args: argparse.Namespace) -> int:
    from .._compile import calibration_dataset, calibration_store
    from ..baselines import embedding_projection, project_embeddings
    from ..controls import ControlSettings
    from ..data import load_dataset
    from ..evaluate import predict, zero_shot_classifier
    from ..evaluation_paths import fast_embeddings, targets
    from ..runner import load_model
    from ..spec import EditSpec
    from ..suggest import head_scores, spec_fragment
    from ..sweep import sweep_k
    from ..text import encode_texts

    if sum(x is not None for x in (args.heads, args.ranking, args.spurious)) > 1:
        raise EditclipError("give one ranking: --heads, --ranking or --spurious")
    if args.max_k < 1 or args.random_heads < 0:
        raise EditclipError("--max-k must be >= 1 and --random-heads >= 0")
    spec = EditSpec.from_yaml(args.spec)
    if spec.evaluate is None:
        raise EditclipError(f"{args.spec} has no evaluate section: a sweep needs its classes, label and groups")
    out = prepare_output(args.out, args.overwrite, "dir", what="--out")
    given = args.heads or (_ranking_file(args.ranking) if args.ranking else None)
    ev = spec.evaluate
    controls = ControlSettings(args.random_heads, args.seed, args.controls_layers) if args.random_heads else None
    bb = load_model(spec.model, args.device)
    spec.check_against(bb.shape.layers, bb.shape.heads)
    cal_data = calibration_dataset(spec.calibration.data, spec.calibration.max_images)
    ev_data = load_dataset(ev.data.root, format=ev.data.format, split=ev.data.split, max_images=ev.max_images)
    names = ev.group_names
    tgs = {split: targets(data, ev.label, ev.group_columns, names) for split, data in
           (("calibration", cal_data), ("evaluation", ev_data))}  # fmt: skip
    stores = {"calibration": calibration_store(bb, cal_data, args.cache),
              "evaluation": calibration_store(bb, ev_data, args.cache)}  # fmt: skip
    if args.spurious:
        ranked = head_scores(stores["calibration"], spurious=args.spurious, label=ev.label)
        ranking = [s.head for s in ranked if s.score > 0]
    else:
        ranking = given or _spec_heads(spec)
    classifier = zero_shot_classifier(bb, ev.classes, ev.templates)
    result = sweep_k(stores, tgs, stores["calibration"], ranking, classifier, max_k=args.max_k, controls=controls,
                     tolerance=args.tolerance, max_avg_drop=args.max_avg_drop)  # fmt: skip
    if args.baseline_texts:
        projection = embedding_projection(encode_texts(bb, list(args.baseline_texts), progress=False))
        result.baselines["embedding projection"] = {
            split: tgs[split].report(predict(project_embeddings(fast_embeddings(store, None), projection), classifier))
            for split, store in stores.items()
        }
    with staged_dir(out) as stage:  # the folder appears only once everything is written
        _write(stage, result, spec, args, ranking)
    print(result.table())
    print(f"\nchosen on calibration: k = {result.pick}\n{spec_fragment(list(result.heads))}")
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    return 0


def _write(out: Path, result: Sweep, spec: EditSpec, args: argparse.Namespace, ranking: list[str]) -> None:
    title = f"{spec.name or Path(args.spec).stem}: top-k heads vs random k heads"
    result.plot(out / "sweep.png", title=title)
    report: dict[str, Any] = {"spec": args.spec, "ranking": ranking, "baseline_texts": args.baseline_texts,
                              **result.as_dict()}  # fmt: skip
    write_json(out / "sweep.json", json.loads(json.dumps(report, default=str)))
    lines = [f"# editclip sweep: {spec.name or Path(args.spec).stem}", "",
             f"Ranking: {', '.join(ranking)}", "", "Accuracies in %; wg = worst group.", "",
             "```", result.table(), "```", "", "![sweep](sweep.png)", "",
             f"Chosen on calibration: k = {result.pick} ({', '.join(result.heads) or 'no heads'})."]  # fmt: skip
    write_text(out / "sweep.md", "\n".join(lines) + "\n")
