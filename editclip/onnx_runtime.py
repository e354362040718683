"""Run exported ONNX image encoders with onnxruntime: :class:`OnnxImageEncoder`.

An onnxruntime session with TensorRT, CUDA or CPU, IO binding on GPUs, and the preprocessing the file
stores in its metadata (written by :func:`editclip.onnx_export.export_onnx`).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import _onnx
from ._constants import PREPROCESSING_KEY
from .errors import EditclipError

ONNX_FORMAT = "editclip-image-encoder/1"
END_KEY = "editclip_metadata_entries"  # the last metadata entry of an ONNX file: how many there are


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
        self.transform = _record_transform(self.metadata.get(PREPROCESSING_KEY))
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
        """PIL images -> [N, 3, H, W] float32 with the stored resize, crop and mean/std (a transformers model's: its
        image processor's own operations)."""
        if self.transform is not None:
            return np.stack([self.transform(im).numpy() for im in images])
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


def _record_transform(stored: str | None) -> Any:
    """The transform of a stored record whose pipeline is not open_clip's (None for open_clip's: see preprocess)."""
    record = json.loads(stored) if stored else {}
    if not record.get("pipeline"):
        return None
    from .backbone import transform_of

    return transform_of(record)
