"""Export edited models: safetensors artifacts and ONNX image encoders checked against torch.

- **Edit artifact** (:func:`save_edit` / :func:`load_edit`): the tensors of a compiled edit in one
  safetensors file, with the spec (YAML), the calibration provenance, the convention, the base model's
  source and the base weights' fingerprint in its metadata. It loads onto the base model only.
- **Patched checkpoint** (:func:`save_patched_checkpoint`): the weights target as a full open_clip state
  dict in safetensors, which stock open_clip loads with ``create_model(name, pretrained=path)``.
- **ONNX image encoder** (:func:`export_onnx`): images ``[N, 3, H, W]`` float32 -> embeddings ``[N, D]``
  float32 with a symbolic batch axis, for the base model, an EditedCLIP or a weights-patched model. The
  metadata carries what a user needs to embed images from the file alone (image size, mean/std,
  interpolation, resize mode, normalize flag) plus the spec and fingerprints. Every export is checked
  against torch with onnxruntime on held-out inputs at several batch sizes before it appears at its path.
- **Runtime** (:class:`OnnxImageEncoder`): onnxruntime session with TensorRT, CUDA or CPU, IO binding on
  GPUs, and the stored preprocessing.

See :mod:`editclip._onnx` for the exporter choice (TorchScript-based tracing) and the fp16 details.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from . import _onnx, families
from ._constants import PARITY_BATCH_SIZES
from ._io import atomic_path, clean_stale_temporaries, temp_dir
from .backbone import state_dict_fingerprint
from .checkpoints import check_readable, read_error
from .edited import EditedCLIP, EditTensors, ImageEncoder
from .errors import EditclipError

if TYPE_CHECKING:
    from ._compile import CompiledEdit
    from .backbone import Backbone

EDIT_FORMAT = "editclip-edit/1"
CHECKPOINT_FORMAT = "editclip-patched-checkpoint/1"
ONNX_FORMAT = "editclip-image-encoder/1"
FINGERPRINT_KEY = "editclip_base_fingerprint"
PREPROCESSING_KEY = "editclip_preprocessing"
END_KEY = "editclip_metadata_entries"  # the last metadata entry of an ONNX file: how many there are
EXTERNAL_DATA_THRESHOLD = 1_900_000_000  # bytes of weights above which they go to one .data file (protobuf: 2 GiB)
FP32_ATOL = 1e-4
FP16_MIN_COSINE = 0.999


# ----- safetensors ---------------------------------------------------------------------------------------------


def save_edit(path: str | os.PathLike[str], tensors: EditTensors, metadata: Mapping[str, Any]) -> Path:
    """Write an edit artifact: ``tensors`` plus ``metadata`` (e.g. :meth:`CompiledEdit.metadata`: spec YAML,
    provenance, convention, base model source, base fingerprint; non-string values are JSON-encoded)."""
    meta = _onnx.stringify(metadata)
    if not meta.get(FINGERPRINT_KEY):
        raise EditclipError(f"edit metadata needs {FINGERPRINT_KEY!r} (the base weights' fingerprint)")
    meta["format"] = EDIT_FORMAT
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.to_dict().items()}, str(tmp), metadata=meta)
    return path


def read_edit(path: str | os.PathLike[str]) -> tuple[EditTensors, dict[str, str]]:
    """The tensors and metadata of an edit artifact, without a model."""
    meta, tensors = _read_safetensors(path, EDIT_FORMAT, "an editclip edit artifact (made by save_edit)")
    return EditTensors.from_dict(tensors), meta


def load_edit(path: str | os.PathLike[str], bb: Backbone) -> EditedCLIP:
    """The edited model of an artifact on ``bb``; refuses weights other than those the edit was made for."""
    tensors, meta = read_edit(path)
    check_base(meta, bb, path)
    return EditedCLIP(bb.model, tensors)


def recorded_preprocessing(meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The preprocessing an artifact or ONNX file records (None when it records none)."""
    if meta.get(PREPROCESSING_KEY):
        return json.loads(meta[PREPROCESSING_KEY])
    return json.loads(meta.get("editclip_base_model", "{}") or "{}").get("preprocessing")


def check_base(meta: Mapping[str, str], bb: Backbone, path: str | os.PathLike[str]) -> None:
    """Raise unless ``bb`` has the base weights and the preprocessing recorded in ``meta``."""
    from .backbone import describe_preprocessing

    expected = meta.get(FINGERPRINT_KEY)
    if expected != bb.fingerprint:
        base = json.loads(meta.get("editclip_base_model", "{}") or "{}").get("name", "?")
        raise EditclipError(
            f"{str(path)!r} was compiled for {base!r} weights with fingerprint {expected}, but the model given "
            f"({bb.model_id!r}) has fingerprint {bb.fingerprint}; load the base model it was made for"
        )
    recorded = recorded_preprocessing(meta)
    if recorded is None:
        raise EditclipError(
            f"{str(path)!r} does not record the preprocessing it was calibrated with (an older editclip made it); "
            "compile it again with `editclip run`"
        )
    if recorded != bb.preprocessing:
        raise EditclipError(
            f"{str(path)!r} was calibrated with preprocessing {describe_preprocessing(recorded)}, but the model given "
            f"preprocesses with {describe_preprocessing(bb.preprocessing)}; give the model the artifact's "
            "preprocessing (its model config's preprocess_cfg)"
        )


def save_patched_checkpoint(
    path: str | os.PathLike[str], state_dict: Mapping[str, Tensor], metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a full open_clip state dict (the weights target) as safetensors, loadable by stock open_clip
    with ``open_clip.create_model(name, pretrained=path)``; ``metadata`` is kept for provenance."""
    seen: set[int] = set()
    tensors = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen and tensor.numel():  # safetensors refuses shared storage
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[name] = tensor
    meta = {**_onnx.stringify(metadata or {}), "format": CHECKPOINT_FORMAT}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The string metadata of a safetensors file (empty when it has none)."""
    check_readable(path, "file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (OSError, ValueError, SafetensorError) as err:
        raise EditclipError(f"{str(path)!r} is not a readable safetensors file (truncated or corrupt): {err}") from None


def _read_safetensors(path: str | os.PathLike[str], fmt: str, what: str) -> tuple[dict[str, str], dict[str, Tensor]]:
    if not Path(path).is_file():
        raise EditclipError(f"{str(path)!r} does not exist")
    meta = read_metadata(path)
    if meta.get("format") != fmt:
        raise EditclipError(f"{str(path)!r} is not {what}; its format is {meta.get('format')!r}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (OSError, SafetensorError) as err:
        raise read_error(path, err, "edit artifact") or EditclipError(f"cannot read {str(path)!r}: {err}") from None
    return meta, tensors


# ----- ONNX ----------------------------------------------------------------------------------------------------


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


def _pad(options: Sequence[Mapping[str, Any]], count: int) -> list[dict[str, Any]]:
    """One options dict per provider (onnxruntime wants as many as providers)."""
    return [dict(o) for o in options][:count] + [{}] * max(0, count - len(options))


class OnnxImageEncoder:
    """Embed images with an exported ONNX image encoder, using only what the file stores.

    ``providers``: ``auto`` (TensorRT, then CUDA, then CPU, as this onnxruntime has them), ``cpu``, ``cuda``,
    ``tensorrt`` or a list of onnxruntime provider names; ``provider_options`` go to them in order. On
    CUDA/TensorRT, inputs and outputs are bound on the device (IO binding). ``optimization``: graph
    optimisation level (default 'all' for fp32 files, 'extended' for fp16 ones, see
    :func:`editclip._onnx.session_options`). A zero-shot classifier file (``editclip export --classes``)
    runs the same way and returns class probabilities [N, C]; ``classes`` names them (None for encoders).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        providers: str | Sequence[str] = "auto",
        *,
        threads: int | None = None,
        optimization: str | None = None,
        provider_options: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise EditclipError(f"ONNX model {str(self.path)!r} does not exist")
        chosen = _onnx.select_providers(providers)
        options = _onnx.session_options(self._precision_of(self.path), threads, optimization)
        try:
            with warnings.catch_warnings():
                if providers == "auto":  # a GPU provider that cannot start here: fall back, one line below
                    warnings.simplefilter("ignore")
                self.session = ort.InferenceSession(
                    str(self.path),
                    options,
                    providers=chosen,
                    provider_options=_pad(provider_options, len(chosen)) if provider_options else None,
                )
        except Exception as err:  # onnxruntime raises its own exception types
            raise EditclipError(f"onnxruntime could not load {str(self.path)!r}: {err}") from err
        self.providers: list[str] = self.session.get_providers()
        if providers == "auto" and self.providers[0] != chosen[0]:
            print(f"editclip: {self.path.name} runs on {self.providers[0]} ({chosen[0]} is not usable on this "
                  "machine)", file=sys.stderr)  # fmt: skip
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get(END_KEY) != str(len(self.metadata)):
            raise EditclipError(
                f"ONNX model {str(self.path)!r} is cut short (its metadata is incomplete) or was not written by this "
                "editclip; export it again"
            )
        del self.metadata[END_KEY]
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.precision = self.metadata.get("precision", "fp32")
        shape = self.session.get_inputs()[0].shape
        stored = json.loads(self.metadata["image_size"]) if "image_size" in self.metadata else shape[2:]
        self.image_size: tuple[int, int] = (int(stored[0]), int(stored[1]))
        self.mean = np.asarray(
            json.loads(self.metadata.get("mean", "[0.48145466, 0.4578275, 0.40821073]")), dtype=np.float32
        )
        self.std = np.asarray(
            json.loads(self.metadata.get("std", "[0.26862954, 0.26130258, 0.27577711]")), dtype=np.float32
        )
        self.interpolation = self.metadata.get("interpolation", "bicubic")
        self.resize_mode = self.metadata.get("resize_mode", "shortest")
        self.fill_color = int(self.metadata.get("fill_color", "0"))
        self.normalize = self.metadata.get("normalize", "false") == "true"
        self.classes: list[str] | None = json.loads(self.metadata["classes"]) if "classes" in self.metadata else None
        self.on_gpu = self.providers[0] in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        self.device_id = int(self.session.get_provider_options().get(self.providers[0], {}).get("device_id", 0))

    @staticmethod
    def _precision_of(path: Path) -> str:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:  # protobuf's DecodeError and friends: a truncated or corrupt file
            raise EditclipError(
                f"ONNX model {str(path)!r} cannot be read (truncated or not an ONNX file: {type(err).__name__}); "
                "export it again"
            ) from None
        return next((p.value for p in model.metadata_props if p.key == "precision"), "fp32")

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """PIL images -> [N, 3, H, W] float32 with the stored resize, crop and mean/std."""
        return np.stack(
            [
                _onnx.preprocess_image(
                    im, self.image_size, self.mean, self.std, self.interpolation, self.resize_mode, self.fill_color
                )
                for im in images
            ]
        )

    def __call__(self, images: Sequence[Any] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """[N, D] float32 embeddings of PIL images, or of preprocessed [N, 3, H, W] arrays."""
        outputs = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            batch = np.asarray(chunk, dtype=np.float32) if isinstance(images, np.ndarray) else self.preprocess(chunk)
            outputs.append(self.run(batch))
        if not outputs:
            return np.zeros((0, self.session.get_outputs()[0].shape[1]), dtype=np.float32)
        return np.concatenate(outputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """One preprocessed batch [N, 3, H, W] -> [N, D] float32."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != (3, *self.image_size):
            raise EditclipError(
                f"expected images [N, 3, {self.image_size[0]}, {self.image_size[1]}]; got {list(batch.shape)}"
            )
        if not self.on_gpu:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        import onnxruntime as ort

        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(batch, "cuda", self.device_id))
        binding.bind_output(self.output_name, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def run_torch(self, images: Tensor) -> Tensor:
        """A float32 torch batch -> embeddings, zero-copy on the GPU when the session runs there (IO binding on
        the tensors' memory); on the CPU provider through numpy."""
        if not (self.on_gpu and images.is_cuda):
            return torch.from_numpy(self.run(images.detach().float().cpu().numpy())).to(images.device)
        images = images.detach().float().contiguous()
        dim = self.session.get_outputs()[0].shape[1]
        out = torch.empty(images.shape[0], dim, dtype=torch.float32, device=images.device)
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name, "cuda", images.device.index or 0, np.float32, list(images.shape), images.data_ptr()
        )
        binding.bind_output(
            self.output_name, "cuda", out.device.index or 0, np.float32, list(out.shape), out.data_ptr()
        )
        torch.cuda.current_stream(images.device).synchronize()
        self.session.run_with_iobinding(binding)
        return out


# ----- compiled edits ------------------------------------------------------------------------------------------


def model_metadata(bb: Backbone, kind: str = "base") -> dict[str, str]:
    """Metadata naming the model of an export: kind (base, edited or patched), id, base source and
    fingerprint, and the fingerprint of the weights themselves (override it for patched weights)."""
    from .store import model_source

    return {
        "kind": kind,
        "model_id": bb.model_id,
        "editclip_base_model": json.dumps(model_source(bb)),
        FINGERPRINT_KEY: bb.fingerprint,
        "weights_fingerprint": bb.fingerprint,
        PREPROCESSING_KEY: json.dumps(bb.preprocessing),
    }


def export_compiled(
    compiled: CompiledEdit,
    folder: str | os.PathLike[str],
    formats: Sequence[str] = ("safetensors", "onnx"),
    *,
    fp16: bool = False,
    normalize: bool = False,
    opset: int = 18,
) -> dict[str, Any]:
    """Write a compiled edit's artifacts into ``folder``: ``edit.safetensors`` (wrapper target) or the weights
    target in the family's stock format (open_clip: ``patched.safetensors``; transformers: a ``patched/``
    folder for ``from_pretrained``), and ``model.onnx`` (checked against torch). Returns the paths written
    (and the ONNX parity)."""
    folder = Path(folder)
    weights = compiled.spec.target == "weights"
    meta = {**model_metadata(compiled.backbone, "patched" if weights else "edited"), **compiled.metadata()}
    written: dict[str, Any] = {}
    if "safetensors" in formats:
        if weights:
            patched = compiled.patched_model()
            meta["weights_fingerprint"] = state_dict_fingerprint(patched.state_dict())
            path = families.save_weights(compiled.backbone, patched, folder, meta)
        else:
            path = save_edit(folder / "edit.safetensors", compiled.tensors, meta)
        written["safetensors"] = str(path)
    if "onnx" in formats:
        model = compiled.patched_model() if weights else compiled.wrapper()
        if weights:
            meta["weights_fingerprint"] = state_dict_fingerprint(model.state_dict())
        report = export_onnx(model, folder / "model.onnx", fp16=fp16, normalize=normalize, opset=opset, metadata=meta)
        written["onnx"] = report.as_dict()
    return written
