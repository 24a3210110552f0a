"""Landmarks the planner needs beyond the core ones: SAP-TP junction and medial branch, S1 (L5 dorsal ramus,
S1 foramen), the two ilia and the SI joint lines; on the 1 mm phantom (exact truth) and the shared real CT."""

from __future__ import annotations


import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import ILIUM_IDS, from_totalseg
from needleplan.segment.metrics import dice_per_label, landmark_errors_mm
from shared_data import SHARED_DATA

ABDOMEN = SHARED_DATA / "totalseg_example_abdomen_ct"
LUMBAR = ("L1", "L2", "L3", "L4", "L5")
SIDES = ("left", "right")
PELVIS_KEYS = ("iliac_crest_top", "psis", "sacral_ala", "si_joint_posterior_line", "si_joint_anterior_line")


@pytest.fixture(scope="module")
def fine_case():
    case = npl.phantom(0)
    return case, npl.segment(case.ct)


@pytest.fixture(scope="module")
def real_ct():
    if not ABDOMEN.is_dir():
        pytest.skip(f"shared real data not found at {ABDOMEN}")
    return npl.segment(npl.load(ABDOMEN / "example_ct.nii.gz"))


def _median(errors: dict[str, float], levels: tuple[str, ...], key: str) -> float:
    return float(np.median([errors[f"{level}.{key}_{side}"] for level in levels for side in SIDES]))


@pytest.mark.slow
def test_lumbar_sap_tp_junction_and_tips_on_the_fine_phantom(fine_case):
    case, spine = fine_case
    errors = landmark_errors_mm(spine.landmarks(), case.landmarks)
    assert _median(errors, LUMBAR, "sap_tp_junction") <= 3.5
    assert max(errors[f"{level}.sap_tp_junction_{side}"] for level in LUMBAR for side in SIDES) <= 7.0
    assert _median(errors, LUMBAR, "sap_tip") <= 2.5
    assert _median(errors, LUMBAR, "tp_tip") <= 2.5
    branch = [np.linalg.norm(spine[level][f"medial_branch_{side}"]
                             - np.asarray(case.landmarks[level][f"medial_branch_{side}"]), axis=1).mean()
              for level in LUMBAR for side in SIDES]
    assert np.median(branch) <= 4.0, branch


@pytest.mark.slow
def test_s1_dorsal_ramus_and_foramen_on_the_fine_phantom(fine_case):
    case, spine = fine_case
    s1 = spine["S1"]
    errors = landmark_errors_mm(spine.landmarks(), case.landmarks)
    assert errors["S1.body_centroid"] <= 3.0
    for side in SIDES:
        for key in ("sap_tip", "sap_tp_junction", "medial_branch", "foramen", "exiting_root"):
            assert f"{key}_{side}" in s1, (key, side)
        assert errors[f"S1.sap_tip_{side}"] <= 3.0
        assert errors[f"S1.sap_tp_junction_{side}"] <= 6.5
        assert errors[f"pelvis.s1_posterior_foramen_{side}"] <= 8.0
        root = s1[f"exiting_root_{side}"]
        truth = np.asarray(case.landmarks["S1"][f"exiting_root_{side}"])
        assert np.linalg.norm(root[-1] - truth[-1]) <= 5.0  # the anterior S1 foramen
        assert root[-1] @ s1["axes"]["posterior"] < root[0] @ s1["axes"]["posterior"]  # it runs forward
    assert "s1_posterior_foramen" not in spine.unavailable


def _check_joint_lines(pelvis: dict, max_bend_mm: float) -> None:
    for side in SIDES:
        back, front = pelvis[f"si_joint_posterior_line_{side}"], pelvis[f"si_joint_anterior_line_{side}"]
        assert back.shape == front.shape and back.shape[0] >= 3 and back.shape[1] == 3
        assert back[:, 1].mean() > front[:, 1].mean() + 5.0, side  # LPS y: posterior
        assert back[0, 2] > back[-1, 2] and front[0, 2] > front[-1, 2], side  # superior to inferior
        for line in (back, front):  # smooth: no voxel zig-zag
            assert np.abs(np.diff(line, 2, axis=0)).max() <= max_bend_mm, (side, line)


def test_si_joint_lines_are_smooth_and_ordered_on_the_fine_phantom(fine_case):
    _, spine = fine_case
    _check_joint_lines(spine.pelvis, 3.0)


@pytest.mark.realdata
def test_real_ct_splits_the_ilia_and_has_both_sides_pelvis(real_ct):
    spine = real_ct
    reference = npl.load(ABDOMEN / "example_seg_fast_force_split.nii.gz", modality="LABEL")
    dice = dice_per_label(spine.labels.voxels, from_totalseg(reference.voxels), ILIUM_IDS.values())
    assert min(dice.values()) >= 0.7, dice
    for side in SIDES:
        for key in PELVIS_KEYS[:3]:
            assert f"{key}_{side}" in spine.pelvis, (key, side)
        # at 3 mm the joint space is not resolved: no joint lines from a boundary the scan does not show
        assert f"si_joint_posterior_line_{side}" not in spine.pelvis
        assert "not visible" in spine.unavailable[f"si_joint_{side}"]
    left, right = spine.pelvis["psis_left"], spine.pelvis["psis_right"]
    assert left[0] - right[0] > 40.0  # LPS x: the left PSIS is on the patient's left


# --- medial branch turn and S1 body width: the landmarks the MBB and RFA targets are built from -----------------

@pytest.fixture(scope="module")
def coarse_lordotic_case():
    case = npl.phantom(3, spacing_mm=2.0, noise_hu=30.0, lordosis_deg=55.0)
    return case, npl.segment(case.ct)


def _branch_vertex_errors(case, spine, levels: tuple[str, ...]) -> np.ndarray:
    """Distance (mm) of each medial-branch vertex from the phantom's, one row per level and side."""
    return np.array([np.linalg.norm(np.asarray(spine[level][f"medial_branch_{side}"])
                                    - np.asarray(case.landmarks[level][f"medial_branch_{side}"]), axis=1)
                     for level in levels for side in SIDES])


def _on_bone_target_errors(case, spine, levels: tuple[str, ...]) -> dict[str, list[float]]:
    """MBB (1.5 mm below the turn) and RFA (12 mm lesion) on-bone targets from the segmented and the exact
    branches, with the planner's own rules."""
    from needleplan.plan import targets

    errors: dict[str, list[float]] = {"mbb": [], "rfa": []}
    for level in levels:
        for side in SIDES:
            seg, truth = spine[level][f"medial_branch_{side}"], case.landmarks[level][f"medial_branch_{side}"]
            superior = spine[level]["axes"]["superior"]
            errors["mbb"].append(float(np.linalg.norm(targets.mbb(seg, superior, 1.5)
                                                      - targets.mbb(np.asarray(truth), superior, 1.5))))
            errors["rfa"].append(float(np.linalg.norm(targets.rfa_lesion_centre(seg)
                                                      - targets.rfa_lesion_centre(np.asarray(truth)))))
    return errors


def test_medial_branch_turn_follows_the_phantom_on_the_fine_phantom(fine_case):
    case, spine = fine_case
    errors = _branch_vertex_errors(case, spine, LUMBAR)
    assert np.median(errors[:, 1]) <= 3.0, errors  # the turn behind the TP: 3.4 mm before the SAP left the TP
    assert errors[:, 1].max() <= 6.0, errors  # 7.3 mm at L5, whose SAP stood in the TP's search box
    targets_err = _on_bone_target_errors(case, spine, ("L2", "L3", "L4", "L5", "S1"))
    # before: MBB 3.5 / 6.7 mm and RFA 3.8 / 6.9 mm (median / max)
    assert np.median(targets_err["mbb"]) <= 3.1 and max(targets_err["mbb"]) <= 5.8, targets_err
    assert np.median(targets_err["rfa"]) <= 3.5 and max(targets_err["rfa"]) <= 6.0, targets_err


def test_medial_branch_on_a_coarse_lordotic_phantom(coarse_lordotic_case):
    case, spine = coarse_lordotic_case
    errors = _branch_vertex_errors(case, spine, LUMBAR)
    assert errors.max() <= 9.5, errors  # a cross-section holding lamina gave the SAP face any direction: 15.8 mm
    targets_err = _on_bone_target_errors(case, spine, ("L2", "L3", "L4", "L5", "S1"))
    assert max(targets_err["mbb"]) <= 7.0, targets_err  # 11.0 mm before
    assert max(targets_err["rfa"]) <= 7.5, targets_err  # 11.6 mm before


def test_s1_body_half_width_stops_at_a_gap():
    from needleplan.segment.sacrum import _body_half_width

    grid = np.stack(np.meshgrid(np.arange(-60.0, 61.0), np.arange(-30.0, 0.0), np.arange(-6.0, 0.0), indexing="ij"),
                    axis=-1).reshape(-1, 3)
    body = (grid[:, 0] / 25.0) ** 2 + ((grid[:, 1] + 15.0) / 15.0) ** 2 <= 1.0
    ilium = (np.abs(grid[:, 0]) >= 30.0) & (np.abs(grid[:, 0]) <= 45.0)  # bone beyond a 4 mm gap
    width = _body_half_width(grid[body | ilium], -30.0, 1.0)
    assert 23.0 <= width <= 25.5, width


def test_facet_direction_is_kept_in_the_anatomical_range():
    from needleplan.segment.landmarks import FACET_ANGLE_RANGE_DEG, _plausible_facet_direction

    inside = np.array([np.sin(np.radians(40.0)), np.cos(np.radians(40.0))])
    assert np.allclose(_plausible_facet_direction(-inside, 1.0), inside)  # turned posterior, kept
    coronal = _plausible_facet_direction(np.array([-1.0, 0.05]), -1.0)  # right side, nearly coronal
    angle = np.degrees(np.arctan2(-coronal[0], coronal[1]))
    assert angle == pytest.approx(FACET_ANGLE_RANGE_DEG[1])


def test_transverse_process_axis_ignores_a_sap_in_its_box():
    from needleplan.segment.landmarks import _outside_face, _transverse_process, face_line

    xs, ys, zs = np.meshgrid(np.arange(22.0, 46.0), np.arange(-4.0, 3.0), np.arange(-5.0, 6.0), indexing="ij")
    tp = np.stack([xs, ys, zs], axis=-1).reshape(-1, 3)  # a straight TP, 7 mm thick, along +x
    beta = np.radians(50.0)
    along, normal = np.array([np.sin(beta), np.cos(beta)]), np.array([np.cos(beta), -np.sin(beta)])
    u, v, w = np.meshgrid(np.arange(-6.0, 7.0), np.arange(-4.0, 1.0), np.arange(-8.0, 16.0), indexing="ij")
    sap = np.column_stack([(np.array([30.0, 8.0]) + u.reshape(-1, 1) * along + v.reshape(-1, 1) * normal),
                           w.reshape(-1)])  # an upright plate standing behind the TP's root
    face = face_line(sap[sap[:, 2] > 8.0], 1.0, 1.0)
    both = np.vstack([tp, sap])
    found = _transverse_process(_outside_face(both, face, 1.0, 1.0), 1.0, 1.0)
    assert abs(found["direction"][1]) < 0.1, found["direction"]
    assert found["half_thickness"] == pytest.approx(3.5, abs=1.0)


def test_s1_foramen_at_3_mm_is_near_the_truth_or_not_claimed():
    """At 3 mm the channel is barely a hole: a hole found 45-50 mm out in the ala was taken for it (34-43 mm off);
    the S1 TFESI must then say the foramen is not found rather than aim at the ala."""
    case = npl.phantom(0, spacing_mm=3.0)
    spine, truth = npl.segment(case.ct), case.spine()
    for side in ("left", "right"):
        key = f"s1_posterior_foramen_{side}"
        found = spine.pelvis.get(key)
        if found is None:
            with pytest.raises(npl.NeedleplanError, match="S1 foramen"):
                npl.plan(spine, "tfesi", "S1", side)
        else:
            assert np.linalg.norm(np.asarray(found) - np.asarray(truth.pelvis[key])) <= 10.0, side
