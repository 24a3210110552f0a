"""Per-label statistics of a label array in one pass (``np.bincount``), for many labels at once."""

from __future__ import annotations

import numpy as np


def label_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Voxel count of labels 1..``count`` of an integer label array (any shape) -> (count,)."""
    return np.bincount(labels.ravel(), minlength=count + 1)[1:count + 1]


def label_means(values: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Mean of ``values`` over each of labels 1..``count`` (same shape as ``values``) -> (count,), NaN if empty."""
    inside = labels > 0
    where = labels[inside]
    sums = np.bincount(where, weights=values[inside].astype(np.float64), minlength=count + 1)[1:count + 1]
    sizes = np.bincount(where, minlength=count + 1)[1:count + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / sizes
