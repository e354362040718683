"""`editclip validate SPEC` checks an edit spec; `editclip schema` prints the JSON Schema of specs."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._io import write_text

if TYPE_CHECKING:
    from ..spec import DataSpec


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``validate`` and ``schema`` sub-commands."""
    validate = subparsers.add_parser(
        "validate",
        help="check an edit spec and summarise its edits",
        description="Check an edit spec: field types, names, data paths and columns, contradictory edits, "
        "calibration images that are also evaluated and, when the model's config gives its shape, heads "
        "and layers against the model. Prints OK and "
        "a summary, or every problem with its field path and line (exit 2).",
    )
    validate.add_argument("spec", help="the spec YAML file")
    validate.set_defaults(func=run_validate)

    schema = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of edit specs",
        description="Print the JSON Schema of the edit-spec format (for editors and documentation).",
    )
    schema.add_argument("--out", metavar="FILE", help="write the schema to FILE (atomically), not stdout")
    schema.set_defaults(func=run_schema)


def run_validate(args: argparse.Namespace) -> int:
    """Read the spec, check it against the model's shape when known, print the summary."""
    from ..spec import EditSpec
    from ..spec_data import check_calibration_overlap

    spec = EditSpec.from_yaml(args.spec)
    shared = check_calibration_overlap(spec)
    shape = spec.model.vision_layers_heads()
    lines = [f"OK {args.spec}" + (f" ({spec.name})" if spec.name else "")]
    shape_text = f": {shape[0]} layers x {shape[1]} heads" if shape else ""
    lines.append(f"  model: {spec.model.describe()}{shape_text}")
    calibration = spec.calibration
    lines.append(f"  calibration: {_data(calibration.data, calibration.max_images)}")
    if shared:
        lines.append(f"    transductive: {shared} evaluation images are also calibration images")
    lines.append(f"  target: {spec.target}, convention: {spec.convention}")
    if shape is None:
        lines.append("  edits (heads and layers are checked against the model when it is loaded):")
        lines += [f"    [{i}] {edit.action.describe()}" for i, edit in enumerate(spec.edits)]
    else:
        resolved = spec.resolved_parts(*shape)
        lines.append(f"  edits: {len(resolved)} parts ({_count(r.part for r in resolved)})")
        for i, edit in enumerate(spec.edits):
            lines.append(f"    [{i}] {edit.action.describe()} -> {_count(edit.action.parts_for(*shape))}")
    if spec.evaluate is not None:
        ev = spec.evaluate
        lines.append(f"  evaluate: {_data(ev.data, ev.max_images)}")
        templates = ev.templates if isinstance(ev.templates, str) else f"{len(ev.templates)} templates"
        lines.append(
            f"    classes {', '.join(ev.classes)}; templates {templates}; label {ev.label}; "
            f"groups {', '.join(ev.group_columns)}"
        )
    if spec.export is not None:
        lines.append(f"  export: {', '.join(spec.export.formats)} -> {spec.export.dir}")
    print("\n".join(lines))
    return 0


def run_schema(args: argparse.Namespace) -> int:
    """Print or write the JSON Schema."""
    from ..spec import EditSpec

    text = json.dumps(EditSpec.json_schema(), indent=2) + "\n"
    if args.out:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _data(data: DataSpec, max_images: int | None) -> str:
    details = [data.resolved_format or data.format] + ([f"split {data.split}"] if data.split else [])
    limit = f", at most {max_images} images" if max_images else ""
    return f"{data.root} ({', '.join(details)}){limit}"


def _count(parts: Iterable[str]) -> str:
    kinds = Counter("embed" if p == "embed" else "MLP" if p.endswith(".mlp") else "head" for p in parts)
    words = [f"{kinds[k]} {k}{'s' if kinds[k] != 1 else ''}" for k in ("head", "MLP") if kinds[k]]
    return ", ".join(words + (["embed"] if kinds["embed"] else []))
