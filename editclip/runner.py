"""Run an edit spec end to end: load the model, compile the edit, evaluate baseline and edited models on
the spec's evaluation data, export, and write a report (report.json, report.md, groups.png, spec.yaml).

Evaluation uses one exact-convention decomposition store of the evaluation images (cached like the
calibration store): the baseline and the direct-effect edit are scored on it by the fast path, and the
compiled model is run on the images (the exact path) as a check (``target: wrapper``: the EditedCLIP,
whose predictions must equal the fast path's) or as the result itself (``target: weights``: the patched
open_clip model, whose distance from the direct semantics is reported as its fidelity).

Everything that can be checked is checked before anything is written: a bad spec, model or dataset, or
an output folder that cannot be created or written, leaves no output behind, and a non-empty output folder
is only reused with ``overwrite``. The report and the export are made in temporary sibling folders and
moved into place at the very end, so a failed or killed run leaves nothing that a rerun trips on.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._compile import CompiledEdit, calibration_store, compile_edit
from ._io import prepare_output, staged_dir, write_json, write_text
from ._requires import require_onnxruntime
from ._version import __version__
from .backbone import Backbone, load
from .baselines import embedding_projection, project_embeddings
from .controls import ControlResult, ControlSettings, control_pool, head_action, random_head_controls
from .data import ImageDataset
from .errors import EditclipError
from .evaluate import GroupReport, format_table, plot_groups, predict, zero_shot_classifier
from .evaluation_paths import Targets, compare, exact_embeddings, fast_embeddings, targets
from .model_card import write_export_card
from .report import environment, markdown, portable
from .spec import EditSpec, ModelSpec
from .spec_data import check_calibration_overlap, spec_dataset
from .stats import PartStats
from .store import DecompositionStore, model_source
from .text import encode_texts
from .uncertainty import group_intervals, small_group_warnings

REPORT_FILES = ("report.json", "report.md", "groups.png", "spec.yaml")


@dataclass
class RunResult:
    """What a run measured and wrote. ``reports`` holds the group reports by column name
    (``baseline``, ``edited``; ``edited (direct)`` as well for the weights target)."""

    out: Path | None  # None: nothing was written
    report: dict[str, Any]
    reports: dict[str, GroupReport] = field(default_factory=dict)
    compiled: CompiledEdit | None = None
    controls: ControlResult | None = None

    def __repr__(self) -> str:
        where = f"written to {str(self.out)!r}" if self.out is not None else "nothing written"
        metrics = "; ".join(f"{name}: average {100 * r.acc_avg:.1f}%, worst group {100 * r.acc_wg:.1f}%"
                            for name, r in self.reports.items())  # fmt: skip
        return f"RunResult({self.report.get('name') or 'unnamed'}, {metrics or 'not evaluated'}; {where})"

    @property
    def table(self) -> str:
        """The terminal table of baseline vs edited (empty without evaluation)."""
        return format_table(self.reports) if self.reports else ""


def load_model(model: ModelSpec, device: str | torch.device = "cpu") -> Backbone:
    """The backbone a spec's ``model`` section names."""
    if model.toyworld:
        from .toyworld import load as load_toyworld

        return load_toyworld(device=str(device), precision=model.precision)
    if model.checkpoint is not None:
        return load(model.name, checkpoint=model.checkpoint, config=model.config, device=device,
                    precision=model.precision)  # fmt: skip
    if model.config is not None:
        return load(model.name, config=model.config, device=device, precision=model.precision)
    return load(model.name, pretrained=model.pretrained, device=device, precision=model.precision)


def _exporter() -> Any:
    """The export module, or a clear error when this installation has none."""
    try:
        return importlib.import_module("editclip.export")
    except ImportError as err:
        raise EditclipError(
            f"export not available in this installation ({err}); remove the spec's export section"
        ) from None


@contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[step] = round(time.perf_counter() - start, 3)


def run_spec(
    spec: EditSpec,
    out: str | Path | None,
    *,
    overwrite: bool = False,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    exact_check: bool = True,
    spec_path: str | None = None,
    controls: ControlSettings | bool | None = None,
    baseline_texts: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Compile, evaluate and export ``spec``; write the report into ``out`` and return it.

    ``exact_check=False`` skips running the wrapper on the evaluation images (the weights target always
    runs its patched model, which is its result). ``out=None`` writes nothing (no report files, and the
    spec's export section is skipped); the decomposition cache is still used. The returned result holds
    the metrics (``reports``), the report dict and the compiled edit either way.
    ``controls`` scores random head sets of the edit's size beside it (:mod:`editclip.controls`; the
    direct-effect edit, on the evaluation store): None takes the spec's ``evaluate.controls``, False none,
    :class:`ControlSettings` these. ``baseline_texts`` adds the whole-embedding projection away
    from those texts as a column beside baseline and edited (:mod:`editclip.baselines`).
    """
    out = None if out is None else prepare_output(out, overwrite, "dir", what="output folder")
    exporter = None
    if spec.export is not None and out is not None:
        export_dir = prepare_output(spec.export.dir, overwrite, "dir", what="export folder")
        if export_dir.resolve() == out.resolve():
            raise EditclipError(f"export folder {str(export_dir)!r} is the report folder; give the export its own")
        exporter = _exporter()
        if "onnx" in spec.export.formats:
            require_onnxruntime("the spec's ONNX export (checked against torch with onnxruntime)")
    if batch_size < 1:
        raise EditclipError(f"batch size must be positive, got {batch_size}")
    timings: dict[str, float] = {}
    with _timed(timings, "load"):
        evaluation = _evaluation_data(spec)
        shared = check_calibration_overlap(spec, evaluation[0] if evaluation else None)
        bb = load_model(spec.model, device)
        spec.check_against(bb.shape.layers, bb.shape.heads)
    log(f"model: {spec.model.describe()} ({bb.shape.layers} layers x {bb.shape.heads} heads)")
    with _timed(timings, "compile"):
        compiled = compile_edit(spec, bb, cache_dir=cache_dir, batch_size=batch_size)
    controls = spec_controls(spec) if controls is None else controls or None
    if controls is not None:  # refuse controls that cannot run before evaluating anything
        if evaluation is None:
            raise EditclipError("random-head controls need an evaluate section (the images they are scored on)")
        control_pool(head_action(compiled.tensors)[0], controls.layers, bb.shape.layers, bb.shape.heads)
    parts = spec.resolved_parts(bb.shape.layers, bb.shape.heads)
    report: dict[str, Any] = {
        "editclip_version": __version__,
        "name": spec.name,
        "spec_file": spec_path,
        "overrides": spec.overrides,
        "model": model_source(bb)
        | {"fingerprint": bb.fingerprint, "layers": bb.shape.layers, "heads": bb.shape.heads},
        "target": spec.target,
        "edits": [edit.action.describe() for edit in spec.edits],
        "edited_parts": [p.part for p in parts],
        "calibration": compiled.provenance,
        "calibration_overlap": {"transductive": spec.calibration.transductive, "shared_images": shared},
        "environment": environment(bb.device),
    }
    result = RunResult(out, report, compiled=compiled)
    if evaluation is not None:
        with _timed(timings, "evaluate"):
            _evaluate(spec, bb, compiled, evaluation, result, cache_dir, batch_size, exact_check, log)
            if controls is not None:
                _controls(compiled, evaluation[1], result, controls, log)
            if baseline_texts:
                _embedding_baseline(compiled, evaluation[1], result, list(baseline_texts))
    if out is None:
        report["seconds"] = timings
        return result
    with contextlib.ExitStack() as staged:  # both folders appear only once everything succeeded
        if exporter is not None:
            stage = staged.enter_context(staged_dir(spec.export.dir))
            with _timed(timings, "export"):
                written = exporter.export_compiled(compiled, stage, spec.export.formats)
            report["export"] = _moved(written, stage, Path(spec.export.dir))
            log(f"exported {', '.join(spec.export.formats)} to {spec.export.dir}")
        report["seconds"] = timings
        _write(result, spec, staged.enter_context(staged_dir(out)))
        if spec.export is not None:
            write_export_card(spec.export.dir, report, spec.to_yaml(), bb.model, spec_path, into=stage)
    return result


def _moved(written: Any, stage: Path, final: Path) -> Any:
    """The export's record with its staged paths replaced by their final ones."""
    if isinstance(written, dict):
        return {k: _moved(v, stage, final) for k, v in written.items()}
    if isinstance(written, str) and written.startswith(str(stage)):
        return str(final / Path(written).relative_to(stage))
    return written


def spec_controls(spec: EditSpec) -> ControlSettings | None:
    """The spec's ``evaluate.controls`` as settings (None when it asks for none)."""
    given = spec.evaluate.controls if spec.evaluate is not None else None
    return None if given is None else ControlSettings(given.random_heads, given.seed, given.layers)


def _evaluation_data(spec: EditSpec) -> tuple[ImageDataset, Targets] | None:
    """The evaluation images and their targets, checked (columns, label range) before any work."""
    ev = spec.evaluate
    if ev is None:
        return None
    dataset = spec_dataset(ev.data, ev.max_images)
    tg = targets(dataset, ev.label, ev.group_columns, ev.group_names, classes=ev.classes)
    bad = sorted({int(v) for v in tg.label if not 0 <= v < len(ev.classes)})
    if bad:
        raise EditclipError(f"evaluate.label column {ev.label!r} has values {bad} outside 0..{len(ev.classes) - 1} "
                            f"(one per class: {', '.join(ev.classes)})")  # fmt: skip
    return dataset, tg


def _evaluate(
    spec: EditSpec,
    bb: Backbone,
    compiled: CompiledEdit,
    evaluation: tuple[ImageDataset, Targets],
    result: RunResult,
    cache_dir: str | Path | None,
    batch_size: int,
    exact_check: bool,
    log: Callable[[str], None],
) -> None:
    """Score baseline and edited models; fill ``result.reports`` and the report's evaluation sections."""
    ev = spec.evaluate
    dataset, tg = evaluation
    classifier = zero_shot_classifier(bb, ev.classes, ev.templates)
    store = calibration_store(bb, dataset, cache_dir, batch_size)
    base = fast_embeddings(store, None, desc="baseline (fast)")
    direct = fast_embeddings(store, compiled.tensors, desc="edited (fast)")
    reports = {"baseline": tg.report(predict(base, classifier))}
    checks: dict[str, Any] = {}

    def exact(encode: Callable[[torch.Tensor], torch.Tensor], desc: str) -> torch.Tensor:
        return exact_embeddings(encode, dataset, bb.preprocess, device=bb.device, dtype=bb.dtype,
                                batch_size=batch_size, desc=desc)  # fmt: skip

    if spec.target == "wrapper":
        reports["edited"] = tg.report(predict(direct, classifier))
        if exact_check:
            wrapper = compiled.wrapper()
            checks["exact_vs_fast"] = compare(direct, exact(wrapper.encode_image, "edited (exact)"), classifier)
            if checks["exact_vs_fast"]["disagreements"]:
                log(f"warning: the exact and fast evaluation paths disagree on "
                    f"{checks['exact_vs_fast']['disagreements']} images (see report.json, checks)")  # fmt: skip
    else:
        patched = compiled.patched_model()
        weights = exact(patched.encode_image, "edited (patched weights)")
        reports["edited (direct)"] = tg.report(predict(direct, classifier))
        reports["edited"] = tg.report(predict(weights, classifier))
        fidelity = compare(direct, weights, classifier)
        fidelity["acc_avg_diff"] = reports["edited"].acc_avg - reports["edited (direct)"].acc_avg
        fidelity["acc_wg_diff"] = reports["edited"].acc_wg - reports["edited (direct)"].acc_wg
        checks["weights_fidelity"] = fidelity
    result.reports = reports
    warnings = small_group_warnings(reports)
    for line in warnings:
        log(f"warning: {line}")
    result.report["evaluation"] = {
        "data": dataset.describe(),
        "classes": list(ev.classes),
        "templates": ev.templates if isinstance(ev.templates, str) else list(ev.templates),
        "label": ev.label,
        "groups": ev.group_columns,
        "store": str(store.root),
        "metrics": {name: r.as_dict() for name, r in reports.items()},
        "delta": _delta(reports["baseline"], reports["edited"]),
        "uncertainty": {name: group_intervals(r).as_dict() for name, r in reports.items()},
        "warnings": warnings,
        "group_names": {"source": tg.names_source, "names": {g.name: g.label for g in reports["baseline"].groups}},
        "checks": checks,
    }


def _controls(
    compiled: CompiledEdit, tg: Targets, result: RunResult, settings: ControlSettings, log: Callable[[str], None]
) -> None:
    """Random-head controls of the (direct-effect) edit on the evaluation store."""
    ev = result.report["evaluation"]
    evaluation = DecompositionStore.open(ev["store"])
    given = compiled.provenance
    calibration = PartStats.load(given["stats"]) if "stats" in given else DecompositionStore.open(given["store"])
    classifier = zero_shot_classifier(compiled.backbone, ev["classes"], compiled.spec.evaluate.templates)
    result.controls = random_head_controls(evaluation, calibration, compiled.tensors, classifier, tg, settings)
    ev["controls"] = result.controls.as_dict()
    log(f"random-head controls: {result.controls.describe()}")


def _embedding_baseline(compiled: CompiledEdit, tg: Targets, result: RunResult, texts: list[str]) -> None:
    """The whole-embedding projection away from ``texts``, scored on the evaluation store beside the edit."""
    ev = result.report["evaluation"]
    bb = compiled.backbone
    store = DecompositionStore.open(ev["store"])
    classifier = zero_shot_classifier(bb, ev["classes"], compiled.spec.evaluate.templates)
    projector = embedding_projection(encode_texts(bb, texts, progress=False))
    z = project_embeddings(fast_embeddings(store, None, desc="embedding projection (fast)"), projector)
    name = "embedding projection"
    result.reports[name] = tg.report(predict(z, classifier))
    ev["metrics"][name] = result.reports[name].as_dict()
    ev["uncertainty"][name] = group_intervals(result.reports[name]).as_dict()
    ev["baselines"] = {name: {"texts": texts, "rank": round(float(projector.trace()))}}


def _delta(base: GroupReport, edited: GroupReport) -> dict[str, float]:
    """Edited minus baseline for the headline metrics (fractions)."""
    out = {k: getattr(edited, k) - getattr(base, k) for k in ("acc_avg", "acc_wg", "acc_mean_group")}
    if base.adj_acc_avg is not None and edited.adj_acc_avg is not None:
        out["adj_acc_avg"] = edited.adj_acc_avg - base.adj_acc_avg
    return out


def _write(result: RunResult, spec: EditSpec, out: Path) -> None:
    """report.json, report.md, groups.png and the spec as run, each atomically, into ``out`` (paths beside
    the report folder ``result.out`` written relative to it: :func:`editclip.report.portable`)."""
    report = portable(result.report, result.out)
    write_json(out / "report.json", report)
    write_text(out / "spec.yaml", spec.to_yaml())
    if result.reports:
        title = f"{spec.name or 'edit'}: {result.report['model']['name']}"
        ctrl = result.controls
        values = {key: ctrl.values(key) for key in ctrl.summary()} if ctrl else None
        label = f"{len(ctrl.sets)} random sets of {ctrl.k} heads" if ctrl else ""
        plot_groups(result.reports, out / "groups.png", title=title, controls=values, controls_label=label)
    write_text(out / "report.md", markdown(report, result.reports))
