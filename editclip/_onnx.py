"""ONNX plumbing for :mod:`editclip.export`: tracing, fp16 conversion, saving, sessions and preprocessing.

Exporter: the TorchScript-based one (``torch.onnx.export(..., dynamo=False)``), chosen deliberately.
EditedCLIP's forward decides in Python which edits exist (``if tensors.numel()``, ``bool(ablate_embed)``)
and caches folded weights per tower; tracing records the one graph those decisions give, with the edit
tensors as constants, whereas ``torch.export`` (the dynamo exporter) refuses the data-dependent branch.
Tracing also takes a symbolic batch axis from ``dynamic_axes`` whatever the example batch; we still trace
with a batch of 2 and check that the exported input's batch axis is symbolic. open_clip's
``nn.MultiheadAttention`` fast path (a fused op with no ONNX symbolic) is switched off while tracing.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import EditclipError

INPUT_NAME = "image"
OUTPUT_NAME = "embedding"
MIN_OPSET = 17
MAX_OPSET = 20  # the TorchScript exporter's highest
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_PROVIDER_ALIASES = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def trace_to_file(
    module: nn.Module, path: Path, image_size: tuple[int, int], opset: int, output_name: str = OUTPUT_NAME
) -> None:
    """Trace ``module`` (images -> embeddings, or ``output_name``) into ``path`` with a symbolic batch axis."""
    device = next(module.parameters()).device
    example = torch.randn(2, 3, *image_size, generator=torch.Generator().manual_seed(0)).to(device)
    with _mha_fastpath_off(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings on Python-level branches; the exporter's deprecation note
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[output_name],
            dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )


def check_dynamic_batch(model: Any) -> None:
    """Refuse a graph whose image input has a fixed batch size."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise EditclipError(f"the exported graph has a fixed batch size ({dim.dim_value}); expected a symbolic one")


def to_fp16(model: Any) -> Any:
    """fp16 weights and activations, fp32 input and output (``keep_io_types``).

    The converter leaves ``Cast(to=float)`` nodes as they are (no-op casts in the fp32 graph, such as
    LayerNormFp32's, and int -> float casts of shapes), which would mix types: they become casts to fp16,
    before the conversion, or after it for a cast that yields the graph output (the converter appends an
    fp16 -> fp32 cast there, and would drop a pair of back-to-back casts at the output and fail). Shape
    inference is skipped: it serialises the model, which fails over 2 GB.
    """
    from onnx import TensorProto
    from onnxconverter_common import float16

    outputs = {value.name for value in model.graph.output}
    at_output = []
    for node in model.graph.node:
        to = next((attr for attr in node.attribute if attr.name == "to"), None)
        if node.op_type == "Cast" and to is not None and to.i == TensorProto.FLOAT:
            if node.output[0] in outputs:
                at_output.append(node.name)
            else:
                to.i = TensorProto.FLOAT16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the float32 number 1e-12 will be truncated to 1e-07" (LayerNorm eps consts)
        converted = float16.convert_float_to_float16(
            model, keep_io_types=True, disable_shape_infer=True, check_fp16_ready=False
        )
    for node in converted.graph.node:
        if node.op_type == "Cast" and node.name in at_output:
            next(attr for attr in node.attribute if attr.name == "to").i = TensorProto.FLOAT16
    return converted


def weight_bytes(model: Any) -> int:
    """Bytes of the initializers (raw data and typed fields)."""
    from onnx import numpy_helper

    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.raw_data else numpy_helper.to_array(init).nbytes
    return total


def set_metadata(model: Any, metadata: Mapping[str, str]) -> None:
    """Replace the model's metadata_props with ``metadata``."""
    del model.metadata_props[:]
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def save(model: Any, path: Path, external: bool) -> Path | None:
    """Save ``model``; with ``external``, all weights go to one file ``<name>.data`` beside it (returned)."""
    import onnx

    if not external:
        onnx.save_model(model, str(path))
        return None
    data = path.with_name(path.name + ".data")
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    return data


def stringify(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Metadata values as strings: strings as they are, everything else JSON-encoded."""
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def select_providers(providers: str | Sequence[str] = "auto") -> list[str]:
    """Execution providers to use: ``auto`` (TensorRT, CUDA, CPU as available), ``cpu``, ``cuda``, ``tensorrt``
    or a list of onnxruntime provider names. Asking for one this onnxruntime lacks is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if isinstance(providers, str):
        if providers == "auto":
            return [p for p in PROVIDER_ORDER if p in available]
        if providers not in _PROVIDER_ALIASES:
            raise EditclipError(f"providers {providers!r}: use auto, {', '.join(_PROVIDER_ALIASES)} or a list of names")
        wanted = list(_PROVIDER_ALIASES[providers])
    else:
        wanted = list(providers)
    missing = [p for p in wanted if p not in available]
    if missing:
        hint = " (install onnxruntime-gpu for CUDA and TensorRT)" if "CPUExecutionProvider" not in missing else ""
        raise EditclipError(
            f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
            f"{ort.__version__}; available: {', '.join(available)}{hint}"
        )
    return wanted


def session_options(precision: str, threads: int | None, optimization: str | None) -> Any:
    """Session options. The graph optimisation level is 'all' for fp32 graphs and 'extended' for fp16 ones:
    onnxruntime's CPU provider crashes (segfault) on fp16 ViT graphs at 'all' (seen with 1.32), and the
    layout transforms that 'all' adds are for the CPU provider anyway."""
    import onnxruntime as ort

    level = optimization or ("extended" if precision == "fp16" else "all")
    if level not in OPTIMIZATION_LEVELS:
        raise EditclipError(f"optimization {level!r}: choose one of {', '.join(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return options


# ----- preprocessing from stored metadata (PIL, as open_clip's eval transform) ---------------------------------


def _interpolation(name: str) -> Any:
    from PIL import Image

    table = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
        "lanczos": Image.Resampling.LANCZOS,
    }
    if name not in table:
        raise EditclipError(f"interpolation {name!r} in the model's metadata is not one of {sorted(table)}")
    return table[name]


def _resized_size(src: tuple[int, int], target: tuple[int, int], mode: str) -> tuple[int, int]:
    """(height, width) after open_clip's resize step for ``mode``."""
    h, w = src
    th, tw = target
    if mode == "squash":
        return target
    if mode == "shortest" and th == tw:  # torchvision Resize(int): shorter side -> th
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(th * long / short)
        return (new_long, th) if w <= h else (th, new_long)
    ratio = max(h / th, w / tw) if mode == "longest" else min(h / th, w / tw)  # ResizeKeepRatio
    return round(h / ratio), round(w / ratio)


def preprocess_image(
    image: Any,
    size: tuple[int, int],
    mean: np.ndarray,
    std: np.ndarray,
    interpolation: str,
    resize_mode: str,
    fill: int = 0,
) -> np.ndarray:
    """One PIL image -> [3, H, W] float32: resize (open_clip's mode), center crop or pad, normalise."""
    from PIL import Image

    if resize_mode not in ("shortest", "longest", "squash"):
        raise EditclipError(f"resize_mode {resize_mode!r} in the model's metadata is not shortest, longest or squash")
    image = image.convert("RGB")
    h, w = _resized_size((image.height, image.width), size, resize_mode)
    image = image.resize((w, h), _interpolation(interpolation))
    th, tw = size
    if h < th or w < tw:  # pad (center), as torchvision's center_crop and open_clip's CenterCropOrPad do
        canvas = Image.new("RGB", (max(w, tw), max(h, th)), (fill,) * 3)
        canvas.paste(image, ((max(w, tw) - w) // 2, (max(h, th) - h) // 2))
        image, h, w = canvas, max(h, th), max(w, tw)
    top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
    image = image.crop((left, top, left + tw, top + th))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - mean) / std).transpose(2, 0, 1)

