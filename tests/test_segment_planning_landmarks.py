"""Landmarks the planner needs beyond the core ones: SAP-TP junction and medial branch, S1 (L5 dorsal ramus,
S1 foramen), the two ilia and the SI joint lines; on the 1 mm phantom (exact truth) and the shared real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import ILIUM_IDS, from_totalseg
from needleplan.segment.metrics import dice_per_label, landmark_errors_mm

ABDOMEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg_example_abdomen_ct"
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


def test_real_ct_splits_the_ilia_and_has_both_sides_pelvis(real_ct):
    spine = real_ct
    reference = npl.load(ABDOMEN / "example_seg_fast_force_split.nii.gz", modality="LABEL")
    dice = dice_per_label(spine.labels.voxels, from_totalseg(reference.voxels), ILIUM_IDS.values())
    assert min(dice.values()) >= 0.7, dice
    for side in SIDES:
        for key in PELVIS_KEYS:
            assert f"{key}_{side}" in spine.pelvis, (key, side)
    left, right = spine.pelvis["psis_left"], spine.pelvis["psis_right"]
    assert left[0] - right[0] > 40.0  # LPS x: the left PSIS is on the patient's left
    _check_joint_lines(spine.pelvis, 8.0)
