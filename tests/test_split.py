"""The watershed split of the bone into vertebrae, on a hand-built column whose answer is known by construction."""

from __future__ import annotations

import numpy as np

from needleplan.segment.curve import frames_along
from needleplan.segment.discs import Disc
from needleplan.segment.split import split_bone

#: The grid is 1 mm, index (z, y, x) = world (z, y, x): x to the patient's left, y posterior, z cranial.
SHAPE = (60, 80, 90)
CANAL_XY = (40.0, 50.0)
BODY_XY = (40.0, 30.0)
BODY_RADIUS = 12.0


def _column() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Two vertebral bodies (a disc gap at z 29-31) with an arch round the canal, and around them: an aorta 2 mm
    in front of the bodies joined to them only at the scan's foot, a kidney-like blob 35 mm to the side, and a
    loose spinous tip behind the canal."""
    z, y, x = np.mgrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]].astype(float)
    bodies = ((x - BODY_XY[0]) ** 2 + (y - BODY_XY[1]) ** 2 <= BODY_RADIUS**2) & ((z <= 28) | (z >= 32)) & (z >= 2)
    ring = np.hypot(x - CANAL_XY[0], y - CANAL_XY[1])
    arch = (ring >= 7.0) & (ring <= 10.0) & (y >= 41.0) & ((z <= 28) | (z >= 32)) & (z >= 2)
    aorta = (x - 40.0) ** 2 + (y - 10.0) ** 2 <= 36.0  # y 4..16, the bodies' front at y 18
    bridge = (z <= 1) & (np.abs(x - 40.0) <= 3.0) & (y >= 10.0) & (y <= 30.0)
    kidney = (x - 75.0) ** 2 + (y - 30.0) ** 2 + (z - 45.0) ** 2 <= 36.0
    spinous = (np.abs(x - 40.0) <= 2.0) & (y >= 66.0) & (y <= 72.0) & (np.abs(z - 45.0) <= 3.0)
    parts = {"bodies": bodies, "arch": arch, "aorta": aorta & (z >= 2), "kidney": kidney, "spinous": spinous}
    bone = bodies | arch | aorta | bridge | kidney | spinous
    return bone, parts


def test_an_aorta_against_the_bodies_and_a_kidney_beside_them_are_not_vertebra():
    bone, parts = _column()
    smooth_hu = np.where(bone, 400.0, 40.0)
    heights = np.arange(SHAPE[0] - 1, -1, -1.0)  # cranial first
    curve = frames_along(np.column_stack([np.full_like(heights, CANAL_XY[0]), np.full_like(heights, CANAL_XY[1]),
                                          heights]))
    line = frames_along(np.column_stack([np.full_like(heights, BODY_XY[0]), np.full_like(heights, BODY_XY[1]),
                                         heights]))
    discs = [Disc(np.array([*BODY_XY, 30.0]), np.array([0.0, 0.0, 1.0]), 3.0)]
    labels, other_base = split_bone(bone, smooth_hu, np.eye(4), curve, discs, line)
    vertebra = (labels > 0) & (labels < other_base)
    assert set(np.unique(labels[parts["bodies"] & (np.mgrid[:SHAPE[0]][:, None, None] >= 33)])) == {1}
    assert set(np.unique(labels[parts["bodies"] & (np.mgrid[:SHAPE[0]][:, None, None] <= 27)])) == {2}
    assert vertebra[parts["arch"]].all()
    assert not vertebra[parts["aorta"]].any()
    assert not vertebra[parts["kidney"]].any()
    assert vertebra[parts["spinous"]].all()  # a loose posterior element stays its vertebra's
