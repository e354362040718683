"""The model card of an export folder: ``model_card.json`` and ``README.md`` beside the exported files.

It says what was edited and why (the spec and its comment), where the calibration statistics came from,
the metrics before and after, the preprocessing the files expect, how to load each file (onnxruntime,
editclip, stock open_clip for patched weights) and the versions that made them. The README's Python
snippets run as written from inside the folder (the tests run them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._io import write_json, write_text
from .report import data_text, environment_table, exports_table, model_text, portable

CARD_FORMAT = "editclip-model-card/1"
CARD_FILES = ("README.md", "model_card.json")
CONFIG_FOLDER = "open_clip_config"


def spec_comment(spec_path: str | Path | None) -> str | None:
    """The comment lines at the top of a spec file (why the edit was made), without the ``#``."""
    if not spec_path or not Path(spec_path).is_file():
        return None
    lines = []
    for line in Path(spec_path).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines).strip() or None


def model_card(report: Mapping[str, Any], spec_yaml: str, preprocessing: Mapping[str, Any],
               why: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The card's content (what ``model_card.json`` holds) from a run's (portable) report."""
    ev = report.get("evaluation")
    return {
        "format": CARD_FORMAT,
        "name": report.get("name"),
        "why": why,
        "target": report["target"],
        "base_model": report["model"],
        "edits": report["edits"],
        "edited_parts": report["edited_parts"],
        "calibration": report["calibration"],
        "evaluation": None if ev is None else {
            "data": ev["data"], "classes": ev["classes"], "templates": ev["templates"], "label": ev["label"],
            "groups": ev["groups"], "metrics": ev["metrics"], "delta": ev["delta"], "checks": ev["checks"],
        },
        "preprocessing": dict(preprocessing),
        "files": {fmt: _relative_file(v) for fmt, v in report.get("export", {}).items()},
        "exports": report.get("export", {}),
        "environment": report.get("environment"),
        "spec": spec_yaml,
    }  # fmt: skip


def _relative_file(value: Any) -> str:
    path = value["path"] if isinstance(value, Mapping) else value
    return Path(path).name


def write_model_card(folder: str | Path, card: Mapping[str, Any]) -> list[Path]:
    """Write README.md and model_card.json into ``folder`` (each atomically), and, for patched weights of a
    model open_clip does not know by name, its config as ``open_clip_config/<name>.json``."""
    folder = Path(folder)
    written = []
    config = _open_clip_config(card["base_model"])
    if card["target"] == "weights" and "safetensors" in card["files"] and config is not None:
        path = folder / CONFIG_FOLDER / f"{card['base_model']['name']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, config)
        written.append(path)
    write_json(folder / "model_card.json", json.loads(json.dumps(card, default=str)))
    write_text(folder / "README.md", card_markdown(card, with_config=config is not None))
    return [folder / name for name in CARD_FILES] + written


def write_export_card(folder: str | Path, report: Mapping[str, Any], spec_yaml: str, model: Any,
                      spec_path: str | Path | None = None, into: str | Path | None = None) -> list[Path]:  # fmt: skip
    """The model card of a run's export folder (``model``: the exported torch model, for its preprocessing);
    paths are written relative to ``folder``, the files into ``into`` (a staging folder that becomes
    ``folder``) or ``folder`` itself."""
    from .export import preprocess_metadata

    card = model_card(portable(report, folder), spec_yaml, preprocess_metadata(model), spec_comment(spec_path))
    return write_model_card(into if into is not None else folder, card)


def _open_clip_config(model: Mapping[str, Any]) -> dict[str, Any] | None:
    """The open_clip model config of a checkpoint-based base model (None for open_clip's named models)."""
    if model.get("toyworld"):
        from .toyworld import CONFIG_PATH

        return json.loads(CONFIG_PATH.read_text(encoding="utf-8"))
    config = model.get("config")
    return config if isinstance(config, dict) else None


def card_markdown(card: Mapping[str, Any], with_config: bool = False) -> str:
    """README.md of an export folder (``with_config``: the folder has ``open_clip_config/``)."""
    name = card.get("name") or "edit"
    model = card["base_model"]
    lines = [f"# {name}: an edited {model['name']} image encoder", ""]
    semantics = ("direct effects (EditedCLIP: each edited part's contribution to the embedding is replaced, "
                 "later layers see the unedited model)" if card["target"] == "wrapper" else
                 "total effects (the heads' outputs are changed at every token and folded into the weights: a "
                 "stock open_clip model)")  # fmt: skip
    lines += [
        "Made by editclip from an edit spec (below). "
        + (f"Why: {card['why']}" if card.get("why") else ""),
        "",
        "| | |",
        "|---|---|",
        f"| base model | {model_text(model)}, weights fingerprint `{model['fingerprint']}` |",
        f"| edits | {'; '.join(card['edits'])} |",
        f"| semantics | {semantics} |",
        f"| calibration | {data_text(card['calibration']['data'])}: part means and TextSpan bases come from "
        "these images, not from the evaluated ones |",
        "",
    ]
    ev = card.get("evaluation")
    if ev is not None:
        lines += ["## Metrics before and after (zero-shot, %)", "", _metrics_table(ev), ""]
        lines += [f"On {data_text(ev['data'])}; classes {', '.join(ev['classes'])}; groups "
                  f"{', '.join(ev['groups'])}.", ""]  # fmt: skip
    pre = card["preprocessing"]
    lines += [
        "## Preprocessing",
        "",
        f"RGB images resized ({_resize_text(pre)}, {pre['interpolation']}) to {pre['image_size'][0]} x "
        f"{pre['image_size'][1]}, scaled to 0..1, normalised with mean {pre['mean']} and std {pre['std']}, "
        "as `[N, 3, H, W]` float32.",
        "",
    ]
    files = card["files"]
    if files:
        lines += ["## Files", "", exports_table(card["exports"]).replace(_common_prefix(card["exports"]), ""), ""]
    lines += ["## How to load it", "", *_snippets(card, with_config), ""]
    if card.get("environment"):
        lines += ["## Made with", "", environment_table(card["environment"]), ""]
    lines += ["## The spec", "", "```yaml", card["spec"].rstrip(), "```", ""]
    return "\n".join(lines)


def _common_prefix(exports: Mapping[str, Any]) -> str:
    """The folder part of the exported paths (the table names files by their name in this folder)."""
    paths = [v["path"] if isinstance(v, Mapping) else v for v in exports.values()]
    parents = {str(Path(p).parent) for p in paths}
    return f"{parents.pop()}/" if len(parents) == 1 and parents != {"."} else ""


def _metrics_table(ev: Mapping[str, Any]) -> str:
    metrics = ev["metrics"]
    names = list(metrics)
    rows = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in (("acc_avg", "average"), ("acc_wg", "worst group"), ("acc_mean_group", "mean per group"),
                       ("adj_acc_avg", "adjusted average")):  # fmt: skip
        values = [metrics[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        rows.append(f"| {label} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in values) + " |")
    return "\n".join(rows)


def _base_load(model: Mapping[str, Any]) -> str:
    if model.get("toyworld"):
        return "bb = editclip.toyworld.load()"
    if model.get("checkpoint"):
        config = f", config={model['config']!r}" if isinstance(model.get("config"), str) else ""
        return f"bb = editclip.load(checkpoint={model['checkpoint']!r}{config})"
    return f"bb = editclip.load({model['name']!r}, pretrained={model.get('pretrained')!r})"


def _resize_text(pre: Mapping[str, Any]) -> str:
    """How images are resized: open_clip's resize mode, or a transformers processor's shortest edge + crop."""
    if pre.get("resize_size"):
        return f"shortest edge to {pre['resize_size']} px, then centre crop, as the transformers image processor"
    return str(pre["resize_mode"])


def _snippets(card: Mapping[str, Any], with_config: bool) -> list[str]:
    files = card["files"]
    out: list[str] = []
    pre = card["preprocessing"]
    if "classifier" in files:
        classes = card.get("classes") or (card.get("evaluation") or {}).get("classes")
        out += [
            f"`{files['classifier']}` maps images to class probabilities (classes in this order: "
            f"{', '.join(classes or [])}):",
            "",
            "```python",
            "import editclip",
            "from PIL import Image",
            "",
            f'classify = editclip.OnnxImageEncoder("{files["classifier"]}", providers="auto")',
            'probabilities = classify([Image.open("photo.jpg")])   # [1, classes], rows sum to 1',
            "```",
            "",
        ]
    if "onnx" in files:
        height, width = pre["image_size"]
        out += [
            f"`{files['onnx']}` with editclip (preprocessing read from the file's metadata; TensorRT, CUDA or CPU):",
            "",
            "```python",
            "import editclip",
            "from PIL import Image",
            "",
            f'encoder = editclip.OnnxImageEncoder("{files["onnx"]}", providers="auto")',
            'embeddings = encoder([Image.open("photo.jpg")])       # [1, D] float32',
            "```",
            "",
            "with onnxruntime alone:",
            "",
            "```python",
            "import numpy as np",
            "import onnxruntime as ort",
            "from PIL import Image",
            "",
            f'session = ort.InferenceSession("{files["onnx"]}", providers=["CPUExecutionProvider"])',
            f'image = Image.open("photo.jpg").convert("RGB").resize(({width}, {height}), Image.BICUBIC)',
            f"mean, std = np.array({pre['mean']}), np.array({pre['std']})",
            "x = ((np.asarray(image, np.float32) / 255 - mean) / std).astype(np.float32).transpose(2, 0, 1)[None]",
            'embeddings = session.run(None, {"image": x})[0]',
            "```",
            "",
            "(A plain resize, as here, matches the model's preprocessing for square images; for others, "
            f"resize the shorter side and centre-crop, as resize mode `{pre['resize_mode']}` does.)",
            "",
        ]
    if "safetensors" in files and card["target"] == "weights":
        model = card["base_model"]
        register = [f'open_clip.add_model_config("{CONFIG_FOLDER}")  # its config, in this folder']
        register = register if with_config else []
        out += [
            f"`{files['safetensors']}` is a stock open_clip checkpoint (no editclip needed):",
            "",
            "```python",
            "import open_clip",
            *register,
            f'model = open_clip.create_model("{model["name"]}", pretrained="{files["safetensors"]}")',
            "```",
            "",
        ]
    elif "safetensors" in files:
        out += [
            f"`{files['safetensors']}` holds the edit; it loads onto its base model only (same fingerprint):",
            "",
            "```python",
            "import editclip",
            "from editclip.export import load_edit",
            "",
            _base_load(card["base_model"]),
            f'model = load_edit("{files["safetensors"]}", bb)          # EditedCLIP: model.encode_image(images)',
            "```",
            "",
        ]
    return out
