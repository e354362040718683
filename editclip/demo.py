"""``editclip demo``: the whole method on the shipped toy world, offline, in 10-20 s on a 2-core CPU.

1. Generate a small toy-world dataset (Waterbirds layout: two shapes as classes, land/water backgrounds
   as places; the training split keeps the spurious correlation, val and test are group-balanced).
2. Decompose the calibration (val) images with the toy CLIP.
3. Find the background heads without naming them: rank heads by how much of their direct part follows
   the place rather than the label (:func:`editclip.suggest.head_scores`), then choose how many of the
   top heads to mean-ablate on the calibration images (:func:`editclip.suggest.pick_top_k`); TextSpan
   over the toy-world pool names what each chosen head writes.
4. Write the spec this builds, and run it like ``editclip run``: compile, evaluate baseline vs edited on
   the test split (fast path, checked by the exact path) beside 20 random sets of as many heads from the
   same layers (the control), export ONNX, write the report.
5. Say whether the goal was met: worst-group accuracy up by at least 10 points, while the average
   accuracy drops by at most 5 (stays within 5 points below the baseline; a rise is welcome).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ._compile import calibration_store
from ._constants import DEMO_COUNTS
from ._io import prepare_output, write_json, write_text
from ._requires import require_onnxruntime
from ._textspan import textspan
from .backbone import Backbone
from .controls import ControlSettings
from .data import load_dataset
from .evaluate import zero_shot_classifier
from .names import parse_head
from .runner import RunResult, load_model, run_spec
from .spec import EditSpec, ModelSpec
from .spec.paths import anchor_paths
from .store import DecompositionStore
from .suggest import head_scores, pick_top_k
from .text import encode_texts, load_pool

GOAL_WORST_GROUP_GAIN = 0.10  # edited worst-group accuracy >= baseline + 10 points
GOAL_AVERAGE_DROP = 0.05  # edited average >= baseline average - 5 points (a rise is welcome)


@dataclass
class DemoResult:
    """The heads the demo found, the run it made, and whether the goal was met."""

    out: Path
    heads: tuple[str, ...]
    run: RunResult
    goal_met: bool
    summary: dict[str, Any]


def goal(delta: dict[str, float]) -> bool:
    """Whether edited minus baseline meets the toy world's goal (fractions)."""
    return (
        delta["acc_wg"] >= GOAL_WORST_GROUP_GAIN - 1e-9
        and delta["acc_avg"] >= -GOAL_AVERAGE_DROP - 1e-9
    )


def run_demo(
    out: str | Path = "out/demo",
    *,
    overwrite: bool = False,
    counts: tuple[int, int, int] = DEMO_COUNTS,
    seed: int = 0,
    max_heads: int = 8,
    model: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo into ``out`` (data/, cache/, spec.yaml, report/, export/, demo.json).

    ``model`` is a spec ``model`` section (default the shipped toy CLIP: ``{toyworld: true}``).
    """
    from .toyworld import CLASSES, TEMPLATES
    from .toyworld.write import write_dataset

    start = time.perf_counter()
    require_onnxruntime("the demo (its ONNX export is checked with onnxruntime)")
    out = Path(out)
    prepare_output(out, overwrite, "dir", what="output folder")
    model_spec = ModelSpec.model_validate(model or {"toyworld": True})
    bb = load_model(model_spec)
    if overwrite and (out / "cache").is_dir():
        shutil.rmtree(out / "cache")  # stores are keyed by image ids, not pixels: a new world needs new ones

    log(f"[1/5] generating the toy world ({counts[0]} train, {counts[1]} val, {counts[2]} test images)")
    data = write_dataset(out / "data", seed=seed, counts=counts, overwrite=overwrite, progress=False)

    log("[2/5] decomposing the calibration images (val)")
    calibration = calibration_store(bb, load_dataset(data, split="val"), out / "cache")

    log("[3/5] finding the heads whose direct part follows the background rather than the shape")
    ranking = head_scores(calibration, spurious="place", label="y", progress=False)
    classifier = zero_shot_classifier(bb, list(CLASSES), list(TEMPLATES))
    candidates = [s.head for s in ranking if s.score > 0]
    pick = pick_top_k(calibration, candidates, classifier, "y", ["y", "place"], max_k=max_heads,
                      max_avg_drop=GOAL_AVERAGE_DROP)  # fmt: skip
    for s in ranking[:8]:
        log(f"      {s.head:<7} score {s.score:7.4f}  place explains {100 * s.spurious:5.1f}% of its variance, "
            f"shape {100 * s.label:5.1f}%")  # fmt: skip
    for k, r in pick.trials:
        log(f"      ablating the top {k}: calibration average {100 * r.acc_avg:5.1f}, "
            f"worst group {100 * r.acc_wg:5.1f}")  # fmt: skip
    heads = pick.heads
    if not heads:
        heads = (ranking[0].head,)
        log(f"      no k improved the calibration worst group; falling back to the top-ranked head {heads[0]}")
    texts = _head_texts(bb, calibration, heads)
    for head in heads:
        log(f"      chose {head}: TextSpan texts {'; '.join(texts[head])}")

    spec_data = {
        "editclip": 1,
        "name": "toyworld-demo",
        "model": model_spec.model_dump(exclude_defaults=True),
        "calibration": {"data": {"format": "waterbirds", "root": data.name, "split": "val"}},
        "edits": [{"mean_ablate": list(heads)}],
        "evaluate": {"data": {"format": "waterbirds", "root": data.name, "split": "test"}, "classes": list(CLASSES),
                     "templates": list(TEMPLATES), "label": "y", "groups": ["y", "place"]},
        "export": {"formats": ["onnx"], "dir": "export"},
    }  # fmt: skip
    EditSpec.from_dict(anchor_paths(spec_data, out))  # checked before it is written
    header = ("# written by `editclip demo`: the heads it found in the toy CLIP.\n"
              "# Paths are relative to this file's folder: the spec runs from any working folder.\n")
    write_text(out / "spec.yaml", header + yaml.safe_dump(spec_data, sort_keys=False))
    spec = EditSpec.from_yaml(out / "spec.yaml")

    log(f"[4/5] running the spec ({out / 'spec.yaml'}): compile, evaluate on test, export ONNX")
    run = run_spec(spec, out / "report", overwrite=overwrite, cache_dir=out / "cache", spec_path=str(out / "spec.yaml"),
                   controls=ControlSettings(), log=lambda line: log(f"      {line}"))  # fmt: skip
    delta = run.report["evaluation"]["delta"]
    met = goal(delta)
    seconds = time.perf_counter() - start
    summary = {
        "heads": list(heads),
        "head_texts": texts,
        "ranking": [asdict(s) for s in ranking],
        "calibration_trials": [{"k": k, **r.as_dict()} for k, r in pick.trials],
        "test": run.report["evaluation"]["metrics"],
        "delta": delta,
        "controls": run.report["evaluation"]["controls"]["metrics"],
        "goal": {"worst_group_gain": GOAL_WORST_GROUP_GAIN, "average_drop": GOAL_AVERAGE_DROP, "met": met},
        "seconds": round(seconds, 1),
    }
    write_json(out / "demo.json", summary)

    log("[5/5] baseline vs edited on the test split (accuracy %)")
    log(run.table)
    base, edited = run.reports["baseline"], run.reports["edited"]
    verdict = "MET" if met else "NOT met"
    log(f"goal (worst group +{100 * GOAL_WORST_GROUP_GAIN:.0f} points, average down at most "
        f"{100 * GOAL_AVERAGE_DROP:.0f}): {verdict}: worst group {100 * base.acc_wg:.1f} -> "
        f"{100 * edited.acc_wg:.1f} ({100 * delta['acc_wg']:+.1f}), average {100 * base.acc_avg:.1f} -> "
        f"{100 * edited.acc_avg:.1f} ({100 * delta['acc_avg']:+.1f})")  # fmt: skip
    if run.controls is not None:
        log(f"control: the found heads against the same ablation of random heads on test: {run.controls.describe()}")
    log(f"wrote {out / 'spec.yaml'}, {out / 'report'}/, {out / 'export'}/, {out / 'demo.json'} in {seconds:.0f} s")
    return DemoResult(out, heads, run, met, summary)


def _head_texts(bb: Backbone, store: DecompositionStore, heads: tuple[str, ...], m: int = 3) -> dict[str, list[str]]:
    """The first ``m`` TextSpan texts of each head over the toy-world description pool."""
    pool = load_pool("toyworld")
    embeddings = encode_texts(bb, pool, progress=False)
    refs = [parse_head(h) for h in heads]
    data = [store.read("heads", index=(ref.layer, ref.head)) for ref in refs]
    out = {}
    for head, part in zip(heads, data, strict=True):
        result = textspan(part, embeddings, m=min(m, len(pool)), texts=pool)
        out[head] = list(result.texts or [])
    return out

