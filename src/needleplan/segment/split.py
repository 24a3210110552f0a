"""Split the bone into vertebrae, sacrum and the other bones, by a marker-controlled watershed.

Every vertebra gets a marker: its bone in the middle of its slab between the two disc planes (planes through
the disc centres, perpendicular to the body line), near the spine curve. Bone far from the curve (ilia, ribs,
femurs) gets markers of its own. The watershed then floods the bone from the markers over the smoothed HU
turned upside down, so that two markers meet where the bone is faintest: in the disc, across the gap of a
facet joint or of the sacroiliac joint, not through solid bone.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import cKDTree

from .curve import SpineCurve
from .discs import Disc
from .grid import bounding_box, shifted_affine, voxel_centres_mm

#: The middle share of each slab (between its disc planes) that seeds its vertebra.
MARKER_CORE_SHARE = 0.5
#: Vertebra markers lie within this distance of the spine curve, mm.
MARKER_REACH_MM = 45.0
#: Bone farther than this from the curve seeds "other bone" (ilia, ribs, femurs), mm.
OTHER_BONE_MM = 60.0
#: A slab whose core holds less bone than this (ml) is not a vertebra (a sliver at the scan's edge).
MIN_VERTEBRA_ML = 4.0


def slab_index(points_mm: np.ndarray, discs: list[Disc]) -> np.ndarray:
    """For each point (M, 3): how many disc planes lie above it (0 = above the first disc)."""
    index = np.zeros(len(points_mm), dtype=np.int32)
    for disc in discs:
        index += ((points_mm - disc.center_mm) @ disc.normal < 0).astype(np.int32)
    return index


def _core(points_mm: np.ndarray, slab: np.ndarray, discs: list[Disc]) -> np.ndarray:
    """Points in the middle :data:`MARKER_CORE_SHARE` of their slab (height measured between its disc planes)."""
    keep = np.ones(len(points_mm), dtype=bool)
    margin = 0.5 * (1.0 - MARKER_CORE_SHARE)
    for k in range(len(discs) + 1):
        here = slab == k
        above = discs[k - 1] if k > 0 else None
        below = discs[k] if k < len(discs) else None
        if above is not None and below is not None:
            height = float(np.dot(above.center_mm - below.center_mm, 0.5 * (above.normal + below.normal)))
            top = (points_mm[here] - above.center_mm) @ above.normal  # negative inside
            bottom = (points_mm[here] - below.center_mm) @ below.normal  # positive inside
            keep[here] = (top < -margin * height) & (bottom > margin * height)
        elif above is not None:  # below the last disc: keep away from it by the same margin of a typical level
            keep[here] = (points_mm[here] - above.center_mm) @ above.normal < -8.0
        elif below is not None:
            keep[here] = (points_mm[here] - below.center_mm) @ below.normal > 8.0
    return keep


def split_bone(bone: np.ndarray, smooth_hu: np.ndarray, affine: np.ndarray, curve: SpineCurve,
               discs: list[Disc]) -> tuple[np.ndarray, int]:
    """Label the bone: slab k's vertebra gets k + 1 (k = 0 above the first disc), other bone ``OTHER + n``.

    The work is done on the bone's bounding box (one voxel of margin), which holds every marker and every
    voxel that keeps a label.

    Parameters
    ----------
    bone : ndarray of bool (z, y, x)
        Bone mask on the LPS-aligned working grid.
    smooth_hu : ndarray (z, y, x)
        Smoothed HU on the same grid.
    affine : ndarray (4, 4)
        The grid's index_to_world.
    curve : SpineCurve
    discs : list of Disc, cranial to caudal

    Returns
    -------
    labels : ndarray of int32 (z, y, x)
        1..len(discs)+1 for the slabs' vertebrae (0 where no vertebra was seeded), ``other_base + n`` for other
        bone pieces.
    other_base : int
        First id of the other-bone labels.
    """
    labels = np.zeros(bone.shape, dtype=np.int32)
    other_base = len(discs) + 2
    box = bounding_box(bone, margin=1)
    if box is not None:
        labels[box] = _split_box(bone[box], smooth_hu[box], shifted_affine(affine, box), curve, discs, other_base)
    return labels, other_base


def _split_box(bone: np.ndarray, smooth_hu: np.ndarray, affine: np.ndarray, curve: SpineCurve, discs: list[Disc],
               other_base: int) -> np.ndarray:
    """:func:`split_bone` on a box that holds all the bone (arguments alike; ``affine`` is the box's)."""
    zyx = np.argwhere(bone)
    points = voxel_centres_mm(zyx, affine)
    distance, _ = cKDTree(curve.points_mm).query(points)
    slab = slab_index(points, discs)
    markers = np.zeros(bone.shape, dtype=np.int32)
    seed = (distance < MARKER_REACH_MM) & _core(points, slab, discs)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    for k in range(len(discs) + 1):
        here = seed & (slab == k)
        if here.sum() * voxel_ml >= MIN_VERTEBRA_ML:
            markers[tuple(zyx[here].T)] = k + 1
    far = np.zeros(bone.shape, dtype=bool)
    far[tuple(zyx[distance > OTHER_BONE_MM].T)] = True
    pieces, count = ndimage.label(far, structure=np.ones((3, 3, 3), dtype=bool))
    markers[far] = pieces[far] + other_base - 1
    relief = np.where(bone, -smooth_hu, 4000.0).astype(np.float32)
    flooded = sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray(relief), sitk.GetImageFromArray(markers), markWatershedLine=False, fullyConnected=True,
    )
    labels = sitk.GetArrayFromImage(flooded).astype(np.int32)
    labels[~bone] = 0
    return labels
