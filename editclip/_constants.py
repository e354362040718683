"""Names and defaults that the library, the specs and the command line share, importable without torch.

The command-line parsers are built from these, so ``editclip --help`` never loads the modules that use them.
"""

from __future__ import annotations

CONVENTIONS: tuple[str, ...] = ("exact", "official")  # post-LayerNorm splits of the decomposition
VARIANTS: tuple[str, ...] = ("paper", "official")  # TextSpan variants
FORMATS: tuple[str, ...] = ("auto", "waterbirds", "csv", "folder")  # dataset layouts
PARITY_BATCH_SIZES: tuple[int, ...] = (1, 3, 8)  # batch sizes every ONNX export is checked at
PREPROCESSING_KEY = "editclip_preprocessing"  # metadata key of the whole preprocessing record (artifacts, ONNX)
TEMPLATE_SETS: tuple[str, ...] = ("openai_imagenet", "simple_imagenet")  # open_clip's zero-shot template sets
DEMO_COUNTS: tuple[int, int, int] = (400, 600, 800)  # demo images: train (only its group sizes are used), val, test
# Shipped description pools for TextSpan, by name: their files inside the package.
POOLS: dict[str, str] = {"general": "pools/general.txt", "toyworld": "toyworld/assets/pool.txt"}
