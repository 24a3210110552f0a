"""Split the bone into vertebrae, sacrum and the other bones, by a marker-controlled watershed.

Every vertebra gets a marker: its bone in the middle of its slab between the two disc planes (planes through
the disc centres, perpendicular to the body line), near the spine curve. Bone far from the curve (ilia, ribs,
femurs) gets markers of its own. The watershed then floods the bone from the markers over the smoothed HU
turned upside down, so that two markers meet where the bone is faintest: in the disc, across the gap of a
facet joint or of the sacroiliac joint, not through solid bone.

Bright things in front of the vertebral bodies (a contrast-filled aorta against the body, calcified vessel
walls) are not vertebra however close they lie: bone more than :data:`FRONT_MM` in front of the body line, or
in front of it and more than :data:`SIDE_MM` to its side, seeds "other bone" too, and the watershed cuts it off
the body at the faint gap between them. The side rule holds between two discs only: below the last disc the
sacral ala spreads sideways in front of the canal.

Nearer than that, a bright thing against the front of a body (a flattened, contrast-filled aorta beside a
thoracic body, a calcified aortic wall) is told apart by a gap: in the axial slice, bone in front of the body
line that is not joined to the bone holding the body line's point is not that body's, and not bone: it is
flooded as such and dropped (as "other bone" it could pass for a rib touching the vertebra). Only the front half
is judged so: an axial slice cuts a vertebra's posterior elements (a caudally sloping spinous process) apart from
its arch.

Bone near the spine that is not joined to the canal's ring (within :data:`OTHER_BONE_MM` of the curve) is a vertebra
only where it could be a loose posterior element: a piece whose voxels lie on average in front of the body line or
more than :data:`LOOSE_SIDE_MM` to its side (the enhancing cortex of a kidney's upper pole, a crus of the
diaphragm) is dropped likewise.
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
#: Bone this far in front of the body line (the bodies' centres) is in front of the body: a lumbar body is 30-35 mm
#: deep, a thoracic one 25-30 mm, and an anterior osteophyte adds a few mm, mm.
FRONT_MM = 26.0
#: Bone in front of the body line and this far to its side is beside the body (the descending aorta lies against
#: the left side of the thoracic bodies); the widest lumbar bodies are 50 mm across, mm.
SIDE_MM = 32.0
#: A slab whose core holds less bone than this (ml) is not a vertebra (a sliver at the scan's edge).
MIN_VERTEBRA_ML = 4.0
#: Bone this close to the spine curve (the canal's centre) is the ring of bone round the canal, mm.
RING_MM = 15.0
#: A piece of bone that is not joined to the canal's ring and lies on average this far to the side of the body line
#: is not a loose spinous process or lamina, mm.
LOOSE_SIDE_MM = 20.0
#: The watershed's marker of bright things judged not to be bone at all (dropped after the flooding).
NOT_BONE = np.iinfo(np.int32).max
#: Beyond its ends the body line is taken as straight down (or up) for this far: the scan's first and last
#: bodies, cut by its edge, hold no line point, mm.
LINE_REACH_MM = 20.0
#: The end slabs (above the first disc, below the last) seed their vertebra this far from the disc (a typical
#: level's margin), mm.
END_MARGIN_MM = 8.0


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
            keep[here] = (points_mm[here] - above.center_mm) @ above.normal < -END_MARGIN_MM
        elif below is not None:
            keep[here] = (points_mm[here] - below.center_mm) @ below.normal > END_MARGIN_MM
    return keep


def offsets_from_line(points_mm: np.ndarray, line: SpineCurve) -> tuple[np.ndarray, np.ndarray]:
    """How far each point (M, 3) lies behind the body line (negative: in front) and to its left, mm."""
    _, nearest = cKDTree(line.points_mm).query(points_mm)
    offset = points_mm - line.points_mm[nearest]
    return np.einsum("ij,ij->i", offset, line.posterior[nearest]), np.einsum("ij,ij->i", offset, line.left[nearest])


def in_front_of_bodies(posterior_mm: np.ndarray, left_mm: np.ndarray, between_discs: np.ndarray) -> np.ndarray:
    """Which points, given by their :func:`offsets_from_line`, lie in front of the vertebral bodies, or beside their
    front half where the point lies between two discs (``between_discs``, (M,) bool); see the module."""
    return (posterior_mm < -FRONT_MM) | (between_discs & (posterior_mm < 0.0) & (np.abs(left_mm) > SIDE_MM))


def _apart_from_body(bone: np.ndarray, zyx: np.ndarray, posterior_mm: np.ndarray, slab: np.ndarray,
                     affine: np.ndarray, line: SpineCurve, discs: list[Disc]) -> np.ndarray:
    """Which bone voxels (given as indices ``zyx`` in ``np.argwhere`` order, offsets behind the body line
    ``posterior_mm`` and slabs ``slab``) lie in front of the body line but, in their axial slice, in a piece wholly
    in front of it and apart from the bone that holds the line's point there (see the module). Only the voxels in
    the same slab as the line's point are judged: an axial slice through a lordotic disc cuts the corner of the
    next body too."""
    front = posterior_mm < 0.0
    apart = np.zeros(len(zyx), dtype=bool)
    inverse = np.linalg.inv(affine)
    eight = np.ones((3, 3), dtype=bool)
    starts = np.searchsorted(zyx[:, 0], np.arange(bone.shape[0] + 1))  # argwhere lists the voxels slice by slice
    for k in np.unique(zyx[front, 0]):
        z_mm = affine[2, 2] * k + affine[2, 3]
        on_line = int(np.argmin(np.abs(line.points_mm[:, 2] - z_mm)))
        if abs(line.points_mm[on_line, 2] - z_mm) > LINE_REACH_MM:
            continue  # the body line does not come near this slice
        x, y = (inverse @ np.append(line.points_mm[on_line], 1.0))[:2]
        i, j = int(round(y)), int(round(x))
        if not (0 <= i < bone.shape[1] and 0 <= j < bone.shape[2] and bone[k, i, j]):
            continue  # the line's point is not in bone here (a disc, the sacrum's canal): nothing to judge by
        pieces, _ = ndimage.label(bone[k], structure=eight)
        held = pieces[i, j]
        in_slice = slice(starts[k], starts[k + 1])
        y_x, ahead = zyx[in_slice, 1:], front[in_slice]
        piece = pieces[y_x[:, 0], y_x[:, 1]]
        judged = ahead & (slab[in_slice] == slab_index(line.points_mm[on_line:on_line + 1], discs)[0])
        apart[in_slice] = judged & (piece != held) & ~np.isin(piece, piece[~ahead])
    return apart


def _apart_from_ring(bone: np.ndarray, zyx: np.ndarray, distance_mm: np.ndarray, posterior_mm: np.ndarray,
                     left_mm: np.ndarray) -> np.ndarray:
    """Which bone voxels (indices ``zyx``, ``distance_mm`` from the spine curve, offsets from the body line
    ``posterior_mm`` and ``left_mm``) lie in a piece near the spine that is not joined to the canal's ring and is
    not where a loose posterior element would be (see the module)."""
    near = distance_mm < OTHER_BONE_MM
    corridor = np.zeros(bone.shape, dtype=bool)
    corridor[tuple(zyx[near].T)] = True
    pieces, count = ndimage.label(corridor, structure=np.ones((3, 3, 3), dtype=bool))
    piece_of = pieces[tuple(zyx.T)]
    ring = np.zeros(count + 1, dtype=bool)
    ring[np.unique(piece_of[near & (distance_mm < RING_MM)])] = True
    ring[0] = True  # outside the corridor: judged elsewhere
    if ring.all():
        return np.zeros(len(zyx), dtype=bool)
    size = np.maximum(np.bincount(piece_of, minlength=count + 1), 1)
    mean_posterior = np.bincount(piece_of, weights=posterior_mm, minlength=count + 1) / size
    mean_side = np.bincount(piece_of, weights=np.abs(left_mm), minlength=count + 1) / size
    apart = ~ring & ((mean_posterior < 0.0) | (mean_side > LOOSE_SIDE_MM))
    return apart[piece_of]


def split_bone(bone: np.ndarray, smooth_hu: np.ndarray, affine: np.ndarray, curve: SpineCurve,
               discs: list[Disc], line: SpineCurve) -> tuple[np.ndarray, int]:
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
    line : SpineCurve
        The body line (through the vertebral bodies' centres).

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
        labels[box] = _split_box(bone[box], smooth_hu[box], shifted_affine(affine, box), curve, discs, line,
                                 other_base)
    return labels, other_base


def _split_box(bone: np.ndarray, smooth_hu: np.ndarray, affine: np.ndarray, curve: SpineCurve, discs: list[Disc],
               line: SpineCurve, other_base: int) -> np.ndarray:
    """:func:`split_bone` on a box that holds all the bone (arguments alike; ``affine`` is the box's)."""
    zyx = np.argwhere(bone)
    points = voxel_centres_mm(zyx, affine)
    distance, _ = cKDTree(curve.points_mm).query(points)
    slab = slab_index(points, discs)
    posterior, left = offsets_from_line(points, line)
    elsewhere = (distance > OTHER_BONE_MM) | in_front_of_bodies(posterior, left, (slab > 0) & (slab < len(discs)))
    not_bone = _apart_from_body(bone, zyx, posterior, slab, affine, line, discs)
    not_bone |= _apart_from_ring(bone, zyx, distance, posterior, left)
    elsewhere |= not_bone
    markers = np.zeros(bone.shape, dtype=np.int32)
    seed = (distance < MARKER_REACH_MM) & ~elsewhere & _core(points, slab, discs)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    for k in range(len(discs) + 1):
        here = seed & (slab == k)
        if here.sum() * voxel_ml >= MIN_VERTEBRA_ML:
            markers[tuple(zyx[here].T)] = k + 1
    far = np.zeros(bone.shape, dtype=bool)
    far[tuple(zyx[elsewhere].T)] = True
    pieces, count = ndimage.label(far, structure=np.ones((3, 3, 3), dtype=bool))
    markers[far] = pieces[far] + other_base - 1
    markers[tuple(zyx[not_bone].T)] = NOT_BONE
    relief = np.where(bone, -smooth_hu, 4000.0).astype(np.float32)
    flooded = sitk.MorphologicalWatershedFromMarkers(
        sitk.GetImageFromArray(relief), sitk.GetImageFromArray(markers), markWatershedLine=False, fullyConnected=True,
    )
    labels = sitk.GetArrayFromImage(flooded).astype(np.int32)
    labels[~bone | (labels == NOT_BONE)] = 0
    return labels
