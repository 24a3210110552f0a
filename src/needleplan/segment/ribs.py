"""Ribs: thin, elongated bone that leaves a vertebra at its side and runs out laterally.

After the watershed (:mod:`.split`) each rib's outer part is a piece of "other bone" of its own, seeded far from
the spine curve. A piece is taken for a rib by its shape and position, never by its size alone: on a contrast
CT the spleen and the aorta's wall can stay in the bone mask and touch a vertebra too. A rib piece is thin (its
volume over its length is a rib's cross-section, not an organ's), elongated, and its medial end (the point
nearest the spine curve) lies beside the canal at the height of the vertebra it touches (between that
vertebra's disc planes), where the costovertebral and costotransverse joints are.
"""

from __future__ import annotations

import numpy as np

from .curve import SpineCurve
from .discs import Disc
from .grid import voxel_centres_mm
from .split import slab_index

#: Smallest rib piece counted, ml: the short 12th rib's part beyond the watershed's reach held 0.6-1.1 ml on the
#: chest CT.
MIN_RIB_ML = 0.5
#: A rib is at most this thick on average (volume over length; a rib is about 10 x 15 mm, the spleen measured
#: 1400 mm2 and the shoulder girdle 1000 mm2), mm^2.
MAX_RIB_SECTION_MM2 = 200.0
#: A rib piece is at least this long (extent along its main axis; a blob of marrow or a calcification is not), mm.
MIN_RIB_LENGTH_MM = 15.0
#: A rib's medial end lies at least this far to the side of the spine curve (the costovertebral joints lie beside
#: the pedicles); bone leaving the vertebra straight forward or backward is not a rib, mm.
MIN_RIB_SIDE_MM = 15.0


def is_rib_shaped(points_mm: np.ndarray, voxel_ml: float) -> bool:
    """Whether a piece of bone (voxel centres (M, 3), world mm) is thin and elongated like a rib."""
    if len(points_mm) * voxel_ml < MIN_RIB_ML:
        return False
    spread = np.linalg.eigvalsh(np.cov((points_mm - points_mm.mean(axis=0)).T))
    length = float(np.sqrt(12.0 * spread[-1]))  # the extent of a uniform rod with this variance
    return length >= MIN_RIB_LENGTH_MM and len(points_mm) * voxel_ml * 1000.0 / length <= MAX_RIB_SECTION_MM2


def rib_of(points_mm: np.ndarray, voxel_ml: float, curve: SpineCurve, discs: list[Disc]) -> int | None:
    """The slab (0 = above the first disc, as :func:`.split.slab_index`) whose vertebra a piece of bone is a rib
    of, or None when the piece is not rib-shaped or its medial end is not beside the canal.

    Parameters
    ----------
    points_mm : ndarray (M, 3)
        The piece's voxel centres, world mm.
    voxel_ml : float
        Volume of one voxel, ml.
    curve : SpineCurve
        The spine curve through the canal.
    discs : list of Disc
        The discs, cranial to caudal.
    """
    if not is_rib_shaped(points_mm, voxel_ml):
        return None
    sample = points_mm[::max(1, len(points_mm) // 2000)]  # enough to find the medial end, a few ms
    nearest = curve.nearest(sample)
    gaps = np.linalg.norm(sample - curve.points_mm[nearest], axis=1)
    head = int(np.argmin(gaps))
    side = abs(float((sample[head] - curve.points_mm[nearest[head]]) @ curve.left[nearest[head]]))
    if side < MIN_RIB_SIDE_MM:
        return None
    return int(slab_index(sample[head][None], discs)[0])


def ribs_by_vertebra(slabs: np.ndarray, present: list[int], other_base: int, affine: np.ndarray,
                     curve: SpineCurve, discs: list[Disc], touching: dict[int, dict[int, int]]) -> dict[int, list[int]]:
    """The rib pieces of each vertebra: other-bone pieces touching it that :func:`rib_of` gives to its slab.

    Parameters
    ----------
    slabs : ndarray of int (z, y, x)
        The watershed's labels (:func:`.split.split_bone`): vertebra k is label k (slab k - 1).
    present : list of int
        The vertebra labels found.
    other_base : int
        First label of the other-bone pieces.
    affine : ndarray (4, 4)
        The working grid's index_to_world.
    curve : SpineCurve
    discs : list of Disc
    touching : dict
        For each vertebra label, the labels touching it with their contact counts.

    Returns
    -------
    dict of int to list of int
        Vertebra label -> labels of its rib pieces (empty when it bears none).
    """
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    verdict: dict[int, int | None] = {}
    out: dict[int, list[int]] = {}
    for k in present:
        out[k] = []
        for piece in touching[k]:
            if piece < other_base:
                continue
            if piece not in verdict:
                verdict[piece] = rib_of(voxel_centres_mm(np.argwhere(slabs == piece), affine), voxel_ml, curve, discs)
            if verdict[piece] == k - 1:
                out[k].append(piece)
    return out
