"""Telling CT, MR and label maps apart when a file format does not say."""

from __future__ import annotations

import numpy as np

#: A label map has at most this many distinct non-negative integer values.
MAX_LABELS = 255


def guess_modality(voxels: np.ndarray) -> tuple[str, str]:
    """Guess what a volume's values are.

    Returns
    -------
    (modality, reason) : (str, str)
        ``"LABEL"`` for few non-negative whole numbers, ``"CT"`` when air sits near -1000 (HU), else ``"MR"``.
    """
    sample = voxels[:: max(1, voxels.shape[0] // 32)]
    low = float(np.min(sample))
    whole = voxels.dtype.kind in "iub" or bool(np.all(np.mod(sample, 1) == 0))
    if whole and low >= 0:
        values = np.unique(sample)
        if values.size <= MAX_LABELS and float(values.max()) <= 1000:
            return "LABEL", f"guessed from {values.size} distinct whole-number values"
    if low <= -500:
        return "CT", f"guessed from values down to {low:.0f} (air in HU)"
    return "MR", f"guessed from values {low:.0f} and up (no air at -1000, so not HU)"
