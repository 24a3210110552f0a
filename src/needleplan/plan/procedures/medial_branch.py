"""Medial branch block and radiofrequency ablation of the medial branch, and the L5 dorsal ramus (CLINICAL.md
sections 3 and 5): the nerve ``level`` runs over the vertebra below it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...anatomy import SIDE_SIGN, Spine, level_below
from ...errors import NeedleplanError
from ...needle import GAUGE_OUTER_DIAMETER_MM
from .. import targets
from ..angles import angle_between_deg, direction_from_angles, squared_tilt_deg
from ..model import Lesion, SafetyItem, TargetRegion, View
from ..options import LESION_RADIUS_MM, PlanOptions
from ..scene import Scene
from ..search import PathRules
from ..setups import (Setup, angular_cost, best_on_grid, clamp, contact_mm, endplate_normal, ipsilateral_window,
                      off_bone, relative_tilt, vertebra_below)
from ..views import ap_check, lateral_oblique_deg, opening_views, view
from .base import NeedleStock, Procedure

#: The nerves planned: lumbar medial branches (T12-L4) and the L5 dorsal ramus ("L5").
NERVES = ("T12", "L1", "L2", "L3", "L4", "L5")


class MedialBranchProcedure(Procedure):
    """What MBB and RFA share: the nerve's levels, its landmark on the vertebra below, bone contact at the tip."""

    default_level = "L4"
    bone_contact = True
    facet_joint = True

    def levels_in(self, spine: Spine) -> list[str]:
        return [name for name in NERVES if name in spine and vertebra_below(spine, name) is not None]

    def check_level(self, spine: Spine, level: str | None) -> str:
        if isinstance(level, str) and level.startswith("C"):
            present = [name for name in spine.levels if name.startswith("C")]
            raise NeedleplanError(f"cervical medial branch planning is not available: it needs the articular "
                                  f"pillars of C3-C7, and this scan holds {', '.join(present) or 'no cervical level'}")
        if level not in NERVES:
            raise NeedleplanError(f"{self.key.upper()} targets a lumbar medial branch (nerve L1-L4, or T12) or the "
                                  f"L5 dorsal ramus (level 'L5'); got {level!r}")
        if vertebra_below(spine, level) is None:
            raise NeedleplanError(f"the {level} {_nerve_words(level)} runs over {level_below(level)}, which is not in "
                                  f"this scan (found: {', '.join(spine.levels) or 'none'})")
        return level

    def level_words(self, level: str, approach: str) -> str:
        return f"{level} {_nerve_words(level)}"


class MedialBranchBlock(MedialBranchProcedure):
    """The tip on the bone where the nerve crosses: the SAP-TP junction, or the ala-SAP groove for the dorsal ramus."""

    key = "mbb"
    title = "medial branch block"
    expert_shots = 5

    def setup(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
        nerve = _nerve(scene, level, side, opts)
        target = off_bone(scene, targets.mbb(nerve.branch, nerve.marks["axes"]["superior"],
                                             targets.mbb_drop_mm(level, opts.mbb_below_tp_margin_mm)),
                          opts.tip_off_bone_mm)
        below = nerve.below
        region = TargetRegion(target, target, 3.0, f"lateral SAP surface of {below} at the upper border of its "
                                                   f"{'ala' if below == 'S1' else 'transverse process'}")
        window = ipsilateral_window(side, opts.mbb_oblique_deg)
        oblique = clamp(0.0 if level == "L5" else SIDE_SIGN[side] * opts.mbb_preferred_oblique_deg, window)
        b0 = squared_tilt_deg(nerve.normal, oblique)
        rules = PathRules(contact_mm(scene, opts), False, opts.anterior_margin_mm)
        tilt_range, cost = relative_tilt(nerve.normal, window, opts.tilt_window_deg, angular_cost((oblique, b0)))
        return Setup(nerve.approach, target, region, below, nerve.normal, (oblique, b0), window, tilt_range, cost,
                     rules, below, nerve=nerve.branch, notes=nerve.notes)

    def views(self, setup: Setup, level: str, side: str, target: np.ndarray, oblique: float, tilt: float,
              endplate_center: np.ndarray) -> list[View]:
        if setup.approach == "dorsal ramus":
            aim = "the needle is a dot in the groove between the sacral ala and the S1 superior articular process"
        else:
            aim = (f"the Scotty dog of {setup.endplate_of}: the needle is a dot at the junction of the superior "
                   "articular process and the transverse process (the dog's eye and neck)")
        return [*opening_views(level, side, target, setup.normal, setup.endplate_of, endplate_center),
                view("Trajectory", oblique, tilt, target, setup.normal, side, aim),
                ap_check(target, setup.normal, side, "the tip on the lateral silhouette of the superior articular "
                                                     "process, at the upper border of the transverse process (ala "
                                                     "for the dorsal ramus)")]


class RadiofrequencyAblation(MedialBranchProcedure):
    """An electrode along the nerve on the SAP's lateral neck: only electrodes within ``rfa_max_angle_deg`` of the
    nerve are searched, the most parallel first; the lesion must hold ``rfa_capture_min_mm`` of the nerve."""

    key = "rfa"
    title = "radiofrequency ablation of the medial branch"
    expert_shots = 8

    def setup(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
        nerve = _nerve(scene, level, side, opts)
        upper, lower_end = targets.nerve_neck_segment(nerve.branch)
        unit_tangent = (upper - lower_end) / np.linalg.norm(upper - lower_end)
        beyond = 0.5 * (opts.rfa_active_tip_mm + opts.rfa_lesion_extra_length_mm)
        target = off_bone(scene, targets.rfa_lesion_centre(nerve.branch),
                          0.5 * GAUGE_OUTER_DIAMETER_MM[opts.rfa_gauge])
        region = TargetRegion(lower_end, upper, LESION_RADIUS_MM[opts.rfa_gauge],
                              f"the {level} {nerve.approach} along the lateral neck of the {nerve.below} SAP")
        window = ipsilateral_window(side, opts.rfa_oblique_deg)

        def to_nerve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ unit_tangent, -1.0, 1.0)))
        tilt_range, relaxed = relative_tilt(nerve.normal, window, opts.rfa_caudal_from_endplate_deg, to_nerve)

        def parallel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """Parallelism first: only electrodes within ``rfa_max_angle_deg`` of the nerve are searched."""
            angle = relaxed(a, b)
            return np.where(angle <= opts.rfa_max_angle_deg + 1e-9, angle, np.inf)
        preferred = best_on_grid(relaxed, window, tilt_range, opts.grid_step_deg)
        rules = PathRules(max(opts.rfa_active_tip_mm + 2.0 - beyond, 0.0), False, opts.anterior_margin_mm)
        return Setup(nerve.approach, target, region, nerve.below, nerve.normal, preferred, window, tilt_range,
                     parallel, rules, nerve.below, nerve=nerve.branch, notes=nerve.notes, tip_beyond_mm=beyond,
                     relaxed_cost=relaxed)

    def views(self, setup: Setup, level: str, side: str, target: np.ndarray, oblique: float, tilt: float,
              endplate_center: np.ndarray) -> list[View]:
        normal = setup.normal
        return [*opening_views(level, side, target, normal, setup.endplate_of, endplate_center),
                view("Trajectory", oblique, tilt, target, normal, side,
                     "the electrode is a dot over the lateral neck of the superior articular process, entering from "
                     "below along the nerve"),
                view("Lateral", lateral_oblique_deg(side), 0.0, target, normal, side,
                     "the active tip along the neck of the superior articular process, the tip not past the "
                     "posterior border of the foramen"),
                ap_check(target, normal, side, "the tip on the lateral margin of the superior articular process, the "
                                               "shaft running up along it")]

    def stock(self, opts: PlanOptions) -> NeedleStock:
        return NeedleStock("RF cannula", opts.rfa_gauge, opts.rfa_cannula_lengths_mm, max(opts.rfa_cannula_lengths_mm))

    def lesion(self, setup: Setup, tip: np.ndarray, direction: np.ndarray, opts: PlanOptions) -> Lesion | None:
        return None if setup.nerve is None else lesion_at(setup.nerve, tip, direction, opts)

    def rule_items(self, setup: Setup, tip: np.ndarray, direction: np.ndarray, opts: PlanOptions,
                   angle_rule: bool = True) -> list[SafetyItem]:
        """The lesion along the nerve: electrode within ``rfa_max_angle_deg`` (unless ``angle_rule`` is False) and at
        least ``rfa_capture_min_mm`` of nerve inside the lesion (CLINICAL.md section 5)."""
        lesion = self.lesion(setup, tip, direction, opts)
        if lesion is None:
            return []
        along = lesion.electrode_to_nerve_deg <= opts.rfa_max_angle_deg or not angle_rule
        captured = lesion.nerve_captured_mm >= opts.rfa_capture_min_mm
        problems = ([] if along else [f"the electrode is {lesion.electrode_to_nerve_deg:.0f} degrees from the nerve"]
                    ) + ([] if captured else [f"the lesion holds {lesion.nerve_captured_mm:.1f} mm of the nerve"])
        return [SafetyItem(
            "nerve in the RF lesion", float("nan"), float("nan"),
            f"electrode within {opts.rfa_max_angle_deg:g} degrees of the nerve and at least "
            f"{opts.rfa_capture_min_mm:g} mm of nerve inside the lesion", "ok" if along and captured else "violation",
            " and ".join(problems) + (f" (needs at most {opts.rfa_max_angle_deg:g} degrees and "
                                      f"{opts.rfa_capture_min_mm:g} mm)" if problems else ""))]


@dataclass(frozen=True)
class _Nerve:
    """The nerve of one plan and the vertebra it runs over."""

    below: str
    marks: dict[str, Any]
    approach: str
    normal: np.ndarray
    branch: np.ndarray
    notes: list[str]


def _nerve(scene: Scene, level: str, side: str, opts: PlanOptions) -> _Nerve:
    below = vertebra_below(scene.spine, level)
    assert below is not None
    marks = scene.spine[below].landmarks
    where = f"{below} ({side})"
    why = scene.spine.unavailable.get(f"l5_dorsal_ramus_{side}") if level == "L5" else None
    if why and f"medial_branch_{side}" not in marks:
        raise NeedleplanError(f"no L5 dorsal ramus target on the {side}: {why}")
    for key in ("axes", "superior_endplate", f"medial_branch_{side}"):
        targets.need(marks, key, where)
    notes: list[str] = []
    normal = endplate_normal(marks, below, opts, notes)
    branch = np.asarray(marks[f"medial_branch_{side}"], dtype=np.float64)
    _require_lateral_of_pedicle(marks, side, branch, where, level)
    return _Nerve(below, marks, _nerve_words(level), normal, branch, notes)


def _nerve_words(level: str) -> str:
    return "dorsal ramus" if level == "L5" else "medial branch"


def _require_lateral_of_pedicle(marks: dict[str, Any], side: str, branch: np.ndarray, where: str, nerve: str) -> None:
    """Refuse a medial branch whose course lies medial to the pedicle's centre: the nerve crosses the TP root on the
    SAP's lateral face, lateral to the pedicle (the phantom: 6-8 mm lateral of its centre), so a landmark found
    there is a segmentation error next to the canal, not a target."""
    pedicle = marks.get(f"pedicle_{side}")
    if nerve == "L5" or pedicle is None or "body_centroid" not in marks:
        return
    outward = SIDE_SIGN[side] * np.asarray(marks["axes"]["left"], dtype=np.float64)
    origin = np.asarray(marks["body_centroid"], dtype=np.float64)
    nerve_mm = float((targets.nerve_neck_segment(branch)[0] - origin) @ outward)
    pedicle_mm = float((np.asarray(pedicle["center"], dtype=np.float64) - origin) @ outward)
    if nerve_mm < pedicle_mm:
        raise NeedleplanError(
            f"the {nerve} medial branch found on {where} lies {nerve_mm:.0f} mm from the vertebra's midline, medial "
            f"to the centre of its pedicle ({pedicle_mm:.0f} mm): the SAP-TP junction there is a segmentation error "
            "near the canal, so no target is offered")


def lesion_at(nerve_mm: np.ndarray, tip: np.ndarray, direction: np.ndarray, opts: PlanOptions) -> Lesion:
    """The RF lesion of an electrode whose tip is at ``tip`` advancing along ``direction`` (unit), with the length
    of the nerve polyline inside it and the electrode-to-nerve angle."""
    length = opts.rfa_active_tip_mm + opts.rfa_lesion_extra_length_mm
    centre = tip - 0.5 * length * direction
    radius = LESION_RADIUS_MM[opts.rfa_gauge]
    nerve = np.asarray(nerve_mm, dtype=np.float64)
    samples = np.concatenate([a + np.linspace(0, 1, 200, endpoint=False)[:, None] * (b - a)
                              for a, b in zip(nerve[:-1], nerve[1:], strict=True)] + [nerve[-1:]])
    step = np.linalg.norm(np.diff(samples, axis=0), axis=1)
    lesion = Lesion(centre, direction, length, radius, opts.rfa_active_tip_mm, 0.0, 0.0)
    inside = lesion.contains(samples)
    lesion.nerve_captured_mm = float(np.sum(step[inside[:-1] & inside[1:]]))
    upper, lower_end = targets.nerve_neck_segment(nerve)
    angle = angle_between_deg(direction, upper - lower_end)
    lesion.electrode_to_nerve_deg = min(angle, 180.0 - angle)
    return lesion
