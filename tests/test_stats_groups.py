"""Group values and per-batch group indices of the statistics pass, against the per-image string labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from editclip.data import ImageDataset
from editclip.stats import _group_index, group_keys, group_values


def _dataset(columns: dict[str, list[int]]) -> ImageDataset:
    n = len(next(iter(columns.values())))
    return ImageDataset(name="t", root=Path("."), format="csv", split=None, ids=[str(i) for i in range(n)],
                        paths=[Path(f"{i}.png") for i in range(n)],
                        columns={k: np.array(v, dtype=np.int64) for k, v in columns.items()})  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_group_values_and_batch_indices_equal_the_string_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    ds = _dataset({"y": rng.integers(0, 12, n).tolist(), "place": rng.integers(-1, 3, n).tolist(),
                   "split": [0] * n})  # fmt: skip  (values past 9 sort as strings: "10" < "2")
    labels = group_keys(ds)
    values = group_values(ds)
    assert values == {key: sorted(set(v.tolist())) for key, v in labels.items()}
    assert set(values) == {"y", "place", "y,place"}
    rows = rng.permutation(n)[:37]
    index = _group_index(ds, values, rows)
    for key, value in labels.items():
        assert [values[key][i] for i in index[key].tolist()] == value[rows].tolist()
