"""Needles composited analytically: the exact chord of every pixel ray through each needle's steel cylinder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..needle import Needle
from .carm import CArm


def needle_chords_mm(carm: CArm, needles: Sequence[Needle]) -> np.ndarray:
    """Length in mm of each pixel ray inside each needle, shape (len(needles), rows, cols), float64.

    Each needle is a solid cylinder (outer diameter from its gauge) with flat ends at the hub and the tip. The
    ray runs from the source to the pixel centre; a ray along the needle's axis gets the whole needle length.
    Only the pixels around each needle's projection are computed (:func:`_pixel_window`); the others are 0.
    """
    source = carm.source_mm
    origin, step_col, step_row = carm.detector_grid_mm()
    rows, cols = carm.detector_rows_cols
    out = np.zeros((len(needles), rows, cols))
    for index, needle in enumerate(needles):
        window = _pixel_window(carm, needle)
        # the window's pixel centres, as CArm.pixel_centers_mm computes them (same numbers, a fraction of the work)
        r, c = np.arange(rows)[window[0]], np.arange(cols)[window[1]]
        rays = origin + r[:, None, None] * step_row + c[None, :, None] * step_col - source
        ray_length = np.linalg.norm(rays, axis=-1)
        out[(index, *window)] = _cylinder_chords(source, rays / ray_length[..., None], ray_length, needle)
    return out


def _pixel_window(carm: CArm, needle: Needle) -> tuple[slice, slice]:
    """Rows and columns of the pixels whose rays can meet ``needle``, as slices of the (rows, cols) image.

    The cylinder is the convex hull of its two end discs, so its projection is the hull of theirs: the window
    is the bounding box of the projected ends, each padded by the most its disc can spread (see
    :func:`_padded_range`) plus 2 pixels, clipped to the image. When an end disc reaches the source plane the
    projection is unbounded and the window is the whole image.
    """
    rows, cols = carm.detector_rows_cols
    ends = carm.project(np.stack([needle.hub_mm, needle.tip_mm]))
    radius = needle.diameter_mm / 2
    if not np.all(ends.depth_mm > radius):
        return slice(0, rows), slice(0, cols)
    pixel_u, pixel_v = carm.pixel_mm
    sid = carm.source_to_detector_mm
    return (_padded_range(ends.row, rows, pixel_v, sid, radius, ends.depth_mm),
            _padded_range(ends.col, cols, pixel_u, sid, radius, ends.depth_mm))


def _padded_range(
    coordinate_px: np.ndarray, count: int, pixel_mm: float, sid_mm: float, radius_mm: float, depth_mm: np.ndarray
) -> slice:
    """Pixel indices along one detector axis within reach of discs of ``radius_mm`` around projected points.

    A point within r of a point at depth D and lateral offset x (along this axis, from the central ray) projects
    at most ``SID r sqrt(1 + (x / D)^2) / (D - r)`` mm from it on the detector: the disc's tilt toward the beam
    changes its depth too, which matters off the central ray.
    """
    tangent = (coordinate_px - (count - 1) / 2) * pixel_mm / sid_mm  # x / D
    spread_px = sid_mm * radius_mm * np.sqrt(1 + tangent**2) / (depth_mm - radius_mm) / pixel_mm
    low = max(int(np.floor(np.min(coordinate_px - spread_px))) - 2, 0)
    high = min(int(np.ceil(np.max(coordinate_px + spread_px))) + 3, count)
    return slice(low, max(low, high))


def _cylinder_chords(source: np.ndarray, directions: np.ndarray, ray_length: np.ndarray, needle: Needle) -> np.ndarray:
    axis = needle.direction
    radius = needle.diameter_mm / 2
    offset = source - needle.hub_mm
    along_offset = offset @ axis
    along_direction = directions @ axis
    offset_perp = offset - along_offset * axis
    direction_perp = directions - along_direction[..., None] * axis
    # |offset_perp + t direction_perp|^2 = radius^2
    a = np.einsum("...i,...i", direction_perp, direction_perp)
    b = direction_perp @ offset_perp
    c = offset_perp @ offset_perp - radius**2
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(np.maximum(b * b - a * c, 0.0))
        side_low = np.where(a > 1e-15, (-b - root) / a, np.where(c <= 0, -np.inf, np.inf))
        side_high = np.where(a > 1e-15, (-b + root) / a, np.where(c <= 0, np.inf, -np.inf))
        misses = (a > 1e-15) & (b * b - a * c < 0)
        # 0 <= along_offset + t along_direction <= length
        end_a = (0.0 - along_offset) / along_direction
        end_b = (needle.length_mm - along_offset) / along_direction
    parallel = np.abs(along_direction) < 1e-15
    inside_slab = (along_offset >= 0) & (along_offset <= needle.length_mm)
    slab_low = np.where(parallel, np.where(inside_slab, -np.inf, np.inf), np.minimum(end_a, end_b))
    slab_high = np.where(parallel, np.where(inside_slab, np.inf, -np.inf), np.maximum(end_a, end_b))
    low = np.maximum.reduce([side_low, slab_low, np.zeros_like(ray_length)])
    high = np.minimum.reduce([side_high, slab_high, ray_length])
    return np.where(misses, 0.0, np.maximum(high - low, 0.0))
