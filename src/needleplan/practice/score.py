"""Scoring a trainee's placement against the plan (CLINICAL.md section 7).

100 points: tip 40, angle 15, safety 15, views 15, radiation 15. Efficiency (time, path, redirections,
back-and-forth, punctures) is reported, not scored: the page's speed is not the trainee's. A session passes
when the tip is on target (RFA: the nerve is captured) and no no-go rule was broken at any moment; the
point weights and the grading thresholds below are engineering choices **[eng]**, named as constants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..anatomy import jsonable
from ..plan.angles import angle_between_deg, angles_from_direction
from ..plan.procedures import get_procedure
from ..plan.procedures.medial_branch import lesion_at

if TYPE_CHECKING:
    from .session import Session

#: Tip tolerance (mm) around the planned target: CLINICAL.md section 7 [eng].
TIP_TOLERANCE_MM = 3.0
#: Tip points fall linearly to zero this many mm beyond the tolerance.
TIP_FALLOFF_MM = 10.0
#: Angle error (degrees) with full points, and where the points reach zero [eng]; experts: 9.9 +/- 4.7 [lit].
ANGLE_FULL_DEG, ANGLE_ZERO_DEG = 5.0, 30.0
#: A plan view counts as taken when a shot came within this many degrees of it; zero points at the second.
VIEW_FULL_DEG, VIEW_ZERO_DEG = 3.0, 15.0
WEIGHTS = {"tip": 40.0, "angle": 15.0, "safety": 15.0, "views": 15.0, "radiation": 15.0}
#: Points lost per safety warning at the end (tip near the canal, needle through a modelled root...).
WARNING_COST = 5.0


def score_session(session: "Session") -> dict[str, Any]:
    """The score document of a session (see docs/practice.md)."""
    plan = session.case.plan
    needle = session.needle
    inside = needle is not None and needle.depth_mm > 0
    tip = _tip(session) if inside else None
    angle = _angle(session) if inside else None
    rfa = _rfa(session) if inside and plan.lesion is not None else None
    safety = _safety(session)
    views = _views(session)
    radiation = _radiation(session)
    efficiency = {"time_s": round(session.elapsed_s(), 1), "path_mm": round(session.path_mm, 1),
                  "redirections": session.redirections, "back_and_forth": session.back_and_forth,
                  "punctures": session.punctures}
    on_target = rfa["ok"] if rfa is not None else bool(tip and tip["in_target"])
    passed = bool(inside and on_target and safety["safe"])
    points = sum(part["points"] for part in (tip, angle, safety, views, radiation) if part is not None)
    if rfa is not None and tip is not None:  # RFA: the tip's points follow the capture
        points += rfa["points"] - tip["points"]
    points = round(float(points), 1)
    score = {"points": points, "passed": passed, "grade": _grade(points, passed), "tip": tip, "angle": angle,
             "rfa": rfa, "safety": safety, "views": views, "radiation": radiation, "efficiency": efficiency}
    score["summary"] = _summary(session, score)
    return jsonable(score, finite=True)


def _tip(session: "Session") -> dict[str, Any]:
    plan, needle, scene = session.case.plan, session.needle, session.case.scene
    assert needle is not None and plan.needle is not None  # scored once the needle is in; the plan is feasible
    planned_tip = plan.needle.tip_mm
    tip = needle.tip_mm
    # RFA's region is around the lesion's centre, half a lesion behind the tip
    behind = float(np.linalg.norm(planned_tip - plan.target_mm))
    region_distance = float(plan.target_region.distance_mm(tip - behind * needle.direction))
    error = float(np.linalg.norm(tip - planned_tip))
    in_target = region_distance == 0.0 or error <= TIP_TOLERANCE_MM
    procedure = get_procedure(plan.procedure)
    needs_bone = procedure.bone_contact
    bone_contact = None
    if needs_bone:
        ahead = tip + np.linspace(0.0, session.contact_mm, 8)[:, None] * needle.direction
        bone_contact = bool(needle.bone_contact or (scene.lookup(scene.bone, ahead) > 0).any())
    points = WEIGHTS["tip"] * float(np.clip(1.0 - (error - TIP_TOLERANCE_MM) / TIP_FALLOFF_MM, 0.0, 1.0))
    if in_target:
        points = WEIGHTS["tip"]
    if needs_bone and not bone_contact:
        points *= 0.75
    return {"error_mm": error, "region_distance_mm": region_distance, "tolerance_mm": TIP_TOLERANCE_MM,
            "in_target": in_target, "bone_contact": bone_contact,
            "joint_space": (region_distance == 0.0) if procedure.joint_space else None,
            "points": points, "of": WEIGHTS["tip"]}


def _angle(session: "Session") -> dict[str, Any]:
    plan, needle = session.case.plan, session.needle
    assert needle is not None and plan.direction is not None  # scored once the needle is in; the plan is feasible
    error = angle_between_deg(needle.direction, plan.direction)
    oblique, tilt = angles_from_direction(needle.direction)
    plan_oblique, plan_tilt = angles_from_direction(plan.direction)
    points = WEIGHTS["angle"] * float(np.clip((ANGLE_ZERO_DEG - error) / (ANGLE_ZERO_DEG - ANGLE_FULL_DEG), 0, 1))
    return {"error_deg": error, "oblique_error_deg": (oblique - plan_oblique + 180.0) % 360.0 - 180.0,
            "tilt_error_deg": tilt - plan_tilt, "points": points, "of": WEIGHTS["angle"]}


def _rfa(session: "Session") -> dict[str, Any]:
    plan, needle = session.case.plan, session.needle
    # scored once the needle is in, for a plan with a lesion (RFA), which has the nerve it aims at
    assert needle is not None and plan.lesion is not None and plan.nerve is not None
    lesion = lesion_at(plan.nerve, needle.tip_mm, needle.direction, plan.options)
    captured, angle = lesion.nerve_captured_mm, lesion.electrode_to_nerve_deg
    aim_mm, max_deg = plan.options.rfa_capture_min_mm, plan.options.rfa_max_angle_deg  # the plan's own thresholds
    ok = captured >= aim_mm and angle <= max_deg
    share = min(1.0, captured / aim_mm) * float(np.clip(1.0 - (angle - max_deg) / 20.0, 0.0, 1.0))
    return {"nerve_captured_mm": captured, "electrode_to_nerve_deg": angle, "capture_aim_mm": aim_mm,
            "max_angle_deg": max_deg, "plan_captured_mm": plan.lesion.nerve_captured_mm,
            "plan_electrode_to_nerve_deg": plan.lesion.electrode_to_nerve_deg, "ok": ok,
            "points": WEIGHTS["tip"] * share, "of": WEIGHTS["tip"]}


def _safety(session: "Session") -> dict[str, Any]:
    final = session.safety()
    during = list(session.violations_during)
    violations = [] if final is None else final.violations
    warnings = [] if final is None else final.to_dict()["warnings"]
    clearances = {} if final is None else {item.structure: item.clearance_mm for item in final.items
                                           if np.isfinite(item.clearance_mm)}
    safe = not violations and not during
    placed = final is not None  # no needle in the patient earns no safety points
    points = 0.0 if not (safe and placed) else max(0.0, WEIGHTS["safety"] - WARNING_COST * len(warnings))
    return {"safe": safe, "violations": violations, "violations_during": during, "warnings": warnings,
            "min_clearance_mm": clearances, "points": points, "of": WEIGHTS["safety"]}


def _views(session: "Session") -> dict[str, Any]:
    """For each distinct view of the plan, the closest any shot came to it (angle between the beams)."""
    items: list[dict[str, Any]] = []
    seen: list[np.ndarray] = []
    for view in session.case.plan.views:
        beam = view.carm.beam_direction
        if any(angle_between_deg(beam, other) < 0.5 for other in seen):
            continue  # e.g. "AP check" repeats the squared endplate
        seen.append(beam)
        best, number = None, None
        for shot in session.shots:
            pose = session.carm_of(shot.carm)
            angle = angle_between_deg(beam, pose.beam_direction)
            if best is None or angle < best:
                best, number = angle, shot.number
        items.append({"view": view.name, "in_words": view.words, "closest_deg": best, "shot": number})
    shares = [0.0 if item["closest_deg"] is None else
              float(np.clip((VIEW_ZERO_DEG - item["closest_deg"]) / (VIEW_ZERO_DEG - VIEW_FULL_DEG), 0.0, 1.0))
              for item in items]
    points = WEIGHTS["views"] * (float(np.mean(shares)) if shares else 0.0)
    return {"items": items, "points": points, "of": WEIGHTS["views"]}


def _radiation(session: "Session") -> dict[str, Any]:
    shots = len(session.shots)
    wasted = sum(1 for shot in session.shots if not shot.informative)
    expert = get_procedure(session.case.plan.procedure).expert_shots
    share = float(np.clip((4 * expert - shots) / (2 * expert), 0.0, 1.0))
    points = max(0.0, WEIGHTS["radiation"] * share - wasted)
    return {"shots": shots, "dose_proxy_cm2": session.dose_proxy_cm2(), "uninformative_shots": wasted,
            "uninformative_share": wasted / shots if shots else 0.0, "expert_shots": expert, "points": points,
            "of": WEIGHTS["radiation"]}


def _grade(points: float, passed: bool) -> str:
    if not passed:
        return "fail"
    return "excellent" if points >= 90 else "good" if points >= 75 else "fair" if points >= 50 else "needs work"


def _summary(session: "Session", score: dict[str, Any]) -> list[str]:
    lines = []
    tip, angle, rfa, safety = score["tip"], score["angle"], score["rfa"], score["safety"]
    if tip is None:
        lines.append("No needle was placed in the patient: nothing to score.")
    else:
        where = "inside the target region" if tip["region_distance_mm"] == 0 else \
            f"{tip['region_distance_mm']:.1f} mm outside the target region"
        lines.append(f"Tip {tip['error_mm']:.1f} mm from the planned tip ({where}; tolerance "
                     f"{tip['tolerance_mm']:g} mm).")
        if tip["bone_contact"] is False:
            lines.append("The tip is not on bone: this target needs bone contact.")
        lines.append(f"Needle {angle['error_deg']:.1f} degrees off the planned direction "
                     f"({angle['oblique_error_deg']:+.1f} oblique, {angle['tilt_error_deg']:+.1f} tilt).")
    if rfa is not None:
        lines.append(f"RF lesion captures {rfa['nerve_captured_mm']:.1f} mm of nerve (aim "
                     f"{rfa['capture_aim_mm']:g}; the plan {rfa['plan_captured_mm']:.1f}) at "
                     f"{rfa['electrode_to_nerve_deg']:.0f} degrees to it (at most {rfa['max_angle_deg']:g}).")
    if safety["violations"]:
        lines.append("UNSAFE at the end: " + "; ".join(safety["violations"]) + ".")
    if safety["violations_during"]:
        first = safety["violations_during"][0]
        lines.append(f"UNSAFE on the way ({len(safety['violations_during'])} moves), first at action "
                     f"{first['action']}: " + "; ".join(first["violations"]) + ".")
    lines.extend(f"Warning: {w}." for w in safety["warnings"])
    radiation = score["radiation"]
    lines.append(f"{_count(radiation['shots'], 'shot')} (an expert takes about {radiation['expert_shots']}), dose "
                 f"proxy {radiation['dose_proxy_cm2']:.0f} cm2, {radiation['uninformative_shots']} repeating an "
                 "earlier one.")
    missed = [f"{item['view']} ({_off_words(item['closest_deg'])})" for item in score["views"]["items"]
              if item["closest_deg"] is None or item["closest_deg"] > VIEW_FULL_DEG]
    lines.append("Plan views taken: all." if not missed else "Plan views missed: " + ", ".join(missed) + ".")
    eff = score["efficiency"]
    lines.append(f"{eff['time_s']:.0f} s, {eff['path_mm']:.0f} mm of needle path, "
                 f"{_count(eff['redirections'], 'redirection')}, {eff['back_and_forth']} back-and-forth, "
                 f"{_count(eff['punctures'], 'skin puncture')}.")
    lines.append(f"{score['points']:.0f}/100, {score['grade']}.")
    return lines


def _off_words(angle_deg: float | None) -> str:
    return "never taken" if angle_deg is None else f"closest shot {angle_deg:.0f} degrees off"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
