"""``plan`` and ``plan_all``: a complete needle plan for one procedure, level and side (CLINICAL.md 2-6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..anatomy import LEVEL_ORDER, SIDES, Spine, level_below
from ..errors import NeedleplanError
from ..needle import GAUGE_OUTER_DIAMETER_MM, Needle
from . import targets
from .angles import angle_between_deg, angles_from_direction, describe_angles, direction_from_angles, squared_tilt_deg
from .model import Lesion, NeedleChoice, Plan, Safety, TargetRegion
from .options import LESION_RADIUS_MM, PlanOptions, make_options
from .safety import assess, tip_problem
from .scene import Scene, scene_for
from .search import PathRules, SearchResult, search_direction
from .views import view_sequence

PROCEDURES: tuple[str, ...] = ("tfesi", "mbb", "si", "rfa")
_SIGN = {"left": 1.0, "right": -1.0}
_TFESI_LEVELS = ("L1", "L2", "L3", "L4", "L5", "L6", "S1")
_NERVES = ("T12", "L1", "L2", "L3", "L4", "L5")


@dataclass
class _Setup:
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


def plan(spine: Spine, procedure: str, level: str | None = None, side: str | None = None, *,
         approach: str | None = None, options: PlanOptions | None = None, **overrides: Any) -> Plan:
    """Plan one needle for a procedure, level and side.

    Parameters
    ----------
    spine : Spine
        A segmented CT (:func:`needleplan.segment`) or the phantom's :meth:`~needleplan.PhantomCase.spine`.
    procedure : str
        "tfesi" (transforaminal epidural), "mbb" (medial branch block), "si" (sacroiliac joint) or "rfa"
        (radiofrequency ablation of the medial branch).
    level : str
        TFESI: the vertebra above the foramen, L1-L5, or "S1". MBB and RFA: the nerve, L1-L4 medial branch or
        "L5" (dorsal ramus); the target lies on the vertebra below. SI: ignored (or "S1").
    side : str
        "left" or "right".
    approach : str, optional
        TFESI: "supraneural" or "infraneural". By default infraneural at L1-L3, supraneural at L4-L5, and the
        other approach when the default one has no safe straight path (the plan's notes say so).
    options : PlanOptions, optional
        Planner parameters; keyword arguments override single fields (``below_pedicle_mm=3``).

    Returns
    -------
    Plan
        Feasible or not (``plan.reason`` says why).

    Raises
    ------
    NeedleplanError
        Unknown procedure, side or option; a level the procedure does not support or the scan does not hold; a
        landmark the plan needs is missing.
    """
    opts = make_options(options, **overrides)
    if procedure not in PROCEDURES:
        raise NeedleplanError(f"unknown procedure {procedure!r}; choose one of {', '.join(PROCEDURES)}")
    if side not in SIDES:
        raise NeedleplanError(f"side must be 'left' or 'right', got {side!r}")
    scene = scene_for(spine)
    if procedure == "tfesi":
        level = _check_level(spine, level, _TFESI_LEVELS, "TFESI", "L1-L5 and S1")
        setup = _tfesi(scene, level, side, approach, opts)
        first = _complete(scene, procedure, level, side, setup, opts)
        if first.feasible or approach is not None or level == "S1":
            return first
        other = "supraneural" if first.approach == "infraneural" else "infraneural"
        try:
            second = _complete(scene, procedure, level, side, _tfesi(scene, level, side, other, opts), opts)
        except NeedleplanError:
            return first
        if not second.feasible:
            return first
        second.notes.insert(0, f"the default {first.approach} approach has no safe straight path ({first.reason}); "
                               f"this is the {other} approach")
        return second
    elif procedure in ("mbb", "rfa"):
        level = _check_nerve(spine, level, procedure)
        setup = _medial_branch(scene, procedure, level, side, opts)
    else:
        level = "S1"
        setup = _si(scene, side, opts)
    return _complete(scene, procedure, level, side, setup, opts)


def plan_joint(spine: Spine, joint: str, side: str, procedure: str = "mbb", **overrides: Any) -> list[Plan]:
    """The two medial-branch plans (MBB or RFA) for a facet joint, e.g. joint "L4-L5" -> nerves L3 and L4.

    The facet joint Ln/Ln+1 is supplied by the medial branches of L(n-1) and Ln (the L5/S1 joint by the L4 medial
    branch and the L5 dorsal ramus).
    """
    if procedure not in ("mbb", "rfa"):
        raise NeedleplanError(f"a facet joint is blocked with 'mbb' or 'rfa', not {procedure!r}")
    names = str(joint).upper().replace("/", "-").split("-")
    following = level_below(names[0]) if names[0] in LEVEL_ORDER else None
    while following in ("L6", "T13") and len(names) == 2 and names[1] != following:
        following = level_below(following)
    if len(names) != 2 or following != names[1]:
        raise NeedleplanError(f"a facet joint is named by two adjacent levels such as 'L4-L5', got {joint!r}")
    upper = LEVEL_ORDER[LEVEL_ORDER.index(names[0]) - 1]
    return [plan(spine, procedure, nerve, side, **overrides) for nerve in (upper, names[0])]


@dataclass
class CasePlans:
    """Every plan of a case: ``plans`` (feasible or not) and ``skipped`` (name -> why no plan could be made)."""

    plans: list[Plan]
    skipped: dict[str, str]

    @property
    def feasible(self) -> list[Plan]:
        """The plans with a safe straight path."""
        return [p for p in self.plans if p.feasible]


def plan_all(spine: Spine, procedures: tuple[str, ...] = PROCEDURES, **overrides: Any) -> CasePlans:
    """Plan every procedure, level and side the scan holds.

    TFESI at every lumbar foramen and S1, MBB and RFA for every lumbar medial branch and the L5 dorsal ramus, and
    both SI joints. Levels the scan lacks are not tried; plans that cannot be made (a landmark missing) are listed
    in ``skipped`` with the reason.
    """
    for procedure in procedures:
        if procedure not in PROCEDURES:
            raise NeedleplanError(f"unknown procedure {procedure!r}; choose from {', '.join(PROCEDURES)}")
    scene_for(spine)
    jobs: list[tuple[str, str, str]] = []
    for procedure in procedures:
        if procedure == "tfesi":
            levels = [name for name in _TFESI_LEVELS if name in spine]
        elif procedure == "si":
            levels = ["S1"]
        else:
            levels = [name for name in _NERVES if name in spine and vertebra_below(spine, name) is not None]
        jobs += [(procedure, level, side) for level in levels for side in SIDES]
    plans, skipped = [], {}
    for procedure, level, side in jobs:
        try:
            plans.append(plan(spine, procedure, level, side, **overrides))
        except NeedleplanError as error:
            skipped[f"{procedure}-{level}-{side}"] = str(error)
    return CasePlans(plans, skipped)


# ---- levels -------------------------------------------------------------------------------------------------------
def vertebra_below(spine: Spine, name: str) -> str | None:
    """The next vertebra caudally that the scan holds ("L5" -> "S1" when there is no L6), or None."""
    below = level_below(name)
    while below is not None and below not in spine and below in ("L6", "T13"):
        below = level_below(below)
    return below if below is not None and below in spine else None


def _check_level(spine: Spine, level: str | None, allowed: tuple[str, ...], what: str, words: str) -> str:
    if level not in allowed:
        raise NeedleplanError(f"{what} is planned at {words}; got level {level!r}")
    if level not in spine:
        raise NeedleplanError(f"level {level} is not in this scan (found: {', '.join(spine.levels) or 'none'})")
    return level


def _check_nerve(spine: Spine, level: str | None, procedure: str) -> str:
    if isinstance(level, str) and level.startswith("C"):
        present = [name for name in spine.levels if name.startswith("C")]
        raise NeedleplanError(f"cervical medial branch planning is not available: it needs the articular pillars "
                              f"of C3-C7, and this scan holds {', '.join(present) or 'no cervical level'}")
    if level not in _NERVES:
        raise NeedleplanError(f"{procedure.upper()} targets a lumbar medial branch (nerve L1-L4, or T12) or the L5 "
                              f"dorsal ramus (level 'L5'); got {level!r}")
    if vertebra_below(spine, level) is None:
        raise NeedleplanError(f"the {level} {'dorsal ramus' if level == 'L5' else 'medial branch'} runs over "
                              f"{level_below(level)}, which is not in this scan (found: "
                              f"{', '.join(spine.levels) or 'none'})")
    return level


# ---- procedures ---------------------------------------------------------------------------------------------------
def _angular_cost(preferred: tuple[float, float]):
    u0 = direction_from_angles(*preferred)

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ u0, -1.0, 1.0)))
    return cost


def _relative_tilt(normal: np.ndarray, oblique_range: tuple[float, float], relative: tuple[float, float], cost):
    """Tilt window measured from the squared endplate at each oblique: the grid's outer tilt range, and the cost
    made infinite outside the window (b0 changes with the oblique)."""
    obliques = np.linspace(*oblique_range, 25)
    squared = [squared_tilt_deg(normal, a) for a in obliques]
    outer = (min(squared) + relative[0], max(squared) + relative[1])

    def windowed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        b0 = np.degrees(np.arctan2(normal[0] * np.sin(np.radians(a)) + normal[1] * np.cos(np.radians(a)), normal[2]))
        inside = (b - b0 >= relative[0] - 1e-9) & (b - b0 <= relative[1] + 1e-9)
        return np.where(inside, cost(a, b), np.inf)
    return outer, windowed


def _off_bone(scene: Scene, point: np.ndarray, distance_mm: float) -> np.ndarray:
    """A bone-contact target moved ``distance_mm`` out of the bone surface it lies on: the needle's tip rests
    against the bone instead of aiming into it (or grazing along it)."""
    normal = scene.outward_normal(point)
    return point if normal is None else point + distance_mm * normal


def _contact_mm(scene: Scene, opts: PlanOptions) -> float:
    """Bone this close to a bone-contact target (MBB, SI) is the intended contact: the option, but at least one
    and a half voxels of the label map (where a coarse scan puts a bone surface is that uncertain)."""
    return max(opts.bone_contact_mm, 1.5 * scene.spacing_mm)


def _axes(marks: dict[str, Any]) -> np.ndarray:
    """(3, 3) rows: the vertebra's left, posterior and superior unit vectors."""
    return np.array([marks["axes"][key] for key in ("left", "posterior", "superior")], dtype=np.float64)


def _window(side: str, low_high: tuple[float, float]) -> tuple[float, float]:
    """Ipsilateral oblique window as signed table angles."""
    low, high = low_high
    return (low, high) if side == "left" else (-high, -low)


def _clamp(value: float, window: tuple[float, float]) -> float:
    return float(np.clip(value, *window))


def _tfesi(scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> _Setup:
    spine = scene.spine
    if level == "S1":
        return _tfesi_s1(scene, side, approach, opts)
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
    window = _window(side, opts.tfesi_oblique_deg)
    if sap is not None:
        delta = np.asarray(sap, dtype=np.float64) - six_oclock
        oblique = _clamp(float(np.degrees(np.arctan2(delta[0], delta[1]))), window)
    else:
        oblique = _clamp(_SIGN[side] * 25.0, window)
        notes.append(f"the {below} SAP tip was not found; the trajectory view starts from 25 degrees oblique")
    normal = _endplate_normal(marks, level, opts, notes)
    b0 = squared_tilt_deg(normal, oblique)
    rules = PathRules(0.5 * scene.spacing_mm, True, opts.anterior_margin_mm)
    tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost((oblique, b0)))
    return _Setup(approach, target, region, level, normal, (oblique, b0), window, tilt_range, cost, rules, below,
                  notes=notes, frame=_axes(marks))


def _tfesi_s1(scene: Scene, side: str, approach: str | None, opts: PlanOptions) -> _Setup:
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
    normal = _endplate_normal(marks, "S1", opts, notes)
    target = targets.s1_foramen(opening, channel, opts.s1_foramen_depth_mm)
    region = TargetRegion(target, target, 3.0, "superolateral part of the posterior S1 foramen")
    window = _window(side, opts.s1_oblique_deg)
    channel_oblique, channel_tilt = angles_from_direction(np.asarray(channel) - np.asarray(opening))
    oblique = _clamp(channel_oblique, window)
    b0 = squared_tilt_deg(normal, oblique)
    preferred = (oblique, _clamp(channel_tilt, (b0 + opts.tilt_window_deg[0], b0 + opts.tilt_window_deg[1])))
    rules = PathRules(max(opts.s1_foramen_depth_mm + 1.0, 0.5 * scene.spacing_mm), True, opts.anterior_margin_mm)
    tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost(preferred))
    return _Setup("S1 foramen", target, region, "S1", normal, preferred, window, tilt_range, cost, rules, None,
                  notes=notes, frame=_axes(marks))


def _medial_branch(scene: Scene, procedure: str, level: str, side: str, opts: PlanOptions) -> _Setup:
    below = vertebra_below(scene.spine, level)
    assert below is not None
    vertebra = scene.spine[below]
    marks = vertebra.landmarks
    where = f"{below} ({side})"
    approach = "dorsal ramus" if level == "L5" else "medial branch"
    for key in ("axes", "superior_endplate", f"medial_branch_{side}"):
        targets.need(marks, key, where)
    notes: list[str] = []
    normal = _endplate_normal(marks, below, opts, notes)
    branch = np.asarray(marks[f"medial_branch_{side}"], dtype=np.float64)
    if procedure == "mbb":
        target = _off_bone(scene, targets.mbb(branch, marks["axes"]["superior"],
                                              targets.mbb_drop_mm(level, opts.mbb_below_tp_margin_mm)),
                           opts.tip_off_bone_mm)
        region = TargetRegion(target, target, 3.0, f"lateral SAP surface of {below} at the upper border of its "
                                                   f"{'ala' if below == 'S1' else 'transverse process'}")
        window = _window(side, opts.mbb_oblique_deg)
        oblique = _clamp(0.0 if level == "L5" else _SIGN[side] * opts.mbb_preferred_oblique_deg, window)
        b0 = squared_tilt_deg(normal, oblique)
        rules = PathRules(_contact_mm(scene, opts), False, opts.anterior_margin_mm)
        tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost((oblique, b0)))
        return _Setup(approach, target, region, below, normal, (oblique, b0), window, tilt_range, cost, rules, below,
                      nerve=branch, notes=notes)
    upper, lower_end = targets.nerve_neck_segment(branch)
    tangent = upper - lower_end
    lesion_length = opts.rfa_active_tip_mm + opts.rfa_lesion_extra_length_mm
    target = _off_bone(scene, targets.rfa_tip(branch, lesion_length), 0.5 * GAUGE_OUTER_DIAMETER_MM[opts.rfa_gauge])
    region = TargetRegion(lower_end, upper, LESION_RADIUS_MM[opts.rfa_gauge],
                          f"the {level} {approach} along the lateral neck of the {below} SAP")
    window = _window(side, opts.rfa_oblique_deg)
    unit_tangent = tangent / np.linalg.norm(tangent)

    def to_nerve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ unit_tangent, -1.0, 1.0)))
    tilt_range, cost = _relative_tilt(normal, window, opts.rfa_caudal_from_endplate_deg, to_nerve)
    preferred = _best_on_grid(cost, window, tilt_range, opts.grid_step_deg)
    rules = PathRules(opts.rfa_active_tip_mm + 2.0, False, opts.anterior_margin_mm)
    return _Setup(approach, target, region, below, normal, preferred, window, tilt_range, cost, rules, below,
                  nerve=branch, notes=notes)


def _si(scene: Scene, side: str, opts: PlanOptions) -> _Setup:
    pelvis = scene.spine.pelvis
    posterior = pelvis.get(f"si_joint_posterior_line_{side}")
    anterior = pelvis.get(f"si_joint_anterior_line_{side}")
    if posterior is None or anterior is None:
        raise NeedleplanError(f"the {side} sacroiliac joint lines were not found in this scan; an SI plan needs them")
    if "S1" not in scene.spine:
        raise NeedleplanError("an SI plan needs the sacrum (S1) in the scan")
    marks = scene.spine["S1"].landmarks
    notes: list[str] = []
    normal = _endplate_normal(marks, "S1", opts, notes)
    target = targets.si_joint(posterior, opts.si_above_lower_end_mm)
    region = TargetRegion(target, target, 3.0, "inferior third of the posterior joint, inside the joint space")
    window = _window("right" if side == "left" else "left", opts.si_oblique_deg)
    tilt_range = (-opts.si_cephalad_deg[1], -opts.si_cephalad_deg[0])
    back, front = targets.inferior_third(posterior), targets.inferior_third(anterior, 30)

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return -projected_gap_mm(back, front, a, b)
    preferred = _best_on_grid(cost, window, tilt_range, opts.grid_step_deg)
    rules = PathRules(_contact_mm(scene, opts), False, opts.anterior_margin_mm)
    return _Setup("intra-articular", target, region, "S1", normal, preferred, window, tilt_range, cost, rules,
                  notes=notes)


def _best_on_grid(cost, oblique_range: tuple[float, float], tilt_range: tuple[float, float], step: float
                  ) -> tuple[float, float]:
    """The lowest-cost pose of the search grid (the first choice when the cost is not an angle to a pose)."""
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(np.arange(oblique_range[0], oblique_range[1] + 0.5 * step, step),
                                                     np.arange(tilt_range[0], tilt_range[1] + 0.5 * step, step)))
    costs = cost(grid_a, grid_b)
    best = int(np.argmin(costs))
    if not np.isfinite(costs[best]):
        raise NeedleplanError("the search window is empty; check the planning options' angle windows")
    return float(grid_a[best]), float(grid_b[best])


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


def _endplate_normal(marks: dict[str, Any], name: str, opts: PlanOptions, notes: list[str]) -> np.ndarray:
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


# ---- common steps -------------------------------------------------------------------------------------------------
def _complete(scene: Scene, procedure: str, level: str, side: str, setup: _Setup, opts: PlanOptions) -> Plan:
    nominal = setup.target
    result, tried = None, []
    for target in _target_candidates(scene, setup, opts):
        problem = tip_problem(scene, procedure, setup.approach, target, opts)
        if problem:
            tried.append(problem)
            continue

        def verify(oblique: float, tilt: float, depth: float, target: np.ndarray = target) -> str:
            direction = direction_from_angles(oblique, tilt)
            safety = assess(scene, procedure, setup.approach, level, side, target - depth * direction, target, opts,
                            setup.rules.bone_contact_mm)
            return "; ".join(safety.violations)

        result = search_direction(scene, target, setup.preferred, setup.oblique_range, setup.tilt_range,
                                  setup.cost, setup.rules, opts.grid_step_deg, verify)
        setup.target = target
        if result.oblique_deg is not None:
            break
        tried.append(result.reason)
    if result is None or result.oblique_deg is None:
        setup.target = nominal
        reason = tried[0] if len(tried) == 1 else f"{tried[0]} (and no point of the target region within " \
            f"{opts.target_shift_max_mm:g} mm does better)"
        result = SearchResult(None, None, None, 0 if result is None else result.checked, setup.preferred,
                              tried[0], {} if result is None else result.window, reason)
    shift = float(np.linalg.norm(setup.target - nominal))
    if result.oblique_deg is not None and shift > 0:
        setup.notes.append(f"the nominal target has no safe straight path ({tried[0]}); the tip is moved "
                           f"{shift:.1f} mm inside the target region")
    b0 = squared_tilt_deg(setup.normal, setup.preferred[0] if result.oblique_deg is None else result.oblique_deg)
    result_info = _search_info(result)
    common = dict(procedure=procedure, level=level, side=side, approach=setup.approach, target_mm=setup.target,
                  target_region=setup.region, reference_endplate=f"{setup.endplate_of} superior endplate",
                  squared_tilt_deg=b0, search=result_info, notes=list(setup.notes), options=opts, nerve=setup.nerve)
    if result.oblique_deg is None:
        return Plan(feasible=False, reason=result.reason, **common)
    oblique, tilt = result.oblique_deg, result.tilt_deg
    direction = direction_from_angles(oblique, tilt)
    depth = float(result.depth_mm)
    entry = setup.target - depth * direction
    choice = _needle_choice(procedure, depth, opts)
    needle = Needle.from_direction(setup.target, direction, choice.length_mm,
                                   gauge=choice.gauge, name=f"{procedure}-{level}-{side}")
    safety = assess(scene, procedure, setup.approach, level, side, entry, setup.target, opts,
                    setup.rules.bone_contact_mm)
    lesion = _lesion(setup, direction, opts) if procedure == "rfa" else None
    endplate = scene.spine[setup.endplate_of].landmarks["superior_endplate"]["center"]
    views = view_sequence(procedure, setup.approach, level, setup.below, side, setup.target, setup.normal, oblique,
                          tilt, setup.endplate_of, np.asarray(endplate, dtype=np.float64))
    offsets, words = _entry_offsets(scene.spine, level if procedure == "tfesi" else setup.endplate_of, side, entry)
    plan_ = Plan(feasible=safety.safe, reason="" if safety.safe else "; ".join(safety.violations), entry_mm=entry,
                 direction=direction, depth_mm=depth, oblique_deg=oblique, tilt_deg=tilt, needle_choice=choice,
                 needle=needle, views=views, safety=safety, lesion=lesion, entry_offsets=offsets,
                 entry_in_words=words, **common)
    plan_.notes.append(f"trajectory: {describe_angles(oblique, tilt, side, b0)}")
    if not choice.standard:
        plan_.safety.warnings.append(choice.note)
    if result.preferred_reason:
        plan_.notes.append(f"the first-choice direction ({describe_angles(*result.preferred, side)}) is blocked: "
                           f"{result.preferred_reason}; the grid search found this one")
    if lesion is not None and (lesion.nerve_captured_mm < opts.rfa_capture_min_mm
                               or lesion.electrode_to_nerve_deg > opts.rfa_max_angle_deg):
        plan_.safety.warnings.append(
            f"the lesion captures {lesion.nerve_captured_mm:.1f} mm of nerve at {lesion.electrode_to_nerve_deg:.0f} "
            f"degrees (aim: at least {opts.rfa_capture_min_mm:g} mm, at most {opts.rfa_max_angle_deg:g} degrees)")
    return plan_


def _target_candidates(scene: Scene, setup: _Setup, opts: PlanOptions) -> list[np.ndarray]:
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


def _needle_choice(procedure: str, depth_mm: float, opts: PlanOptions) -> NeedleChoice:
    needed = depth_mm + opts.hub_margin_mm
    if procedure == "rfa":
        kind, gauge, lengths, standard_max = "RF cannula", opts.rfa_gauge, opts.rfa_cannula_lengths_mm, max(
            opts.rfa_cannula_lengths_mm)
    else:
        kind, gauge, lengths, standard_max = ("spinal needle", opts.needle_gauge, opts.spinal_needle_lengths_mm,
                                              opts.standard_needle_max_mm)
    fitting = [length for length in sorted(lengths) if length >= needed]
    length = fitting[0] if fitting else max(lengths)
    standard = bool(fitting) and length <= standard_max
    if not fitting:
        note = f"no {kind} reaches: the path needs {needed:.0f} mm and the longest is {max(lengths):.0f} mm"
    elif not standard:
        note = f"a standard {kind} does not reach: {length:.0f} mm needed (depth {depth_mm:.0f} mm)"
    else:
        note = f"{gauge}G {length:.0f} mm {kind} (depth {depth_mm:.0f} mm + {opts.hub_margin_mm:g} mm outside)"
    return NeedleChoice(kind, gauge, float(length), float(needed), standard, note)


def _lesion(setup: _Setup, direction: np.ndarray, opts: PlanOptions) -> Lesion:
    length = opts.rfa_active_tip_mm + opts.rfa_lesion_extra_length_mm
    centre = setup.target - 0.5 * length * direction
    radius = LESION_RADIUS_MM[opts.rfa_gauge]
    nerve = np.asarray(setup.nerve, dtype=np.float64)
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


def _midline(spine: Spine) -> tuple[np.ndarray, np.ndarray] | None:
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
    midline = _midline(spine)
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
        lateral = _SIGN[side] * (midline[1] if midline is not None else np.array([1.0, 0.0, 0.0]))
        medial = float(-(rel @ lateral))
        up = float(rel[2])
        offsets[f"from_psis_{side}_medial_mm"] = medial
        offsets[f"from_psis_{side}_cranial_mm"] = up
        words.append(f"{abs(medial):.0f} mm {'medial' if medial >= 0 else 'lateral'} and {abs(up):.0f} mm "
                     f"{'cranial' if up >= 0 else 'caudal'} to the {side} PSIS")
    return offsets, ", ".join(words)


__all__ = ["PROCEDURES", "CasePlans", "Plan", "Safety", "plan", "plan_all", "plan_joint", "projected_gap_mm"]
