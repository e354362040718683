"""Zero-shot classifiers and per-group metrics, checked against values computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from editclip.backbone import load
from editclip.errors import EditclipError
from editclip.evaluate import (
    GroupReport,
    format_table,
    group_metrics,
    plot_groups,
    predict,
    resolve_templates,
    zero_shot_classifier,
)

# label, place and predictions of 10 images; groups (y, place):
#   (0,0): images 0-2, all right        -> 3/3
#   (0,1): images 3-4, one right        -> 1/2
#   (1,0): images 5-6, both right       -> 2/2
#   (1,1): images 7-9, two right        -> 2/3
LABEL = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
PLACE = np.array([0, 0, 0, 1, 1, 0, 0, 1, 1, 1])
PRED = np.array([0, 0, 0, 1, 0, 1, 1, 0, 1, 1])


def test_group_metrics_by_hand() -> None:
    report = group_metrics(PRED, LABEL, {"y": LABEL, "place": PLACE}, {(0, 0): 6, (0, 1): 1, (1, 0): 1, (1, 1): 2})
    metrics = report.as_dict()
    assert metrics["acc_avg"] == pytest.approx(8 / 10)
    assert metrics["acc_wg"] == pytest.approx(1 / 2)
    assert metrics["worst_group"] == "y:0_place:1"
    assert metrics["acc_mean_group"] == pytest.approx((1 + 1 / 2 + 1 + 2 / 3) / 4)
    assert metrics["adj_acc_avg"] == pytest.approx((6 * 1 + 1 * 1 / 2 + 1 * 1 + 2 * 2 / 3) / 10)
    assert metrics["count"] == 10
    assert {k: v for k, v in metrics.items() if k.startswith("acc_y")} == pytest.approx(
        {"acc_y:0_place:0": 1.0, "acc_y:0_place:1": 0.5, "acc_y:1_place:0": 1.0, "acc_y:1_place:1": 2 / 3}
    )
    assert [metrics[f"count_y:{y}_place:{p}"] for y in (0, 1) for p in (0, 1)] == [3, 2, 2, 3]
    assert report.columns == ("y", "place")


def test_waterbirds_adjusted_average() -> None:
    """docs/method.md section 6: Waterbirds test groups (0,0) 2255, (0,1) 2255, (1,0) 642, (1,1) 642; training sizes
    3498, 184, 56, 1057 weight the adjusted average."""
    sizes = {(0, 0): 2255, (0, 1): 2255, (1, 0): 642, (1, 1): 642}
    right = {(0, 0): 2255, (0, 1): 1804, (1, 0): 321, (1, 1): 642}  # accuracies 1, 0.8, 0.5, 1
    label, place, pred = [], [], []
    for (y, p), n in sizes.items():
        label += [y] * n
        place += [p] * n
        pred += [y] * right[(y, p)] + [1 - y] * (n - right[(y, p)])
    train = {(np.int64(0), np.int64(0)): 3498, (0, 1): 184, (1, 0): 56, (1, 1): 1057}
    report = group_metrics(torch.tensor(pred), np.array(label), {"y": label, "place": place}, train)
    assert report.count == 5794
    assert report.acc_avg == pytest.approx(5022 / 5794)
    assert report.acc_wg == pytest.approx(0.5)
    assert report.worst.name == "y:1_place:0"
    assert report.acc_mean_group == pytest.approx(0.825)
    assert report.adj_acc_avg == pytest.approx((3498 * 1 + 184 * 0.8 + 56 * 0.5 + 1057 * 1) / 4795)
    assert report.adj_acc_avg == pytest.approx(0.98648592)


def test_worst_group_is_the_least_accurate_not_the_smallest() -> None:
    label = np.array([0] * 10 + [1] * 2)
    pred = np.array([0] * 6 + [1] * 4 + [1] * 2)
    report = group_metrics(pred, label, {"y": label})
    assert report.worst.name == "y:0"
    assert report.acc_wg == pytest.approx(0.6)
    assert "adj_acc_avg" not in report.as_dict()
    assert report.adj_acc_avg is None


def test_group_keys_are_plain_values() -> None:
    label = torch.tensor([0, 1, 1, 0])
    report = group_metrics(
        torch.tensor([0, 1, 0, 0]),
        label,
        {"y": label.float(), "background": np.array(["water", "land", "water", "land"])},
        {(0.0, "land"): 3, (0.0, "water"): 1, (1.0, "land"): 0, (1.0, "water"): 0},
    )
    assert [g.name for g in report.groups] == ["y:0_background:land", "y:0_background:water",
                                               "y:1_background:land", "y:1_background:water"]  # fmt: skip
    assert report.worst.name == "y:1_background:water"
    assert report.adj_acc_avg == pytest.approx(1.0)  # only the groups of the training split weigh


@pytest.mark.parametrize(
    ("pred", "label", "groups", "fragment"),
    [
        (PRED[:5], LABEL, {"y": LABEL}, "label has 10 values but there are 5 predictions"),
        (PRED, LABEL, {"y": LABEL, "place": PLACE[:3]}, "place has 3 values"),
        (PRED, LABEL, {}, "at least one group column"),
        (PRED.reshape(2, 5), LABEL.reshape(2, 5), {"y": LABEL}, "1-D"),
        (PRED[:0], LABEL[:0], {"y": LABEL[:0]}, "no predictions"),
    ],
)
def test_group_metrics_refuses_bad_input(pred: np.ndarray, label: np.ndarray, groups: dict, fragment: str) -> None:
    with pytest.raises(EditclipError, match=fragment):
        group_metrics(pred, label, groups)


def _reports() -> dict[str, GroupReport]:
    groups = {"y": LABEL, "place": PLACE}
    counts = {(0, 0): 6, (0, 1): 1, (1, 0): 1, (1, 1): 2}
    return {"baseline": group_metrics(PRED, LABEL, groups, counts), "edited": group_metrics(LABEL, LABEL, groups)}


def test_tables() -> None:
    reports = _reports()
    single = reports["baseline"].table().splitlines()
    assert single[0].split() == ["group", "count", "acc", "%"]
    assert single[2].split() == ["y:0_place:0", "3", "100.0"]
    assert single[3].split() == ["y:0_place:1", "2", "50.0"]
    assert single[6].split() == ["average", "10", "80.0"]
    assert single[7].split() == ["mean", "per", "group", "79.2"]
    assert single[8].split() == ["worst", "group", "50.0", "(y:0_place:1)"]
    assert single[9].split() == ["adjusted", "average", "88.3"]

    both = format_table(reports).splitlines()
    assert both[0].split() == ["group", "count", "baseline", "edited"]
    assert both[5].split() == ["y:1_place:1", "3", "66.7", "100.0"]
    assert both[-1].split() == ["adjusted", "average", "88.3", "-"]


def test_groups_are_named_by_their_values_and_keep_their_keys() -> None:
    names = {"y": {0: "landbird", 1: "waterbird"}, "place": {0: "land"}}
    report = group_metrics(PRED, LABEL, {"y": LABEL, "place": PLACE}, value_names=names)
    assert [g.label for g in report.groups] == ["landbird / land", "landbird / place:1", "waterbird / land",
                                                "waterbird / place:1"]  # fmt: skip
    flat = report.as_dict()
    assert flat["acc_y:0_place:1"] == 0.5 and flat["worst_group"] == "y:0_place:1"
    assert flat["group_names"]["y:1_place:0"] == "waterbird / land"
    table = report.table().splitlines()
    assert table[3].split() == ["landbird", "/", "place:1", "2", "50.0"]
    assert table[8].split()[-3:] == ["(landbird", "/", "place:1)"]
    assert "group_names" not in group_metrics(PRED, LABEL, {"y": LABEL}).as_dict()


def test_plot_groups_writes_one_png(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "groups.png"
    fig = plot_groups(_reports(), path, title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    # 95% error bars on every bar of both reports (4 groups + average + worst group)
    bars = [c for c in ax.containers if c.__class__.__name__ == "BarContainer"]
    assert len(bars) == 2 and all(b.errorbar is not None for b in bars)
    lower = bars[0].errorbar.lines[2][0].get_segments()
    assert len(lower) == 6 and all(seg[0][1] <= seg[1][1] for seg in lower)
    controls = {"acc_avg": [0.5, 0.6, 0.7], "acc_wg": [0.1, 0.2, 0.4], "acc_y:0_place:0": [1.0, 1.0, 0.9]}
    fig = plot_groups(_reports(), None, controls=controls, controls_label="random 2 heads")
    segments = fig.axes[0].collections[-1].get_segments()
    assert "random 2 heads" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sorted(seg[:, 1].tolist() for seg in segments)[0] == pytest.approx([10, 40])
    assert [p.name for p in path.parent.iterdir()] == ["groups.png"]
    with pytest.raises(EditclipError):
        plot_groups({}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


class _FakeBackbone:
    """encode_text from a table of vectors, so that the classifier can be computed by hand."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.calls: list[list[str]] = []

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(texts)
        return torch.tensor([self.vectors[t] for t in texts])


def test_zero_shot_classifier_by_hand() -> None:
    bb = _FakeBackbone({"x cat": [3, 4], "y cat": [2, 0], "x dog": [0, -5], "y dog": [0, -1]})
    weights = zero_shot_classifier(bb, ["cat", "dog"], ["x {}", lambda c: f"y {c}"], batch_size=3)  # type: ignore[arg-type]
    # cat: mean of (0.6, 0.8) and (1, 0) = (0.8, 0.4), renormalised; dog: (0, -1)
    expected = torch.tensor([[0.8, 0.4], [0.0, -1.0]])
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert torch.allclose(weights, expected)
    assert bb.calls == [["x cat", "y cat", "x dog"], ["y dog"]]
    assert predict(torch.tensor([[1.0, 0.1], [0.2, -3.0]]), weights).tolist() == [0, 1]


def test_template_sets() -> None:
    assert len(resolve_templates("openai_imagenet")) == 80
    assert resolve_templates("simple_imagenet")[0]("cat") == "itap of a cat."
    with pytest.raises(EditclipError, match="unknown template set"):
        resolve_templates("imagenet")
    with pytest.raises(EditclipError, match="exactly one"):
        resolve_templates(["a photo"])
    with pytest.raises(EditclipError, match="no templates"):
        resolve_templates([])


def test_zero_shot_classifier_matches_open_clip() -> None:
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    torch.manual_seed(0)
    bb = load(config=config)
    classes = ["landbird", "waterbird", "cat"]
    templates = resolve_templates("simple_imagenet")
    ours = zero_shot_classifier(bb, classes, templates, batch_size=5)
    theirs = open_clip.build_zero_shot_classifier(bb.model, bb.tokenizer, classes, templates, num_classes_per_batch=2)
    assert ours.shape == (3, 32)
    assert torch.allclose(ours, theirs.T, atol=1e-6)
