"""What each procedure asks of the common planning steps: target, target region, reference endplate, first-choice
pose, search window and cost, and the path rules (CLINICAL.md sections 2-5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..anatomy import SIDE_SIGN, Spine, level_below
from ..errors import NeedleplanError
from ..needle import GAUGE_OUTER_DIAMETER_MM
from . import targets
from .angles import angle_between_deg, angles_from_direction, direction_from_angles, squared_tilt_deg
from .model import TargetRegion
from .options import LESION_RADIUS_MM, PlanOptions
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


def _angular_cost(preferred: tuple[float, float]):
    u0 = direction_from_angles(*preferred)

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ u0, -1.0, 1.0)))
    return cost


def _relative_tilt(normal: np.ndarray, oblique_range: tuple[float, float], relative: tuple[float, float], cost):
    """Tilt window measured from the squared endplate at each oblique: the grid's outer tilt range, and the cost
    made infinite outside the window (b0 changes with the oblique)."""
    squared = squared_tilt_deg(normal, np.linspace(*oblique_range, 25))
    outer = (float(squared.min()) + relative[0], float(squared.max()) + relative[1])

    def windowed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        b0 = squared_tilt_deg(normal, a)
        inside = (b - b0 >= relative[0] - 1e-9) & (b - b0 <= relative[1] + 1e-9)
        return np.where(inside, cost(a, b), np.inf)
    return outer, windowed


def _off_bone(scene: Scene, point: np.ndarray, distance_mm: float) -> np.ndarray:
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


def _axes(marks: dict[str, Any]) -> np.ndarray:
    """(3, 3) rows: the vertebra's left, posterior and superior unit vectors."""
    return np.array([marks["axes"][key] for key in ("left", "posterior", "superior")], dtype=np.float64)


def _window(side: str, low_high: tuple[float, float]) -> tuple[float, float]:
    """Ipsilateral oblique window as signed table angles."""
    low, high = low_high
    return (low, high) if side == "left" else (-high, -low)


def _clamp(value: float, window: tuple[float, float]) -> float:
    return float(np.clip(value, *window))


def tfesi(scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
    """Transforaminal epidural at the foramen below ``level`` (CLINICAL.md section 2): supraneural or infraneural
    target, the SAP-under-6-o'clock first choice of oblique, discs forbidden on the path."""
    spine = scene.spine
    if level == "S1":
        return tfesi_s1(scene, side, approach, opts)
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
    typical = _window(side, opts.tfesi_typical_oblique_deg)
    if sap is not None:
        delta = np.asarray(sap, dtype=np.float64) - six_oclock
        rule = float(np.degrees(np.arctan2(delta[0], delta[1])))
        oblique = _clamp(rule, typical)
        if oblique != rule:
            sign = SIDE_SIGN[side]
            notes.append(f"the {below} SAP tip comes under the pedicle's 6 o'clock at {abs(rule):.0f} degrees "
                         f"{'ipsilateral' if rule * sign > 0 else 'contralateral'} oblique; the first choice is kept "
                         f"within the typical {typical[0] * sign:.0f}-{typical[1] * sign:.0f} degrees (landmark "
                         "noise moves this angle quickly)")
    else:
        oblique = _clamp(SIDE_SIGN[side] * 25.0, window)
        notes.append(f"the {below} SAP tip was not found; the trajectory view starts from 25 degrees oblique")
    normal = _endplate_normal(marks, level, opts, notes)
    b0 = squared_tilt_deg(normal, oblique)
    rules = PathRules(0.5 * scene.spacing_mm, True, opts.anterior_margin_mm)
    tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost((oblique, b0)))
    return Setup(approach, target, region, level, normal, (oblique, b0), window, tilt_range, cost, rules, below,
                 notes=notes, frame=_axes(marks))


def tfesi_s1(scene: Scene, side: str, approach: str | None, opts: PlanOptions) -> Setup:
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
    normal = _endplate_normal(marks, "S1", opts, notes)
    target = targets.s1_foramen(opening, channel, opts.s1_foramen_depth_mm)
    region = TargetRegion(target, target, 3.0, "just inside the posterior S1 foramen, below the S1 pedicle")
    window = _window(side, opts.s1_oblique_deg)
    channel_oblique, channel_tilt = angles_from_direction(np.asarray(channel) - np.asarray(opening))
    oblique = _clamp(channel_oblique, window)
    b0 = squared_tilt_deg(normal, oblique)
    preferred = (oblique, _clamp(channel_tilt, (b0 + opts.tilt_window_deg[0], b0 + opts.tilt_window_deg[1])))
    rules = PathRules(max(opts.s1_foramen_depth_mm + 1.0, 0.5 * scene.spacing_mm), True, opts.anterior_margin_mm)
    tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost(preferred))
    return Setup("S1 foramen", target, region, "S1", normal, preferred, window, tilt_range, cost, rules, None,
                 notes=notes, frame=_axes(marks))


def medial_branch(scene: Scene, procedure: str, level: str, side: str, opts: PlanOptions) -> Setup:
    """MBB or RFA of the ``level`` medial branch (the L5 dorsal ramus for "L5"), on the vertebra below it
    (CLINICAL.md sections 3 and 5); RFA searches only electrodes within ``rfa_max_angle_deg`` of the nerve, the most
    parallel first, inside its window."""
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
    _require_lateral_of_pedicle(marks, side, branch, where, level)
    if procedure == "mbb":
        target = _off_bone(scene, targets.mbb(branch, marks["axes"]["superior"],
                                              targets.mbb_drop_mm(level, opts.mbb_below_tp_margin_mm)),
                           opts.tip_off_bone_mm)
        region = TargetRegion(target, target, 3.0, f"lateral SAP surface of {below} at the upper border of its "
                                                   f"{'ala' if below == 'S1' else 'transverse process'}")
        window = _window(side, opts.mbb_oblique_deg)
        oblique = _clamp(0.0 if level == "L5" else SIDE_SIGN[side] * opts.mbb_preferred_oblique_deg, window)
        b0 = squared_tilt_deg(normal, oblique)
        rules = PathRules(contact_mm(scene, opts), False, opts.anterior_margin_mm)
        tilt_range, cost = _relative_tilt(normal, window, opts.tilt_window_deg, _angular_cost((oblique, b0)))
        return Setup(approach, target, region, below, normal, (oblique, b0), window, tilt_range, cost, rules, below,
                     nerve=branch, notes=notes)
    upper, lower_end = targets.nerve_neck_segment(branch)
    tangent = upper - lower_end
    beyond = 0.5 * (opts.rfa_active_tip_mm + opts.rfa_lesion_extra_length_mm)
    target = _off_bone(scene, targets.rfa_lesion_centre(branch), 0.5 * GAUGE_OUTER_DIAMETER_MM[opts.rfa_gauge])
    region = TargetRegion(lower_end, upper, LESION_RADIUS_MM[opts.rfa_gauge],
                          f"the {level} {approach} along the lateral neck of the {below} SAP")
    window = _window(side, opts.rfa_oblique_deg)
    unit_tangent = tangent / np.linalg.norm(tangent)

    def to_nerve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.degrees(np.arccos(np.clip(direction_from_angles(a, b) @ unit_tangent, -1.0, 1.0)))
    tilt_range, relaxed = _relative_tilt(normal, window, opts.rfa_caudal_from_endplate_deg, to_nerve)

    def parallel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Parallelism first: only electrodes within ``rfa_max_angle_deg`` of the nerve are searched."""
        angle = relaxed(a, b)
        return np.where(angle <= opts.rfa_max_angle_deg + 1e-9, angle, np.inf)
    preferred = _best_on_grid(relaxed, window, tilt_range, opts.grid_step_deg)
    rules = PathRules(max(opts.rfa_active_tip_mm + 2.0 - beyond, 0.0), False, opts.anterior_margin_mm)
    return Setup(approach, target, region, below, normal, preferred, window, tilt_range, parallel, rules, below,
                 nerve=branch, notes=notes, tip_beyond_mm=beyond, relaxed_cost=relaxed)


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


def si(scene: Scene, side: str, opts: PlanOptions) -> Setup:
    """Intra-articular SI joint injection (CLINICAL.md section 4): the pose that shows the widest gap between the
    posterior and anterior joint lines in the joint's inferior third."""
    pelvis = scene.spine.pelvis
    posterior = pelvis.get(f"si_joint_posterior_line_{side}")
    anterior = pelvis.get(f"si_joint_anterior_line_{side}")
    if posterior is None or anterior is None:
        why = scene.spine.unavailable.get(f"si_joint_{side}")
        raise NeedleplanError(f"no SI plan: {why}" if why else
                              f"the {side} sacroiliac joint lines were not found in this scan; an SI plan needs them")
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
    rules = PathRules(contact_mm(scene, opts), False, opts.anterior_margin_mm)
    return Setup("intra-articular", target, region, "S1", normal, preferred, window, tilt_range, cost, rules,
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
