"""transformers image processors reproduced exactly: settings -> preprocessing record -> the same pixel values.

transformers 5's ``CLIPImageProcessor`` and ``SiglipImageProcessor`` (the torchvision backend, the default) turn
a PIL image into ``pixel_values`` as follows, and :class:`HFImageTransform` does the same operations:

1. RGB: an image with transparency is composited onto white, any other mode converted (``do_convert_rgb``);
2. resize the uint8 tensor with torchvision (antialias on): the shortest edge to ``size.shortest_edge`` (the
   long edge ``int(short * long / short_edge)``), or to ``size.height x size.width``;
3. centre crop to ``crop_size`` with the offset rounded down (padding with 0 where the image is smaller);
4. ``(pixels - 255 mean) / (255 std)`` in float32 (rescale by 1/255 fused with the normalisation).

The record keeps open_clip's keys (size = the output size, mean, std, interpolation, resize_mode ``shortest``
or ``squash``, fill colour) plus ``pipeline: transformers`` and, for ``shortest``, ``resize_size`` (the shortest
edge before the crop, e.g. 256 for a 224 crop). A setting editclip cannot reproduce is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .errors import EditclipError

PIPELINE = "transformers"
RESCALE = 1 / 255
# PIL resample codes -> torchvision interpolation (transformers' pil_torch_interpolation_mapping)
RESAMPLE = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_RESAMPLE_NAMES = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
# the processor classes whose defaults fill keys a preprocessor_config.json leaves out
CLIP_DEFAULTS = {"do_resize": True, "resample": 3, "do_center_crop": True, "do_rescale": True,
                 "rescale_factor": RESCALE, "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
                 "image_std": [0.26862954, 0.26130258, 0.27577711], "do_convert_rgb": True,
                 "default_to_square": False}  # fmt: skip
SIGLIP_DEFAULTS = {"do_resize": True, "resample": 3, "do_center_crop": False, "do_rescale": True,
                   "rescale_factor": RESCALE, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                   "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True, "default_to_square": False}  # fmt: skip
PROCESSOR_TYPES = {"CLIPImageProcessor": CLIP_DEFAULTS, "CLIPImageProcessorFast": CLIP_DEFAULTS,
                   "CLIPFeatureExtractor": CLIP_DEFAULTS, "SiglipImageProcessor": SIGLIP_DEFAULTS,
                   "SiglipImageProcessorFast": SIGLIP_DEFAULTS}  # fmt: skip
_SIZE_KEYS = ({"shortest_edge"}, {"height", "width"})


def default_settings(family: str, image_size: tuple[int, int]) -> dict[str, Any]:
    """The processor a transformers model of ``family`` gets without a preprocessor_config.json."""
    h, w = image_size
    if family == "transformers-siglip":
        return {"image_processor_type": "SiglipImageProcessor", "size": {"height": h, "width": w}}
    return {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": min(h, w)},
            "crop_size": {"height": h, "width": w}}  # fmt: skip


def record_from_settings(settings: Mapping[str, Any], image_size: tuple[int, int], model_id: str) -> dict[str, Any]:
    """The preprocessing record of an image processor's settings (``preprocessor_config.json`` or ``to_dict()``)
    for a model taking ``image_size`` images; EditclipError naming any setting editclip cannot reproduce."""
    kind = settings.get("image_processor_type") or settings.get("feature_extractor_type")
    if kind not in PROCESSOR_TYPES:
        raise EditclipError(
            f"model {model_id!r}: image processor {kind!r} is not one editclip reproduces "
            f"({', '.join(sorted(PROCESSOR_TYPES))}; the PIL-backend classes resample differently)"
        )
    s = {**PROCESSOR_TYPES[kind], **{k: v for k, v in settings.items() if v is not None}}

    def refuse(setting: str, why: str) -> EditclipError:
        return EditclipError(f"model {model_id!r}: image processor {setting}={s.get(setting)!r}: {why}")

    if not s["do_convert_rgb"]:
        raise refuse("do_convert_rgb", "editclip converts every image to RGB; without it grey or RGBA images differ")
    if not s["do_rescale"] or abs(float(s["rescale_factor"]) - RESCALE) > 1e-12:
        key = "do_rescale" if not s["do_rescale"] else "rescale_factor"
        raise refuse(key, "editclip reproduces pixel values rescaled by 1/255 only")
    if s.get("do_pad"):
        raise refuse("do_pad", "padding to a size is not reproduced")
    if not s["do_resize"]:
        raise refuse("do_resize", "images must be resized to the model's size")
    resample = s["resample"]
    if resample not in RESAMPLE:
        name = _RESAMPLE_NAMES.get(resample, "unknown")
        raise refuse("resample", f"{name} is not reproduced; editclip takes {sorted(RESAMPLE)} (nearest, bilinear, "
                                 "bicubic)")  # fmt: skip
    if s["do_normalize"]:
        mean, std = [float(v) for v in s["image_mean"]], [float(v) for v in s["image_std"]]
        for key, values in (("image_mean", mean), ("image_std", std)):
            if len(values) != 3:
                raise refuse(key, "needs one value per RGB channel (3)")
        if min(abs(v) for v in std) == 0:
            raise refuse("image_std", "a zero standard deviation divides by zero")
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    size = _size(s, "size", square=bool(s["default_to_square"]), refuse=refuse)
    if s["do_center_crop"]:
        out = _size(s, "crop_size", square=True, refuse=refuse)
        out = (out["height"], out["width"])
    elif "height" in size:
        out = (size["height"], size["width"])
    else:
        raise refuse("do_center_crop", f"without a crop, size {s['size']} keeps each image's aspect ratio, so the "
                                       "model's square input cannot be reproduced")  # fmt: skip
    if tuple(out) != tuple(image_size):
        key = "crop_size" if s["do_center_crop"] else "size"
        raise refuse(key, f"the processor makes {out[0]}x{out[1]} images but the model takes "
                          f"{image_size[0]}x{image_size[1]}")  # fmt: skip
    record: dict[str, Any] = {"size": list(out), "mode": "RGB", "mean": mean, "std": std,
                              "interpolation": RESAMPLE[resample], "fill_color": 0, "pipeline": PIPELINE}  # fmt: skip
    if "shortest_edge" in size:
        record.update(resize_mode="shortest", resize_size=int(size["shortest_edge"]))
    else:
        record["resize_mode"] = "squash"
        if s["do_center_crop"] and (size["height"], size["width"]) != tuple(out):
            raise refuse("size", f"resizing to {size['height']}x{size['width']} and cropping {out[0]}x{out[1]} is "
                                 "not reproduced")  # fmt: skip
    return record


def _size(s: dict[str, Any], key: str, *, square: bool, refuse: Any) -> dict[str, int]:
    value = s.get(key)
    if isinstance(value, int):
        return {"height": value, "width": value} if square else {"shortest_edge": value}
    if not isinstance(value, Mapping) or {k for k, v in value.items() if v is not None} not in _SIZE_KEYS:
        raise refuse(key, "editclip takes {'shortest_edge': N} or {'height': H, 'width': W}")
    if key == "crop_size" and "height" not in value:
        raise refuse(key, "a crop needs height and width")
    return {k: int(v) for k, v in value.items() if v is not None}


class HFImageTransform:
    """PIL image -> [3, H, W] float32, exactly as transformers' torchvision image processor with ``record``'s
    settings (see the module docstring for the steps)."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        from torchvision.transforms import InterpolationMode

        self.size = (int(record["size"][0]), int(record["size"][1]))
        self.resize_size = record.get("resize_size")
        self.squash = record["resize_mode"] == "squash"
        if not self.squash and (record["resize_mode"] != "shortest" or self.resize_size is None):
            raise EditclipError(f"preprocessing record {dict(record)} has no reproducible resize")
        self.interpolation = InterpolationMode(record["interpolation"])
        self.mean = torch.tensor(record["mean"], dtype=torch.float32) * (1.0 / RESCALE)
        self.std = torch.tensor(record["std"], dtype=torch.float32) * (1.0 / RESCALE)

    def __call__(self, image: Any) -> torch.Tensor:
        import numpy as np
        import torchvision.transforms.v2.functional as F

        pixels = torch.from_numpy(np.array(_rgb(image))).permute(2, 0, 1).contiguous()
        pixels = F.resize(pixels, list(self._resized(pixels.shape[-2:])), interpolation=self.interpolation,
                          antialias=True)  # fmt: skip
        pixels = _center_crop(pixels, self.size)
        return F.normalize(pixels.to(torch.float32), self.mean.tolist(), self.std.tolist())

    def _resized(self, hw: Any) -> tuple[int, int]:
        if self.squash:
            return self.size
        h, w = int(hw[0]), int(hw[1])
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def __repr__(self) -> str:
        how = "squash" if self.squash else f"shortest edge {self.resize_size}, centre crop"
        return f"HFImageTransform({self.size[0]}x{self.size[1]}, {how}, {self.interpolation.value})"


def _rgb(image: Any) -> Any:
    """transformers' convert_to_rgb: transparency composited onto white, other modes converted."""
    from PIL import Image

    if "A" in image.getbands() or image.info.get("transparency") is not None:
        image = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image).convert("RGB")
    return image.convert("RGB")


def _center_crop(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    import torchvision.transforms.v2.functional as F

    th, tw = size
    h, w = pixels.shape[-2:]
    if th > h or tw > w:
        pad = [(tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0,
               (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0]  # fmt: skip
        pixels = F.pad(pixels, pad, fill=0)
        h, w = pixels.shape[-2:]
    return F.crop(pixels, int((h - th) / 2.0), int((w - tw) / 2.0), th, tw)
