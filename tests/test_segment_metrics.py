"""Segmentation metrics on cases worked out by hand: Dice, world centroids, VerSe identification, landmark errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from needleplan.segment.metrics import (
    SegmentationScore, centroid_distances_mm, dice_per_label, identification, label_centroids_mm,
    landmark_errors_mm, on_grid_of, score_labels,
)
from needleplan.volume import Volume, affine_from_geometry
from shared_data import SHARED_DATA

DATA = SHARED_DATA
VERSE = DATA / "verse_sub-verse004_labels_only"
needs_verse = pytest.mark.skipif(not VERSE.is_dir(), reason=f"shared real data folder {VERSE} is absent")


def cube(shape=(10, 10, 10), start=(2, 2, 2), size=4, label=5, dtype=np.uint8) -> np.ndarray:
    """A label array with one cube of ``label``; ``start`` in (k, j, i) array order."""
    array = np.zeros(shape, dtype=dtype)
    k, j, i = start
    array[k:k + size, j:j + size, i:i + size] = label
    return array


def label_volume(array: np.ndarray, affine: np.ndarray | None = None) -> Volume:
    return Volume(array, np.eye(4) if affine is None else affine, "LABEL")


# ---- Dice -------------------------------------------------------------------------------------------------------
def test_dice_of_two_cubes_offset_by_one_voxel():
    # 4x4x4 cubes shifted by one voxel along i: overlap 4*4*3 = 48 voxels, Dice = 2*48 / (64 + 64) = 0.75
    assert dice_per_label(cube(), cube(start=(2, 2, 3))) == {5: pytest.approx(0.75, abs=1e-12)}


def test_dice_of_a_diagonal_offset_and_of_several_labels():
    shape = (12, 12, 12)
    predicted = cube(shape) + cube(shape, start=(8, 8, 8), size=3, label=7)
    reference = cube(shape, start=(3, 3, 3)) + cube(shape, start=(8, 8, 8), size=3, label=7)
    # diagonal shift by one voxel: overlap 3*3*3 = 27, Dice = 54 / 128; label 7 identical
    assert dice_per_label(predicted, reference) == {5: pytest.approx(54 / 128), 7: pytest.approx(1.0)}


def test_dice_of_missing_and_absent_labels():
    scores = dice_per_label(cube(label=5), cube(label=6), labels=[5, 6, 9])
    assert scores[5] == 0.0 and scores[6] == 0.0
    assert math.isnan(scores[9])


def test_dice_accepts_volumes_bool_and_integral_float_maps():
    reference = label_volume(cube(label=1))
    assert dice_per_label(cube(label=1).astype(float), reference) == {1: 1.0}
    assert dice_per_label(cube(label=1).astype(bool), reference.voxels.astype(np.int32)) == {1: 1.0}


@pytest.mark.parametrize("predicted, message", [
    (np.zeros((9, 10, 10), np.uint8), "same shape"),
    (np.full((10, 10, 10), 0.5), "fractional"),
    (np.full((10, 10, 10), -1, np.int16), "non-negative"),
])
def test_dice_rejects_bad_maps(predicted, message):
    with pytest.raises(ValueError, match=message):
        dice_per_label(predicted, cube())


# ---- centroids --------------------------------------------------------------------------------------------------
def two_voxel_label() -> np.ndarray:
    """Label 3 at indices (i, j, k) = (1, 2, 3) and (3, 2, 3): centroid index (2, 2, 3)."""
    array = np.zeros((5, 4, 6), np.uint8)  # (nz, ny, nx)
    array[3, 2, 1] = 3
    array[3, 2, 3] = 3
    return array


def test_centroid_on_a_ras_grid_is_the_hand_computed_world_point():
    # RAS storage: i toward the right (-x), j anterior (-y); spacing (0.5, 0.8, 2.0), origin (10, -20, 30)
    affine = affine_from_geometry((0.5, 0.8, 2.0), (10.0, -20.0, 30.0), np.diag([-1.0, -1.0, 1.0]))
    centroids = label_centroids_mm(label_volume(two_voxel_label(), affine))
    # (10 - 0.5*2, -20 - 0.8*2, 30 + 2*3)
    np.testing.assert_allclose(centroids[3], [9.0, -21.6, 36.0], atol=1e-12)


def test_centroid_on_an_oblique_grid_is_the_hand_computed_world_point():
    # i and j rotated 30 degrees about z, 2 mm slices: world = 2 (c, s, 0) + 2 (-s, c, 0) + 3 (0, 0, 2)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = affine_from_geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), direction)
    centroids = label_centroids_mm(label_volume(two_voxel_label(), affine))
    np.testing.assert_allclose(centroids[3], [math.sqrt(3) - 1, math.sqrt(3) + 1, 6.0], atol=1e-12)


def test_centroids_of_several_labels_and_a_requested_subset():
    array = cube(start=(0, 0, 0), size=2, label=1) + cube(start=(6, 4, 2), size=3, label=2)
    centroids = label_centroids_mm(label_volume(array))
    np.testing.assert_allclose(centroids[1], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(centroids[2], [3.0, 5.0, 7.0])  # (i, j, k): x from the last array axis
    assert list(label_centroids_mm(label_volume(array), labels=[2, 9])) == [2]


def test_centroid_distances_cover_labels_in_both():
    distances = centroid_distances_mm({1: [0, 0, 0], 2: [0, 3, 4]}, {2: np.zeros(3), 3: np.ones(3)})
    assert distances == {2: pytest.approx(5.0)}


# ---- identification ---------------------------------------------------------------------------------------------
REFERENCE = {20: np.array([0.0, 0.0, 0.0]), 21: np.array([0.0, 0.0, -30.0])}


def test_identification_of_correct_labels():
    predicted = {20: np.array([2.0, 1.0, 0.5]), 21: np.array([0.0, -3.0, -31.0])}
    assert identification(predicted, REFERENCE) == {20: True, 21: True}


def test_identification_with_swapped_labels_fails():
    predicted = {20: REFERENCE[21] + 1.0, 21: REFERENCE[20] + 1.0}
    assert identification(predicted, REFERENCE) == {20: False, 21: False}


def test_identification_needs_the_nearest_centroid_within_20_mm():
    # 20: 15 mm away but another predicted centroid is 5 mm away; 21: the only candidate, 25 mm away; 22 missing
    predicted = {20: np.array([15.0, 0.0, 0.0]), 19: np.array([0.0, 5.0, 0.0]), 21: np.array([0.0, 0.0, -55.0])}
    reference = {**REFERENCE, 22: np.array([0.0, 0.0, -60.0])}
    assert identification(predicted, reference) == {20: False, 21: False, 22: False}
    assert identification({20: np.array([15.0, 0.0, 0.0])}, REFERENCE, max_distance_mm=10.0)[20] is False
    assert identification({20: np.array([20.0, 0.0, 0.0])}, REFERENCE)[20] is True  # the 20 mm edge counts


# ---- a whole score ----------------------------------------------------------------------------------------------
def spine_labels() -> np.ndarray:
    """Three 'vertebrae' (20, 21, 22) stacked along k on a 20x12x12 grid, plus an 'ilium' (60)."""
    array = np.zeros((20, 12, 12), np.uint8)
    for n, label in enumerate((22, 21, 20)):
        array[1 + 6 * n:5 + 6 * n, 4:8, 4:8] = label
    array[8:12, 4:8, 0:2] = 60
    return array


def test_score_of_a_perfect_prediction_on_a_flipped_grid():
    # the same voxels stored RAS (i and j reversed): resampled by nearest neighbour, it matches exactly
    reference = label_volume(spine_labels(), affine_from_geometry((1.0, 1.0, 3.0), (-5.5, -5.5, 0.0)))
    flipped = reference.voxels[:, ::-1, ::-1].copy()
    affine = affine_from_geometry((1.0, 1.0, 3.0), (5.5, 5.5, 0.0), np.diag([-1.0, -1.0, 1.0]))
    score = score_labels(label_volume(flipped, affine), reference, labels=[20, 21, 22, 26])
    assert score.labels == (20, 21, 22)  # 26 is not in the reference
    assert score.dice == {20: 1.0, 21: 1.0, 22: 1.0}
    assert score.identified == {20: True, 21: True, 22: True}
    assert score.mean_dice == 1.0 and score.identification_rate == 1.0 and score.mean_distance_mm == pytest.approx(0)


def test_score_of_a_shifted_prediction_with_a_missing_level():
    reference = label_volume(spine_labels())
    shifted = np.roll(spine_labels(), 1, axis=2)  # one voxel along i: Dice 0.75, 1 mm
    shifted[shifted == 22] = 0
    score = score_labels(label_volume(shifted), reference)
    assert score.labels == (20, 21, 22, 60)
    assert score.dice[20] == pytest.approx(0.75) and score.dice[22] == 0.0
    assert score.identified == {20: True, 21: True, 22: False, 60: False}  # 60 is not a vertebra id
    assert math.isnan(score.distance_mm[22]) and score.distance_mm[21] == pytest.approx(1.0)
    vertebrae = score.subset([20, 21, 22])
    assert isinstance(vertebrae, SegmentationScore)
    assert vertebrae.mean_dice == pytest.approx(0.5) and vertebrae.identification_rate == pytest.approx(2 / 3)
    assert vertebrae.mean_distance_mm == pytest.approx(1.0)
    assert json.dumps(vertebrae.to_dict())  # JSON-ready
    assert list(vertebrae.to_dict()["levels"]) == ["L1", "L2", "L3"]


def test_a_prediction_on_a_coarser_grid_is_resampled_onto_the_reference():
    reference = label_volume(spine_labels())
    coarse = label_volume(spine_labels()[:, ::2, ::2].copy(), affine_from_geometry((2.0, 2.0, 1.0), (0.5, 0.5, 0)))
    resampled = on_grid_of(coarse, reference)
    assert resampled.shape == reference.shape
    np.testing.assert_array_equal(resampled.index_to_world, reference.index_to_world)
    assert on_grid_of(reference, reference) is reference
    assert score_labels(coarse, reference, labels=[20, 21, 22]).identification_rate == 1.0


# ---- landmarks --------------------------------------------------------------------------------------------------
def test_landmark_errors_walk_points_and_centers_only():
    truth = {
        "L4": {
            "body_centroid": [0.0, 0.0, 0.0],
            "superior_endplate": {"center": [0.0, 0.0, 10.0], "normal": [0.0, 0.0, 1.0]},
            "pedicle_left": {"center": [10.0, 5.0, 0.0], "axis": [0.0, 1.0, 0.0], "narrowest_width_mm": 7.0},
            "axes": {"left": [1.0, 0.0, 0.0], "posterior": [0.0, 1.0, 0.0], "superior": [0.0, 0.0, 1.0]},
            "canal_outline": [[0.0, 20.0, 0.0], [1.0, 20.0, 0.0], [0.0, 21.0, 0.0]],
            "exiting_root_left": [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]],
            "spinous_tip": [0.0, 60.0, 0.0],
            "tp_tip_left": [40.0, 10.0, 0.0],
        },
        "pelvis": {"psis_left": [50.0, 70.0, -80.0], "midline": {"point": [0, 0, 0], "normal": [1, 0, 0]}},
        "skin": {"shape": "elliptic_cylinder", "center": [0, 0, 0]},
    }
    found = {
        "L4": {
            "body_centroid": np.array([3.0, 4.0, 0.0]),
            "superior_endplate": {"center": np.array([0.0, 0.0, 11.0]), "normal": np.array([0.0, 1.0, 0.0])},
            "pedicle_left": {"center": np.array([10.0, 5.0, 2.0]), "axis": np.array([1.0, 0.0, 0.0]),
                             "narrowest_width_mm": 3.0},
            "axes": {"left": np.array([0.0, 1.0, 0.0])},
            "canal_outline": np.zeros((3, 3)),
            "exiting_root_left": np.ones((3, 3)),
            "spinous_tip": np.array([0.0, 60.5, 0.0]),
        },
        "L5": {"body_centroid": np.zeros(3)},
        "pelvis": {"psis_left": np.array([50.0, 70.0, -79.0]), "midline": {"point": np.ones(3),
                                                                           "normal": np.array([0, 1.0, 0])}},
    }
    errors = landmark_errors_mm(found, truth)
    assert errors == {
        "L4.body_centroid": pytest.approx(5.0),
        "L4.superior_endplate.center": pytest.approx(1.0),
        "L4.pedicle_left.center": pytest.approx(2.0),
        "L4.spinous_tip": pytest.approx(0.5),
        "pelvis.psis_left": pytest.approx(1.0),
    }
    assert list(errors) == ["L4.body_centroid", "L4.superior_endplate.center", "L4.pedicle_left.center",
                            "L4.spinous_tip", "pelvis.psis_left"]


def test_landmark_errors_of_a_phantom_against_itself_are_zero():
    from needleplan.phantoms import phantom

    truth = phantom(3, spacing_mm=3.0).landmarks
    errors = landmark_errors_mm(json.loads(json.dumps(truth)), truth)
    assert len(errors) > 5 * 15 and max(errors.values()) == 0.0
    assert "L4.pedicle_left.center" in errors and "L4.body_centroid" in errors
    assert not any(key.endswith((".normal", ".axis")) or ".axes." in key for key in errors)


# ---- real labels ------------------------------------------------------------------------------------------------
@pytest.mark.realdata
@needs_verse
def test_verse_whole_vertebra_centroids_sit_behind_the_reference_body_centroids():
    """sub-verse004: PIR, slightly oblique, float64 labels; its reference centroids are body centroids."""
    from needleplan.io import load

    mask = load(VERSE / "sub-verse004_seg-vert_msk.nii.gz")
    entries = json.loads((VERSE / "sub-verse004_seg-subreg_ctd.json").read_text())[1:]
    bodies = {e["label"]: mask.index_to_world_points(np.array([e["X"], e["Y"], e["Z"]])) for e in entries}
    centroids = label_centroids_mm(mask)
    assert sorted(centroids) == list(range(16, 25))
    distances = centroid_distances_mm(centroids, bodies)
    assert all(8.0 < d < 16.0 for d in distances.values()), distances
    assert all(centroids[k][1] > bodies[k][1] for k in bodies)  # whole vertebra is posterior (+y in LPS)
    assert all(identification(centroids, bodies).values())
