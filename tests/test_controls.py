"""Random-head controls: seeded, drawn from the stated layers, never the edit's own set, and the one-pass
logit arithmetic equals the compiled edit run on the images (EditedCLIP)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import editclip
from editclip._compile import calibration_store, compile_edit
from editclip.controls import ControlSettings, draw_head_sets, head_action, head_set_scores, random_head_controls
from editclip.data import load_dataset
from editclip.edited import EditTensors
from editclip.evaluate import predict, zero_shot_classifier
from editclip.evaluation_paths import exact_embeddings, fast_embeddings, targets
from editclip.spec import EditSpec

TEMPLATES = ["a photo of a {}."]
TEXTS = ["water", "a forest", "the sky"]


@pytest.fixture
def setting(tiny_files: tuple[Path, Path], tiny_waterbirds: Path, tiny_bb: editclip.Backbone, tmp_path: Path) -> dict:
    checkpoint, config = tiny_files
    spec = {
        "editclip": 1,
        "model": {"checkpoint": str(checkpoint), "config": str(config)},
        "calibration": {"data": {"root": str(tiny_waterbirds), "split": "val"}},
        "edits": [{"mean_ablate": ["L3.H1", "L2.H0"]}],
    }
    test = load_dataset(tiny_waterbirds, split="test")
    return {
        "spec": spec,
        "dataset": test,
        "calibration": calibration_store(tiny_bb, load_dataset(tiny_waterbirds, split="val"), tmp_path / "cache"),
        "evaluation": calibration_store(tiny_bb, test, tmp_path / "cache"),
        "classifier": zero_shot_classifier(tiny_bb, ["landbird", "waterbird"], TEMPLATES),
        "targets": targets(test, "y", ["y", "place"]),
    }


def _compiled(setting: dict, bb: editclip.Backbone, edits: list) -> editclip.CompiledEdit:
    spec = EditSpec.from_dict({**setting["spec"], "edits": edits})
    return compile_edit(spec, bb, setting["calibration"])


def test_draws_are_seeded_distinct_and_never_the_edits_own() -> None:
    pool = list(range(8))
    a, available = draw_head_sets(pool, 3, 20, [1, 2, 5], seed=0)
    assert available == 56 - 1 and len(a) == 20
    assert a == draw_head_sets(pool, 3, 20, [5, 2, 1], seed=0)[0]
    assert a != draw_head_sets(pool, 3, 20, [1, 2, 5], seed=1)[0]
    assert len(set(a)) == 20 and (1, 2, 5) not in a and all(len(set(s)) == 3 and set(s) <= set(pool) for s in a)
    big, _ = draw_head_sets(range(144), 4, 20, [0, 1, 2, 3], seed=0)  # the rejection-sampling branch
    assert len(set(big)) == 20 and (0, 1, 2, 3) not in big
    assert big == draw_head_sets(range(144), 4, 20, [3, 2, 1, 0], seed=0)[0]
    few, available = draw_head_sets([4, 5, 6], 2, 20, [4, 5], seed=0)  # only 2 other sets exist
    assert available == 2 and sorted(few) == [(4, 6), (5, 6)]
    with pytest.raises(editclip.EditclipError, match="edit's own"):
        draw_head_sets([4, 5], 2, 20, [4, 5], seed=0)
    with pytest.raises(editclip.EditclipError, match="pool of 2"):
        draw_head_sets([4, 5], 3, 20, [], seed=0)


def test_controls_come_from_the_stated_layers(setting: dict, tiny_bb: editclip.Backbone) -> None:
    compiled = _compiled(setting, tiny_bb, [{"mean_ablate": ["L3.H1", "L2.H0"]}])
    args = (setting["evaluation"], setting["calibration"], compiled.tensors, setting["classifier"], setting["targets"])
    same = random_head_controls(*args, ControlSettings(random_heads=10, seed=3), progress=False)
    assert same.layers == (2, 3) and same.pool == 8 and same.k == 2 and len(same.sets) == 10
    assert all({h.split(".")[0] for h in s} <= {"L2", "L3"} for s in same.sets)
    assert all(set(s) != {"L3.H1", "L2.H0"} for s in same.sets) and len(set(same.sets)) == 10
    again = random_head_controls(*args, ControlSettings(random_heads=10, seed=3), progress=False)
    assert again.sets == same.sets and again.summary() == same.summary()
    low = random_head_controls(*args, ControlSettings(random_heads=5, seed=0, layers="L0-1"), progress=False)
    assert low.layers == (0, 1) and all({h.split(".")[0] for h in s} <= {"L0", "L1"} for s in low.sets)
    summary = same.summary()
    assert {"acc_wg", "acc_avg", "acc_mean_group", "adj_acc_avg", "acc_y:0_place:1"} <= set(summary)
    wg = summary["acc_wg"]
    assert wg["worst"] <= wg["median"] <= wg["p90"] <= wg["best"] and 1 <= wg["rank"] <= 11 and wg["of"] == 11
    assert wg["rank"] == 1 + sum(v > wg["edit"] for v in same.values("acc_wg"))
    as_json = same.as_dict()
    assert as_json["drawn_from_layers"] == [2, 3] and len(as_json["sets"]) == 10 and as_json["layers"] == "same"


@pytest.mark.parametrize(
    ("sets", "edits"),
    [
        ([[8, 9, 10, 11], [13, 2]],  # all of layer 2 (its out_proj bias is ablated too), and two heads
         [[{"mean_ablate": ["L2.H0", "L2.H1", "L2.H2", "L2.H3"]}], [{"mean_ablate": ["L3.H1", "L0.H2"]}]]),
        ([[13, 2]], [[{"project": {"head": "L3.H1", "away_from": {"texts": TEXTS}}},
                      {"project": {"head": "L0.H2", "away_from": {"texts": TEXTS}}}]]),
    ],
    ids=["mean-ablate", "project-away"],
)  # fmt: skip
def test_control_scores_equal_the_compiled_edit_on_the_images(
    setting: dict, tiny_bb: editclip.Backbone, sets: list, edits: list
) -> None:
    action = head_action(_compiled(setting, tiny_bb, edits[0]).tensors)[1]
    preds, scores = head_set_scores(setting["evaluation"], setting["calibration"], sets, action, setting["classifier"],
                                    progress=False, keep_scores=True)  # fmt: skip
    for i, spec_edits in enumerate(edits):
        compiled = _compiled(setting, tiny_bb, spec_edits)
        exact = exact_embeddings(compiled.wrapper().encode_image, setting["dataset"], tiny_bb.preprocess,
                                 progress=False)  # fmt: skip
        torch.testing.assert_close(scores[i].float(), exact @ setting["classifier"].t(), atol=2e-5, rtol=1e-5)
        assert torch.equal(preds[i], predict(exact, setting["classifier"]))
        fast = fast_embeddings(setting["evaluation"], compiled.tensors, progress=False)
        assert torch.equal(preds[i], predict(fast, setting["classifier"]))


def test_controls_refuse_edits_they_cannot_copy(setting: dict, tiny_bb: editclip.Backbone) -> None:
    mixed = _compiled(setting, tiny_bb, [{"mean_ablate": ["L3.H1"]},
                                         {"project": {"head": "L2.H0", "away_from": {"texts": TEXTS}}}])  # fmt: skip
    with pytest.raises(editclip.EditclipError, match="both mean-ablates and projects"):
        head_action(mixed.tensors)
    with pytest.raises(editclip.EditclipError, match="MLPs"):
        head_action(_compiled(setting, tiny_bb, [{"mean_ablate": {"parts": "mlp", "layers": "L1"}}]).tensors)
    with pytest.raises(editclip.EditclipError, match="changes no head"):
        head_action(EditTensors.empty(8))
    with pytest.raises(editclip.EditclipError, match="at least 1"):
        ControlSettings(random_heads=0)
