"""Tiny random-weight Hugging Face CLIPs and transformers-format folders for the tests (transformers imported lazily,
so the rest of the suite does not need it)."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from conftest import randomise

TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "max_position_embeddings": 16, "vocab_size": 49408}  # fmt: skip
VISION = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
          "image_size": 32, "patch_size": 8}  # fmt: skip
PROCESSOR = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": 32},
             "resample": 2, "do_center_crop": True, "crop_size": {"height": 32, "width": 32}, "do_rescale": True,
             "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3],
             "image_std": [0.2, 0.25, 0.3], "do_convert_rgb": True}  # fmt: skip


def hf_clip_config(act: str = "quick_gelu", eps: float = 1e-5) -> dict:
    import transformers

    vision = {**VISION, "hidden_act": act, "layer_norm_eps": eps}
    return transformers.CLIPConfig(text_config=TEXT, vision_config=vision, projection_dim=24).to_dict()


def hf_clip(act: str = "quick_gelu", seed: int = 0) -> torch.nn.Module:
    """A CLIPModel with randomised biases and LayerNorm parameters; post_layernorm has its own eps (1e-3)."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.CLIPModel(transformers.CLIPConfig.from_dict(hf_clip_config(act)))
    model.vision_model.post_layernorm.eps = 1e-3  # each norm's own eps must be read
    return randomise(model.eval(), seed)


def write_tokenizer(folder: Path) -> None:
    """vocab.json + merges.txt of CLIP's BPE (open_clip's copy), so HF's CLIPTokenizer reads the same tokens."""
    import transformers

    bpe = open_clip.tokenizer.SimpleTokenizer()
    specials = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {specials.get(k, k): v for k, v in bpe.encoder.items()}
    merges = [" ".join(pair) for pair, _ in sorted(bpe.bpe_ranks.items(), key=lambda kv: kv[1])]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")
    tok.save_pretrained(str(folder))


def write_hf_folder(folder: Path, act: str = "quick_gelu") -> Path:
    """A transformers-format CLIP folder: config.json, model.safetensors, preprocessor_config.json, tokenizer."""
    hf_clip(act).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    write_tokenizer(folder)
    return folder
