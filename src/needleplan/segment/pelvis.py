"""Pelvic landmarks from the sacrum and ilium labels: crest tops, PSIS, sacral ala and SI joint lines."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import ILIUM_IDS, VERSE_IDS, Vertebra
from .grid import voxel_centres_mm

#: Height bins of the SI joint lines, mm.
JOINT_STEP_MM = 5.0


def pelvis_landmarks(verse: np.ndarray, affine: np.ndarray, s1: Vertebra | None) -> dict[str, Any]:
    """Pelvic landmarks (world mm) from a VerSe label map on an LPS-aligned grid and the S1 vertebra.

    The sacroiliac joint is where sacrum and ilium labels meet: per height step, its most posterior contact
    point makes the posterior joint line and the most anterior the anterior joint line, superior to inferior.
    """
    sacrum = verse == VERSE_IDS["S1"]
    if not sacrum.any() or s1 is None or "axes" not in s1.landmarks:
        return {}
    axes = s1.landmarks["axes"]
    left, posterior, superior = (np.asarray(axes[k]) for k in ("left", "posterior", "superior"))
    origin = np.asarray(s1.landmarks["body_centroid"])
    marks: dict[str, Any] = {"midline": {"point": origin, "normal": left}}
    sacrum_grown = ndimage.binary_dilation(sacrum, iterations=2)
    sac_points = voxel_centres_mm(np.argwhere(sacrum), affine)
    top = float(np.max((sac_points - origin) @ superior))
    for side, label in ILIUM_IDS.items():
        sign = 1.0 if side == "left" else -1.0
        ilium = verse == label
        on_side = sac_points[sign * ((sac_points - origin) @ left) > 0]
        upper = on_side[(on_side - origin) @ superior > top - 20.0]
        if len(upper):
            marks[f"sacral_ala_{side}"] = upper[np.argmax(sign * ((upper - origin) @ left))]
        if not ilium.any():
            continue
        points = voxel_centres_mm(np.argwhere(ilium), affine)
        marks[f"iliac_crest_top_{side}"] = points[np.argmax((points - origin) @ superior)]
        marks[f"psis_{side}"] = points[np.argmax((points - origin) @ posterior)]
        touching = sacrum_grown & ndimage.binary_dilation(ilium, iterations=2) & (sacrum | ilium)
        contact = voxel_centres_mm(np.argwhere(touching), affine)
        if len(contact) < 4:
            continue
        height = (contact - origin) @ superior
        depth = (contact - origin) @ posterior
        back, front = [], []
        for start in np.arange(height.max(), height.min() - 1e-6, -JOINT_STEP_MM):
            band = (height <= start) & (height > start - JOINT_STEP_MM)
            if band.sum() >= 2:
                back.append(contact[band][np.argmax(depth[band])])
                front.append(contact[band][np.argmin(depth[band])])
        if len(back) >= 2:
            marks[f"si_joint_posterior_line_{side}"] = np.array(back)
            marks[f"si_joint_anterior_line_{side}"] = np.array(front)
    return marks
