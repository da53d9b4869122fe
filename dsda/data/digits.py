"""scikit-learn's 8x8 digits with a fixed stratified 80/20 split. Tiny; for fast tests."""
from __future__ import annotations

import numpy as np
import torch

from ..utils import check_choice
from .common import SPLITS, _group_split, _normalise_uint8
from .dataset import DatasetError, DatasetInfo, TensorDataset, _make_info
from .guard import _guarded

DIGITS_CLASSES = tuple(str(d) for d in range(10))
DIGITS_SPLIT_SEED = 0          # seeds the per-class permutations of the stratified 80/20 split
DIGITS_TEST_FRACTION = 0.2
# Train-split statistics of pixel / 16 (tests/test_data.py recomputes them).
DIGITS_MEAN = (0.3044,)
DIGITS_STD = (0.3758,)


def fixed_info() -> DatasetInfo:
    """Metadata without reading any file (the class names and statistics are constants)."""
    return _make_info("digits", DIGITS_CLASSES, (1, 8, 8), DIGITS_MEAN, DIGITS_STD)


def digits_split_indices() -> dict[str, np.ndarray]:
    """Indices into `sklearn.datasets.load_digits()` for the fixed stratified 80/20 split.

    Per class (in class order): the class's indices in file order, a permutation from
    `_group_split(n, str(class), 0.2, DIGITS_SPLIT_SEED)`, the first round(0.2 n) go to test.
    Returned indices are sorted (file order).
    """
    from sklearn.datasets import load_digits
    target = load_digits().target
    train, test = [], []
    for c in range(10):
        members = np.flatnonzero(target == c)
        tr, te = _group_split(len(members), str(c), DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
        train.append(members[tr])
        test.append(members[te])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


@_guarded
def read_digits(split: str) -> TensorDataset:
    check_choice("split", split, SPLITS)
    from sklearn.datasets import load_digits
    d = load_digits()
    images = d.images   # (1797, 8, 8) float64 holding integers 0..16
    if images.shape[1:] != (8, 8) or images.min() < 0 or images.max() > 16:
        raise DatasetError("scikit-learn's load_digits returned unexpected data; reinstall scikit-learn")
    idx = digits_split_indices()[split]
    a = images[idx].astype(np.uint8)[:, None]
    x = _normalise_uint8(a, DIGITS_MEAN, DIGITS_STD, max_value=16)
    y = torch.from_numpy(d.target[idx].astype(np.int64))
    return TensorDataset(x, y, fixed_info())

