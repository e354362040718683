"""Named capture points: each equals what the stock model computes (forward hooks on open_clip and timm
modules, transformers' ``output_attentions`` / ``output_hidden_states``), on CLS and pooled towers; nothing
is computed when nothing is asked; bad names are refused with the valid kinds."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import editclip
from editclip import cli
from editclip._capture import LAYER_KINDS, Recorder, capture_bytes, plan_capture, point_shape
from editclip.errors import EditclipError
from editclip.vit import run
from tests.conftest import TINY_CONFIG, randomise

TOL = 1e-5
FREE = ("resid.pre", "attn.q", "attn.k", "attn.v", "attn.out", "resid.mid", "mlp.pre", "mlp.post", "mlp.out",
        "resid.post")  # fmt: skip  (tensors the forward computes anyway)


def _images(n: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item() <= tol


@pytest.fixture(scope="module")
def open_clip_model() -> torch.nn.Module:
    """A tiny open_clip CLIP with layer scale, randomised biases, norms and scales."""
    torch.manual_seed(1)
    config = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "ls_init_value": 0.5}}
    return randomise(open_clip.CLIP(**config).eval(), 1)


def _hooked(model: torch.nn.Module, images: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Inputs and outputs of the stock open_clip modules, by forward hooks, and each layer's attention weights
    from the stock MultiheadAttention asked for them (need_weights) on its own input."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []

    def keep(key: str, take_input: bool = False):
        def hook(module, args, output):
            seen.setdefault(key, []).append((args[0] if take_input else output).detach())

        return hook

    for block in model.visual.transformer.resblocks:
        handles += [
            block.register_forward_hook(keep("resid.pre", take_input=True)),
            block.register_forward_hook(keep("resid.post")),
            block.ln_1.register_forward_hook(keep("ln_1")),
            block.ls_1.register_forward_hook(keep("attn.out")),
            block.mlp.c_fc.register_forward_hook(keep("mlp.pre")),
            block.mlp.gelu.register_forward_hook(keep("mlp.post")),
            block.ls_2.register_forward_hook(keep("mlp.out")),
        ]
    with torch.no_grad():
        seen["embedding"] = [model.encode_image(images)]
        for handle in handles:
            handle.remove()
        for block, h in zip(model.visual.transformer.resblocks, seen["ln_1"], strict=True):
            weights = block.attn(h, h, h, need_weights=True, average_attn_weights=False)[1]
            seen.setdefault("attn.pattern", []).append(weights)
            q, k, v = F.linear(h, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)
            for kind, x in (("attn.q", q), ("attn.k", k), ("attn.v", v)):
                seen.setdefault(kind, []).append(x.view(*x.shape[:2], block.attn.num_heads, -1).transpose(1, 2))
    return seen


def test_open_clip_points_equal_the_stock_modules(open_clip_model: torch.nn.Module) -> None:
    bb = editclip.Backbone.from_open_clip(open_clip_model, None, None)
    images = _images()
    seen = _hooked(open_clip_model, images)
    kinds = [*FREE, "attn.pattern", "attn.scores", "attn.pattern.cls", "attn.ov", "attn.ov.cls"]
    got = bb.capture(images, [f"L*.{kind}" for kind in kinds])
    for layer in range(bb.shape.layers):
        for kind in (*FREE, "attn.pattern"):
            if kind != "resid.mid":
                assert _close(got[f"L{layer}.{kind}"], seen[kind][layer]), (layer, kind)
        p = f"L{layer}.attn."
        assert _close(got[f"L{layer}.resid.mid"], seen["resid.pre"][layer] + seen["attn.out"][layer])
        assert _close(got[f"L{layer}.resid.mid"] + seen["mlp.out"][layer], seen["resid.post"][layer])
        assert _close(got[p + "pattern"], got[p + "scores"].softmax(-1))
        assert _close(got[p + "scores"], got[p + "q"] @ got[p + "k"].transpose(-1, -2) / 4.0)  # head width 16
        assert _close(got[p + "pattern.cls"], seen["attn.pattern"][layer][:, :, 0])
        # every query's attention output is its pattern row applied to the heads' OV outputs, plus the bias
        block = bb.tower.blocks[layer]
        bias = block.out_bias * block.ls_1
        assert _close(torch.einsum("nhqs,nhsw->nqw", got[p + "pattern"], got[p + "ov"]) + bias, seen["attn.out"][layer])
        assert _close(got[p + "ov.cls"].sum((1, 2)) + bias, seen["attn.out"][layer][:, 0])
    last = got[f"L{bb.shape.layers - 1}.resid.post"][:, 0]
    assert _close(bb.tower.head(last), seen["embedding"][0])


def test_hf_clip_points_equal_hidden_states_and_attentions() -> None:
    from tests.hf_models import hf_clip

    model = hf_clip("gelu", seed=3)
    model.set_attn_implementation("eager")  # output_attentions needs the eager attention
    bb = editclip.Backbone.from_hf(model)
    images = _images(seed=6)
    seen: dict[str, list[torch.Tensor]] = {}
    layers = model.vision_model.encoder.layers
    handles = [m.register_forward_hook(lambda mod, a, out, key=key: seen.setdefault(key, []).append(out))
               for layer in layers for key, m in (("mlp.pre", layer.mlp.fc1), ("mlp.post", layer.mlp.activation_fn),
                                                  ("attn.q", layer.self_attn.q_proj))]  # fmt: skip
    with torch.no_grad():
        out = model.vision_model(pixel_values=images, output_attentions=True, output_hidden_states=True)
    for handle in handles:
        handle.remove()
    got = bb.capture(images, ["all.resid.pre", "all.resid.post", "all.attn.pattern", "all.mlp.pre",
                              "all.mlp.post", "all.attn.q"])  # fmt: skip
    n_layers = len(layers)
    for layer in range(n_layers):
        assert _close(got[f"L{layer}.resid.pre"], out.hidden_states[layer])
        assert _close(got[f"L{layer}.resid.post"], out.hidden_states[layer + 1])
        assert _close(got[f"L{layer}.attn.pattern"], out.attentions[layer])
        assert _close(got[f"L{layer}.mlp.pre"], seen["mlp.pre"][layer])
        assert _close(got[f"L{layer}.mlp.post"], seen["mlp.post"][layer])
        q = seen["attn.q"][layer]
        assert _close(got[f"L{layer}.attn.q"], q.view(*q.shape[:2], bb.shape.heads, -1).transpose(1, 2))
    assert _close(got[f"L{n_layers - 1}.resid.post"], out.last_hidden_state)


def test_hf_siglip_points_and_the_pool_pattern() -> None:
    from tests.test_hf_siglip import backbone, siglip_model

    model = siglip_model(vision_only=True)
    model.set_attn_implementation("eager")
    bb = backbone(model)
    images = _images(seed=7)
    pool = model.head.attention
    pool_inputs: list[tuple] = []
    handle = pool.register_forward_pre_hook(lambda mod, args: pool_inputs.append(args))
    with torch.no_grad():
        out = model(pixel_values=images, output_attentions=True, output_hidden_states=True)
        handle.remove()
        pool_weights = pool(*pool_inputs[0], need_weights=True, average_attn_weights=False)[1][:, :, 0]  # [N, G, T]
    got = bb.capture(images, ["L*.resid.post", "L*.attn.pattern", "pool.attn.pattern", "L0.resid.pre"])
    assert _close(got["L0.resid.pre"], out.hidden_states[0])
    for layer in range(bb.shape.layers):
        assert _close(got[f"L{layer}.resid.post"], out.hidden_states[layer + 1])
        assert _close(got[f"L{layer}.attn.pattern"], out.attentions[layer])
    assert _close(got["pool.attn.pattern"], pool_weights)
    with pytest.raises(EditclipError, match="no class token"):
        bb.capture(images, ["L0.attn.pattern.cls"])


def test_open_clip_timm_siglip_points_equal_the_stock_softmaxes() -> None:
    """A timm SigLIP tower inside open_clip, run unfused: its softmaxes (every block's, then the pool's) in order."""
    from tests.test_pooled_towers import CASES, load_tiny

    bb = load_tiny(CASES["siglip"], seed=3)
    images = _images(seed=8)
    for module in bb.model.visual.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    softmaxes = _SoftmaxLog()
    resid = []
    blocks = bb.model.visual.trunk.blocks
    handles = [b.register_forward_hook(lambda mod, a, out: resid.append(out)) for b in blocks]
    with torch.no_grad(), softmaxes:
        embedding = bb.model.encode_image(images)
    for handle in handles:
        handle.remove()
    got = bb.capture(images, ["L*.attn.pattern", "L*.resid.post", "pool.attn.pattern"])
    assert len(softmaxes.outputs) == len(blocks) + 1
    for layer in range(len(blocks)):
        assert _close(got[f"L{layer}.attn.pattern"], softmaxes.outputs[layer])
        assert _close(got[f"L{layer}.resid.post"], resid[layer])
    assert _close(got["pool.attn.pattern"], softmaxes.outputs[-1][:, :, 0])
    assert _close(run(bb.tower, images).embedding, embedding)


class _SoftmaxLog(TorchDispatchMode):
    """The outputs of every softmax dispatched (aten._softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._softmax.default:
            self.outputs.append(out)
        return out


class _OpLog(TorchDispatchMode):
    """The names of the aten operations dispatched, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _ops(fn) -> list[str]:
    log = _OpLog()
    with torch.no_grad(), log:
        fn()
    return log.ops


def _run_ops(tower, images: torch.Tensor, recorder: Recorder | None = None) -> list[str]:
    """The operations of the instrumented forward without parts, less the 0-element placeholder of VitOutput."""
    ops = _ops(lambda: run(tower, images, parts=False, recorder=recorder))
    ops.remove("aten.empty.memory_format")
    return ops


def _plain_forward(tower, images: torch.Tensor) -> torch.Tensor:
    """The tower's forward from its pieces, with nothing instrumented."""
    x = tower.embed(images)
    n, t, width = x.shape
    for block in tower.blocks:
        q, k, v = block.qkv(block.ln_1(x))
        x = x + block.out(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, width))
        x = x + block.mlp(x)
    return tower.head(x[:, 0])


def test_nothing_asked_runs_exactly_the_plain_forward(open_clip_model: torch.nn.Module) -> None:
    """No capture: the same aten operations as the plain forward (so no extra tensor), and no hooks anywhere."""
    tower = editclip.Backbone.from_open_clip(open_clip_model, None, None).tower
    images = _images(2)
    plain = _ops(lambda: _plain_forward(tower, images))
    assert _run_ops(tower, images) == plain
    assert _run_ops(tower, images, Recorder()) == plain
    # the points the forward computes anyway cost no operation either: they are the forward's own tensors
    recorder = Recorder(plan_capture([f"L*.{kind}" for kind in FREE], tower))
    assert _run_ops(tower, images, recorder) == plain
    assert len(recorder.result()) == len(FREE) * len(tower.blocks)
    # a recomputed point costs its own operations on the layer asked for only
    ops = _run_ops(tower, images, Recorder(plan_capture(["L2.attn.pattern"], tower)))
    assert ops.count("aten._softmax.default") == 1 and len(ops) > len(plain)
    modules = list(open_clip_model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in modules)
    assert not torch.nn.modules.module._global_forward_hooks


def test_decompose_capture_keeps_the_parts_and_batches(open_clip_model: torch.nn.Module) -> None:
    bb = editclip.Backbone.from_open_clip(open_clip_model, None, None)
    images = _images(5)
    names = ["L1.attn.pattern.cls", "last:2.mlp.post", "L0.attn.v"]
    plain = editclip.decompose(bb, images, token_layers=[1], batch_size=2)
    d = editclip.decompose(bb, images, token_layers=[1], capture=names, batch_size=2)
    assert list(d.captured) == ["L1.attn.pattern.cls", "L2.mlp.post", "L3.mlp.post", "L0.attn.v"]
    assert torch.equal(d.heads, plain.heads) and torch.equal(d.tokens[1], plain.tokens[1])
    whole = bb.capture(images, names)
    assert all(_close(d.captured[name], whole[name], 1e-6) for name in whole)
    assert whole["L3.mlp.post"].shape == (5, bb.shape.n_tokens, bb.shape.mlp_width)
    assert _close(d[1:3].captured["L0.attn.v"], whole["L0.attn.v"][1:3], 0)
    assert "3 captured" in repr(editclip.decompose(bb, images[:1], capture=["L0-2.resid.pre"]))
    assert editclip.decompose(bb, images[:1]).captured == {}


def test_capture_in_half_precision_is_fp32(open_clip_model: torch.nn.Module) -> None:
    """Captured tensors are fp32 whatever the model's dtype."""
    import copy

    bb = editclip.Backbone.from_open_clip(copy.deepcopy(open_clip_model).to(torch.bfloat16), None, None)
    got = bb.capture(_images(1), ["L0.attn.q", "L0.attn.pattern"])
    assert all(t.dtype == torch.float32 for t in got.values())
    assert _close(got["L0.attn.pattern"].sum(-1), torch.ones(1, bb.shape.heads, bb.shape.n_tokens))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("L1.attn.patern", r"unknown capture point 'L1.attn.patern' \(did you mean 'L1.attn.pattern'\?\).*attn.q"),
        ("L0.mlp.psot", r"did you mean 'L0.mlp.post'.*mlp.pre"),
        ("pool.attn.patern", r"did you mean 'pool.attn.pattern'"),
        ("attn.v", r"'attn.v' names no layer: write e.g. 'L3.attn.v'"),
        ("L4.attn.q", r"capture point 'L4.attn.q': .*layer 4 is out of range; this model has layers 0..3"),
        ("L2-9.resid.post", r"layer 9 is out of range"),
        ("last:5.attn.k", r"k must be in 1..4"),
        ("X1.attn.k", r"capture point 'X1.attn.k': bad layer selection 'X1'"),
        ("pool.attn.pattern", r"'pool.attn.pattern' needs an attention-pooled tower.*class token"),
        ("L0", r"unknown capture point 'L0'"),
    ],
)
def test_bad_names_are_refused(tiny_bb: editclip.Backbone, name: str, message: str) -> None:
    with pytest.raises(EditclipError, match=message):
        tiny_bb.capture(_images(1), [name])
    with pytest.raises(EditclipError, match=message):
        editclip.decompose(tiny_bb, _images(1), capture=[name])


def test_other_bad_requests(tiny_bb: editclip.Backbone) -> None:
    with pytest.raises(EditclipError, match="must be strings"):
        tiny_bb.capture(_images(1), [3])
    with pytest.raises(EditclipError, match="nothing to capture"):
        tiny_bb.capture(_images(1), [])
    with pytest.raises(EditclipError, match=r"\[N, 3, H, W\]"):
        tiny_bb.capture(torch.zeros(3, 32, 32), ["L0.attn.q"])
    from tests.test_pooled_towers import CASES, load_tiny

    mean_pooled = load_tiny(CASES["open-clip-avg"])
    with pytest.raises(EditclipError, match="reads a mean over tokens"):
        mean_pooled.capture(_images(1), ["pool.attn.pattern"])
    # a mean-pooled tower with a class token has its CLS rows
    assert mean_pooled.capture(_images(1), ["L0.attn.pattern.cls"])["L0.attn.pattern.cls"].shape == (1, 4, 17)


def test_every_kind_is_documented_with_its_shape() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "INTERFACES.md").read_text(encoding="utf-8")
    for kind in [*LAYER_KINDS, "pool.attn.pattern"]:
        assert f"`{kind}`" in text, kind


@pytest.mark.parametrize("case", ["open_clip", "siglip"])
def test_point_shapes_match_the_captured_tensors(case: str, open_clip_model: torch.nn.Module) -> None:
    if case == "siglip":
        from tests.test_hf_siglip import backbone, siglip_model

        bb = backbone(siglip_model(vision_only=True))
        names = [f"L0.{kind}" for kind in LAYER_KINDS if not kind.endswith(".cls")] + ["pool.attn.pattern"]
    else:
        bb = editclip.Backbone.from_open_clip(open_clip_model, None, None)
        names = [f"L1.{kind}" for kind in LAYER_KINDS]
    got = bb.capture(_images(2), names)
    assert {name: tuple(t.shape[1:]) for name, t in got.items()} == {n: point_shape(n, bb.tower) for n in names}
    assert capture_bytes(plan_capture(names, bb.tower), bb.tower) * 2 == sum(4 * t.numel() for t in got.values())


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("capture") / "toy"
    assert cli.main(["toyworld", "make", "--out", str(root), "--n-train", "0", "--n-val", "5", "--n-test", "0"]) == 0
    return root


def test_cli_saves_the_points_with_the_ids(toy_data: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    from editclip.data import load_dataset

    out = tmp_path / "points.safetensors"
    argv = ["capture", "--toyworld", "--data", str(toy_data), "--split", "val", "--points", "L*.attn.pattern.cls",
            "last:1.mlp.post", "--batch-size", "2", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    bb = editclip.toyworld.load()
    dataset = load_dataset(toy_data, split="val", transform=bb.preprocess)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    expected = bb.capture(images, ["L*.attn.pattern.cls", "last:1.mlp.post"])
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
        assert list(f.keys()) == sorted(expected)
        assert all(_close(f.get_tensor(name), expected[name]) for name in expected)
    assert json.loads(meta["ids"]) == dataset.ids and json.loads(meta["points"]) == list(expected)
    assert meta["fingerprint"] == bb.fingerprint


def test_cli_refuses_bad_points_and_oversized_captures(toy_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "points.safetensors"
    base = ["capture", "--toyworld", "--data", str(toy_data), "--out", str(out), "--points"]
    assert cli.main([*base, "L1.attn.patern"]) == 2
    assert "did you mean 'L1.attn.pattern'" in capsys.readouterr().err
    assert cli.main([*base, "L0.attn.q,L1.attn.q"]) == 2
    assert "separate names, not joined by commas" in capsys.readouterr().err
    assert cli.main([*base, "all.attn.ov", "--max-gib", "0.0001"]) == 2
    assert "MiB for 5 images (more than --max-gib 0.0001)" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []
