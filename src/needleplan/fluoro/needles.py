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
    """
    source = carm.source_mm
    rays = carm.pixel_centers_mm() - source
    ray_length = np.linalg.norm(rays, axis=-1)
    directions = rays / ray_length[..., None]
    out = np.zeros((len(needles), *directions.shape[:2]))
    for index, needle in enumerate(needles):
        out[index] = _cylinder_chords(source, directions, ray_length, needle)
    return out


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
