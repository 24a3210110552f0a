"""Intra-articular sacroiliac joint injection (CLINICAL.md section 4)."""

from __future__ import annotations

import numpy as np

from ...anatomy import Spine
from ...errors import NeedleplanError
from .. import targets
from ..model import TargetRegion, View
from ..options import PlanOptions
from ..scene import Scene
from ..search import PathRules
from ..setups import Setup, best_on_grid, contact_mm, endplate_normal, ipsilateral_window
from ..views import lateral_oblique_deg, view
from .base import Procedure


class SacroiliacJoint(Procedure):
    """The pose that shows the widest gap between the posterior and anterior joint lines in the joint's inferior
    third; the target in the inferior third of the posterior joint; angles relative to the table."""

    key = "si"
    title = "sacroiliac joint injection"
    default_level = "S1"
    needs_level = False
    endplate_relative = False
    joint_space = True
    expert_shots = 6

    def levels_in(self, spine: Spine) -> list[str]:
        return ["S1"]

    def check_level(self, spine: Spine, level: str | None) -> str:
        return "S1"

    def level_words(self, level: str, approach: str) -> str:
        return "sacroiliac joint"

    def setup(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
        pelvis = scene.spine.pelvis
        posterior = pelvis.get(f"si_joint_posterior_line_{side}")
        anterior = pelvis.get(f"si_joint_anterior_line_{side}")
        if posterior is None or anterior is None:
            why = scene.spine.unavailable.get(f"si_joint_{side}")
            raise NeedleplanError(f"no SI plan: {why}" if why else f"the {side} sacroiliac joint lines were not found "
                                                                    "in this scan; an SI plan needs them")
        if "S1" not in scene.spine:
            raise NeedleplanError("an SI plan needs the sacrum (S1) in the scan")
        notes: list[str] = []
        normal = endplate_normal(scene.spine["S1"].landmarks, "S1", opts, notes)
        target = targets.si_joint(posterior, opts.si_above_lower_end_mm)
        region = TargetRegion(target, target, 3.0, "inferior third of the posterior joint, inside the joint space")
        window = ipsilateral_window("right" if side == "left" else "left", opts.si_oblique_deg)  # contralateral
        tilt_range = (-opts.si_cephalad_deg[1], -opts.si_cephalad_deg[0])
        back, front = targets.inferior_third(posterior), targets.inferior_third(anterior, 30)

        def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return -projected_gap_mm(back, front, a, b)
        preferred = best_on_grid(cost, window, tilt_range, opts.grid_step_deg)
        rules = PathRules(contact_mm(scene, opts), False, opts.anterior_margin_mm)
        return Setup("intra-articular", target, region, "S1", normal, preferred, window, tilt_range, cost, rules,
                     notes=notes)

    def views(self, setup: Setup, level: str, side: str, target: np.ndarray, oblique: float, tilt: float,
              endplate_center: np.ndarray) -> list[View]:
        """The joint, not an endplate, sets the views: no squared-endplate view, angles relative to the table."""
        return [view("AP", 0.0, 0.0, target, None, side,
                     "find the sacroiliac joints and the lower end of the joint on the target side"),
                view("Trajectory", oblique, tilt, target, None, side,
                     "the inferior third of the joint shows as two separate lines with the lucent gap between them; "
                     "the needle is a dot in the gap 1-2 cm above its lower end"),
                view("Lateral", lateral_oblique_deg(side), 0.0, target, None, side,
                     "the tip anterior to the dorsal sacral border, inside the joint")]


def projected_gap_mm(posterior: np.ndarray, anterior: np.ndarray, oblique: np.ndarray, tilt: np.ndarray
                     ) -> np.ndarray:
    """Mean distance (mm, parallel projection) from the posterior joint line's points to the anterior line's
    points in the image of each pose; shape of ``oblique``."""
    a, b = np.radians(np.ravel(oblique)), np.radians(np.ravel(tilt))
    sa, ca, sb, cb = np.sin(a), np.cos(a), np.sin(b), np.cos(b)
    u = np.stack([-ca, sa, np.zeros_like(a)], axis=-1)
    v = np.stack([-sa * sb, -ca * sb, -cb], axis=-1)
    p_u, p_v = posterior @ u.T, posterior @ v.T  # (n, G)
    q_u, q_v = anterior @ u.T, anterior @ v.T  # (m, G)
    distance = np.hypot(p_u[:, None, :] - q_u[None], p_v[:, None, :] - q_v[None])
    return distance.min(axis=1).mean(axis=0).reshape(np.shape(oblique))
