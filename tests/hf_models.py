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


def processor_kwargs(settings: dict) -> dict:
    """A preprocessor_config.json's settings as keyword arguments of its transformers class."""
    return {k: v for k, v in settings.items() if k != "image_processor_type"}


def write_hf_folder(folder: Path, act: str = "quick_gelu") -> Path:
    """A transformers-format CLIP folder: config.json, model.safetensors, preprocessor_config.json, tokenizer."""
    hf_clip(act).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    write_tokenizer(folder)
    return folder


# ----- SigLIP --------------------------------------------------------------------------------------------------

SIGLIP_VISION = {**VISION, "hidden_act": "gelu_pytorch_tanh"}
SIGLIP_TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 2,
               "vocab_size": 64, "max_position_embeddings": 16, "bos_token_id": None, "eos_token_id": 2,
               "pad_token_id": 1}  # fmt: skip
SIGLIP_PROCESSOR = {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                    "size": {"height": 32, "width": 32}, "resample": 3, "do_rescale": True,
                    "rescale_factor": 1 / 255, "do_normalize": True,
                    "image_mean": [0.5, 0.45, 0.4], "image_std": [0.3, 0.35, 0.4]}  # fmt: skip
_CORPUS = ["a photo of a bird", "a bird on the water", "a forest", "the sky over the sea", "land",
           "a view of the ocean", "two kites", "water", "a landbird", "a waterbird"] * 10  # fmt: skip


def hf_siglip(vision_only: bool = False, seed: int = 0) -> torch.nn.Module:
    """A SiglipModel (or SiglipVisionModel) with 3 layers x 4 heads, biases and LayerNorms randomised."""
    import transformers

    torch.manual_seed(seed)
    vision = transformers.SiglipVisionConfig(**SIGLIP_VISION)
    if vision_only:
        return randomise(transformers.SiglipVisionModel(vision).eval(), seed)
    config = transformers.SiglipConfig(text_config=SIGLIP_TEXT, vision_config=vision.to_dict())
    return randomise(transformers.SiglipModel(config).eval(), seed)


def write_siglip_tokenizer(folder: Path) -> None:
    """spiece.model (a sentencepiece model trained here on a few captions) + tokenizer_config.json: SiglipTokenizer."""
    import io

    import sentencepiece
    import transformers

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(sentence_iterator=iter(_CORPUS), model_writer=buffer, vocab_size=32,
                                             model_type="unigram", unk_id=0, pad_id=1, eos_id=2, bos_id=-1,
                                             pad_piece="<pad>", minloglevel=2)  # fmt: skip
    (folder / "spiece.model").write_bytes(buffer.getvalue())
    tok = transformers.SiglipTokenizer(str(folder / "spiece.model"), pad_token="<pad>", model_max_length=16)
    tok.save_pretrained(str(folder))


def write_siglip_folder(folder: Path, vision_only: bool = False) -> Path:
    """A transformers-format SigLIP folder: config.json, model.safetensors, preprocessor_config.json (+ tokenizer)."""
    hf_siglip(vision_only).save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(SIGLIP_PROCESSOR))
    if not vision_only:
        write_siglip_tokenizer(folder)
    return folder


def fill_hub_cache(cache: Path, repo: str, folder: Path) -> None:
    """The layout huggingface_hub reads offline: models--ORG--NAME/refs/main and snapshots/<commit>/files."""
    root = cache / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in folder.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
