"""Volume: voxels plus the geometry that places them in the patient.

Index order follows SimpleITK: ``voxels[k, j, i]`` is the voxel at index ``(i, j, k) = (x, y, z)``, and the
4x4 ``index_to_world`` affine maps ``(i, j, k, 1)`` to patient LPS millimetres. Every point and vector method
here takes and returns ``(x, y, z)`` ordered coordinates. Direction cosines are never assumed to be the identity;
a sheared affine (gantry-tilted CT) is allowed and exact.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from .attenuation import MU_WATER_70KEV_PER_MM, hu_to_mu
from .errors import GeometryError, NeedleplanError

MODALITIES = ("CT", "MR", "LABEL", "OT")

_LETTERS = {0: ("L", "R"), 1: ("P", "A"), 2: ("S", "I")}


class Volume:
    """A 3D image with its world geometry.

    Parameters
    ----------
    voxels : ndarray, shape (nz, ny, nx)
        Image values: HU for CT, scanner intensities for MR, integer ids for label maps. Stored read-only.
    index_to_world : ndarray, shape (4, 4)
        Maps homogeneous voxel indices (i, j, k, 1) to LPS millimetres.
    modality : {"CT", "MR", "LABEL", "OT"}
        What the values mean. Only CT values are Hounsfield units.
    metadata : mapping, optional
        Descriptive facts (source, series, scanner). Never patient identity.
    """

    def __init__(
        self,
        voxels: np.ndarray,
        index_to_world: np.ndarray,
        modality: str = "CT",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        voxels = np.asarray(voxels)
        if voxels.ndim != 3 or min(voxels.shape) < 1:
            raise GeometryError(f"a Volume needs a 3D voxel array, got shape {voxels.shape}")
        affine = np.array(index_to_world, dtype=np.float64)
        _check_affine(affine)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        view = voxels.view()
        view.flags.writeable = False
        self._voxels = view
        self._affine = affine
        self._affine.flags.writeable = False
        self._inverse = np.linalg.inv(affine)
        self._inverse.flags.writeable = False
        self.modality = modality
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._derived: dict[Any, Any] = {}

    # ---- geometry -------------------------------------------------------------------------------------------
    @property
    def voxels(self) -> np.ndarray:
        """Read-only voxel array, shape (nz, ny, nx)."""
        return self._voxels

    @property
    def index_to_world(self) -> np.ndarray:
        """Read-only 4x4 affine from (i, j, k, 1) to LPS mm."""
        return self._affine

    @property
    def world_to_index(self) -> np.ndarray:
        """Read-only 4x4 affine from LPS mm to continuous (i, j, k, 1)."""
        return self._inverse

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (nz, ny, nx)."""
        return tuple(int(n) for n in self._voxels.shape)  # type: ignore[return-value]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Voxel counts along (i, j, k) = (nx, ny, nz)."""
        nz, ny, nx = self.shape
        return nx, ny, nz

    @property
    def spacing_mm(self) -> np.ndarray:
        """Distance in mm between neighbouring voxel centres along i, j, k."""
        return np.linalg.norm(self._affine[:3, :3], axis=0)

    @property
    def origin_mm(self) -> np.ndarray:
        """LPS position of the centre of voxel (0, 0, 0)."""
        return self._affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit LPS directions of the i, j, k axes."""
        return self._affine[:3, :3] / self.spacing_mm

    @property
    def is_orthogonal(self) -> bool:
        """False for a sheared grid (for example a gantry-tilted CT kept exact)."""
        d = self.direction
        return bool(np.allclose(d.T @ d, np.eye(3), atol=1e-6))

    @property
    def orientation(self) -> str:
        """Three letters: the patient direction each index axis i, j, k increases toward (e.g. "LPS", "RAS")."""
        letters = []
        for column in self.direction.T:
            axis = int(np.argmax(np.abs(column)))
            letters.append(_LETTERS[axis][0 if column[axis] > 0 else 1])
        return "".join(letters)

    @property
    def center_mm(self) -> np.ndarray:
        """LPS position of the centre of the voxel grid."""
        return self.index_to_world_points((np.array(self.size_xyz, dtype=float) - 1.0) / 2.0)

    def corners_mm(self) -> np.ndarray:
        """LPS positions of the 8 outer corners of the grid (voxel edges, not centres), shape (8, 3)."""
        nx, ny, nz = self.size_xyz
        ijk = np.array([[i, j, k] for i in (-0.5, nx - 0.5) for j in (-0.5, ny - 0.5) for k in (-0.5, nz - 0.5)])
        return self.index_to_world_points(ijk)

    def index_to_world_points(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map continuous indices (..., 3) in (i, j, k) order to LPS mm (..., 3)."""
        p = np.asarray(ijk, dtype=np.float64)
        return p @ self._affine[:3, :3].T + self._affine[:3, 3]

    def world_to_index_points(self, xyz: np.ndarray) -> np.ndarray:
        """Map LPS mm (..., 3) to continuous indices (..., 3) in (i, j, k) order."""
        p = np.asarray(xyz, dtype=np.float64)
        return p @ self._inverse[:3, :3].T + self._inverse[:3, 3]

    def index_to_world_vectors(self, v: np.ndarray) -> np.ndarray:
        """Map index-space displacements (..., 3) to LPS mm displacements (no translation)."""
        return np.asarray(v, dtype=np.float64) @ self._affine[:3, :3].T

    def world_to_index_vectors(self, v: np.ndarray) -> np.ndarray:
        """Map LPS mm displacements (..., 3) to index-space displacements (no translation)."""
        return np.asarray(v, dtype=np.float64) @ self._inverse[:3, :3].T

    def contains_points(self, xyz: np.ndarray) -> np.ndarray:
        """True where LPS points lie inside the grid's outer box (voxel edges included)."""
        ijk = self.world_to_index_points(xyz)
        upper = np.array(self.size_xyz, dtype=float) - 0.5
        return np.all((ijk >= -0.5) & (ijk <= upper), axis=-1)

    # ---- values ---------------------------------------------------------------------------------------------
    @property
    def hu(self) -> np.ndarray:
        """The voxels as Hounsfield units; only CT has them."""
        if self.modality != "CT":
            raise NeedleplanError(f"this {self.modality} volume has no Hounsfield units; only CT does")
        return self._voxels

    def attenuation(
        self, mu_water_per_mm: float = MU_WATER_70KEV_PER_MM, bone_scale: float = 1.0
    ) -> np.ndarray:
        """Linear attenuation (1/mm, float32, (nz, ny, nx)) for the renderer, computed once and cached.

        See :func:`needleplan.attenuation.hu_to_mu` for the model. Only CT volumes have one.
        """
        def compute(volume: Volume) -> np.ndarray:
            mu = hu_to_mu(volume.hu, mu_water_per_mm, bone_scale)
            mu.flags.writeable = False
            return mu

        return self.derived(("attenuation", float(mu_water_per_mm), float(bone_scale)), compute)

    def derived(self, key: Any, compute: Callable[["Volume"], Any]) -> Any:
        """``compute(self)``, computed on the first call for ``key`` and remembered (voxels never change).

        For arrays that several renders of the same volume share, such as a label map's channel volume.
        """
        if key not in self._derived:
            self._derived[key] = compute(self)
        return self._derived[key]

    def cropped_to(self, mask: np.ndarray, modality: str | None = None) -> "Volume":
        """The volume cut to the bounding box of ``mask`` (bool, same shape) plus one voxel, at the same place in
        the world; a single corner voxel when ``mask`` is empty. ``modality`` defaults to this volume's."""
        start, stop = np.zeros(3, dtype=int), np.ones(3, dtype=int)  # (k, j, i)
        if mask.any():
            for axis in range(3):
                hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
                start[axis] = max(hits[0] - 1, 0)
                stop[axis] = min(hits[-1] + 2, self.shape[axis])
        index_to_world = self.index_to_world.copy()
        index_to_world[:3, 3] = self.index_to_world_points(start[::-1].astype(np.float64))
        voxels = self.voxels[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2]]
        return Volume(voxels, index_to_world, modality or self.modality, self.metadata)

    def resample(
        self,
        index_to_world: np.ndarray,
        shape: tuple[int, int, int],
        order: int | None = None,
        fill_value: float | None = None,
    ) -> "Volume":
        """Resample onto another grid.

        Parameters
        ----------
        index_to_world : ndarray, shape (4, 4)
            Geometry of the new grid.
        shape : (nz, ny, nx)
            Size of the new grid.
        order : int, optional
            Spline order: 0 nearest (default for label maps), 1 trilinear (default otherwise).
        fill_value : float, optional
            Value outside this volume: -1024 HU (air) for CT, 0 otherwise.

        Returns
        -------
        Volume on the new grid, same modality and metadata, same dtype (rounded for integer types).
        """
        target = np.array(index_to_world, dtype=np.float64)
        _check_affine(target)
        if order is None:
            order = 0 if self.modality == "LABEL" else 1
        if fill_value is None:
            fill_value = -1024.0 if self.modality == "CT" else 0.0
        # map target (k, j, i) array indices to source (k, j, i): reverse the (i, j, k) affine's axes
        m = self._inverse @ target
        flip = np.eye(4)[[2, 1, 0, 3]]
        m_zyx = flip @ m @ flip
        src = self._voxels
        aligned = _axis_order(m_zyx[:3, :3]) is not None
        if aligned and order == 0 and _holds(src.dtype, fill_value):
            return Volume(_separable(src, m_zyx, tuple(shape), 0, fill_value), target, self.modality, self.metadata)
        if aligned and order == 1:
            out = _separable(src, m_zyx, tuple(shape), 1, fill_value)
        else:
            work = src if src.dtype.kind == "f" else src.astype(np.float32)
            out = ndimage.affine_transform(
                work, m_zyx[:3, :3], offset=m_zyx[:3, 3], output_shape=tuple(shape),
                order=order, mode="constant", cval=float(fill_value), prefilter=False,
            )
        if src.dtype.kind in "iub":
            info = np.iinfo(src.dtype) if src.dtype.kind != "b" else None
            out = np.rint(out)
            if info is not None:
                out = np.clip(out, info.min, info.max)
            out = out.astype(src.dtype)
        return Volume(out, target, self.modality, self.metadata)

    def orthogonalized(self) -> "Volume":
        """This volume on an orthogonal grid covering it (a sheared volume is resampled; others returned as is).

        The new grid keeps the in-plane axes i, j and takes k along their cross product, with the same spacing.
        """
        if self.is_orthogonal:
            return self
        d = self.direction
        k_axis = np.cross(d[:, 0], d[:, 1])
        k_axis /= np.linalg.norm(k_axis)
        if np.dot(k_axis, d[:, 2]) < 0:
            k_axis = -k_axis
        rotation = np.column_stack([d[:, 0], d[:, 1], k_axis])
        spacing = self.spacing_mm.copy()
        spacing[2] = abs(float(np.dot(self._affine[:3, 2], k_axis)))
        corners_local = (self.corners_mm() - self.origin_mm) @ rotation
        low = corners_local.min(axis=0) + spacing / 2
        high = corners_local.max(axis=0) - spacing / 2
        size = np.maximum(np.round((high - low) / spacing).astype(int) + 1, 1)
        affine = np.eye(4)
        affine[:3, :3] = rotation * spacing
        affine[:3, 3] = self.origin_mm + rotation @ low
        return self.resample(affine, (int(size[2]), int(size[1]), int(size[0])))

    def __repr__(self) -> str:
        sx, sy, sz = self.spacing_mm
        return (
            f"Volume({self.modality}, size {self.size_xyz}, spacing ({sx:.3g}, {sy:.3g}, {sz:.3g}) mm, "
            f"{self.orientation}, dtype {self._voxels.dtype})"
        )


def _check_affine(affine: np.ndarray) -> None:
    if affine.shape != (4, 4):
        raise GeometryError(f"index_to_world must be 4x4, got shape {affine.shape}")
    if not np.all(np.isfinite(affine)):
        raise GeometryError("index_to_world has non-finite entries")
    if not np.allclose(affine[3], [0, 0, 0, 1]):
        raise GeometryError(f"index_to_world's last row must be (0, 0, 0, 1), got {affine[3]}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing <= 1e-9):
        raise GeometryError(f"index_to_world has a zero voxel spacing: {spacing}")
    unit = affine[:3, :3] / spacing
    if abs(np.linalg.det(unit)) < 1e-6:
        raise GeometryError("index_to_world is singular: its axes are parallel")


def affine_from_geometry(
    spacing_mm: np.ndarray, origin_mm: np.ndarray, direction: np.ndarray | None = None
) -> np.ndarray:
    """Build a 4x4 index_to_world from spacing (i, j, k), origin (LPS mm) and a 3x3 direction (columns)."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = d * np.asarray(spacing_mm, dtype=np.float64)
    affine[:3, 3] = origin_mm
    return affine


def _axis_order(matrix: np.ndarray) -> np.ndarray | None:
    """For a (3, 3) index map that only scales, flips and permutes axes: the source axis of each target axis."""
    scale = np.abs(matrix).max()
    nonzero = np.abs(matrix) > 1e-9 * scale
    if not (np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1)):
        return None
    return np.argmax(nonzero, axis=0)


def _holds(dtype: np.dtype, value: float) -> bool:
    """Whether ``value`` is exactly representable in ``dtype``."""
    return bool(np.asarray(value).astype(dtype) == value)


def _separable(src: np.ndarray, m_zyx: np.ndarray, shape: tuple[int, ...], order: int,
               fill_value: float) -> np.ndarray:
    """Nearest (order 0) or trilinear (order 1) resampling through an axis-aligned index map, one axis at a time.

    Gives what ``ndimage.affine_transform(..., mode="constant", prefilter=False)`` gives (target points outside
    the source's first-to-last voxel centres get ``fill_value``; nearest rounds halves up), several times faster:
    each target axis reads one source axis, the most shrinking axis first. Trilinear values of an integer source
    are float32.
    """
    source_axis = _axis_order(m_zyx[:3, :3])
    assert source_axis is not None
    out = np.transpose(src, source_axis)
    kind = src.dtype if order == 0 or src.dtype.kind == "f" else np.dtype(np.float32)
    fill = np.asarray(fill_value, dtype=kind)
    for axis in sorted(range(3), key=lambda a: shape[a] / out.shape[a]):
        n = out.shape[axis]
        x = m_zyx[source_axis[axis], axis] * np.arange(shape[axis]) + m_zyx[source_axis[axis], 3]
        inside = (x >= -1e-9) & (x <= n - 1 + 1e-9)
        x = np.clip(x, 0, n - 1)
        along = [1, 1, 1]
        along[axis] = -1
        if order == 0:
            out = np.take(out, np.floor(x + 0.5).astype(np.intp).clip(0, n - 1), axis=axis)
        else:
            below = np.floor(x).astype(np.intp).clip(0, max(n - 2, 0))
            weight = (x - below).astype(kind).reshape(along)
            lower = np.take(out, below, axis=axis).astype(kind, copy=False)
            upper = np.take(out, np.minimum(below + 1, n - 1), axis=axis).astype(kind, copy=False)
            upper -= lower  # lower + (upper - lower) * weight, in place
            upper *= weight
            upper += lower
            out = upper
        if not inside.all():
            out = np.where(inside.reshape(along), out, fill)
    return np.ascontiguousarray(out, dtype=kind)
