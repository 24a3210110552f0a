"""What a procedure hands to the common planning steps (:class:`Setup`: target, target region, reference endplate,
first-choice pose, search window and cost, path rules) and the helpers the procedures set it up with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..anatomy import Spine, level_below
from ..errors import NeedleplanError
from . import targets
from .angles import angle_between_deg, direction_from_angles, squared_tilt_deg
from .model import TargetRegion
from .options import PlanOptions
from .scene import Scene
from .search import PathRules


def vertebra_below(spine: Spine, name: str) -> str | None:
    """The next vertebra caudally that the scan holds ("L5" -> "S1" when there is no L6), or None."""
    below = level_below(name)
    while below is not None and below not in spine and below in ("L6", "T13"):
        below = level_below(below)
    return below if below is not None and below in spine else None


@dataclass
class Setup:
    """What a procedure hands to the common planning steps."""

    approach: str
    target: np.ndarray
    region: TargetRegion
    endplate_of: str
    normal: np.ndarray
    preferred: tuple[float, float]
    oblique_range: tuple[float, float]
    tilt_range: tuple[float, float]
    cost: Any
    rules: PathRules
    below: str | None = None
    nerve: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    frame: np.ndarray | None = None
    """(3, 3) rows: directions along which the target may move inside its region (None: it may not)."""
    tip_beyond_mm: float = 0.0
    """RFA: the needle's tip lies this far beyond the target (the lesion's centre) along the needle."""
    relaxed_cost: Any = None
    """RFA: the cost without the parallelism cone, searched only to say how parallel the best clear path is when no
    path inside the cone is clear."""


def angular_cost(preferred: tuple[float, float]):
    u0 = direction_from_angles(*preferred)

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ u0, -1.0, 1.0)))
    return cost


def relative_tilt(normal: np.ndarray, oblique_range: tuple[float, float], relative: tuple[float, float], cost):
    """Tilt window measured from the squared endplate at each oblique: the grid's outer tilt range, and the cost
    made infinite outside the window (b0 changes with the oblique)."""
    squared = squared_tilt_deg(normal, np.linspace(*oblique_range, 25))
    outer = (float(squared.min()) + relative[0], float(squared.max()) + relative[1])

    def windowed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        b0 = squared_tilt_deg(normal, a)
        inside = (b - b0 >= relative[0] - 1e-9) & (b - b0 <= relative[1] + 1e-9)
        return np.where(inside, cost(a, b), np.inf)
    return outer, windowed


def off_bone(scene: Scene, point: np.ndarray, distance_mm: float) -> np.ndarray:
    """A bone-contact target moved ``distance_mm`` out of the bone surface it lies on: the needle's tip rests
    against the bone instead of aiming into it (or grazing along it). A landmark that a coarse scan put inside
    the bone is first brought out to the surface along the same normal (at most three voxels)."""
    normal = scene.outward_normal(point)
    if normal is None:
        return point
    steps = np.arange(0.0, 3.0 * scene.spacing_mm + 1e-9, 0.25)
    inside = scene.lookup(scene.bone, point + steps[:, None] * normal) > 0
    surface = steps[np.argmin(inside)] if inside[0] and not inside.all() else 0.0
    return point + (surface + distance_mm) * normal


def contact_mm(scene: Scene, opts: PlanOptions) -> float:
    """Bone this close to a bone-contact target (MBB, SI) is the intended contact: the option, but at least one
    and a half voxels of the label map (where a coarse scan puts a bone surface is that uncertain)."""
    return max(opts.bone_contact_mm, 1.5 * scene.spacing_mm)


def frame_axes(marks: dict[str, Any]) -> np.ndarray:
    """(3, 3) rows: the vertebra's left, posterior and superior unit vectors."""
    return np.array([marks["axes"][key] for key in ("left", "posterior", "superior")], dtype=np.float64)


def ipsilateral_window(side: str, low_high: tuple[float, float]) -> tuple[float, float]:
    """Ipsilateral oblique window as signed table angles."""
    low, high = low_high
    return (low, high) if side == "left" else (-high, -low)


def clamp(value: float, window: tuple[float, float]) -> float:
    """``value`` brought inside ``window`` (low, high)."""
    return float(np.clip(value, *window))


def best_on_grid(cost, oblique_range: tuple[float, float], tilt_range: tuple[float, float], step: float
                 ) -> tuple[float, float]:
    """The lowest-cost pose of the search grid (the first choice when the cost is not an angle to a pose)."""
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(np.arange(oblique_range[0], oblique_range[1] + 0.5 * step, step),
                                                     np.arange(tilt_range[0], tilt_range[1] + 0.5 * step, step)))
    costs = cost(grid_a, grid_b)
    best = int(np.argmin(costs))
    if not np.isfinite(costs[best]):
        raise NeedleplanError("the search window is empty; check the planning options' angle windows")
    return float(grid_a[best]), float(grid_b[best])


def endplate_normal(marks: dict[str, Any], name: str, opts: PlanOptions, notes: list[str]) -> np.ndarray:
    """Normal of the superior endplate that the views square; the vertebra's axis when the fit is implausible.

    A plane fitted to a coarse scan's voxel staircase can be off by tens of degrees; when it is further than
    ``endplate_axis_tolerance_deg`` from the vertebra's own superior axis (which comes from both discs), the axis
    is used and a note says so.
    """
    normal = np.asarray(targets.need(marks, "superior_endplate", name)["normal"], dtype=np.float64)
    axis = np.asarray(marks["axes"]["superior"], dtype=np.float64)
    off = angle_between_deg(normal, axis)
    if off > opts.endplate_axis_tolerance_deg:
        notes.append(f"the {name} superior endplate fit is {off:.0f} degrees off the vertebra's axis; the squared "
                     "view uses the axis")
        return axis / np.linalg.norm(axis)
    return normal / np.linalg.norm(normal)
