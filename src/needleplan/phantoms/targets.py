"""Analytic procedure targets of a phantom: the planner's target rules applied to the exact anatomy.

The planner measures what it needs (a pedicle's height, say) on a label map; here the same rules
(:mod:`needleplan.plan.targets`) take the phantom's exact landmarks and the recipe's exact sizes, so comparing
the two measures the planner's error on a case whose answer is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..anatomy import landmark_arrays
from ..needle import GAUGE_OUTER_DIAMETER_MM
from ..plan import targets
from ..plan.options import PlanOptions
from .ids import MATERIALS

if TYPE_CHECKING:
    from .case import PhantomCase

_ORDER = ("L1", "L2", "L3", "L4", "L5", "S1")


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


def analytic_target(case: "PhantomCase", procedure: str, level: str, side: str, approach: str | None = None,
                    options: PlanOptions | None = None) -> np.ndarray:
    """Exact target (3,) LPS mm of a procedure, with the same level/approach conventions as ``npl.plan``."""
    opts = options or PlanOptions()
    marks = landmark_arrays(case.landmarks)
    half_height = {name: 0.5 * case.recipe["levels"][name]["pedicle_height_mm"] for name in _ORDER}
    if procedure == "tfesi" and level == "S1":
        return targets.s1_foramen(marks["pelvis"][f"s1_posterior_foramen_{side}"], marks["S1"][f"foramen_{side}"],
                                  opts.s1_foramen_depth_mm)
    if procedure == "tfesi":
        approach = approach or targets.default_tfesi_approach(level)
        if approach == "supraneural":
            return targets.tfesi_supraneural(marks[level], side, half_height[level], opts.below_pedicle_mm,
                                             opts.pedicle_margin_inset_mm)
        below = _ORDER[_ORDER.index(level) + 1]
        return targets.tfesi_infraneural(marks[below], side, half_height[below], opts.above_pedicle_mm,
                                         opts.pedicle_margin_inset_mm)
    if procedure in ("mbb", "rfa"):
        below = _ORDER[_ORDER.index(level) + 1]
        branch = marks[below][f"medial_branch_{side}"]
        if procedure == "mbb":
            drop = targets.mbb_drop_mm(level, opts.mbb_below_tp_margin_mm)
            on_bone = targets.mbb(branch, marks[below]["axes"]["superior"], drop)
            return on_bone + opts.tip_off_bone_mm * exact_outward_normal(case, on_bone)
        on_bone = targets.rfa_lesion_centre(branch)
        return on_bone + 0.5 * GAUGE_OUTER_DIAMETER_MM[opts.rfa_gauge] * exact_outward_normal(case, on_bone)
    if procedure == "si":
        return targets.si_joint(marks["pelvis"][f"si_joint_posterior_line_{side}"], opts.si_above_lower_end_mm)
    raise ValueError(f"unknown procedure {procedure!r}")
