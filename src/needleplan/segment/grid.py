"""The working grid: the scan resampled onto patient-aligned (LPS) axes with isotropic voxels.

Segmentation runs on this grid so that array axes are anatomical: ``array[z, y, x]`` with x towards the
patient's left, y posterior and z superior, whatever the scan's storage order or direction cosines. Results are
carried back to the scan's own grid at the end (:func:`to_scan_grid`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..volume import Volume, affine_from_geometry

#: Finest and coarsest working spacing, mm: finer scans are worked at 1.5 mm, coarser ones at their own spacing.
WORK_SPACING_RANGE_MM = (1.5, 3.0)


def voxel_centres_mm(zyx: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World (LPS mm) centres of voxels given as (M, 3) array indices (z, y, x), e.g. from ``np.argwhere``."""
    return zyx[:, ::-1] @ affine[:3, :3].T + affine[:3, 3]


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """The smallest box (slices) holding a mask's voxels, grown by ``margin`` voxels within the array.

    Returns None when the mask is empty.
    """
    found = ndimage.find_objects(mask.astype(np.uint8))
    if not found:
        return None
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n)) for s, n in zip(found[0], mask.shape,
                                                                                        strict=True))


def shifted_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """The index_to_world of a box (slices (z, y, x)) cut out of a grid with index_to_world ``affine``."""
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ [box[2].start, box[1].start, box[0].start] + affine[:3, 3]
    return out


def work_spacing_mm(volume: Volume) -> float:
    """Isotropic working spacing for a scan: its finest spacing, clipped to :data:`WORK_SPACING_RANGE_MM`."""
    low, high = WORK_SPACING_RANGE_MM
    return float(np.clip(volume.spacing_mm.min(), low, high))


def work_grid(volume: Volume, spacing_mm: float) -> Volume:
    """``volume`` resampled (trilinear; nearest for labels) onto an LPS-aligned grid covering its voxel centres.

    The grid starts at the lowest voxel centre along each LPS axis, so an axis-aligned scan (RAS, LPS, PIR...)
    at the same spacing is reindexed without interpolation.
    """
    ijk = np.array([[i, j, k] for i in (0, volume.size_xyz[0] - 1) for j in (0, volume.size_xyz[1] - 1)
                    for k in (0, volume.size_xyz[2] - 1)], dtype=np.float64)
    corners = volume.index_to_world_points(ijk)
    low, high = corners.min(axis=0), corners.max(axis=0)
    size = np.floor((high - low) / spacing_mm + 1e-6).astype(int) + 1
    affine = affine_from_geometry(np.full(3, spacing_mm), low)
    return volume.resample(affine, (int(size[2]), int(size[1]), int(size[0])))


def to_scan_grid(labels_work: np.ndarray, work: Volume, scan: Volume, inside: np.ndarray | None = None) -> np.ndarray:
    """Carry a working-grid label array to the scan's grid (nearest label), optionally only where ``inside``.

    Parameters
    ----------
    labels_work : ndarray, shape of ``work``
        Integer labels on the working grid.
    work, scan : Volume
        The working grid and the scan.
    inside : ndarray of bool, shape of ``scan``, optional
        Scan voxels that may carry a label (e.g. the bone mask at the scan's resolution). Each of them takes the
        label of the nearest labelled working voxel within one working voxel; other scan voxels get 0.

    Returns
    -------
    ndarray of the labels' dtype, shape of ``scan``.
    """
    if inside is not None:
        missing = labels_work == 0
        distance, nearest = ndimage.distance_transform_edt(missing, return_indices=True)
        near = distance <= 1.5
        filled = np.where(near, labels_work[tuple(nearest)], 0).astype(labels_work.dtype)
    else:
        filled = labels_work
    carrier = Volume(filled, work.index_to_world, "LABEL")
    out = carrier.resample(scan.index_to_world, scan.shape, order=0).voxels
    if inside is not None:
        out = np.where(inside, out, 0).astype(labels_work.dtype)
    return np.ascontiguousarray(out)
