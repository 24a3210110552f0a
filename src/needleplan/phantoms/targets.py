"""Analytic procedure targets of a phantom, from its recipe geometry (the truth the planner is measured against).

Nothing here imports the planner: each target is written from CLINICAL.md's definition and the phantom's own
geometry, the vertebra frames and sizes of the recipe (pedicles) and the phantom's exact landmarks (nerves, the S1
foramen channel, the SI joint lines), with the distances the README gives for each procedure as arguments:

- supraneural TFESI: under the 6 o'clock of the upper pedicle, ``below_pedicle_mm`` under its inferior border and
  ``pedicle_margin_inset_mm`` inside the line of its lateral margins;
- infraneural TFESI: the same corner of the lower pedicle, ``above_pedicle_mm`` above its superior border;
- S1 TFESI: ``s1_foramen_depth_mm`` into the posterior S1 foramen along its channel;
- MBB: where the nerve turns down the SAP's lateral neck, ``mbb_below_tp_margin_mm`` lower along it (the L5
  dorsal ramus: the groove itself), ``tip_off_bone_mm`` out of the bone;
- RFA: the middle of the nerve's course down the neck, the cannula's radius out of the bone;
- SI: on the posterior joint line, ``si_above_lower_end_mm`` (along it) above its lower end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..anatomy import landmark_arrays
from ..needle import GAUGE_OUTER_DIAMETER_MM
from .frames import spine_frames, unit
from .ids import MATERIALS
from .vertebra import Level, level_layout

if TYPE_CHECKING:
    from .case import PhantomCase

_ORDER = ("L1", "L2", "L3", "L4", "L5", "S1")

#: The README's distances (mm) and the RF cannula gauge; ``analytic_target`` takes others by keyword or from an
#: object with these attributes (a PlanOptions).
DISTANCES: dict[str, float] = {
    "below_pedicle_mm": 2.0, "above_pedicle_mm": 2.0, "pedicle_margin_inset_mm": 1.0, "s1_foramen_depth_mm": 3.0,
    "mbb_below_tp_margin_mm": 1.5, "tip_off_bone_mm": 1.0, "si_above_lower_end_mm": 15.0, "rfa_gauge": 18,
}


def exact_outward_normal(case: "PhantomCase", point_mm: np.ndarray, radius_mm: float = 1.5) -> np.ndarray:
    """Unit vector out of the bone at a surface point, from the exact solids: the mean direction toward the
    non-bone points of a small sphere around it minus the mean direction toward its bone points."""
    golden = np.pi * (3.0 - np.sqrt(5.0))
    n = 600
    z = 1.0 - 2.0 * (np.arange(n) + 0.5) / n
    ring = np.sqrt(1.0 - z * z)
    directions = np.stack([ring * np.cos(golden * np.arange(n)), ring * np.sin(golden * np.arange(n)), z], axis=1)
    material = case.properties_at(np.asarray(point_mm) + radius_mm * directions).material
    bone = np.isin(material, [MATERIALS.index("cortical"), MATERIALS.index("cancellous")])
    if bone.all() or not bone.any():
        raise ValueError("the point is not on a bone surface")
    normal = directions[~bone].mean(axis=0) - directions[bone].mean(axis=0)
    return normal / np.linalg.norm(normal)


def _levels(recipe: dict[str, Any]) -> dict[str, Level]:
    """The recipe's vertebra layouts (frames, pedicles) as the phantom builds them."""
    frames = spine_frames(recipe)
    return {name: level_layout(name, frames[name], recipe["levels"][name], dict(recipe["vertebra"]))
            for name in _ORDER}


def _pedicle_corner(level: Level, side: str, up_mm: float, inset_mm: float) -> np.ndarray:
    """The lateral corner of a pedicle's inferior (``up_mm`` < 0, measured from the inferior border) or superior
    (``up_mm`` > 0, from the superior border) border, ``inset_mm`` inside its lateral margin line."""
    arch = level.arches[side]
    half_width, half_height = 0.5 * level.dims["pedicle_width_mm"], 0.5 * level.dims["pedicle_height_mm"]
    height = half_height + abs(up_mm)
    local = arch.pedicle_centre + (half_width - inset_mm) * arch.pedicle_across + [0.0, 0.0, np.sign(up_mm) * height]
    return level.frame.point(local)


def _neck(branch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper (where the nerve turns down behind the TP) and lower (mamillo-accessory notch) ends of the nerve's
    course down the SAP's lateral neck: the phantom's nerve polyline is junction, turn, notch."""
    return branch[1], branch[-1]


def _along_polyline(points: np.ndarray, distance_mm: float) -> np.ndarray:
    """The point ``distance_mm`` along a polyline from its first point (its last point beyond its length)."""
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    for start, step, end in zip(points[:-1], steps, points[1:], strict=True):
        if distance_mm <= step:
            return start + (distance_mm / step) * (end - start)
        distance_mm -= step
    return points[-1]


def analytic_target(case: "PhantomCase", procedure: str, level: str, side: str, approach: str | None = None,
                    options: Any = None, **distances: float) -> np.ndarray:
    """Exact target (3,) LPS mm of a procedure, with ``npl.plan``'s level and approach conventions (TFESI ``L4``:
    the L4-L5 foramen, infraneural by default at L1-L3; MBB/RFA ``L4``: the L4 medial branch on L5's SAP).

    ``options`` (any object with the :data:`DISTANCES` attributes, e.g. a plan's options) and keyword arguments
    override the README's distances.
    """
    d = dict(DISTANCES)
    d.update({key: getattr(options, key) for key in DISTANCES if options is not None and hasattr(options, key)})
    d.update(distances)
    marks = landmark_arrays(case.landmarks)
    if procedure == "tfesi" and level == "S1":
        opening = marks["pelvis"][f"s1_posterior_foramen_{side}"]
        return opening + d["s1_foramen_depth_mm"] * unit(marks["S1"][f"foramen_{side}"] - opening)
    below = _ORDER[_ORDER.index(level) + 1] if level in _ORDER[:-1] else None
    if procedure == "tfesi":
        levels = _levels(case.recipe)
        approach = approach or ("infraneural" if level in ("L1", "L2", "L3") else "supraneural")
        if approach == "supraneural":
            return _pedicle_corner(levels[level], side, -d["below_pedicle_mm"], d["pedicle_margin_inset_mm"])
        return _pedicle_corner(levels[str(below)], side, d["above_pedicle_mm"], d["pedicle_margin_inset_mm"])
    if procedure in ("mbb", "rfa"):
        upper, notch = _neck(marks[str(below)][f"medial_branch_{side}"])
        if procedure == "mbb":
            superior = unit(marks[str(below)]["axes"]["superior"])
            drop = 0.0 if level == "L5" else d["mbb_below_tp_margin_mm"]
            # "lower" is followed along the nerve on the SAP's slanted face, so the point stays on its surface
            on_bone = upper + min(drop / float((upper - notch) @ superior), 1.0) * (notch - upper)
            return on_bone + d["tip_off_bone_mm"] * exact_outward_normal(case, on_bone)
        on_bone = 0.5 * (upper + notch)
        return on_bone + 0.5 * GAUGE_OUTER_DIAMETER_MM[int(d["rfa_gauge"])] * exact_outward_normal(case, on_bone)
    if procedure == "si":
        line = marks["pelvis"][f"si_joint_posterior_line_{side}"][::-1]  # stored superior to inferior
        return _along_polyline(line, d["si_above_lower_end_mm"])
    raise ValueError(f"unknown procedure {procedure!r}")
