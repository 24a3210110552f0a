"""Local frames, and the lumbar curve that gives each level its own frame.

The lumbar column follows a smooth curve. Its tangent leans forward by the sacral slope at S1 and turns back by
the lordosis angle up to L1, two thirds of it in L4-S1 as in real spines; an optional scoliosis adds a C-curve
with its apex at L3 (S1 stays level; the L5-S1 disc takes up the lateral wedge). Each vertebra takes the tangent
at its body centre as its superior axis, so it has its own frame (left, posterior, superior); its parts are built
in that frame and the landmarks are the exact images of frame points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ids import DISC_NAMES, LUMBAR_LEVELS
from .shapes import ConvexSolid


@dataclass(frozen=True)
class Frame:
    """A local frame: origin (3,) and axes (3, 3) whose columns are left, posterior, superior (world units)."""

    origin_mm: np.ndarray
    axes: np.ndarray

    def point(self, local_mm) -> np.ndarray:
        """World position (3,) of a local point."""
        return self.origin_mm + self.axes @ np.asarray(local_mm, dtype=np.float64)

    def vector(self, local) -> np.ndarray:
        """World direction (3,) of a local vector."""
        return self.axes @ np.asarray(local, dtype=np.float64)

    def rotation(self, x_local, z_local) -> np.ndarray:
        """World rotation (columns x, y, z) of a solid whose local x and z axes are given in this frame."""
        return right_handed(self.vector(x_local), self.vector(z_local))

    def clip(self, solid: ConvexSolid, point_local, outward_local) -> ConvexSolid:
        """``solid`` cut by the half-space of this frame's points q with ``(q - point) . outward <= 0``."""
        return solid.clipped(self.point(point_local), self.vector(outward_local))


def unit(v) -> np.ndarray:
    """``v`` scaled to unit length."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def right_handed(x_axis, z_axis) -> np.ndarray:
    """Rotation with columns (x, z cross x, z): x made orthogonal to z."""
    z = unit(z_axis)
    x = unit(np.asarray(x_axis, dtype=np.float64) - np.dot(x_axis, z) * z)
    return np.column_stack([x, np.cross(z, x), z])


def tilted_axes(forward_deg: float) -> np.ndarray:
    """Axes (left, posterior, superior) of a frame whose superior axis leans forward (anteriorly) by an angle."""
    a = np.radians(forward_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def spine_frames(recipe: dict) -> dict[str, Frame]:
    """Body-centre frames of L1-L5 and S1 (origin at the body centre, axes left/posterior/superior)."""
    levels, discs, curve = recipe["levels"], recipe["discs"], recipe["curvature"]
    slope, lordosis = curve["sacral_slope_deg"], curve["lordosis_deg"]
    s1_axes = tilted_axes(slope)
    frames = {"S1": Frame(-0.5 * levels["S1"]["body_height_mm"] * s1_axes[:, 2], s1_axes)}
    # arc length of each lumbar body centre above the S1 endplate centre, going up from L5
    stack, centres = 0.0, {}
    for name, disc in zip(LUMBAR_LEVELS[::-1], DISC_NAMES[::-1], strict=True):
        height = levels[name]["body_height_mm"]
        centres[name] = stack + discs[f"{disc}_mm"] + 0.5 * height
        stack = centres[name] + 0.5 * height
    s = np.linspace(0.0, stack, 4001)
    u = s / stack
    tilt = np.radians(slope - lordosis * (2 * u - u * u))  # forward lean; turns fastest low down
    lean = np.radians(0.5 * curve["scoliosis_deg"] * np.cos(np.pi * u))  # lean to the left, C-curve
    tangent = np.column_stack([np.sin(lean), -np.sin(tilt) * np.cos(lean), np.cos(tilt) * np.cos(lean)])
    steps = 0.5 * (tangent[1:] + tangent[:-1]) * np.diff(s)[:, None]
    path = np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])
    for name, arc in centres.items():
        centre = np.array([np.interp(arc, s, path[:, axis]) for axis in range(3)])
        up = np.array([np.interp(arc, s, tangent[:, axis]) for axis in range(3)])
        frames[name] = Frame(centre, right_handed([1.0, 0.0, 0.0], up))
    return frames
