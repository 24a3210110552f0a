"""The soft parts between the vertebrae's endplates and arches: the discs and the canal.

Discs fill the wedge between neighbouring endplate planes. The canal of each level is a pentagonal prism
bounded by the posterior body wall, the pedicles' medial walls and the laminae's inner faces, from the mid-disc
plane above to the one below. It is painted (CSF) after all bone: that carves it.
"""

from __future__ import annotations

import numpy as np

from .frames import right_handed, unit
from .shapes import ConvexSolid, box, elliptic_cylinder
from .vertebra import Level


def canal_solid(level: Level, top: tuple[np.ndarray, np.ndarray], bottom: tuple[np.ndarray, np.ndarray]) -> ConvexSolid:
    """The level's canal prism between two world planes (point, superiorly pointing normal)."""
    outline = level.canal
    front_y, apex_y = outline[:, 1].min(), outline[:, 1].max()
    half_z = 0.5 * level.height_mm + 20.0
    solid = box(
        level.frame.point([0.0, 0.5 * (front_y + apex_y), 0.0]),
        (np.abs(outline[:, 0]).max() + 1.0, 0.5 * (apex_y - front_y) + 1.0, half_z),
        level.frame.axes,
    )
    for start, end in zip(outline, np.roll(outline, -1, axis=0), strict=True):
        edge = end - start
        solid = level.frame.clip(solid, np.append(start, 0.0), [edge[1], -edge[0], 0.0])
    solid = solid.clipped(top[0], top[1])
    return solid.clipped(bottom[0], -bottom[1])


def mid_disc_plane(upper: Level, lower: Level) -> tuple[np.ndarray, np.ndarray]:
    """World point and superior unit normal of the plane halfway between two endplates."""
    top, n_top = upper.endplate("inferior")
    bottom, n_bottom = lower.endplate("superior")
    return 0.5 * (top + bottom), unit(n_top + n_bottom)


def disc_solid(upper: Level, lower: Level, bulge_mm: float, height_mm: float) -> ConvexSolid:
    top, n_top = upper.endplate("inferior")
    bottom, n_bottom = lower.endplate("superior")
    axis = unit(n_top + n_bottom)
    left = upper.frame.axes[:, 0] + lower.frame.axes[:, 0]
    semi = (
        0.25 * (upper.dims["body_width_mm"] + lower.dims["body_width_mm"]) + bulge_mm,
        0.25 * (upper.dims["body_depth_mm"] + lower.dims["body_depth_mm"]) + bulge_mm,
    )
    disc = elliptic_cylinder(0.5 * (top + bottom), semi, 0.5 * height_mm + 8.0, right_handed(left, axis))
    return disc.clipped(top, n_top).clipped(bottom, -n_bottom)
