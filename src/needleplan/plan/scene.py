"""What a needle path can meet: the masks and distance look-ups the planner and its safety report share.

A :class:`Scene` is built once per :class:`~needleplan.anatomy.Spine` (cached on its label map) from the label
map and the structure map, both on the scan grid. Targets and contacts are judged on the bone masks; a needle's
shaft also on the bone's partial-volume rim (:attr:`Scene.shaft_bone`, :attr:`Scene.bone_rim`), so that a thin
crest or process that a coarse scan shows only as partly bony voxels still blocks a path (the rim within half a
voxel beyond the intended contact is the target's own bone and allowed). Inside-tests are nearest-voxel look-ups;
clearances are distances to the voxel centres of a structure's surface (k-d trees) minus half a voxel; the zone
anterior to the vertebral bodies is a plane per vertebra through its most anterior bone, normal to its posterior
axis.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..anatomy import ILIUM_IDS, STRUCTURE_IDS, VERSE_NAMES, Spine
from ..errors import NeedleplanError
from ..volume import Volume

#: Label given to bone that belongs to no vertebra or ilium (ribs, femur...).
OTHER_BONE = 255


@dataclass
class AnteriorPlane:
    """The front of one vertebral body: points with ``posterior . (x - point) < 0`` are in front of it."""

    name: str
    point: np.ndarray
    posterior: np.ndarray
    superior: np.ndarray


class Scene:
    """Masks, k-d trees and planes of one spine, in world mm.

    Parameters
    ----------
    spine : Spine
        Needs ``labels`` and ``structures`` (the body outline, canal, discs and bowel gas).
    """

    def __init__(self, spine: Spine) -> None:
        if spine.structures is None:
            raise NeedleplanError("planning needs the body outline, canal and discs (Spine.structures); this spine "
                                  "has none (segment a CT with needleplan.segment)")
        labels = spine.labels
        structures = spine.structures
        if structures.shape != labels.shape or not np.allclose(structures.index_to_world, labels.index_to_world):
            structures = structures.resample(labels.index_to_world, labels.shape, order=0)
        self.spine = spine
        self.world_to_index = labels.world_to_index
        self.shape = labels.shape
        self.spacing_mm = float(labels.spacing_mm.min())
        ids = structures.voxels
        bone = labels.voxels.astype(np.uint8, copy=True)
        bone[np.isin(ids, (STRUCTURE_IDS["bone"], STRUCTURE_IDS["rib"])) & (bone == 0)] = OTHER_BONE
        self.bone = bone
        self.bone_rim = (ids == STRUCTURE_IDS["bone_edge"]) & (bone == 0)
        self.shaft_bone = _with_bone_rim(bone, self.bone_rim)
        #: a rim voxel within this distance beyond the intended contact belongs to the target's own bone
        self.rim_extra_mm = 0.5 * float(labels.spacing_mm.max())
        self._shaft_mask = (self.shaft_bone > 0).view(np.uint8)  # 0/1 for interpolation, without a copy
        self.body = (ids > 0) | (bone > 0)
        self.canal = ids == STRUCTURE_IDS["canal"]
        self.disc = ids == STRUCTURE_IDS["disc"]
        if not self.canal.any():
            raise NeedleplanError("this spine has no vertebral canal in its structure map; a plan cannot be checked "
                                  "against it")
        self._half_voxel = 0.5 * float(np.linalg.norm(labels.spacing_mm)) / np.sqrt(3.0)
        self._trees = {name: _surface_tree(mask, labels) for name, mask in
                       (("canal", self.canal), ("disc", self.disc), ("bowel_gas", ids == STRUCTURE_IDS["bowel_gas"]))}
        self.anterior_planes = _anterior_planes(spine)
        self._affine = labels.index_to_world

    # ---- look-ups ---------------------------------------------------------------------------------------------
    def _kji(self, points_mm: np.ndarray) -> np.ndarray:
        """Continuous (k, j, i) array coordinates of points (..., 3)."""
        ijk = np.asarray(points_mm, dtype=np.float64) @ self.world_to_index[:3, :3].T + self.world_to_index[:3, 3]
        return ijk[..., ::-1]

    def _index(self, points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest voxel (k, j, i) of points (..., 3) and whether it is inside the grid."""
        index = np.floor(self._kji(points_mm) + 0.5).astype(np.int64)  # as the compiled walk rounds
        inside = np.all((index >= 0) & (index < np.array(self.shape)), axis=-1)
        return np.where(inside[..., None], index, 0), inside

    def lookup(self, mask: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
        """Values of a scan-grid array at points (..., 3); 0 / False outside the grid."""
        index, inside = self._index(np.asarray(points_mm, dtype=np.float64))
        values = mask[index[..., 0], index[..., 1], index[..., 2]]
        return np.where(inside, values, 0).astype(mask.dtype)

    def bone_fraction(self, points_mm: np.ndarray) -> np.ndarray:
        """Share of bone (its partial-volume rim included) at points (..., 3): the trilinear interpolation of the
        shaft's bone mask, a continuous field whose half-way surface lies between voxel centres."""
        kji = self._kji(np.asarray(points_mm, dtype=np.float64))
        flat = kji.reshape(-1, 3).T
        values = ndimage.map_coordinates(self._shaft_mask, flat, order=1, mode="constant", cval=0.0,
                                         output=np.float32)
        return values.reshape(kji.shape[:-1])

    def bone_on_shaft(self, points_mm: np.ndarray, from_tip_mm: np.ndarray, contact_mm: float) -> np.ndarray:
        """Boolean (...,): points of a needle's shaft that lie in bone beyond the intended contact.

        Bone counts from ``contact_mm`` from the tip on; the partial-volume rim, and the half-way surface of the
        continuous field (:meth:`bone_fraction`), from half a voxel further (the target's own bone lies within it).
        """
        points = np.asarray(points_mm, dtype=np.float64)
        beyond_rim = from_tip_mm > contact_mm + self.rim_extra_mm
        solid = (self.lookup(self.bone, points) > 0) & (from_tip_mm > contact_mm)
        return solid | (beyond_rim & (self.lookup(self.bone_rim, points) | (self.bone_fraction(points) >= 0.5)))

    def bone_near(self, point_mm: np.ndarray) -> int:
        """The largest value of :attr:`shaft_bone` in the nearest voxel and its 26 neighbours (0 if none), to name
        what was met."""
        index, inside = self._index(np.asarray(point_mm, dtype=np.float64)[None])
        if not inside[0]:
            return 0
        k, j, i = index[0]
        return int(self.shaft_bone[max(k - 1, 0):k + 2, max(j - 1, 0):j + 2, max(i - 1, 0):i + 2].max())

    def clearance_mm(self, structure: str, points_mm: np.ndarray) -> np.ndarray:
        """Distance (mm) from points (..., 3) to the surface of ``canal``, ``disc`` or ``bowel_gas``; inf if absent."""
        tree = self._trees[structure]
        points = np.asarray(points_mm, dtype=np.float64)
        if tree is None:
            return np.full(points.shape[:-1], np.inf)
        distance, _ = tree.query(points.reshape(-1, 3))
        return np.maximum(distance - self._half_voxel, 0.0).reshape(points.shape[:-1])

    def near_mm(self, structure: str, points_mm: np.ndarray, margin_mm: float) -> np.ndarray:
        """Boolean (...,): points closer than ``margin_mm`` to a structure (fast, for the search)."""
        tree = self._trees[structure]
        points = np.asarray(points_mm, dtype=np.float64)
        if tree is None:
            return np.zeros(points.shape[:-1], dtype=bool)
        distance, _ = tree.query(points.reshape(-1, 3), distance_upper_bound=margin_mm + self._half_voxel)
        return (distance - self._half_voxel < margin_mm).reshape(points.shape[:-1])

    def anterior_clearance_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """Signed distance (mm) behind the anterior cortex of the nearest vertebral body (< 0: in front of it)."""
        points = np.asarray(points_mm, dtype=np.float64)
        if not self.anterior_planes:
            return np.full(points.shape[:-1], np.inf)
        heights = np.stack([(points - p.point) @ p.superior for p in self.anterior_planes])
        nearest = np.argmin(np.abs(heights), axis=0)
        behind = np.stack([(points - p.point) @ p.posterior for p in self.anterior_planes])
        return np.take_along_axis(behind, nearest[None], axis=0)[0]

    def bone_name(self, value: int) -> str:
        """Words for a value of :attr:`bone`."""
        for side, label in ILIUM_IDS.items():
            if value == label:
                return f"{side} ilium"
        if value == OTHER_BONE:
            return "bone outside the spine (rib or pelvis)"
        return VERSE_NAMES.get(int(value), f"bone {value}")

    def _bone_crop(self, centre_mm: np.ndarray, radius_mm: float, label: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Float mask of one bone label (any bone when None) in a box around a point, and the box's lowest
        (k, j, i) index (for interpolation)."""
        index, _ = self._index(centre_mm)
        reach = np.ceil(radius_mm / np.abs(self._affine[:3, :3]).sum(axis=0)[::-1]).astype(int) + 1
        lower = np.maximum(index - reach, 0)
        upper = np.minimum(index + reach + 1, np.array(self.shape))
        block = self.bone[lower[0]:upper[0], lower[1]:upper[1], lower[2]:upper[2]]
        return ((block > 0) if label is None else (block == label)).astype(np.float32), lower

    def outward_normal(self, point_mm: np.ndarray, radius_mm: float = 6.0) -> np.ndarray | None:
        """Unit vector out of the nearest bone surface at a point (minus the gradient of the smoothed bone mask);
        None when no bone is within reach."""
        crop, lower = self._bone_crop(point_mm, radius_mm)
        if not crop.any():
            return None
        smooth = ndimage.gaussian_filter(crop, 1.0 / np.abs(self._affine[:3, :3]).sum(axis=0)[::-1])
        kji = self._kji(point_mm) - lower
        gradient_kji = np.array([ndimage.map_coordinates(g, kji[:, None], order=1)[0] for g in np.gradient(smooth)])
        gradient = np.linalg.inv(self._affine[:3, :3]).T @ gradient_kji[::-1]
        norm = float(np.linalg.norm(gradient))
        return None if norm < 1e-6 else -gradient / norm

    def extent_mm(self, label: int, start_mm: np.ndarray, direction: np.ndarray, max_mm: float = 30.0) -> float | None:
        """Distance from ``start_mm`` along ``direction`` to where ``label``'s bone ends (half-way crossing of the
        trilinearly interpolated mask); None if the start is not in that bone or it does not end within max_mm."""
        unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
        crop, lower = self._bone_crop(start_mm, max_mm + 2.0, label)
        steps = np.arange(0.0, max_mm, 0.1)
        kji = self._kji(np.asarray(start_mm, dtype=np.float64) + steps[:, None] * unit) - lower
        values = ndimage.map_coordinates(crop, kji.T, order=1, mode="constant", cval=0.0)
        if values[0] < 0.5:
            return None
        outside = np.nonzero(values < 0.5)[0]
        if len(outside) == 0:
            return None
        k = outside[0]
        fraction = (values[k - 1] - 0.5) / (values[k - 1] - values[k])
        return float(steps[k - 1] + fraction * (steps[k] - steps[k - 1]))


def scene_for(spine: Spine) -> Scene:
    """The :class:`Scene` of a spine, built once and remembered with its label map (per Spine object: a copy
    with other landmarks gets its own)."""
    cache = spine.labels.derived("plan_scenes", lambda _labels: {})
    key = (id(spine), id(spine.structures), id(spine.vertebrae), id(spine.pelvis))
    entry = cache.get(key)
    if entry is None or entry[0]() is not spine:
        entry = cache[key] = (weakref.ref(spine), Scene(spine))
    return entry[1]


def _with_bone_rim(bone: np.ndarray, rim: np.ndarray) -> np.ndarray:
    """The bone map with its partial-volume rim (voxels where ``bone`` is 0) added: each rim voxel takes the largest
    bone value among its 26 neighbours (the bone it belongs to), or :data:`OTHER_BONE` when none is adjacent."""
    found = ndimage.find_objects(rim.view(np.uint8))
    if not found:
        return bone
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(found[0], rim.shape, strict=True))
    shaft = bone.copy()
    near, inner = ndimage.maximum_filter(bone[box], size=3), rim[box]
    shaft[box][inner] = np.where(near[inner] > 0, near[inner], OTHER_BONE)
    return shaft


def _surface_tree(mask: np.ndarray, grid: Volume) -> cKDTree | None:
    """k-d tree of the world positions of a mask's surface voxels (a mask voxel with a non-mask neighbour)."""
    if not mask.any():
        return None
    surface = mask & ~ndimage.binary_erosion(mask)
    kji = np.argwhere(surface)
    return cKDTree(grid.index_to_world_points(kji[:, ::-1].astype(np.float64)))


def _anterior_planes(spine: Spine) -> list[AnteriorPlane]:
    """One plane per vertebra through the most anterior voxel of its label, normal to its posterior axis."""
    labels = spine.labels
    planes = []
    for vertebra in spine:
        marks = vertebra.landmarks
        if "axes" not in marks or "body_centroid" not in marks:
            continue
        kji = np.argwhere(labels.voxels == vertebra.label)
        if len(kji) == 0:
            continue
        points = labels.index_to_world_points(kji[::max(1, len(kji) // 20000), ::-1].astype(np.float64))
        posterior = np.asarray(marks["axes"]["posterior"], dtype=np.float64)
        superior = np.asarray(marks["axes"]["superior"], dtype=np.float64)
        centre = np.asarray(marks["body_centroid"], dtype=np.float64)
        offset = float(np.min((points - centre) @ posterior))
        planes.append(AnteriorPlane(vertebra.name, centre + offset * posterior, posterior, superior))
    return planes
