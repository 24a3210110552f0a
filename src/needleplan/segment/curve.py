"""The spine curve: a smooth 3D line through the vertebral canal, with a frame at every point.

The canal is the one long tube of fluid- or fat-density holes that the posterior arches enclose. Bone is first
closed along the cranio-caudal axis so that the gaps between laminae and at the discs do not open the ring; the
holes of each axial slice that are canal-sized and dark enough are kept; the longest chain of them through the
slices is the canal. Its slice centroids, smoothed, give the curve. Nothing assumes a straight or centred spine:
the curve follows lordosis and scoliosis, and a partial field of view gives a partial curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import NeedleplanError
from .grid import bounding_box
from .label_stats import label_means, label_sizes
from .tissue import IN_SLICE, fill_holes_per_slice

#: Cranio-caudal closing length (mm) that bridges interlaminar gaps and discs around the canal.
BRIDGE_MM = 15.0
#: Canal holes of successive vertebrae are linked across cranio-caudal gaps up to this long, mm.
LINK_MM = 30.0
#: Canal cross-section area range in an axial slice, mm^2 (lumbar canal ~150-300 mm^2; sacral canal smaller).
CANAL_AREA_MM2 = (40.0, 1200.0)
#: A canal hole is darker than the soft-tissue peak plus this (CSF 0-15 HU, epidural fat below 0).
CANAL_ABOVE_SOFT_HU = 30.0
#: Shortest canal that counts as a spine, mm.
MIN_CANAL_MM = 30.0
#: A vertebral body: bone reaching at least this far in front of the canal (AP run along the canal's centre)...
MIN_BODY_DEPTH_MM = 14.0
#: ...starting within this distance of the canal's front wall (the posterior longitudinal ligament, the cortex)...
BODY_GAP_MM = 6.0
#: ...in at least this share of the canal's slices (discs and cut ends make up the rest). A long bone's marrow
#: canal (femur, tibia, humerus) has only its cortex, a few mm, in front of it.
MIN_BODY_SHARE = 0.3
#: Smoothing of the canal centroids along the curve (Gaussian sigma, mm).
SMOOTH_MM = 8.0


@dataclass(frozen=True)
class SpineCurve:
    """Samples of the spine curve, cranial to caudal, 1 mm apart, with a frame at each.

    Attributes
    ----------
    points_mm : ndarray (N, 3)
        World LPS points along the canal.
    superior, posterior, left : ndarray (N, 3)
        Unit frame vectors: the curve tangent pointing cranially, the patient's posterior direction made
        perpendicular to it, and ``posterior x superior`` (the patient's left).
    """

    points_mm: np.ndarray
    superior: np.ndarray
    posterior: np.ndarray
    left: np.ndarray

    def nearest(self, points_mm: np.ndarray) -> np.ndarray:
        """Index of the nearest curve sample to each point (M, 3) -> (M,)."""
        points = np.atleast_2d(points_mm)
        d2 = ((points[:, None, :] - self.points_mm[None, :, :]) ** 2).sum(axis=-1)
        return np.argmin(d2, axis=1)


def frames_along(points_mm: np.ndarray) -> SpineCurve:
    """Curve with frames from ordered points (cranial first)."""
    tangent = -np.gradient(points_mm, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    posterior = np.array([0.0, 1.0, 0.0]) - tangent[:, 1:2] * tangent
    posterior /= np.linalg.norm(posterior, axis=1, keepdims=True)
    left = np.cross(posterior, tangent)
    return SpineCurve(points_mm, tangent, posterior, left)


def canal_mask(bone: np.ndarray, hu: np.ndarray, spacing_mm: float, soft_peak_hu: float) -> np.ndarray:
    """The vertebral canal on an LPS-aligned isotropic grid ((z, y, x) arrays): the longest chain of canal holes.

    The work is done on the bone's bounding box, with a margin that holds the closing's and the chaining's reach.
    """
    canal = np.zeros(bone.shape, dtype=bool)
    reach, link = _half_voxels(BRIDGE_MM, spacing_mm), _half_voxels(LINK_MM, spacing_mm)
    box = bounding_box(bone, margin=reach + link + 1)
    if box is not None:
        canal[box] = _canal_in_box(bone[box], hu[box], spacing_mm, soft_peak_hu)
    return canal


def _half_voxels(length_mm: float, spacing_mm: float) -> int:
    """Half a length in whole voxels, at least one."""
    return max(1, int(round(0.5 * length_mm / spacing_mm)))


def _canal_in_box(bone: np.ndarray, hu: np.ndarray, spacing_mm: float, soft_peak_hu: float) -> np.ndarray:
    """:func:`canal_mask` on a box around the bone."""
    reach = _half_voxels(BRIDGE_MM, spacing_mm)
    z_line = np.zeros((2 * reach + 1, 3, 3), dtype=bool)
    z_line[:, 1, 1] = True
    closed = ndimage.binary_closing(bone, structure=z_line, border_value=0) | bone
    closed = ndimage.binary_closing(closed, structure=IN_SLICE, iterations=1) | closed
    holes = fill_holes_per_slice(closed) & ~closed
    labels, count = ndimage.label(holes, structure=IN_SLICE)
    if count == 0:
        return np.zeros(bone.shape, dtype=bool)
    area = label_sizes(labels, count) * spacing_mm**2
    mean = label_means(hu, labels, count)
    keep = (area >= CANAL_AREA_MM2[0]) & (area <= CANAL_AREA_MM2[1]) & (mean < soft_peak_hu + CANAL_ABOVE_SOFT_HU)
    kept = np.concatenate([[False], keep])[labels]
    # canal holes exist only where an arch closes the ring: chain them across the gaps between vertebrae
    link = _half_voxels(LINK_MM, spacing_mm)
    z_link = np.zeros((2 * link + 1, 1, 1), dtype=bool)
    z_link[:, 0, 0] = True
    chains, chain_count = ndimage.label(ndimage.binary_dilation(kept, structure=z_link),
                                        structure=np.ones((3, 3, 3), dtype=bool))
    if chain_count == 0:
        return kept
    chains = np.where(kept, chains, 0)
    boxes = ndimage.find_objects(chains)
    extent = np.array([box[0].stop - box[0].start if box is not None else 0 for box in boxes])
    for best in np.argsort(extent)[::-1] + 1:  # the longest chain with a vertebral body in front of it
        if extent[best - 1] * spacing_mm < MIN_CANAL_MM:
            break
        canal = chains == best
        if body_in_front_share(canal, bone, spacing_mm) >= MIN_BODY_SHARE:
            return canal
    return np.zeros(bone.shape, dtype=bool)


def body_in_front_share(canal: np.ndarray, bone: np.ndarray, spacing_mm: float) -> float:
    """Share of the canal's axial slices with a vertebral body in front: a bone run of at least
    :data:`MIN_BODY_DEPTH_MM` toward anterior (-y on the LPS grid) that starts within :data:`BODY_GAP_MM` of the
    canal's front wall, on the canal's centre column."""
    slices = np.nonzero(canal.any(axis=(1, 2)))[0]
    gap, depth = int(round(BODY_GAP_MM / spacing_mm)), int(np.ceil(MIN_BODY_DEPTH_MM / spacing_mm))
    found = 0
    for z in slices:
        ys, xs = np.nonzero(canal[z])
        column = bone[z, :ys.min(), int(round(xs.mean()))][::-1]  # from the front wall forward
        start = np.flatnonzero(column[:gap + 1])
        if start.size:
            run = column[start[0]:]
            stop = np.flatnonzero(~run)
            found += int((stop[0] if stop.size else run.size) >= depth)
    return found / slices.size if slices.size else 0.0


def spine_curve(canal: np.ndarray, affine: np.ndarray) -> SpineCurve:
    """Smooth curve through the canal's slice centroids ((z, y, x) mask on an LPS-aligned grid with ``affine``)."""
    z_slices = np.nonzero(canal.any(axis=(1, 2)))[0]
    if z_slices.size < 2:
        raise NeedleplanError("no vertebral canal found: this scan does not seem to show a spine "
                              "(or the bone is too faint to enclose the canal)")
    zs = np.arange(z_slices.min(), z_slices.max() + 1)
    centroids = np.full((zs.size, 2), np.nan)
    for n, z in enumerate(zs):
        ys, xs = np.nonzero(canal[z])
        if ys.size:
            centroids[n] = xs.mean(), ys.mean()
    good = np.isfinite(centroids[:, 0])
    for axis in range(2):
        centroids[:, axis] = np.interp(zs, zs[good], centroids[good, axis])
    spacing = float(np.linalg.norm(affine[:3, 0]))
    sigma = SMOOTH_MM / spacing
    smooth = np.column_stack([ndimage.gaussian_filter1d(centroids[:, a], sigma, mode="nearest") for a in range(2)])
    # a second pass drops slices far from the smooth line (a foramen or a rib hole picked by mistake)
    residual = np.linalg.norm(centroids - smooth, axis=1) * spacing
    good &= residual < 6.0
    if good.sum() >= 2:
        for axis in range(2):
            centroids[:, axis] = np.interp(zs, zs[good], centroids[good, axis])
        smooth = np.column_stack([ndimage.gaussian_filter1d(centroids[:, a], sigma, mode="nearest")
                                  for a in range(2)])
    ijk = np.column_stack([smooth[:, 0], smooth[:, 1], zs])[::-1]  # cranial first
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return frames_along(resample_polyline(world, 1.0))


def resample_polyline(points: np.ndarray, step_mm: float) -> np.ndarray:
    """Points along a polyline at equal arc-length steps (first and last kept)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0:
        return points[:1].copy()
    samples = np.linspace(0.0, arc[-1], max(2, int(round(arc[-1] / step_mm)) + 1))
    return np.column_stack([np.interp(samples, arc, points[:, a]) for a in range(3)])
