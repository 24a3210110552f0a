"""Transforaminal epidural injection, lumbar and S1 (CLINICAL.md section 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...anatomy import LEVEL_ORDER, SIDE_SIGN, Spine
from ...errors import NeedleplanError
from .. import targets
from ..angles import angles_from_direction, squared_tilt_deg
from ..model import Plan, SafetyItem, TargetRegion, View
from ..options import PlanOptions
from ..scene import Scene
from ..search import PathRules
from ..setups import (Setup, angular_cost, clamp, endplate_normal, frame_axes, ipsilateral_window, relative_tilt,
                      vertebra_below)
from ..views import ap_check, lateral_oblique_deg, opening_views, view
from .base import Procedure, require_in_scan, window_error

#: Levels above the foramen that a TFESI is planned at.
LEVELS = ("L1", "L2", "L3", "L4", "L5", "L6", "S1")
#: Levels whose foramen (below the named vertebra) can hold the artery of Adamkiewicz (T8-L2).
ADAMKIEWICZ_LEVELS = tuple(LEVEL_ORDER[LEVEL_ORDER.index("T8"):LEVEL_ORDER.index("L2") + 1])


class TransforaminalEpidural(Procedure):
    """Transforaminal epidural at the foramen below a lumbar level (supraneural or infraneural target, the
    SAP-under-6-o'clock first choice of oblique) or through the posterior S1 foramen; discs are forbidden."""

    key = "tfesi"
    title = "transforaminal epidural injection"
    default_level = "L4"
    disc_rule = True
    expert_shots = 8

    def levels_in(self, spine: Spine) -> list[str]:
        return [name for name in LEVELS if name in spine]

    def check_level(self, spine: Spine, level: str | None) -> str:
        if level not in LEVELS:
            raise window_error("TFESI", "L1-L5 and S1", level)
        return require_in_scan(spine, level)

    def level_words(self, level: str, approach: str) -> str:
        return f"{level} foramen"

    def entry_level(self, level: str, setup: Setup) -> str:
        return level

    def contact_mm(self, scene: Scene, opts: PlanOptions) -> float:
        return 0.5 * scene.spacing_mm

    def plan(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Plan:
        """The default approach (infraneural at L1-L3, supraneural at L4-L5), or the other one when the default has no
        safe straight path; the approach asked for when one is given."""
        first = super().plan(scene, level, side, approach, opts)
        if first.feasible or approach is not None or level == "S1":
            return first
        other = "supraneural" if first.approach == "infraneural" else "infraneural"
        try:
            second = super().plan(scene, level, side, other, opts)
        except NeedleplanError:
            return first
        if not second.feasible:
            return first
        second.notes.insert(0, f"the default {first.approach} approach has no safe straight path ({first.reason}); "
                               f"this is the {other} approach")
        return second

    def setup(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
        if level == "S1":
            return _s1_setup(scene, side, approach, opts)
        return _lumbar_setup(scene, level, side, approach, opts)

    def views(self, setup: Setup, level: str, side: str, target: np.ndarray, oblique: float, tilt: float,
              endplate_center: np.ndarray) -> list[View]:
        normal, lateral = setup.normal, lateral_oblique_deg(side)
        start = opening_views(level, side, target, normal, setup.endplate_of, endplate_center)
        if level == "S1":
            return [*start,
                    view("Trajectory", oblique, tilt, target, normal, side,
                         "the posterior S1 foramen is a round lucency under the S1 pedicle; the needle is a dot at "
                         "its superolateral edge"),
                    view("Lateral", lateral, 0.0, target, normal, side,
                         "the tip just through the dorsal sacral surface into the S1 canal, well behind the ventral "
                         "sacrum"),
                    ap_check(target, normal, side, "the tip in the superolateral quadrant of the S1 foramen, below "
                                                   "the S1 pedicle")]
        below = setup.below
        if setup.approach == "supraneural":
            where = f"just under 6 o'clock of the pedicle, the SAP tip of {below or 'the level below'} under it"
            depth = "the tip in the dorsal-cranial part of the foramen"
        else:
            where = f"low in the foramen, just above the {below or 'lower'} pedicle and lateral to its SAP"
            depth = "the tip in the caudal part of the foramen, just behind the disc (posterior body line)"
        return [*start,
                view("Trajectory", oblique, tilt, target, normal, side, f"the needle is a dot {where}"),
                view("Lateral", lateral, 0.0, target, normal, side, f"depth: {depth}"),
                ap_check(target, normal, side, "the tip under the pedicle, not past the middle of the pedicle "
                                               "medially")]

    def tip_items(self, scene: Scene, level: str, side: str, tip: np.ndarray) -> list[SafetyItem]:
        """S1: the tip must stay behind the ventral opening of the S1 foramen (presacral space beyond it)."""
        behind = _behind_ventral_s1(scene, level, side, tip)
        if behind is None:
            return []
        bad = behind < 0
        return [SafetyItem("ventral sacral cortex", behind, behind, "tip past it: fail (presacral)",
                           "violation" if bad else "ok", "the tip is past the ventral sacrum" if bad else "")]

    def warnings(self, scene: Scene, level: str, side: str, target: np.ndarray) -> list[str]:
        return [_adamkiewicz(scene, level, side, target)] if level in ADAMKIEWICZ_LEVELS else []


def _lumbar_setup(scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
    spine = scene.spine
    approach = approach or targets.default_tfesi_approach(level)
    if approach not in ("supraneural", "infraneural"):
        raise NeedleplanError(f"TFESI approach must be 'supraneural' or 'infraneural', got {approach!r}")
    marks = spine[level].landmarks
    where = f"{level} ({side})"
    for key in (f"pedicle_{side}", "axes", "superior_endplate"):
        targets.need(marks, key, where)
    if f"foramen_{side}" not in marks:
        raise NeedleplanError(f"no {side} foramen was found below {level}; a transforaminal plan needs one")
    below = vertebra_below(spine, level)
    lower = spine.vertebrae.get(below) if below else None
    superior = np.asarray(marks["axes"]["superior"], dtype=np.float64)
    centre = np.asarray(marks[f"pedicle_{side}"]["center"], dtype=np.float64)
    half_down = _pedicle_half_height(scene, spine[level].label, marks, side, -superior, where)
    notes = []
    if approach == "supraneural":
        target = targets.tfesi_supraneural(marks, side, half_down, opts.below_pedicle_mm, opts.pedicle_margin_inset_mm)
        region = TargetRegion(target, target, 2.5, "safe triangle under the pedicle (about 20 mm2)")
    else:
        if lower is None or f"pedicle_{side}" not in lower.landmarks:
            raise NeedleplanError(f"the infraneural {level} approach needs the {side} pedicle of {below}, which is "
                                  "not in this scan")
        low_marks = lower.landmarks
        low_up = np.asarray(low_marks["axes"]["superior"], dtype=np.float64)
        half_up = _pedicle_half_height(scene, lower.label, low_marks, side, low_up, f"{below} ({side})")
        target = targets.tfesi_infraneural(low_marks, side, half_up, opts.above_pedicle_mm,
                                           opts.pedicle_margin_inset_mm)
        region = TargetRegion(target, target, 3.0, "Kambin triangle, low in the foramen behind the annulus")
    six_oclock = centre - half_down * superior
    sap = None if lower is None else lower.landmarks.get(f"sap_tip_{side}")
    window = ipsilateral_window(side, opts.tfesi_oblique_deg)
    typical = ipsilateral_window(side, opts.tfesi_typical_oblique_deg)
    if sap is not None:
        delta = np.asarray(sap, dtype=np.float64) - six_oclock
        rule = float(np.degrees(np.arctan2(delta[0], delta[1])))
        oblique = clamp(rule, typical)
        if oblique != rule:
            sign = SIDE_SIGN[side]
            notes.append(f"the {below} SAP tip comes under the pedicle's 6 o'clock at {abs(rule):.0f} degrees "
                         f"{'ipsilateral' if rule * sign > 0 else 'contralateral'} oblique; the first choice is kept "
                         f"within the typical {typical[0] * sign:.0f}-{typical[1] * sign:.0f} degrees (landmark "
                         "noise moves this angle quickly)")
    else:
        oblique = clamp(SIDE_SIGN[side] * 25.0, window)
        notes.append(f"the {below} SAP tip was not found; the trajectory view starts from 25 degrees oblique")
    normal = endplate_normal(marks, level, opts, notes)
    b0 = squared_tilt_deg(normal, oblique)
    rules = PathRules(0.5 * scene.spacing_mm, True, opts.anterior_margin_mm)
    tilt_range, cost = relative_tilt(normal, window, opts.tilt_window_deg, angular_cost((oblique, b0)))
    return Setup(approach, target, region, level, normal, (oblique, b0), window, tilt_range, cost, rules, below,
                 notes=notes, frame=frame_axes(marks))


def _s1_setup(scene: Scene, side: str, approach: str | None, opts: PlanOptions) -> Setup:
    """S1 transforaminal epidural through the posterior S1 foramen, first choice along its channel."""
    if approach not in (None, "supraneural", "s1"):
        raise NeedleplanError(f"the S1 transforaminal injection has one approach (the posterior S1 foramen), not "
                              f"{approach!r}")
    spine = scene.spine
    marks = spine["S1"].landmarks
    opening = spine.pelvis.get(f"s1_posterior_foramen_{side}")
    channel = marks.get(f"foramen_{side}")
    if opening is None or channel is None:
        why = scene.spine.unavailable.get("s1_posterior_foramen", "it was not found in this scan")
        raise NeedleplanError(f"the {side} posterior S1 foramen is needed for an S1 transforaminal plan: {why}")
    notes: list[str] = []
    normal = endplate_normal(marks, "S1", opts, notes)
    target = targets.s1_foramen(opening, channel, opts.s1_foramen_depth_mm)
    region = TargetRegion(target, target, 3.0, "just inside the posterior S1 foramen, below the S1 pedicle")
    window = ipsilateral_window(side, opts.s1_oblique_deg)
    channel_oblique, channel_tilt = angles_from_direction(np.asarray(channel) - np.asarray(opening))
    oblique = clamp(channel_oblique, window)
    b0 = squared_tilt_deg(normal, oblique)
    preferred = (oblique, clamp(channel_tilt, (b0 + opts.tilt_window_deg[0], b0 + opts.tilt_window_deg[1])))
    rules = PathRules(max(opts.s1_foramen_depth_mm + 1.0, 0.5 * scene.spacing_mm), True, opts.anterior_margin_mm)
    tilt_range, cost = relative_tilt(normal, window, opts.tilt_window_deg, angular_cost(preferred))
    return Setup("S1 foramen", target, region, "S1", normal, preferred, window, tilt_range, cost, rules, None,
                 notes=notes, frame=frame_axes(marks))


def _pedicle_half_height(scene: Scene, label: int, marks: dict[str, Any], side: str, direction: np.ndarray,
                         where: str) -> float:
    """Pedicle centre to its border along ``direction``, measured on the label map.

    The border is the foramen's roof (or floor). Nine rays start across the pedicle's middle half and along its
    axis; the third smallest extent is taken, so bone attached beside the pedicle (the transverse process at L5)
    does not count and a single short ray (voxel noise) does not decide.
    """
    pedicle = marks[f"pedicle_{side}"]
    centre = np.asarray(pedicle["center"], dtype=np.float64)
    axis = np.asarray(pedicle["axis"], dtype=np.float64)
    across = targets.pedicle_across(marks, side)
    quarter = 0.125 * float(pedicle["narrowest_width_mm"])
    extents = [scene.extent_mm(label, centre + along * axis + sideways * across, direction)
               for along in (-3.0, 0.0, 3.0) for sideways in (-quarter, 0.0, quarter)]
    found = sorted(e for e in extents if e is not None)
    if not found:
        raise NeedleplanError(f"the pedicle of {where} could not be measured on the label map (its centre is not in "
                              "the vertebra's bone)")
    return found[min(2, len(found) - 1)]


def _behind_ventral_s1(scene: Scene, level: str, side: str, tip: np.ndarray) -> float | None:
    """Signed mm of the tip behind the ventral opening of the S1 foramen (S1 plans only)."""
    if level != "S1" or "S1" not in scene.spine:
        return None
    marks: dict[str, Any] = scene.spine["S1"].landmarks
    root = marks.get(f"exiting_root_{side}")
    if root is None or "axes" not in marks:
        return None
    posterior = np.asarray(marks["axes"]["posterior"], dtype=np.float64)
    return float((np.asarray(tip, dtype=np.float64) - np.asarray(root, dtype=np.float64)[-1]) @ posterior)


def _adamkiewicz(scene: Scene, level: str, side: str, target_mm: np.ndarray) -> str:
    """Warning for a tip in the upper half of a T8-L2 foramen (the artery of Adamkiewicz's usual place)."""
    marks = scene.spine[level].landmarks
    centre = marks.get(f"foramen_{side}")
    weight = "88% of these arteries are left-sided" if side == "left" else "12% of these arteries are right-sided"
    if centre is None:
        return (f"{level} {side} foramen lies in the Adamkiewicz zone (T8-L2; {weight}); its upper half could not "
                "be located")
    superior = np.asarray(marks["axes"]["superior"], dtype=np.float64)
    if (target_mm - np.asarray(centre)) @ superior > 0:
        return (f"the tip is in the upper half of the {level} {side} foramen, the usual place of the artery of "
                f"Adamkiewicz (T8-L2, {weight}); consider the infraneural approach")
    return (f"{level} {side} is in the Adamkiewicz zone (T8-L2, {weight}); the tip is in the lower half of the "
            "foramen")
