"""The steps every plan shares once its procedure has set it up: target search, needle, views, safety, lesion and
entry offsets. The procedure (:mod:`.procedures`) is asked for what differs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..anatomy import SIDE_SIGN, Spine
from ..needle import Needle
from .angles import describe_angles, direction_from_angles, squared_tilt_deg
from .model import NeedleChoice, Plan, Safety, SafetyItem
from .options import PlanOptions
from .safety import assess, tip_problem
from .scene import Scene
from .search import SearchResult, search_direction
from .setups import Setup

if TYPE_CHECKING:
    from .procedures import Procedure


def complete(scene: Scene, procedure: Procedure, level: str, side: str, setup: Setup, opts: PlanOptions) -> Plan:
    """Search the path of a set-up procedure and assemble its Plan (feasible or with the reason it is not)."""
    target, result, safety, notes = _find_path(scene, procedure, level, side, setup, opts)
    b0 = squared_tilt_deg(setup.normal, setup.preferred[0] if result.oblique_deg is None else result.oblique_deg)
    common = dict(procedure=procedure.key, level=level, side=side, approach=setup.approach, target_mm=target,
                  target_region=setup.region, reference_endplate=f"{setup.endplate_of} superior endplate",
                  squared_tilt_deg=b0, search=_search_info(result), notes=[*setup.notes, *notes], options=opts,
                  nerve=setup.nerve)
    if result.oblique_deg is None:
        return Plan(feasible=False, reason=result.reason, **common)
    oblique, tilt = result.oblique_deg, result.tilt_deg
    assert tilt is not None and result.depth_mm is not None  # a found pose has all three
    direction = direction_from_angles(oblique, tilt)
    entry = target - float(result.depth_mm) * direction
    tip = target + setup.tip_beyond_mm * direction
    depth = float(np.linalg.norm(tip - entry))
    choice = _needle_choice(procedure, depth, opts)
    needle = Needle.from_direction(tip, direction, choice.length_mm, gauge=choice.gauge,
                                   name=f"{procedure.key}-{level}-{side}")
    lesion = procedure.lesion(setup, tip, direction, opts)
    assert safety is not None
    endplate = scene.spine[setup.endplate_of].landmarks["superior_endplate"]["center"]
    views = procedure.views(setup, level, side, target, oblique, tilt, np.asarray(endplate, dtype=np.float64))
    offsets, words = _entry_offsets(scene.spine, procedure.entry_level(level, setup), side, entry)
    plan = Plan(feasible=safety.safe, reason="; ".join(safety.violations), entry_mm=entry, direction=direction,
                depth_mm=depth, oblique_deg=oblique, tilt_deg=tilt, needle_choice=choice, needle=needle, views=views,
                safety=safety, lesion=lesion, entry_offsets=offsets, entry_in_words=words, **common)
    trajectory = describe_angles(oblique, tilt, side, b0 if procedure.endplate_relative else None)
    plan.notes.append(f"trajectory: {trajectory}")
    if result.preferred_reason:
        plan.notes.append(f"the first-choice direction ({describe_angles(*result.preferred, side)}) is blocked: "
                          f"{result.preferred_reason}; the grid search found this one")
    if choice.reaches and not choice.standard:
        plan.safety.warnings.append(choice.note)
    return plan


def procedure_items(procedure: Procedure, setup: Setup, tip: np.ndarray, direction: np.ndarray, depth_mm: float,
                    opts: PlanOptions, angle_rule: bool = True) -> list[SafetyItem]:
    """The rules a path must pass besides the no-go clearances: a needle that reaches the tip with a hub margin
    (CLINICAL.md section 7.3) and the procedure's own (RFA: a lesion along the nerve; ``angle_rule=False`` leaves out
    the electrode-to-nerve angle)."""
    choice = _needle_choice(procedure, depth_mm, opts)
    items = [SafetyItem("needle length", float("nan"), float("nan"),
                        f"{'an' if choice.kind[0] in 'AEIOUR' else 'a'} {choice.kind} of at most "
                        f"{max(procedure.stock(opts).lengths_mm):.0f} mm reaches the tip with "
                        f"{opts.hub_margin_mm:g} mm outside the skin", "ok" if choice.reaches else "violation",
                        "" if choice.reaches else choice.note)]
    return items + procedure.rule_items(setup, tip, direction, opts, angle_rule)


def _find_path(scene: Scene, procedure: Procedure, level: str, side: str, setup: Setup, opts: PlanOptions
               ) -> tuple[np.ndarray, SearchResult, Safety | None, list[str]]:
    """The target (the nominal one or, failing that, another point of its region), the searched pose and the
    safety report that accepted it (None when no pose was found)."""
    tried: list[str] = []
    reports: dict[tuple[float, float], Safety] = {}
    last: SearchResult | None = None
    for target in _target_candidates(scene, setup, opts):
        problem = tip_problem(scene, procedure, setup.approach, target, opts)
        if problem:
            tried.append(problem)
            continue

        def verify(oblique: float, tilt: float, depth: float, target: np.ndarray = target) -> str:
            direction = direction_from_angles(oblique, tilt)
            tip = target + setup.tip_beyond_mm * direction
            items = procedure_items(procedure, setup, tip, direction, depth + setup.tip_beyond_mm, opts)
            broken = [item.message for item in items if item.status == "violation"]
            if broken:  # cheaper than the clearances, so checked first
                return "; ".join(broken)
            safety = assess(scene, procedure, setup.approach, level, side, target - depth * direction, tip, opts,
                            setup.rules.bone_contact_mm + setup.tip_beyond_mm)
            safety.items += items
            reports[(oblique, tilt)] = safety
            return "; ".join(safety.violations)

        last = search_direction(scene, target, setup.preferred, setup.oblique_range, setup.tilt_range, setup.cost,
                                setup.rules, opts.grid_step_deg, verify)
        if last.oblique_deg is not None:
            assert last.tilt_deg is not None  # a found pose has both angles
            shift = float(np.linalg.norm(target - setup.target))
            notes = [] if shift == 0 else [f"the nominal target has no safe straight path ({tried[0]}); the tip is "
                                           f"moved {shift:.1f} mm inside the target region"]
            return target, last, reports[(last.oblique_deg, last.tilt_deg)], notes
        tried.append(last.reason)
    reason = tried[0] if len(tried) == 1 else (f"{tried[0]} (and no point of the target region within "
                                               f"{opts.target_shift_max_mm:g} mm does better)")
    if setup.relaxed_cost is not None and last is not None and last.window:
        best = _best_clear_path(scene, procedure, level, side, setup, opts)
        closest = _closest_in_window(setup, opts.grid_step_deg)
        if closest > opts.rfa_max_angle_deg:
            oblique, tilt = last.window["oblique_deg"], last.window["tilt_deg"]
            reason = (f"no direction of the window (oblique {oblique[0]:.0f} to {oblique[1]:.0f}, tilt {tilt[0]:.0f} "
                      f"to {tilt[1]:.0f} degrees) comes within {opts.rfa_max_angle_deg:g} degrees of the nerve (the "
                      f"closest is {closest:.0f}); {best}")
        else:
            reason = f"within {opts.rfa_max_angle_deg:g} degrees of the nerve, {reason}; {best}"
    failed = SearchResult(None, None, None, 0 if last is None else last.checked, setup.preferred,
                          tried[0] if last is None else last.preferred_reason, {} if last is None else last.window,
                          reason)
    return setup.target, failed, None, []


def _best_clear_path(scene: Scene, procedure: Procedure, level: str, side: str, setup: Setup, opts: PlanOptions) -> str:
    """How parallel to the nerve the best path of the window that passes every other rule is, when none within the
    RFA angle limit does."""
    def clear(oblique: float, tilt: float, depth: float) -> str:
        direction = direction_from_angles(oblique, tilt)
        tip = setup.target + setup.tip_beyond_mm * direction
        items = procedure_items(procedure, setup, tip, direction, depth + setup.tip_beyond_mm, opts, angle_rule=False)
        broken = [item.message for item in items if item.status == "violation"]
        if broken:
            return "; ".join(broken)
        return "; ".join(assess(scene, procedure, setup.approach, level, side, setup.target - depth * direction, tip,
                                opts, setup.rules.bone_contact_mm + setup.tip_beyond_mm).violations)

    best = search_direction(scene, setup.target, setup.preferred, setup.oblique_range, setup.tilt_range,
                            setup.relaxed_cost, setup.rules, opts.grid_step_deg, clear)
    if best.oblique_deg is None or best.tilt_deg is None:
        return "no straight path of the window passes every rule, however parallel to the nerve"
    angle = float(setup.relaxed_cost(np.array([best.oblique_deg]), np.array([best.tilt_deg]))[0])
    return (f"the most parallel straight path that passes every other rule is {angle:.0f} degrees from the nerve "
            f"({describe_angles(best.oblique_deg, best.tilt_deg, side)})")


def _closest_in_window(setup: Setup, step_deg: float) -> float:
    """The smallest electrode-to-nerve angle (degrees) of any direction of the RFA window's grid."""
    obliques = np.arange(setup.oblique_range[0], setup.oblique_range[1] + 0.5 * step_deg, step_deg)
    tilts = np.arange(setup.tilt_range[0], setup.tilt_range[1] + 0.5 * step_deg, step_deg)
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(obliques, tilts, indexing="ij"))
    return float(np.min(setup.relaxed_cost(grid_a, grid_b)))


def _target_candidates(scene: Scene, setup: Setup, opts: PlanOptions) -> list[np.ndarray]:
    """The nominal target, then up to eight bone-free points of the target region (1 mm grid in the vertebra's
    frame, at most ``target_shift_max_mm`` away, nearest first) for TFESI, whose region is a space to reach
    rather than a bone to touch; on a coarse scan the nominal point can fall in the voxels of an SAP's base."""
    candidates = [setup.target]
    if setup.frame is None or opts.target_shift_max_mm <= 0:
        return candidates
    reach = min(opts.target_shift_max_mm, setup.region.radius_mm)
    steps = np.arange(-np.floor(reach), np.floor(reach) + 1.0)
    grid = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    offsets = grid[(np.sum(grid ** 2, axis=1) > 0) & (np.sum(grid ** 2, axis=1) <= reach ** 2)]
    offsets = offsets[np.argsort(np.linalg.norm(offsets, axis=1), kind="stable")]
    points = setup.target + offsets @ setup.frame
    free = scene.lookup(scene.bone, points) == 0
    return candidates + list(points[free][:8])


def _search_info(result: SearchResult) -> dict[str, Any]:
    return {"preferred_oblique_deg": result.preferred[0], "preferred_tilt_deg": result.preferred[1],
            "preferred_blocked_by": result.preferred_reason, "directions_checked": result.checked,
            "window": {k: list(v) for k, v in result.window.items()}, "no_window_reason": result.reason}


def _needle_choice(procedure: Procedure, depth_mm: float, opts: PlanOptions) -> NeedleChoice:
    needed = depth_mm + opts.hub_margin_mm
    stock = procedure.stock(opts)
    kind, lengths = stock.kind, stock.lengths_mm
    fitting = [length for length in sorted(lengths) if length >= needed]
    length = fitting[0] if fitting else max(lengths)
    standard = bool(fitting) and length <= stock.standard_max_mm
    if not fitting:
        note = f"no {kind} reaches: the path needs {needed:.0f} mm and the longest is {max(lengths):.0f} mm"
    elif not standard:
        note = f"a standard {kind} does not reach: {length:.0f} mm needed (depth {depth_mm:.0f} mm)"
    else:
        note = f"{stock.gauge}G {length:.0f} mm {kind} (depth {depth_mm:.0f} mm + {opts.hub_margin_mm:g} mm outside)"
    return NeedleChoice(kind, stock.gauge, float(length), float(needed), standard, note)


def midline_plane(spine: Spine) -> tuple[np.ndarray, np.ndarray] | None:
    """A point on the patient's midsagittal plane and its unit normal toward the left (None without landmarks)."""
    middle = spine.pelvis.get("midline")
    if middle is not None:
        return np.asarray(middle["point"], dtype=np.float64), np.asarray(middle["normal"], dtype=np.float64)
    tips = [v.landmarks["spinous_tip"] for v in spine if "spinous_tip" in v.landmarks]
    lefts = [v.landmarks["axes"]["left"] for v in spine if "axes" in v.landmarks]
    if not tips or not lefts:
        return None
    normal = np.mean(lefts, axis=0)
    return np.mean(tips, axis=0), normal / np.linalg.norm(normal)


def _entry_offsets(spine: Spine, level: str, side: str, entry: np.ndarray) -> tuple[dict[str, float], str]:
    """Entry point offsets in mm from the midline and from the level's spinous tip (or the PSIS), with words."""
    offsets: dict[str, float] = {}
    words = []
    midline = midline_plane(spine)
    if midline is not None:
        left = float((entry - midline[0]) @ midline[1])
        offsets["from_midline_left_mm"] = left
        words.append(f"{abs(left):.0f} mm {'left' if left >= 0 else 'right'} of the midline")
    vertebra = spine.vertebrae.get(level)
    if vertebra is not None and "axes" in vertebra.landmarks:
        superior = np.asarray(vertebra.landmarks["axes"]["superior"], dtype=np.float64)
        tip = vertebra.landmarks.get("spinous_tip")
        if tip is not None:
            up = float((entry - np.asarray(tip)) @ superior)
            offsets[f"from_{level}_spinous_tip_cranial_mm"] = up
            words.append(f"{abs(up):.0f} mm {'cranial' if up >= 0 else 'caudal'} to the {level} spinous process tip")
    psis = spine.pelvis.get(f"psis_{side}")
    if psis is not None and level == "S1":
        rel = entry - np.asarray(psis, dtype=np.float64)
        lateral = SIDE_SIGN[side] * (midline[1] if midline is not None else np.array([1.0, 0.0, 0.0]))
        medial = float(-(rel @ lateral))
        up = float(rel[2])
        offsets[f"from_psis_{side}_medial_mm"] = medial
        offsets[f"from_psis_{side}_cranial_mm"] = up
        words.append(f"{abs(medial):.0f} mm {'medial' if medial >= 0 else 'lateral'} and {abs(up):.0f} mm "
                     f"{'cranial' if up >= 0 else 'caudal'} to the {side} PSIS")
    return offsets, ", ".join(words)
