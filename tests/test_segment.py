"""Segmentation, numbering and landmarks on the phantom (exact truth) and on the shared real CT."""

from __future__ import annotations


import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import VERSE_IDS, from_totalseg
from needleplan.errors import NeedleplanError
from needleplan.segment.metrics import dice_per_label, label_centroids_mm, landmark_errors_mm
from needleplan.segment.numbering import name_levels
from shared_data import SHARED_DATA

DATA = SHARED_DATA
ABDOMEN = DATA / "totalseg_example_abdomen_ct"
LUMBAR = ("L1", "L2", "L3", "L4", "L5")


@pytest.fixture(scope="module")
def phantom_case():
    case = npl.phantom(3, spacing_mm=2.0, noise_hu=30.0, lordosis_deg=55.0)
    return case, npl.segment(case.ct)


@pytest.fixture(scope="module")
def scoliotic_case():
    case = npl.phantom(1, spacing_mm=2.0, noise_hu=10.0, scoliosis_deg=-10.0,
                       direction=np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    return case, npl.segment(case.ct)


def test_phantom_levels_are_found_and_named(phantom_case):
    case, spine = phantom_case
    assert spine.levels == [*LUMBAR, "S1"]
    assert spine.numbering.anchor == "sacrum"
    assert all(spine[name].label == VERSE_IDS[name] for name in spine.levels)


def test_phantom_dice_and_identification(phantom_case, scoliotic_case):
    for case, spine in (phantom_case, scoliotic_case):
        dice = dice_per_label(spine.labels.voxels, case.labels.voxels)
        lumbar = [dice[VERSE_IDS[name]] for name in LUMBAR]
        assert np.mean(lumbar) >= 0.93, dice
        assert min(lumbar) >= 0.9, dice
        found = label_centroids_mm(spine.labels)
        truth = label_centroids_mm(case.labels)
        for name in LUMBAR:
            assert np.linalg.norm(found[VERSE_IDS[name]] - truth[VERSE_IDS[name]]) < 3.0, name


def test_phantom_core_landmarks_within_1_5_mm(phantom_case):
    case, spine = phantom_case
    errors = landmark_errors_mm(spine.landmarks(), case.landmarks)
    for key in ("body_centroid", "superior_endplate.center", "canal_center"):
        values = [errors[f"{name}.{key}"] for name in LUMBAR]
        assert np.median(values) <= 1.5, (key, values)
    for name in LUMBAR:
        normal = spine[name]["superior_endplate"]["normal"]
        true_normal = np.asarray(case.landmarks[name]["superior_endplate"]["normal"])
        assert np.degrees(np.arccos(np.clip(np.dot(normal, true_normal), -1, 1))) < 8.0, name


def test_phantom_pedicles_and_modelled_nerves(phantom_case):
    case, spine = phantom_case
    for name in LUMBAR:
        for side in ("left", "right"):
            found = spine[name][f"pedicle_{side}"]
            truth = case.landmarks[name][f"pedicle_{side}"]
            assert np.linalg.norm(found["center"] - np.asarray(truth["center"])) < 4.0, (name, side)
            root = spine[name][f"exiting_root_{side}"]
            assert root.shape == (3, 3)
            sign = 1.0 if side == "left" else -1.0
            # the root runs laterally (towards its side) and caudally
            assert sign * (root[-1, 0] - root[0, 0]) > 5.0 and root[-1, 2] < root[0, 2]


@pytest.mark.realdata
def test_real_ct_identifies_lumbar_levels_and_sacrum():
    if not ABDOMEN.is_dir():
        pytest.skip(f"shared real data not found at {ABDOMEN}")
    spine = npl.segment(npl.load(ABDOMEN / "example_ct.nii.gz"))
    reference = npl.load(ABDOMEN / "spine_report" / "totalseg_vertebrae.nii.gz", modality="LABEL")
    ref = from_totalseg(reference.voxels)
    assert {*LUMBAR, "S1", "T12"} <= set(spine.levels)
    assert spine.numbering.anchor == "sacrum+ribs"
    dice = dice_per_label(spine.labels.voxels, ref)
    lumbar = [dice[VERSE_IDS[name]] for name in LUMBAR]
    assert np.mean(lumbar) >= 0.85, dice
    ref_volume = npl.Volume(ref, reference.index_to_world, "LABEL")
    found, truth = label_centroids_mm(spine.labels), label_centroids_mm(ref_volume)
    distances = [np.linalg.norm(found[VERSE_IDS[n]] - truth[VERSE_IDS[n]]) for n in LUMBAR]
    assert np.mean(distances) <= 3.0, distances
    for name in LUMBAR:  # VerSe identification: nearest predicted centroid, within 20 mm
        nearest = min(found, key=lambda label: np.linalg.norm(found[label] - truth[VERSE_IDS[name]]))
        assert nearest == VERSE_IDS[name]


@pytest.mark.parametrize(
    ("count", "sacrum", "ribs", "expected", "anchor"),
    [
        (8, True, [True, True] + [False] * 6, ["T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1"], "sacrum+ribs"),
        (6, True, [False] * 6, ["L1", "L2", "L3", "L4", "L5", "S1"], "sacrum"),
        (8, True, [True] + [False] * 7, ["T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1"], "sacrum+ribs"),
        (4, False, [True, True, False, False], ["T11", "T12", "L1", "L2"], "ribs"),
    ],
)
def test_numbering(count, sacrum, ribs, expected, anchor):
    names, numbering = name_levels(count, sacrum, ribs)
    assert names == expected
    assert numbering.anchor == anchor
    assert 0.0 < numbering.confidence <= 1.0


def test_transitional_anatomy_is_said_not_hidden():
    names, numbering = name_levels(8, True, [True] + [False] * 7)
    assert "L6" in names and numbering.confidence < 0.8
    assert any("transitional" in note for note in numbering.notes)
    names, numbering = name_levels(6, True, [True] + [False] * 5)
    assert names[-2:] == ["L5", "S1"] and numbering.confidence <= 0.5
    assert any("sacralised" in note for note in numbering.notes)


def test_bad_inputs_get_clear_errors():
    flat = npl.Volume(np.full((40, 40, 40), 40, dtype=np.int16), np.eye(4), "CT")
    with pytest.raises(NeedleplanError, match="no bone"):
        npl.segment(flat)
    tiny = npl.Volume(np.zeros((2, 2, 2), dtype=np.int16), np.eye(4), "CT")
    with pytest.raises(NeedleplanError, match="too little"):
        npl.segment(tiny)
    with pytest.raises(NeedleplanError, match="engine"):
        npl.segment(flat, engine="magic")
    with pytest.raises(NeedleplanError, match="Volume"):
        npl.segment(np.zeros((10, 10, 10)))


def test_segment_does_not_modify_its_input(phantom_case):
    case, _ = phantom_case
    before = case.ct.voxels.copy()
    npl.segment(case.ct)
    assert np.array_equal(before, case.ct.voxels)


def test_phantom_sap_tp_junction_on_the_coarse_phantom(phantom_case):
    case, spine = phantom_case
    errors = landmark_errors_mm(spine.landmarks(), case.landmarks)
    junction = [errors[f"{name}.sap_tp_junction_{side}"] for name in LUMBAR for side in ("left", "right")]
    assert np.median(junction) <= 3.0, junction
    assert np.median([errors[f"{name}.tp_tip_{side}"] for name in LUMBAR for side in ("left", "right")]) <= 2.5
