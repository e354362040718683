"""How a store or an edit records its model, and loading that model again (checked against the weights
fingerprint and the preprocessing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .backbone import Backbone, describe_preprocessing, with_preprocessing
from .backbone import load as load_model
from .errors import EditclipError
from .names import format_layers

if TYPE_CHECKING:
    from ._store_folder import DecompositionStore


def describe_mismatch(key: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """For the preprocessing and the head layers, name both sides of a mismatch."""
    if key == "head_layers":
        every = list(range(int(old["shape"]["layers"])))
        held, asked = (format_layers(m.get(key) or every) for m in (old, new))
        return f": the store holds the heads of {held}, this run asks for {asked} (--layers)"
    if key != "preprocessing":
        return ""
    return f": the store has {describe_preprocessing(old.get(key))}, this run {describe_preprocessing(new.get(key))}"


def check_backbone_meta(meta: dict[str, Any], where: str, bb: Backbone, what: str) -> None:
    """Raise unless ``bb`` has the weights fingerprint and the preprocessing recorded in ``meta``."""
    if meta.get("fingerprint") != bb.fingerprint:
        raise EditclipError(
            f"{what} {where!r} was made with other weights ({meta.get('fingerprint')}, not {bb.fingerprint})"
        )
    if meta.get("preprocessing") != bb.preprocessing:
        raise EditclipError(
            f"{what} {where!r} was made with other preprocessing: {describe_preprocessing(meta.get('preprocessing'))}; "
            f"the model given preprocesses with {describe_preprocessing(bb.preprocessing)}"
        )


def model_source(bb: Backbone) -> dict[str, Any]:
    """How to load ``bb`` again (stored in meta.json and in compiled edits)."""
    src = bb.source
    out: dict[str, Any] = {"name": bb.model_id, "precision": bb.precision}
    from .toyworld import is_shipped_model

    if src.get("in_memory"):
        out |= {"in_memory": True}
    elif is_shipped_model(src.get("checkpoint")):
        out |= {"toyworld": True}  # the shipped model: no installation path in stores, reports and exports
    elif src.get("checkpoint"):
        out |= {"checkpoint": str(Path(src["checkpoint"]).resolve()), "config": src.get("config")}
    elif src.get("config") is not None:
        out |= {"config": src.get("config")}
    else:
        out |= {"pretrained": src.get("pretrained")}
    return out | {"preprocessing": bb.preprocessing}


def load_backbone(
    source: dict[str, Any], device: str | torch.device = "cpu", fingerprint: str | None = None
) -> Backbone:
    """Load the model described by :func:`model_source` with the preprocessing it records; refuse other
    weights than ``fingerprint``."""
    if source.get("in_memory"):
        raise EditclipError(
            f"model {source.get('name')!r} was built in memory (Backbone.from_open_clip / from_hf), so editclip "
            "cannot load it again; pass that Backbone (or give the model arguments)"
        )
    if source.get("toyworld"):
        from .toyworld import load as load_toyworld

        bb = load_toyworld(device=str(device), precision=source.get("precision", "fp32"))
    elif source.get("checkpoint"):
        bb = load_model(
            checkpoint=source["checkpoint"],
            config=source.get("config"),
            device=device,
            precision=source.get("precision", "fp32"),
        )
    elif source.get("config") is not None:
        bb = load_model(source["name"], config=source["config"], device=device,
                        precision=source.get("precision", "fp32"))  # fmt: skip
    else:
        bb = load_model(
            source["name"],
            pretrained=source.get("pretrained"),
            device=device,
            precision=source.get("precision", "fp32"),
        )
    if fingerprint is not None and bb.fingerprint != fingerprint:
        raise EditclipError(
            f"the weights of {source.get('name')!r} now have fingerprint {bb.fingerprint}, not {fingerprint} as "
            "recorded; the checkpoint changed (or pretrained=None gave new random weights)"
        )
    if source.get("preprocessing"):
        bb = with_preprocessing(bb, source["preprocessing"])
    return bb


def backbone_for_store(store: DecompositionStore, device: str | torch.device = "cpu") -> Backbone:
    """The model a store was made with, checked against the store's weights fingerprint."""
    return load_backbone(store.meta["model"], device, store.meta["fingerprint"])
