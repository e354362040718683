"""transformers image processors reproduced exactly: editclip's preprocessing of PIL images of odd sizes and
modes equals the processor's pixel_values (shortest edge + centre crop, crop smaller than the resize, squash,
each resample), the record is kept (store, ONNX metadata, restored transform, descriptions), and every setting
editclip cannot reproduce is refused, naming it and its value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hf_models import PROCESSOR, SIGLIP_PROCESSOR, hf_clip, processor_kwargs
from PIL import Image

import editclip
from editclip._hf_load import preprocess_from_processor
from editclip._hf_preprocess import default_settings, record_from_settings
from editclip.backbone import describe_preprocessing, with_preprocessing
from editclip.errors import EditclipError

transformers = pytest.importorskip("transformers")

CROP = {**PROCESSOR, "size": {"shortest_edge": 40}, "crop_size": {"height": 32, "width": 32}}  # 256 -> 224 style
SETTINGS = {
    "clip-shortest-edge-40-crop-32-bilinear": CROP,
    "clip-crop-bicubic": {**CROP, "resample": 3},
    "clip-crop-nearest": {**CROP, "resample": 0, "size": {"shortest_edge": 45}},
    "clip-equal-edge": PROCESSOR,
    "clip-int-sizes": {**PROCESSOR, "size": 37, "crop_size": 32},
    "clip-crop-larger-than-resize": {**PROCESSOR, "size": {"shortest_edge": 24}},  # pads, as the processor does
    "siglip-squash": SIGLIP_PROCESSOR,
    "siglip-bilinear-unnormalised": {**SIGLIP_PROCESSOR, "resample": 2, "do_normalize": False},
}
SIZES = [(37, 53), (53, 37), (37, 40), (41, 41), (90, 33), (17, 70), (32, 32)]  # (37, 40): crop offset 5.5


def _image(h: int, w: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return rgb.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else rgb


def _processor(settings: dict):
    cls = getattr(transformers, settings["image_processor_type"])
    return cls(**processor_kwargs(settings))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_preprocessing_equals_the_processor_pixel_values(name):
    settings = SETTINGS[name]
    record, transform = preprocess_from_processor(settings, (32, 32), "m")
    processor = _processor(settings)
    for i, (h, w) in enumerate(SIZES):
        for mode in ("RGB", "RGBA", "L", "P"):
            image = _image(h, w, mode, i)
            want = processor(images=image, return_tensors="pt")["pixel_values"][0]
            got = transform(image)
            assert got.shape == want.shape == (3, 32, 32)
            assert (got - want).abs().max() <= 1e-6, (name, h, w, mode)
    assert record["pipeline"] == "transformers" and record["size"] == [32, 32]


def test_resize_before_crop_is_recorded_everywhere(tmp_path):
    model = hf_clip(seed=2)
    bb = editclip.Backbone.from_hf(model, CROP)
    record = bb.preprocessing
    assert record["resize_mode"] == "shortest" and record["resize_size"] == 40 and record["size"] == [32, 32]
    assert "shortest edge 40 + centre crop" in describe_preprocessing(record)
    assert "transformers image processor" in describe_preprocessing(record)
    # same weights, resized to 32: stores, statistics and calibration cache keys compare the whole record
    other = editclip.Backbone.from_hf(hf_clip(seed=2), PROCESSOR)
    assert other.fingerprint == bb.fingerprint and other.preprocessing != record
    image = _image(47, 61, "RGB", 0)
    restored = with_preprocessing(other, record)  # e.g. from a store's meta.json
    assert torch.equal(restored.preprocess(image), bb.preprocess(image))
    with_preprocessing(other, other.preprocessing)
    report = editclip.export_onnx(bb.model, tmp_path / "m.onnx")
    assert json.loads(report.metadata["editclip_preprocessing"]) == record
    assert json.loads(report.metadata["resize_size"]) == 40
    encoder = editclip.OnnxImageEncoder(tmp_path / "m.onnx", providers="cpu")
    assert np.abs(encoder.preprocess([image])[0] - bb.preprocess(image).numpy()).max() <= 1e-6
    want = bb.encode_image(bb.preprocess(image)[None]).numpy()
    assert np.abs(encoder([image]) - want).max() <= 1e-4


REFUSED = [
    ({"do_convert_rgb": False}, "do_convert_rgb=False"),
    ({"do_rescale": False}, "do_rescale=False"),
    ({"rescale_factor": 1 / 127.5}, "rescale_factor=0.00784"),
    ({"do_pad": True}, "do_pad=True"),
    ({"do_resize": False}, "do_resize=False"),
    ({"resample": 1}, "resample=1: LANCZOS"),
    ({"resample": 4}, "resample=4: BOX"),
    ({"resample": 5}, "resample=5: HAMMING"),
    ({"image_mean": [0.5, 0.5]}, "image_mean=.*3"),
    ({"image_std": [0.5, 0.5, 0.5, 0.5]}, "image_std=.*3"),
    ({"image_std": [0.5, 0.0, 0.5]}, "image_std=.*zero"),
    ({"do_center_crop": False}, "do_center_crop=False: .*aspect ratio"),
    ({"crop_size": {"height": 28, "width": 28}}, "crop_size=.* makes 28x28"),
    ({"size": {"longest_edge": 32}}, "size=.*shortest_edge"),
    ({"size": {"shortest_edge": 32, "longest_edge": 48}}, "size=.*shortest_edge"),
    ({"image_processor_type": "CLIPImageProcessorPil"}, "'CLIPImageProcessorPil' is not one"),
    ({"image_processor_type": "ViTImageProcessor"}, "'ViTImageProcessor' is not one"),
]


@pytest.mark.parametrize(("change", "match"), REFUSED, ids=[m.split("=")[0] for _, m in REFUSED])
def test_settings_editclip_cannot_reproduce_are_refused(change, match):
    with pytest.raises(EditclipError, match=match):
        record_from_settings({**PROCESSOR, **change}, (32, 32), "m")


def test_siglip_squash_with_a_crop_of_another_size_is_refused():
    settings = {**SIGLIP_PROCESSOR, "do_center_crop": True, "size": {"height": 40, "width": 40},
                "crop_size": {"height": 32, "width": 32}}  # fmt: skip
    with pytest.raises(EditclipError, match=r"size=.*resizing to 40x40 and cropping 32x32"):
        record_from_settings(settings, (32, 32), "m")


def test_a_refused_processor_file_names_the_model(tmp_path):
    from hf_models import write_hf_folder

    folder = write_hf_folder(tmp_path / "clip")
    (folder / "preprocessor_config.json").write_text(json.dumps({**PROCESSOR, "resample": 1}))
    with pytest.raises(EditclipError, match=r"local-dir:.*resample=1: LANCZOS"):
        editclip.load(f"local-dir:{folder}")


def test_defaults_are_the_family_processors():
    clip = record_from_settings(default_settings("transformers-clip", (32, 32)), (32, 32), "m")
    assert clip["resize_mode"] == "shortest" and clip["resize_size"] == 32 and clip["interpolation"] == "bicubic"
    siglip = record_from_settings(default_settings("transformers-siglip", (32, 32)), (32, 32), "m")
    assert siglip["resize_mode"] == "squash" and siglip["mean"] == [0.5, 0.5, 0.5]
