"""Export image encoders to ONNX and check every file against torch before it appears at its path.

**ONNX image encoder** (:func:`export_onnx`): images ``[N, 3, H, W]`` float32 -> embeddings ``[N, D]``
float32 with a symbolic batch axis, for the base model, an EditedCLIP or a weights-patched model. The
metadata carries what a user needs to embed images from the file alone (image size, mean/std,
interpolation, resize mode, normalize flag) plus the spec and fingerprints. Every export is checked
against torch with onnxruntime (:func:`check_parity`) on held-out inputs at several batch sizes.

See :mod:`editclip._onnx` for the exporter choice (TorchScript-based tracing) and the fp16 details.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import _onnx, families
from ._constants import PARITY_BATCH_SIZES
from ._io import clean_stale_temporaries, temp_dir
from .artifacts import PREPROCESSING_KEY
from .edited import EditedCLIP, ImageEncoder
from .errors import EditclipError
from .onnx_runtime import END_KEY, ONNX_FORMAT, OnnxImageEncoder

EXTERNAL_DATA_THRESHOLD = 1_900_000_000  # bytes of weights above which they go to one .data file (protobuf: 2 GiB)
FP32_ATOL = 1e-4
FP16_MIN_COSINE = 0.999


@dataclass
class Parity:
    """How an exported file compares with torch on held-out random inputs."""

    provider: str
    batch_sizes: tuple[int, ...]
    max_abs_diff: float
    min_cosine: float
    fp16: bool

    @property
    def passed(self) -> bool:
        return self.min_cosine >= FP16_MIN_COSINE if self.fp16 else self.max_abs_diff <= FP32_ATOL

    @property
    def criterion(self) -> str:
        return f"cosine >= {FP16_MIN_COSINE}" if self.fp16 else f"max abs diff <= {FP32_ATOL:g}"

    def describe(self) -> str:
        sizes = ",".join(map(str, self.batch_sizes))
        return (
            f"{self.provider} batch {sizes}: max abs diff {self.max_abs_diff:.3g}, min cosine "
            f"{self.min_cosine:.7f} ({'pass' if self.passed else 'FAIL'}: {self.criterion})"
        )


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how it compared with torch."""

    path: Path
    data_path: Path | None
    opset: int
    fp16: bool
    normalize: bool
    image_size: tuple[int, int]
    size_bytes: int
    export_seconds: float
    parity: Parity | None
    metadata: dict[str, str] = field(repr=False)

    def summary(self) -> str:
        data = f" + {self.data_path.name}" if self.data_path else ""
        check = self.parity.describe() if self.parity else "parity not checked"
        return (
            f"{self.path}{data} ({self.size_bytes / 2**20:.1f} MiB, opset {self.opset}, "
            f"{'fp16' if self.fp16 else 'fp32'}, normalize={self.normalize}, {self.export_seconds:.1f} s); "
            f"{check}"
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"], out["data_path"] = str(self.path), str(self.data_path) if self.data_path else None
        if self.parity:
            out["parity"]["passed"] = self.parity.passed
        return out


def preprocess_metadata(model: nn.Module) -> dict[str, Any]:
    """Image size, mean/std, interpolation, resize mode and fill colour of a model (or an EditedCLIP), as
    separate keys for the runtime, and the whole record under ``editclip_preprocessing``."""
    from .backbone import preprocessing_record

    record = preprocessing_record(model.model if isinstance(model, EditedCLIP) else model)
    return {
        "image_size": record["size"],
        "mean": record["mean"],
        "std": record["std"],
        "interpolation": record["interpolation"],
        "resize_mode": record["resize_mode"],
        "fill_color": record["fill_color"],
        **{k: record[k] for k in ("pipeline", "resize_size") if k in record},  # a transformers image processor's
        PREPROCESSING_KEY: record,
    }


def export_onnx(
    module: nn.Module,
    path: str | os.PathLike[str],
    image_size: int | tuple[int, int] | None = None,
    *,
    opset: int = 18,
    fp16: bool = False,
    normalize: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
    check: bool = True,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    providers: str | Sequence[str] = "cpu",
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
) -> ExportReport:
    """Export an image encoder to ONNX and check it against torch.

    Args:
        module: an :class:`~editclip.edited.ImageEncoder`, or a model with ``encode_image`` (open_clip CLIP,
            EditedCLIP, a weights-patched CLIP) to wrap in one.
        image_size: the input size (default: the model's).
        normalize: L2-normalise the output (default: the ImageEncoder's setting, else False).
        metadata: extra metadata (spec, fingerprints, kind...); values that are not strings are JSON-encoded.
        check: run the file with onnxruntime (``providers``) at ``batch_sizes`` on held-out random inputs and
            compare with torch (fp32: max abs diff <= 1e-4; fp16: cosine >= 0.999). A failure raises
            EditclipError and leaves nothing at ``path``.
        external_data_threshold: weights larger than this (bytes) go to one ``<path>.data`` file.
    """
    target = Path(path)
    if target.suffix != ".onnx":
        raise EditclipError(f"ONNX output {str(target)!r} should end in .onnx")
    if not _onnx.MIN_OPSET <= opset <= _onnx.MAX_OPSET:
        raise EditclipError(f"opset {opset} is not supported; choose {_onnx.MIN_OPSET}..{_onnx.MAX_OPSET}")
    if check and (not batch_sizes or min(batch_sizes) < 1):
        raise EditclipError(f"parity batch sizes must be >= 1; got {list(batch_sizes)}")
    encoder = _encoder(module, normalize)
    dtype = next(encoder.parameters()).dtype
    if dtype != torch.float32:
        raise EditclipError(f"export takes an fp32 model (this one is {dtype}); pass fp16=True for an fp16 ONNX file")
    output_name = getattr(encoder, "output_name", _onnx.OUTPUT_NAME)  # "probabilities" for classifiers
    pre = preprocess_metadata(encoder.model)
    size = _size(image_size) if image_size is not None else tuple(pre["image_size"])
    pre["image_size"] = list(size)
    meta = _onnx.stringify(
        {
            "format": ONNX_FORMAT,
            **pre,
            "normalize": encoder.normalize,
            "precision": "fp16" if fp16 else "fp32",
            "opset": opset,
            "input": _onnx.INPUT_NAME,
            "output": output_name,
            "editclip_version": _version(),
            **(metadata or {}),
        }
    )
    import onnx

    start = time.perf_counter()
    clean_stale_temporaries(target.parent)  # what a killed export left behind
    work = temp_dir(target)
    try:
        (work / "trace").mkdir()
        raw = work / "trace" / "traced.onnx"
        encoder.eval()
        _onnx.trace_to_file(encoder, raw, size, opset, output_name)
        model = onnx.load(str(raw))
        shutil.rmtree(work / "trace")  # the traced file (and its weight files, over 2 GB): no longer needed
        _onnx.check_dynamic_batch(model)
        if fp16:
            model = _onnx.to_fp16(model)
        _onnx.set_metadata(model, {**meta, END_KEY: str(len(meta) + 1)})  # last: a cut-short file lacks it
        staged = work / target.name
        data = _onnx.save(model, staged, external=_onnx.weight_bytes(model) > external_data_threshold)
        del model
        seconds = time.perf_counter() - start
        parity = None
        if check:
            parity = check_parity(staged, encoder, batch_sizes=batch_sizes, providers=providers)
            if not parity.passed:
                raise EditclipError(
                    f"ONNX export of {target.name} failed its parity check against torch: "
                    f"{parity.describe()}; nothing was written"
                )
        final_data = target.with_name(target.name + ".data")
        if data is not None:
            os.chmod(data, staged.stat().st_mode & 0o777)  # onnx writes it owner-only
            os.replace(data, final_data)
        os.replace(staged, target)
        if data is None and final_data.exists():  # a stale weights file of an earlier, larger export
            final_data.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size_bytes = target.stat().st_size + (final_data.stat().st_size if data is not None else 0)
    return ExportReport(
        target,
        final_data if data is not None else None,
        opset,
        fp16,
        encoder.normalize,
        size,
        size_bytes,
        seconds,
        parity,
        meta,
    )


def _version() -> str:
    from . import __version__

    return __version__


def _encoder(module: nn.Module, normalize: bool | None) -> ImageEncoder:
    if isinstance(module, ImageEncoder):
        if normalize is None or normalize == module.normalize:
            return module
        return ImageEncoder(module.model, normalize)
    if not isinstance(module, EditedCLIP):
        try:
            families.family_of(module)
        except EditclipError:
            raise EditclipError(
                f"cannot export {type(module).__name__}: expected an ImageEncoder, an EditedCLIP or a model of a "
                f"family editclip reads ({', '.join(f.NAME for f in families.FAMILIES)})"
            ) from None
    return ImageEncoder(module, bool(normalize))


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


@torch.no_grad()
def check_parity(
    path: str | os.PathLike[str],
    module: nn.Module,
    *,
    batch_sizes: Sequence[int] = PARITY_BATCH_SIZES,
    providers: str | Sequence[str] = "cpu",
    provider_options: Sequence[Mapping[str, Any]] | None = None,
    seed: int = 1234,
) -> Parity:
    """Run the ONNX file and ``module`` (images -> embeddings, fp32 torch reference) on the same held-out random
    inputs, one batch per size, and compare (the criterion depends on the file's stored precision)."""
    encoder = OnnxImageEncoder(path, providers=providers, provider_options=provider_options)
    device = next(module.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    max_diff, min_cos = 0.0, 1.0
    for batch in batch_sizes:
        images = torch.randn(batch, 3, *encoder.image_size, generator=gen)
        want = module(images.to(device)).float().cpu().numpy()
        got = encoder.run(images.numpy())
        if got.shape != want.shape:
            raise EditclipError(
                f"ONNX output has shape {list(got.shape)} at batch {batch}; torch gives {list(want.shape)}"
            )
        max_diff = max(max_diff, float(np.abs(got - want).max()))
        cos = (got * want).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
        min_cos = min(min_cos, float(cos.min()))
    return Parity(encoder.providers[0], tuple(batch_sizes), max_diff, min_cos, encoder.precision == "fp16")
