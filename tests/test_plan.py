"""Needle planning on the phantom (exact truth), its property tests, and the shared real CT.

Safety is re-measured here on the phantom's exact solids (``PhantomCase.properties_at``), not with the planner's
voxel look-ups, so a plan that passes its own report but crosses the canal would fail these tests.
"""

from __future__ import annotations

import copy
import os
import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial import cKDTree

import needleplan as npl
from needleplan.anatomy import VERSE_IDS, from_totalseg
from needleplan.errors import NeedleplanError
from needleplan.needle import read_needles
from needleplan.phantoms.ids import DISC_NAMES, MATERIALS, STRUCTURE_IDS
from needleplan.phantoms.targets import analytic_target
from needleplan.plan.angles import angles_from_direction, direction_from_angles, squared_tilt_deg
from needleplan.plan.setups import vertebra_below
from shared_data import SHARED_DATA

DATA = SHARED_DATA
ABDOMEN = DATA / "totalseg_example_abdomen_ct"
LUMBAR = ("L1", "L2", "L3", "L4", "L5")
SIDES = ("left", "right")
BONE_MATERIALS = (MATERIALS.index("cortical"), MATERIALS.index("cancellous"))
DISC_IDS = tuple(STRUCTURE_IDS[f"disc_{name}"] for name in DISC_NAMES)


@pytest.fixture(scope="module")
def phantom_case():
    case = npl.phantom(0)
    return case, case.spine()


@pytest.fixture(scope="module")
def phantom_plans(phantom_case):
    _, spine = phantom_case
    return npl.plan_all(spine)


# ---- independent re-measurement on the phantom's exact anatomy ----------------------------------------------------
def _polyline_distance(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance from points to a polyline, by dense sampling of the polyline (0.05 mm)."""
    line = np.asarray(line, dtype=float)
    dense = np.concatenate([a + np.linspace(0, 1, max(2, int(np.linalg.norm(b - a) / 0.05)))[:, None] * (b - a)
                            for a, b in zip(line[:-1], line[1:], strict=True)])
    return cKDTree(dense).query(np.atleast_2d(points))[0]


def _sphere(radius_mm: float, n: int = 200) -> np.ndarray:
    """Points (n, 3) spread evenly on a sphere (Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    angle = np.pi * (3.0 - np.sqrt(5.0)) * k
    ring = np.sqrt(1.0 - z * z)
    return radius_mm * np.stack([ring * np.cos(angle), ring * np.sin(angle), z], axis=1)


def exact_violations(case, plan) -> list[str]:
    """Rules of CLINICAL.md section 6 checked on the exact solids along the planned needle."""
    opts = plan.options
    entry, tip = plan.entry_mm, plan.needle.tip_mm  # the target, except for RFA (the lesion's centre)
    length = np.linalg.norm(tip - entry)
    points = entry + np.linspace(0, 1, int(length / 0.2) + 2)[:, None] * (tip - entry)
    props = case.properties_at(points)
    problems = []
    if np.any(props.structure == STRUCTURE_IDS["canal"]):
        problems.append("canal")
    if plan.procedure == "tfesi" and np.isin(props.structure, DISC_IDS).any():
        problems.append("disc")
    contact = max(opts.bone_contact_mm, 1.5 * case.ct.spacing_mm.min()) if plan.procedure in ("mbb", "si") else (
        opts.rfa_active_tip_mm + 2.0 if plan.procedure == "rfa" else (
            opts.s1_foramen_depth_mm + 1.0 if plan.level == "S1" else 1.0))
    # the planner sees bone at voxel resolution: the shaft may graze an exact surface, but never go deeper into
    # bone than half a voxel diagonal (a sphere of that radius around each bone sample must reach soft tissue)
    far = np.linalg.norm(points - tip, axis=1) > contact
    inside = points[far & np.isin(props.material, BONE_MATERIALS)]
    if len(inside):
        reach = 0.5 * float(np.linalg.norm(case.ct.spacing_mm))
        ring = _sphere(reach)
        around = case.properties_at((inside[:, None, :] + ring[None]).reshape(-1, 3)).material.reshape(len(inside), -1)
        if np.isin(around, BONE_MATERIALS).all(axis=1).any():
            problems.append("bone")
    gas = case.structures.voxels == STRUCTURE_IDS["bowel_gas"]
    if gas.any():
        gas_mm = case.structures.index_to_world_points(np.argwhere(gas)[:, ::-1].astype(float))
        if cKDTree(gas_mm).query(points)[0].min() < opts.anterior_margin_mm - 1.0:
            problems.append("bowel gas")
    fronts = []
    for name in (*LUMBAR, "S1"):
        marks = case.landmarks[name]
        posterior = np.asarray(marks["axes"]["posterior"])
        centre = np.asarray(marks["body_centroid"])
        depth = case.recipe["levels"][name]["body_depth_mm"]
        fronts.append((centre, posterior, np.asarray(marks["axes"]["superior"]), depth))
    heights = np.stack([np.abs((points - c) @ s) for c, _, s, _ in fronts])
    nearest = np.argmin(heights, axis=0)
    behind = np.array([(p - fronts[k][0]) @ fronts[k][1] + 0.5 * fronts[k][3] for p, k in zip(points, nearest,
                                                                                              strict=True)])
    if behind.min() < opts.anterior_margin_mm - 1.5:
        problems.append("front of the vertebral bodies")
    if plan.approach == "supraneural":
        root = case.landmarks[plan.level][f"exiting_root_{plan.side}"]
        if _polyline_distance(tip, root)[0] - opts.root_radius_mm < opts.root_clearance_mm - 0.1:
            problems.append("root")
    return problems


# ---- the phantom with its ground truth ----------------------------------------------------------------------------
def test_plan_all_covers_every_procedure_level_and_side(phantom_plans):
    names = {p.name for p in phantom_plans.plans}
    expected = {f"tfesi-{lv}-{s}" for lv in (*LUMBAR, "S1") for s in SIDES}
    expected |= {f"{proc}-{lv}-{s}" for proc in ("mbb", "rfa") for lv in LUMBAR for s in SIDES}
    expected |= {f"si-S1-{s}" for s in SIDES}
    assert names == expected
    assert not phantom_plans.skipped


def test_targets_match_the_analytic_targets(phantom_case, phantom_plans):
    case, _ = phantom_case
    errors = {}
    for plan in phantom_plans.plans:
        approach = plan.approach if plan.procedure == "tfesi" and plan.level != "S1" else None
        truth = analytic_target(case, plan.procedure, plan.level, plan.side, approach)
        errors[plan.name] = float(np.linalg.norm(plan.target_mm - truth))
    assert max(errors.values()) <= 1.5, errors


def test_feasible_plans_are_safe_on_the_exact_anatomy(phantom_case, phantom_plans):
    case, _ = phantom_case
    feasible = phantom_plans.feasible
    # every TFESI, MBB and SI plan but the blocked L5 dorsal rami (below); no RFA: see
    # test_rfa_verdicts_follow_the_electrode_angle_and_capture
    assert sorted(p.name for p in phantom_plans.plans if not p.feasible and p.procedure != "rfa") == [
        "mbb-L5-left", "mbb-L5-right"]
    for plan in feasible:
        assert plan.safety.safe, (plan.name, plan.safety.violations)
        assert exact_violations(case, plan) == [], plan.name


def test_the_independent_check_catches_a_path_through_the_canal(phantom_case, phantom_plans):
    case, _ = phantom_case
    plan = copy.copy(next(p for p in phantom_plans.feasible if p.name == "tfesi-L4-left"))
    midline = np.asarray(case.landmarks["pelvis"]["midline"]["point"])
    normal = np.asarray(case.landmarks["pelvis"]["midline"]["normal"])
    mirrored = plan.target_mm - 2.0 * ((plan.target_mm - midline) @ normal) * normal
    plan.entry_mm = mirrored + 60.0 * np.asarray(case.landmarks["L4"]["axes"]["posterior"])
    problems = exact_violations(case, plan)
    assert "canal" in problems and "bone" in problems


def test_default_approaches_and_adamkiewicz_warning(phantom_plans):
    by_name = {p.name: p for p in phantom_plans.plans}
    assert {by_name[f"tfesi-{lv}-left"].approach for lv in ("L1", "L2", "L3")} == {"infraneural"}
    assert by_name["tfesi-L4-left"].approach == "supraneural"
    assert any("Adamkiewicz" in w for w in by_name["tfesi-L1-left"].safety.warnings)
    assert not any("Adamkiewicz" in w for w in by_name["tfesi-L4-left"].safety.warnings)


def test_blocked_default_approach_falls_back_to_the_other_one(phantom_case):
    _, spine = phantom_case
    # a target deep inside the lower pedicle: the infraneural approach has no path, the supraneural one is planned
    plan = npl.plan(spine, "tfesi", "L2", "left", above_pedicle_mm=-7.0, target_shift_max_mm=0.0)
    assert plan.feasible and plan.approach == "supraneural"
    assert plan.notes[0].startswith("the default infraneural approach has no safe straight path")
    assert any("Adamkiewicz" in w for w in plan.safety.warnings)
    asked = npl.plan(spine, "tfesi", "L2", "left", approach="infraneural", above_pedicle_mm=-7.0,
                     target_shift_max_mm=0.0)
    assert not asked.feasible and asked.approach == "infraneural"


def test_s1_foramen_plan_reaches_into_the_s1_channel(phantom_case, phantom_plans):
    case, _ = phantom_case
    for side in SIDES:
        plan = next(p for p in phantom_plans.plans if p.name == f"tfesi-S1-{side}")
        assert plan.feasible, plan.reason
        structure = case.properties_at(plan.target_mm[None]).structure[0]
        assert structure == STRUCTURE_IDS[f"s1_foramen_{side}"]
        assert 0 <= abs(plan.oblique_deg) <= 30
        item = next(i for i in plan.safety.items if i.structure == "ventral sacral cortex")
        assert item.status == "ok" and item.clearance_mm > 0


def test_blocked_lumbosacral_paths_are_reported_not_forced(phantom_case):
    """The L5 dorsal ramus of the phantom hides behind the S1 SAP and the crest: no straight window, with reason."""
    _, spine = phantom_case
    plan = npl.plan(spine, "mbb", "L5", "left")
    assert not plan.feasible
    assert plan.needle is None and plan.entry_mm is None
    assert "no straight window" in plan.reason and "S1" in plan.reason and "ilium" in plan.reason
    # narrowing the window to the crest side shows the crest itself as the blocker
    crest = npl.plan(spine, "tfesi", "L5", "left", tilt_window_deg=(20.0, 25.0), target_shift_max_mm=0.0)
    assert not crest.feasible and "ilium" in crest.reason


def test_trajectory_view_shows_the_needle_as_a_dot(phantom_plans):
    for plan in phantom_plans.feasible:
        view = next(v for v in plan.views if v.name == "Trajectory")
        tip, hub = view.carm.project(np.stack([plan.needle.tip_mm, plan.needle.hub_mm]))[:2]
        assert np.hypot(tip[0] - tip[1], hub[0] - hub[1]) < 1.0, plan.name
        assert np.allclose(view.carm.view_direction, plan.direction, atol=1e-9)


def test_squared_endplate_view_minimises_the_endplate_thickness(phantom_case):
    _, spine = phantom_case
    plan = npl.plan(spine, "tfesi", "L4", "left")
    squared = next(v for v in plan.views if v.name == "Squared endplate")
    marks = spine["L4"].landmarks
    centre, normal = marks["superior_endplate"]["center"], marks["superior_endplate"]["normal"]
    e1 = np.cross(normal, [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    disc = centre + 18.0 * (np.cos(angles)[:, None] * e1 + np.sin(angles)[:, None] * e2)

    def thickness(tilt: float) -> float:
        rows = squared.carm.replace(tilt=tilt).project(disc).row
        return float(rows.max() - rows.min())
    b0 = squared.carm.tilt
    assert thickness(b0) < 0.2 * thickness(b0 + 5.0) and thickness(b0) < 0.2 * thickness(b0 - 5.0)


def _electrode_check(plan) -> tuple[float, float]:
    """Electrode-to-nerve angle (degrees) and nerve length inside the lesion (mm), computed here from the needle, the
    nerve's neck and the lesion's stated length and radius: a spheroid along the needle that ends at its tip
    (CLINICAL.md 5)."""
    tangent = plan.nerve[1] - plan.nerve[-1]
    cosine = abs(plan.direction @ tangent) / np.linalg.norm(tangent)
    angle = float(np.degrees(np.arccos(min(cosine, 1.0))))
    length, radius = plan.lesion.length_mm, plan.lesion.radius_mm
    centre = plan.needle.tip_mm - 0.5 * length * plan.direction
    t = np.linspace(0.0, 1.0, 2001)[:, None]
    captured = 0.0
    for a, b in zip(plan.nerve[1:-1], plan.nerve[2:], strict=True):  # the neck: second vertex to the notch
        points = a + t * (b - a)
        along = (points - centre) @ plan.direction
        across = np.linalg.norm(points - centre - along[:, None] * plan.direction, axis=1)
        inside = (along / (0.5 * length)) ** 2 + (across / radius) ** 2 <= 1.0
        captured += inside.mean() * float(np.linalg.norm(b - a))
    return angle, captured


def test_rfa_verdicts_follow_the_electrode_angle_and_capture(phantom_case, phantom_plans):
    """A feasible RFA electrode lies within 20 degrees of the nerve and holds at least 5 mm of it (checked here, not by
    the planner's numbers); an infeasible one says how parallel the best clear path came, and no path of the window
    within 20 degrees of the nerve is clear."""
    from needleplan.plan.scene import scene_for
    from needleplan.plan.search import PathRules, check_paths
    _, spine = phantom_case
    scene = scene_for(spine)
    plans = [p for p in phantom_plans.plans if p.procedure == "rfa"]
    assert len(plans) == 10
    for plan in plans:
        if plan.feasible:
            angle, captured = _electrode_check(plan)
            assert angle <= 20.0 + 0.01 and captured >= 5.0 - 0.05, (plan.name, angle, captured)
            assert plan.safety.safe
            continue
        # the box phantom's nerve runs 13-22 degrees from the vertical: no clear electrode parallels it today
        tangent = plan.nerve[1] - plan.nerve[-1]
        tangent /= np.linalg.norm(tangent)
        sign = 1.0 if plan.side == "left" else -1.0
        a, b = np.meshgrid(sign * np.arange(10.0, 50.5, 1.0), np.arange(-30.0, 80.5, 1.0))
        a, b = a.ravel(), b.ravel()
        normal = np.asarray(spine[f"L{int(plan.level[1]) + 1}" if plan.level != "L5" else "S1"]
                            ["superior_endplate"]["normal"])
        relative = b - np.array([squared_tilt_deg(normal, x) for x in a])
        u = direction_from_angles(a, b)
        angle = np.degrees(np.arccos(np.abs(u @ tangent)))
        window = (relative >= 25.0 - 1e-6) & (relative <= 50.0 + 1e-6)
        parallel = window & (angle <= 20.0)
        if not parallel.any():  # the reason must say so, with the closest angle of the window
            closest = re.search(r"comes within 20 degrees of the nerve \(the closest is (\d+)\)", plan.reason)
            assert closest and abs(int(closest.group(1)) - angle[window].min()) <= 1.0, (plan.name, plan.reason)
            continue
        rules = PathRules(plan.options.rfa_active_tip_mm + 2.0 - 6.0, False, plan.options.anterior_margin_mm)
        assert not check_paths(scene, plan.target_mm, u[parallel], rules).feasible.any(), plan.name


def test_si_plan_maximises_the_projected_joint_gap_in_its_window(phantom_case):
    from needleplan.plan.procedures.si import projected_gap_mm
    from needleplan.plan.targets import inferior_third
    _, spine = phantom_case
    plan = npl.plan(spine, "si", side="left")
    assert plan.feasible
    assert -35.0 <= plan.oblique_deg <= -10.0 and -30.0 <= plan.tilt_deg <= -5.0  # contralateral, cephalad
    back = inferior_third(spine.pelvis["si_joint_posterior_line_left"])
    front = inferior_third(spine.pelvis["si_joint_anterior_line_left"], 30)
    a, b = (g.ravel() for g in np.meshgrid(np.arange(-35, -9.5, 1.0), np.arange(-30, -4.5, 1.0)))
    wider = projected_gap_mm(back, front, a, b) > float(projected_gap_mm(back, front, plan.oblique_deg,
                                                                          plan.tilt_deg)) + 1e-9
    if wider.any():  # every pose that shows a wider gap must be blocked
        from needleplan.plan.scene import scene_for
        from needleplan.plan.search import PathRules, check_paths
        rules = PathRules(plan.options.bone_contact_mm, False, plan.options.anterior_margin_mm)
        assert not check_paths(scene_for(spine), plan.target_mm, direction_from_angles(a[wider], b[wider]),
                               rules).feasible.any()


def test_plan_json_round_trips_and_names_units(phantom_case):
    _, spine = phantom_case
    plan = npl.plan(spine, "mbb", "L3", "right")
    document = json.loads(json.dumps(plan.to_dict()))
    assert document["units"] == {"length": "mm", "angle": "degrees"} and document["frame"] == "LPS"
    assert document["views"][0]["name"] == "AP" and document["needle_choice"]["gauge"] == 22
    assert document["entry_offsets_mm"]["from_midline_left_mm"] < 0  # a right-side entry


def test_plan_json_needle_is_readable_by_render(tmp_path, phantom_case):
    _, spine = phantom_case
    plan = npl.plan(spine, "tfesi", "L4", "right")
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan.to_dict()))
    (needle,) = read_needles(path)
    assert np.allclose(needle.tip_mm, plan.target_mm, atol=1e-3)


def test_needle_choice_says_when_a_standard_needle_does_not_reach(phantom_case):
    _, spine = phantom_case
    plan = npl.plan(spine, "tfesi", "L3", "left", spinal_needle_lengths_mm=(50.0, 89.0, 178.0),
                    standard_needle_max_mm=89.0)
    assert plan.feasible and 80.0 < plan.depth_mm < 168.0
    choice = plan.needle_choice
    assert choice.length_mm == 178.0 and not choice.standard and "does not reach" in choice.note
    assert choice.note in plan.safety.warnings
    # a needle that does not reach is not a plan: the search looks for a shorter path, and says so when none exists
    short = npl.plan(spine, "tfesi", "L3", "left", spinal_needle_lengths_mm=(50.0,), standard_needle_max_mm=50.0)
    assert not short.feasible and "no spinal needle reaches" in short.reason


def test_joint_block_plans_both_medial_branches(phantom_case):
    _, spine = phantom_case
    first, second = npl.plan_joint(spine, "L4-L5", "left")
    assert (first.level, second.level) == ("L3", "L4")
    assert [p.level for p in npl.plan_joint(spine, "L5-S1", "right")] == ["L4", "L5"]


def test_plans_on_an_oblique_grid_match_the_analytic_targets_and_stay_safe():
    """The phantom stored on an oblique grid (its voxel axes rotated in every plane): the planner's voxel walks
    and measurements go through the direction matrix, so targets and safety must not change."""
    tilt, turn = np.radians(12.0), np.radians(25.0)
    rotation = (np.array([[np.cos(turn), -np.sin(turn), 0.0], [np.sin(turn), np.cos(turn), 0.0], [0.0, 0.0, 1.0]])
                @ np.array([[1.0, 0.0, 0.0], [0.0, np.cos(tilt), -np.sin(tilt)], [0.0, np.sin(tilt), np.cos(tilt)]]))
    case = npl.phantom(2, spacing_mm=(1.5, 1.5, 2.0), direction=rotation)
    assert not np.allclose(case.ct.direction, np.eye(3))
    spine = case.spine()
    feasible = 0
    for procedure, level, side in (("tfesi", "L3", "left"), ("tfesi", "L4", "right"), ("mbb", "L2", "right"),
                                   ("rfa", "L3", "left"), ("si", "S1", "right")):
        plan = npl.plan(spine, procedure, level, side)
        feasible += plan.feasible
        approach = plan.approach if procedure == "tfesi" else None
        error = np.linalg.norm(plan.target_mm - analytic_target(case, procedure, level, side, approach))
        assert error <= 1.5, (plan.name, error)
        if plan.feasible:
            assert exact_violations(case, plan) == [], plan.name
    assert feasible == 4  # not rfa-L3-left: see test_rfa_verdicts_follow_the_electrode_angle_and_capture


# ---- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (("epidural", "L4", "left"), {}, "unknown procedure"),
    (("tfesi", "L4", "middle"), {}, "side must be"),
    (("tfesi", "T10", "left"), {}, "L1-L5 and S1"),
    (("tfesi", "L6", "left"), {}, "not in this scan"),
    (("mbb", "C5", "left"), {}, "cervical"),
    (("rfa", "S1", "left"), {}, "medial branch"),
    (("tfesi", "L4", "left"), {"approach": "posterior"}, "approach"),
    (("tfesi", "L4", "left"), {"below_pedicle_mm": float("nan")}, "finite"),
    (("tfesi", "L4", "left"), {"grid_size": 3}, "unknown planning option"),
])
def test_bad_requests_raise_clear_errors(phantom_case, args, kwargs, message):
    _, spine = phantom_case
    with pytest.raises(NeedleplanError, match=message):
        npl.plan(spine, *args, **kwargs)


def test_missing_landmarks_and_structures_raise(phantom_case):
    _, spine = phantom_case
    broken = copy.copy(spine)
    broken.vertebrae = dict(spine.vertebrae)
    l3 = copy.deepcopy(spine["L3"])
    del l3.landmarks["pedicle_left"]
    broken.vertebrae["L3"] = l3
    with pytest.raises(NeedleplanError, match="pedicle"):
        npl.plan(broken, "tfesi", "L3", "left", approach="supraneural")
    bare = copy.copy(spine)
    bare.structures = None
    with pytest.raises(NeedleplanError, match="structures"):
        npl.plan(bare, "si", side="left")


def test_a_target_in_the_canal_gives_an_infeasible_plan(phantom_case):
    _, spine = phantom_case
    # an inset far beyond the pedicle's width moves the supraneural target medially into the thecal sac
    plan = npl.plan(spine, "tfesi", "L4", "left", pedicle_margin_inset_mm=22.0)
    assert not plan.feasible and plan.needle is None and plan.views == []
    assert "canal" in plan.reason


# ---- the compiled voxel walk, on grids whose answer is known by hand ---------------------------------------------
def _walk(target, direction, bone_cells, shape=(4, 8, 8), affine=None, contact=0.0, bone=None, rim=None,
          rim_extra=0.0):
    from needleplan.plan import march
    affine = np.eye(4) if affine is None else affine
    body = np.ones(shape, dtype=bool)
    if bone is None:
        bone = np.zeros(shape, dtype=np.uint8)
        for k, j, i in bone_cells:
            bone[k, j, i] = 23
    empty = np.zeros(shape, dtype=bool)
    no_planes = np.zeros((0, 3))
    return march.march(np.asarray(target, float), np.asarray([direction], float), 20.0, affine[:3].copy(), body,
                       bone, rim if rim is not None else empty, empty, empty, False, contact, rim_extra, no_planes,
                       no_planes, no_planes, 5.0)


def test_voxel_walk_enters_a_bone_voxel_where_expected():
    from needleplan.plan import march
    # needle advancing along -x: the walk back to the skin goes +x and enters voxel i=5 at x = 4.5
    event, at_mm, label = _walk([1.0, 3.0, 2.0], [-1.0, 0.0, 0.0], [(2, 3, 5)])
    assert event[0] == march.BONE and at_mm[0] == pytest.approx(3.5) and label[0] == 23
    # the same bone inside the intended contact distance is ignored, and the walk leaves the grid
    event, _, _ = _walk([1.0, 3.0, 2.0], [-1.0, 0.0, 0.0], [(2, 3, 5)], contact=10.0)
    assert event[0] == march.NOT_REACHED


def test_voxel_walk_catches_a_corner_a_sampled_walk_would_skip():
    from needleplan.plan import march
    # the walk runs along x + y = 2.1 and so clips the corner (1.5, 0.5) of voxel (i=2, j=1) for 0.14 mm,
    # entering it at (1.5, 0.6), 0.05 * sqrt(2) mm before the chord's midpoint (1.55, 0.55) at 3.125 mm
    walk = np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)
    start = np.array([1.55, 0.55, 1.0]) - 3.125 * walk
    event, at_mm, _ = _walk(start, -walk, [(1, 1, 2)])
    assert event[0] == march.BONE and at_mm[0] == pytest.approx(3.125 - 0.05 * np.sqrt(2.0), abs=1e-6)
    samples = start[None] + np.arange(0.0, 6.0, 0.25)[:, None] * walk  # a walk sampled every 0.25 mm misses it
    assert not any(np.array_equal(np.floor(p[:2] + 0.5), [2, 1]) for p in samples)


def test_voxel_walk_follows_an_oblique_grid():
    from needleplan.plan import march
    angle = np.radians(30.0)
    index_to_world = np.eye(4)
    index_to_world[:3, :3] = 2.0 * np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0],
                                             [0.0, 0.0, 1.0]])
    index_to_world[:3, 3] = [5.0, -3.0, 1.0]
    world_to_index = np.linalg.inv(index_to_world)
    target = index_to_world[:3] @ np.array([1.0, 3.0, 2.0, 1.0])
    walk_world = index_to_world[:3, :3] @ np.array([1.0, 0.0, 0.0])  # along the grid's i axis, 2 mm per voxel
    event, at_mm, _ = _walk(target, -walk_world / np.linalg.norm(walk_world), [(2, 3, 5)], affine=world_to_index)
    assert event[0] == march.BONE and at_mm[0] == pytest.approx(2.0 * 3.5)


def test_the_shaft_sees_the_bone_rim_named_after_the_bone_it_touches():
    from needleplan.plan import march
    from needleplan.plan.scene import OTHER_BONE, _with_bone_rim
    bone = np.zeros((3, 3, 12), dtype=np.uint8)
    bone[1, 1, 1] = 23  # a vertebra's last bony voxel
    rim = np.zeros(bone.shape, dtype=bool)
    rim[1, 1, 2] = True  # its partly bony neighbour
    rim[1, 1, 6] = rim[1, 1, 10] = True  # partly bony voxels of nothing labelled (a crest's tip)
    shaft = _with_bone_rim(bone, rim)
    assert shaft[1, 1, 1] == 23 and shaft[1, 1, 2] == 23 and shaft[1, 1, 6] == shaft[1, 1, 10] == OTHER_BONE
    assert np.count_nonzero(shaft) == 4 and bone[1, 1, 2] == 0  # the targets' bone map is untouched
    # walking back from a target at x = 4 along +x: the rim voxel i = 6 is entered at x = 5.5 (1.5 mm out), i = 10
    # at x = 9.5 (5.5 mm out); a rim voxel is allowed up to one voxel (here 3 mm) beyond the 1 mm contact
    event, _, _ = _walk([4.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [], shape=bone.shape, bone=bone)
    assert event[0] == march.NOT_REACHED
    event, at_mm, label = _walk([4.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [], shape=bone.shape, bone=shaft, rim=rim,
                                contact=1.0)
    assert event[0] == march.BONE and at_mm[0] == pytest.approx(1.5) and label[0] == OTHER_BONE
    event, at_mm, _ = _walk([4.0, 1.0, 1.0], [-1.0, 0.0, 0.0], [], shape=bone.shape, bone=shaft, rim=rim,
                            contact=1.0, rim_extra=3.0)
    assert event[0] == march.BONE and at_mm[0] == pytest.approx(5.5)


# ---- geometry of the angle conventions ----------------------------------------------------------------------------
@given(st.floats(-80, 80), st.floats(-80, 80))
def test_direction_and_angles_round_trip_with_the_carm(oblique, tilt):
    u = direction_from_angles(oblique, tilt)
    assert np.isclose(np.linalg.norm(u), 1.0)
    a, b = angles_from_direction(u)
    assert a == pytest.approx(oblique, abs=1e-6) and b == pytest.approx(tilt, abs=1e-6)
    carm = npl.CArm(oblique=oblique, tilt=tilt)
    assert np.allclose(carm.view_direction, u)


@given(st.floats(-60, 60), st.floats(-40, 40), st.floats(-40, 40))
def test_squared_tilt_puts_the_beam_in_the_endplate_plane(oblique, lean_x, lean_y):
    normal = np.array([np.sin(np.radians(lean_x)), np.sin(np.radians(lean_y)), 1.0])
    normal /= np.linalg.norm(normal)
    b0 = squared_tilt_deg(normal, oblique)
    assert abs(npl.CArm(oblique=oblique, tilt=b0).beam_direction @ normal) < 1e-9


# ---- property test: random phantoms, every returned plan obeys its own rules ----------------------------------
@settings(max_examples=int(os.environ.get("NEEDLEPLAN_PROPERTY_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(1, 10_000), lordosis=st.floats(30.0, 55.0), scoliosis=st.floats(-10.0, 10.0),
       procedure=st.sampled_from(["tfesi", "mbb", "rfa", "si"]), level=st.sampled_from(["L1", "L2", "L3", "L4"]),
       side=st.sampled_from(SIDES))
def test_random_phantoms_plans_obey_their_safety_rules(seed, lordosis, scoliosis, procedure, level, side):
    case = npl.phantom(seed, spacing_mm=2.0, lordosis_deg=lordosis, scoliosis_deg=scoliosis)
    plan = npl.plan(case.spine(), procedure, level, side)
    if not plan.feasible:
        assert plan.reason and plan.needle is None
        return
    assert plan.safety.safe
    assert exact_violations(case, plan) == [], (plan.name, plan.reason)


# ---- the shared real CT -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_ct():
    if not ABDOMEN.is_dir():
        pytest.skip(f"shared real data not found at {ABDOMEN}")
    spine = npl.segment(npl.load(ABDOMEN / "example_ct.nii.gz"))
    reference = npl.load(ABDOMEN / "spine_report" / "totalseg_vertebrae.nii.gz", modality="LABEL")
    return spine, npl.Volume(from_totalseg(reference.voxels), reference.index_to_world, "LABEL"), npl.plan_all(spine)


def _reference_level(reference, point, direction=None) -> str | None:
    """Level of the reference bone nearest to a point, or (with a direction) the first one met along it."""
    labels = reference.voxels
    if direction is not None:
        for t in np.arange(0.0, 20.0, 0.25):
            where = np.asarray(point + t * np.asarray(direction), dtype=float)[None]
            ijk = np.rint(reference.world_to_index_points(where)[0]).astype(int)
            value = int(labels[ijk[2], ijk[1], ijk[0]])
            if value:
                return next(name for name, label in VERSE_IDS.items() if label == value)
        return None
    kji = np.argwhere(labels > 0)
    world = reference.index_to_world_points(kji[:, ::-1].astype(float))
    value = int(labels[tuple(kji[np.argmin(np.linalg.norm(world - point, axis=1))])])
    return next(name for name, label in VERSE_IDS.items() if label == value)


def test_real_ct_lumbar_plans_are_feasible_and_safe(real_ct):
    _, _, plans = real_ct
    by_name = {p.name: p for p in plans.plans}
    wanted = [f"{proc}-{lv}-{s}" for proc in ("tfesi", "mbb") for lv in ("L1", "L2", "L3", "L4")
              for s in SIDES] + [f"tfesi-L5-{s}" for s in SIDES]
    wanted += ["mbb-L5-right"]  # the L5 dorsal ramus: see below for the left side; SI: see the SI tests
    problems = {name: by_name[name].reason if name in by_name else plans.skipped.get(name, "missing")
                for name in wanted if name not in by_name or not by_name[name].feasible}
    assert not problems, problems
    for name in wanted:
        assert by_name[name].safety.safe, name
    # at 3 mm the left S1 SAP is not found today, so the left L5 dorsal ramus is not placed: said, not guessed
    for name in ("mbb-L5-left", "rfa-L5-left"):
        assert (name in by_name and by_name[name].feasible) or "superior articular process was not found" in \
            plans.skipped.get(name, "")


def test_real_ct_si_joint_is_refused_where_the_scan_does_not_show_it(real_ct):
    """At 3 mm the SI joint space is not resolved (TotalSegmentator's own sacrum and ilium labels touch along it):
    where our watershed puts the sacrum-ilium boundary is a guess (it lay 10-14 mm medial of the reference's), so
    no SI plan is offered on our own labels, and the reason says what would help."""
    spine, _, plans = real_ct
    for side in SIDES:
        assert f"si-S1-{side}" not in {p.name for p in plans.plans}
        reason = plans.skipped[f"si-S1-{side}"]
        assert "joint space is not visible" in reason and "--labels" in reason, reason
        assert f"si_joint_{side}" in spine.unavailable


def test_real_ct_every_lumbar_nerve_is_planned_or_its_absence_explained(real_ct):
    """MBB and RFA of every nerve L1-L4 and the L5 dorsal ramus, both sides: a plan, or a reason that says what is
    missing and what would help (at 3 mm the left S1 superior articular process is not separated from L5)."""
    _, _, plans = real_ct
    made = {p.name for p in plans.plans}
    for procedure in ("mbb", "rfa"):
        for level in ("L1", "L2", "L3", "L4", "L5"):
            for side in SIDES:
                name = f"{procedure}-{level}-{side}"
                if name not in made:
                    reason = plans.skipped[name]
                    assert "thinner-slice scan" in reason and ("dorsal ramus" in reason or "medial branch" in reason), (
                        name, reason)


def _distance_to_label_mm(volume, ids, point) -> float:
    """Distance (mm) from a world point to the nearest voxel centre of the given ids in a label volume."""
    kji = np.argwhere(np.isin(volume.voxels, ids))
    world = volume.index_to_world_points(kji[:, ::-1].astype(float))
    return float(np.min(np.linalg.norm(world - point, axis=1)))


@pytest.mark.xfail(strict=True, reason="measured 2026-12-05 with the shared CT's TotalSegmentator labels: si-S1-left "
                                       "target 1.9 mm from the sacrum and 4.8 mm from the ilium (nearest voxel "
                                       "centres); si-S1-right 2.0 and 2.4 mm but no straight path clears the "
                                       "sacrum")
@pytest.mark.realdata
def test_real_ct_si_plans_from_reference_labels_lie_in_the_joint():
    if not ABDOMEN.is_dir():
        pytest.skip(f"shared real data not found at {ABDOMEN}")
    labels = npl.load(ABDOMEN / "example_seg_fast_force_split.nii.gz", modality="LABEL")
    spine = npl.segment(npl.load(ABDOMEN / "example_ct.nii.gz"), labels=labels)
    found = {}
    for side in SIDES:
        plan = npl.plan(spine, "si", "S1", side)
        # TotalSegmentator ids: 25 sacrum, 26 S1; 77 hip_left, 78 hip_right
        sacrum = _distance_to_label_mm(labels, [25, 26], plan.target_mm)
        ilium = _distance_to_label_mm(labels, [77 if side == "left" else 78], plan.target_mm)
        found[plan.name] = (plan.feasible, round(sacrum, 1), round(ilium, 1), plan.reason[:60])
    assert all(feasible and sacrum <= 3.0 and ilium <= 3.0 for feasible, sacrum, ilium, _ in found.values()), found


def test_real_ct_rfa_electrodes_lie_along_the_nerve(real_ct):
    _, _, plans = real_ct
    rfa = [p for p in plans.plans if p.procedure == "rfa"]
    for plan in rfa:
        if plan.feasible:
            angle, captured = _electrode_check(plan)
            assert angle <= 20.0 + 0.01 and captured >= 5.0 - 0.05, (plan.name, angle, captured)
    assert len(rfa) >= 9


@pytest.mark.xfail(strict=True, reason="measured 2026-12-05: no direction of rfa-L1-left's window comes within 20 "
                                       "degrees of the nerve (closest 36), nor of rfa-L4-right's (closest 34); "
                                       "rfa-L5-right: every parallel path meets the partial-volume rim of S1")
def test_real_ct_rfa_plans_are_all_feasible(real_ct):
    _, _, plans = real_ct
    by_name = {p.name: p for p in plans.plans}
    wanted = [f"rfa-{lv}-{s}" for lv in ("L1", "L2", "L3", "L4") for s in SIDES] + ["rfa-L5-right"]
    assert all(name in by_name and by_name[name].feasible for name in wanted)


def test_real_ct_targets_lie_on_the_right_vertebra(real_ct):
    """TFESI: the bone straight above a supraneural target (below an infraneural one) is the right pedicle;
    MBB and RFA: the nearest bone is the vertebra whose SAP the nerve runs over. Checked on the reference labels."""
    spine, reference, plans = real_ct
    for plan in plans.feasible:
        below = vertebra_below(spine, plan.level)
        if plan.procedure == "tfesi":
            up = np.asarray(spine[plan.level]["axes"]["superior"])
            found = (_reference_level(reference, plan.target_mm, up) if plan.approach == "supraneural" else
                     _reference_level(reference, plan.target_mm, -up))
            assert found == (plan.level if plan.approach == "supraneural" else below), plan.name
        elif plan.procedure in ("mbb", "rfa"):
            assert _reference_level(reference, plan.target_mm) == below, plan.name


#: TotalSegmentator bone ids of the shared CT's reference labels: sacrum and vertebrae, femurs, hips, ribs.
REFERENCE_BONE = (*range(25, 51), 75, 76, 77, 78, *range(92, 117))


def _independent_check(scan, reference, plan) -> dict[str, float]:
    """What a reviewer measures on the scan and on TotalSegmentator's labels (no planner code): the CT 6 mm outside
    and 6 mm inside the entry (skin), the distance from the needle to the spinal cord label, how far left (LPS +x)
    of the target vertebra's reference centroid the tip lies, and the length of the shaft beyond 5 mm from the tip
    that lies in bone by the scan: where its trilinear HU reaches half-way from soft tissue (40 HU) to the brightest
    of the eight voxels around the point (the half-maximum edge of a blurred object, at least 150 HU), alone and
    inside a reference bone label (trilinear mask fraction at least one half).

    TotalSegmentator's labels alone are not enough on this 3 mm scan: beside the L5 transverse processes they cover
    10 mm of tissue at 14-75 HU along an MBB path, and a path 1-2 mm from an 800 HU cortex reads 150-260 HU
    between the voxels without entering the bone."""
    from scipy import ndimage

    def sample(values, points):
        ijk = reference.world_to_index_points(points)
        return ndimage.map_coordinates(values, [ijk[:, 2], ijk[:, 1], ijk[:, 0]], order=1, mode="nearest")
    entry, tip = plan.entry_mm, plan.needle.tip_mm
    length = float(np.linalg.norm(tip - entry))
    points = entry + np.linspace(0.0, 1.0, int(length / 0.25) + 1)[:, None] * (tip - entry)
    from_tip = length - np.linspace(0.0, length, len(points))
    hu = scan.voxels.astype(np.float32)
    corner = np.floor(scan.world_to_index_points(points)[:, ::-1]).astype(int)
    brightest = np.max([hu[tuple(np.clip(corner + offset, 0, np.array(hu.shape) - 1).T)]
                        for offset in np.ndindex(2, 2, 2)], axis=0)
    in_bone = sample(hu, points) >= np.maximum(150.0, 0.5 * (40.0 + brightest))
    bone = (sample(np.isin(reference.voxels, REFERENCE_BONE).astype(np.float32), points) >= 0.5) & in_bone
    cord = reference.index_to_world_points(np.argwhere(reference.voxels == 79)[:, ::-1].astype(float))
    # TotalSegmentator ids: 26 S1 (25 sacrum), 27 L5 ... 31 L1, 32 T12
    names = {"S1": (25, 26), "L5": (27,), "L4": (28,), "L3": (29,), "L2": (30,), "L1": (31,), "T12": (32,)}
    level = plan.level if plan.procedure == "tfesi" else {"T12": "L1", "L1": "L2", "L2": "L3", "L3": "L4",
                                                          "L4": "L5", "L5": "S1"}[plan.level]
    vertebra = reference.index_to_world_points(
        np.argwhere(np.isin(reference.voxels, names[level]))[:, ::-1].astype(float))
    return {"outside_hu": float(sample(hu, (entry - 6.0 * plan.direction)[None])[0]),
            "inside_hu": float(sample(hu, (entry + 6.0 * plan.direction)[None])[0]),
            "cord_mm": float(cKDTree(cord).query(points)[0].min()),
            "left_of_vertebra_mm": float(plan.target_mm[0] - vertebra[:, 0].mean()),
            "bone_on_shaft_mm": float(0.25 * np.sum(bone & (from_tip > 5.0))),
            "scan_bone_on_shaft_mm": float(0.25 * np.sum(in_bone & (from_tip > 5.0)))}


@pytest.fixture(scope="module")
def real_ct_checks(real_ct):
    _, _, plans = real_ct
    scan = npl.load(ABDOMEN / "example_ct.nii.gz")
    reference = npl.load(ABDOMEN / "example_seg_fast_force_split.nii.gz", modality="LABEL")
    return {plan.name: _independent_check(scan, reference, plan) for plan in plans.feasible}


def test_real_ct_plans_enter_at_the_skin_keep_off_the_cord_and_stay_on_their_side(real_ct_checks):
    assert len(real_ct_checks) >= 25
    for name, check in real_ct_checks.items():
        # outside: air, or the table pad under a supine patient's back (-300 to -700 HU); inside: tissue
        assert check["outside_hu"] < -250.0 and check["inside_hu"] > -350.0, (name, check)
        assert check["cord_mm"] >= 2.0, (name, check)
        side = 1.0 if name.endswith("-left") else -1.0
        assert side * check["left_of_vertebra_mm"] > 10.0, (name, check)


def test_real_ct_plans_cross_no_reference_bone(real_ct_checks):
    crossing = {name: (round(check["bone_on_shaft_mm"], 1), round(check["scan_bone_on_shaft_mm"], 1))
                for name, check in real_ct_checks.items()
                if check["bone_on_shaft_mm"] > 1.0 or check["scan_bone_on_shaft_mm"] > 1.0}
    assert not crossing, crossing


#: Published C-arm angles (CLINICAL.md; degrees): ipsilateral oblique (negative: contralateral) and tilt relative to
#: the squared endplate (caudal positive) or to the table ("table"), per procedure.
PUBLISHED_ANGLES = {
    # TFESI L1-L5: typical oblique 20-35 [Pain Pract 2015]
    "tfesi": {"oblique": (20.0, 35.0)},
    # RFA: about 20 oblique and 40-45 caudal of the squared endplate [Furman]; 29-47 lateral, 33-49 caudal [Tran]
    "rfa": {"oblique": (15.0, 47.0), "caudal_from_endplate": (33.0, 49.0)},
    # SI: contralateral oblique 15-33 and cephalad 10-25 (table)
    "si": {"oblique": (-33.0, -15.0), "table_tilt": (-25.0, -10.0)},
    # L5 dorsal ramus: AP, no oblique (within 20 degrees, issue 16)
    "dorsal ramus": {"oblique": (-20.0, 20.0)},
}


def _outside_published(plan) -> list[str]:
    ranges = PUBLISHED_ANGLES.get("dorsal ramus" if plan.approach == "dorsal ramus" else plan.procedure)
    if ranges is None or (plan.procedure == "tfesi" and plan.level == "S1"):
        return []
    values = {"oblique": plan.oblique_deg if plan.side == "left" else -plan.oblique_deg,
              "caudal_from_endplate": plan.tilt_from_endplate_deg, "table_tilt": plan.tilt_deg}
    return [f"{plan.name} {key} {values[key]:.0f} (published {low:g} to {high:g})"
            for key, (low, high) in ranges.items() if not low - 0.5 <= values[key] <= high + 0.5]


@pytest.mark.xfail(strict=True, reason="measured 2026-12-05 on the shared CT: tfesi-L2-right oblique 45, "
                                       "tfesi-L3-right 36; rfa L2-right/L3/L4-left caudal 25-32 of the endplate and "
                                       "L3 obliques 10; mbb-L5-right (dorsal ramus) oblique 38 (SI is refused "
                                       "on this scan)")
def test_real_ct_angles_fall_in_the_published_ranges(real_ct):
    _, _, plans = real_ct
    outside = [problem for plan in plans.feasible for problem in _outside_published(plan)]
    assert not outside, outside
