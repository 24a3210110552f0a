"""Tests of the synthetic lumbar phantom: determinism, landmarks against labels, exact ray integrals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from needleplan.attenuation import hu_to_mu
from needleplan.errors import NeedleplanError
from needleplan.phantoms import MATERIALS, STRUCTURE_IDS, VERTEBRA_LABELS, phantom
from needleplan.phantoms.shapes import Part, box, elliptic_cylinder, ellipsoid
from needleplan.phantoms.case import material_path_lengths
from needleplan.volume import affine_from_geometry

LEVELS = ("L1", "L2", "L3", "L4", "L5")
BONE = {MATERIALS.index("cortical"), MATERIALS.index("cancellous")}


@pytest.fixture(scope="module")
def case():
    return phantom(0, spacing_mm=2.0)


@pytest.fixture(scope="module")
def other_case():
    return phantom(7, spacing_mm=3.0, scoliosis_deg=8.0)


def at(case, point):
    """Material name, label and structure name at one world point (analytic)."""
    props = case.properties_at(np.asarray(point, dtype=float)[None])
    names = {v: k for k, v in STRUCTURE_IDS.items()}
    return MATERIALS[props.material[0]], int(props.label[0]), names[int(props.structure[0])]


def toward(point, target, mm):
    point, target = np.asarray(point, dtype=float), np.asarray(target, dtype=float)
    return point + mm * (target - point) / np.linalg.norm(target - point)


# ---- determinism ---------------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_case():
    a = phantom(3, spacing_mm=3.0, noise_hu=20.0)
    b = phantom(3, spacing_mm=3.0, noise_hu=20.0)
    assert np.array_equal(a.ct.voxels, b.ct.voxels)
    assert np.array_equal(a.labels.voxels, b.labels.voxels)
    assert np.array_equal(a.ct.index_to_world, b.ct.index_to_world)
    assert json.dumps(a.landmarks) == json.dumps(b.landmarks)


def test_different_seeds_differ():
    a, b = phantom(3, spacing_mm=3.0), phantom(4, spacing_mm=3.0)
    assert a.landmarks["L3"]["body_centroid"] != b.landmarks["L3"]["body_centroid"]
    assert a.recipe["levels"]["L3"]["body_width_mm"] != b.recipe["levels"]["L3"]["body_width_mm"]
    assert a.ct.shape != b.ct.shape or not np.array_equal(a.ct.voxels, b.ct.voxels)


def test_noise_does_not_change_the_anatomy():
    quiet, noisy = phantom(2, spacing_mm=3.0), phantom(2, spacing_mm=3.0, noise_hu=30.0)
    assert np.array_equal(quiet.labels.voxels, noisy.labels.voxels)
    difference = noisy.ct.voxels.astype(float) - quiet.ct.voxels
    assert 25.0 < difference.std() < 35.0


# ---- landmarks against the label and structure maps ---------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["case", "other_case"])
def test_vertebra_landmarks_land_on_their_structures(fixture, request):
    case = request.getfixturevalue(fixture)
    for level in (*LEVELS, "S1"):
        marks, label = case.landmarks[level], VERTEBRA_LABELS[level]
        centroid = marks["body_centroid"]
        assert at(case, centroid) == ("cancellous", label, "vertebral_body"), level
        material, got_label, structure = at(case, marks["canal_center"])
        assert (material, structure) == ("csf", "canal"), level
        for side in ("left", "right"):
            material, got_label, structure = at(case, marks[f"pedicle_{side}"]["center"])
            assert MATERIALS.index(material) in BONE and got_label == label, (level, side)
            assert structure == f"pedicle_{side}", (level, side)
            material, _, structure = at(case, marks[f"foramen_{side}"])
            assert MATERIALS.index(material) not in BONE, (level, side)
            assert structure in (f"foramen_{side}", f"s1_foramen_{side}"), (level, side, structure)
            # process tips lie on the bone surface: 1 mm back towards the body they are inside that vertebra
            tips = ["sap_tip"] + (["iap_tip", "tp_tip"] if level != "S1" else [])
            for tip in tips:
                material, got_label, _ = at(case, toward(marks[f"{tip}_{side}"], centroid, 1.0))
                assert MATERIALS.index(material) in BONE and got_label == label, (level, tip, side)
            junction = np.asarray(marks[f"sap_tp_junction_{side}"])
            probes = junction + np.array([[dx, dy, dz] for dx in (-1, 1) for dy in (-1, 1) for dz in (-1, 1)])
            assert np.any(case.properties_at(probes).label == label), (level, side)
            assert len(marks[f"medial_branch_{side}"]) >= 2 and len(marks[f"exiting_root_{side}"]) >= 2
        if level != "S1":
            material, got_label, _ = at(case, toward(marks["spinous_tip"], centroid, 1.0))
            assert MATERIALS.index(material) in BONE and got_label == label, level


def test_pedicle_axis_and_width(case):
    for level in LEVELS:
        pedicle = case.landmarks[level]["pedicle_left"]
        axis = np.asarray(pedicle["axis"])
        posterior = np.asarray(case.landmarks[level]["axes"]["posterior"])
        assert abs(np.linalg.norm(axis) - 1.0) < 1e-9
        assert np.dot(axis, posterior) > 0.8  # anterior -> posterior
        assert 6.0 < pedicle["narrowest_width_mm"] < 21.0
    widths = [case.landmarks[level]["pedicle_left"]["narrowest_width_mm"] for level in LEVELS]
    assert widths[4] > widths[0]  # pedicles widen from L1 to L5


def test_landmarks_on_the_voxel_label_map(case):
    for level in (*LEVELS, "S1"):
        marks, label = case.landmarks[level], VERTEBRA_LABELS[level]
        for point in (marks["body_centroid"], marks["pedicle_left"]["center"], marks["pedicle_right"]["center"]):
            i, j, k = np.rint(case.labels.world_to_index_points(point)).astype(int)
            assert case.labels.voxels[k, j, i] == label, level
        i, j, k = np.rint(case.structures.world_to_index_points(marks["canal_center"])).astype(int)
        assert case.structures.voxels[k, j, i] == STRUCTURE_IDS["canal"], level


def test_pelvis_landmarks(case):
    pelvis, s1 = case.landmarks["pelvis"], case.landmarks["S1"]
    down = -np.asarray(s1["axes"]["superior"])
    for side in ("left", "right"):
        assert at(case, np.asarray(pelvis[f"sacral_ala_{side}"]) + 1.5 * down)[1] == VERTEBRA_LABELS["S1"]
        assert at(case, pelvis[f"s1_posterior_foramen_{side}"])[2] == f"s1_foramen_{side}"
        crest = np.asarray(pelvis[f"iliac_crest_top_{side}"])
        assert at(case, crest - [0.0, 0.0, 1.5])[2] == f"ilium_{side}"
        psis = np.asarray(pelvis[f"psis_{side}"])
        assert at(case, psis - [0.0, 1.0, 0.0])[2] == f"ilium_{side}"
        # iliac crests reach about the L4-L5 level
        assert case.landmarks["L5"]["body_centroid"][2] < crest[2] < case.landmarks["L4"]["body_centroid"][2]
        # the PSIS is posterior to the sacral foramen and lateral to it
        assert psis[1] > pelvis[f"s1_posterior_foramen_{side}"][1] - 10.0
        assert abs(psis[0]) > abs(pelvis[f"s1_posterior_foramen_{side}"][0])
    midline = pelvis["midline"]
    assert abs(np.dot(midline["normal"], [1.0, 0.0, 0.0])) > 0.99


@pytest.mark.parametrize("fixture", ["case", "other_case"])
def test_si_joint_lines_lie_between_sacrum_and_ilium(fixture, request):
    case = request.getfixturevalue(fixture)
    pelvis = case.landmarks["pelvis"]
    for side, sign in (("left", 1.0), ("right", -1.0)):
        posterior = np.asarray(pelvis[f"si_joint_posterior_line_{side}"])
        anterior = np.asarray(pelvis[f"si_joint_anterior_line_{side}"])
        assert posterior[0, 2] > posterior[-1, 2] and anterior[0, 2] > anterior[-1, 2]  # superior to inferior
        across = posterior[0] - anterior[0]
        normal = np.cross(posterior[-1] - posterior[0], across)
        normal = sign * np.sign(normal[0]) * normal / np.linalg.norm(normal)  # points laterally
        inward = across / np.linalg.norm(across)
        assert abs(anterior[0, 0]) > abs(posterior[0, 0])  # anterior joint line lies lateral on AP
        for line, step in ((posterior, -inward), (anterior, inward)):
            for point in line[1:-1]:
                inside = point + 1.0 * step
                assert at(case, inside)[2] == f"si_joint_{side}"
                assert at(case, inside - 2.5 * normal)[1] == VERTEBRA_LABELS["S1"]
                assert at(case, inside + 2.5 * normal)[2] == f"ilium_{side}"


def test_endplates_face_up_and_follow_the_lordosis():
    flat, curved = phantom(1, spacing_mm=3.0, lordosis_deg=15.0), phantom(1, spacing_mm=3.0, lordosis_deg=60.0)

    def l1_l5_angle(case):
        top = np.asarray(case.landmarks["L1"]["superior_endplate"]["normal"])
        bottom = np.asarray(case.landmarks["L5"]["superior_endplate"]["normal"])
        return np.degrees(np.arccos(np.clip(np.dot(top, bottom), -1, 1)))

    for case in (flat, curved):
        for level in LEVELS:
            for which in ("superior_endplate", "inferior_endplate"):
                assert np.dot(case.landmarks[level][which]["normal"], [0.0, 0.0, 1.0]) > 0.7
    assert l1_l5_angle(curved) > l1_l5_angle(flat) + 20.0
    assert l1_l5_angle(curved) > 25.0


def test_oblique_grid_gives_the_same_labels_at_landmarks(case):
    a, b = np.radians(20.0), np.radians(10.0)
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    oblique = phantom(0, spacing_mm=2.0, direction=about_z @ about_x)
    assert np.allclose(oblique.ct.direction, about_z @ about_x)
    assert oblique.landmarks == case.landmarks
    for level in (*LEVELS, "S1"):
        marks = case.landmarks[level]
        for point in (marks["body_centroid"], marks["pedicle_left"]["center"], marks["canal_center"]):
            values = []
            for volume in (case.labels, oblique.labels, case.structures, oblique.structures):
                i, j, k = np.rint(volume.world_to_index_points(point)).astype(int)
                values.append(volume.voxels[k, j, i])
            assert values[0] == values[1] and values[2] == values[3], level
    for label in VERTEBRA_LABELS.values():  # same volumes of bone, sampled on different grids
        plain = np.count_nonzero(case.labels.voxels == label)
        tilted = np.count_nonzero(oblique.labels.voxels == label)
        assert abs(tilted - plain) < 0.05 * plain


def test_voxel_maps_are_the_parts_sampled_at_voxel_centres(case):
    rng = np.random.default_rng(0)
    nz, ny, nx = case.ct.shape
    ijk = np.column_stack([rng.integers(0, n, 20000) for n in (nx, ny, nz)])
    props = case.properties_at(case.ct.index_to_world_points(ijk.astype(float)))
    i, j, k = ijk.T
    assert np.mean(props.label == case.labels.voxels[k, j, i]) > 0.9995
    assert np.mean(props.structure == case.structures.voxels[k, j, i]) > 0.9995


def test_each_bone_is_one_piece():
    case = phantom(0, spacing_mm=1.5)
    for label in VERTEBRA_LABELS.values():
        _, pieces = ndimage.label(case.labels.voxels == label, structure=np.ones((3, 3, 3)))
        assert pieces == 1, label
    for side in ("left", "right"):
        _, pieces = ndimage.label(case.structures.voxels == STRUCTURE_IDS[f"ilium_{side}"],
                                  structure=np.ones((3, 3, 3)))
        assert pieces == 1, side


# ---- HU -----------------------------------------------------------------------------------------------------------
def test_hounsfield_units_are_realistic(case):
    hu, labels, structures = case.ct.voxels, case.labels.voxels, case.structures.voxels
    for level in LEVELS:
        body = (labels == VERTEBRA_LABELS[level]) & (structures == STRUCTURE_IDS["vertebral_body"])
        assert 120 <= np.median(hu[body]) <= 250, level
        assert np.percentile(hu[labels == VERTEBRA_LABELS[level]], 99) > 700, level
    assert np.median(hu[structures == STRUCTURE_IDS["subcutaneous_fat"]]) == pytest.approx(-100, abs=30)
    assert np.median(hu[structures == STRUCTURE_IDS["canal"]]) < 30
    assert hu[0, 0, 0] == -1000
    assert np.min(hu[structures == STRUCTURE_IDS["bowel_gas"]]) < -500


# ---- exact line integrals -----------------------------------------------------------------------------------------
def test_line_integral_along_a_vertebral_body_axis(case):
    marks = case.landmarks["L3"]
    start = np.asarray(marks["inferior_endplate"]["center"])
    end = np.asarray(marks["superior_endplate"]["center"])
    shell = case.recipe["vertebra"]["cortical_shell_mm"]
    height = case.recipe["levels"]["L3"]["body_height_mm"]
    lengths = case.material_path_lengths(start[None], end[None])[0]
    assert lengths[MATERIALS.index("cortical")] == pytest.approx(2 * shell, abs=1e-9)
    assert lengths[MATERIALS.index("cancellous")] == pytest.approx(height - 2 * shell, abs=1e-9)
    mu = hu_to_mu(case.material_hu).astype(float)
    expected = 2 * shell * mu[MATERIALS.index("cortical")] + (height - 2 * shell) * mu[MATERIALS.index("cancellous")]
    assert case.line_integral(start[None], end[None])[0] == pytest.approx(expected, rel=1e-12)
    hu = case.material_hu
    expected_hu = 2 * shell * (hu[MATERIALS.index("cortical")] + 1000) + (height - 2 * shell) * (
        hu[MATERIALS.index("cancellous")] + 1000)
    assert case.hu_line_integral(start[None], end[None])[0] == pytest.approx(expected_hu, rel=1e-12)


def test_line_integral_across_the_body_outline(case):
    skin = case.landmarks["skin"]
    centre = np.asarray(skin["center"])
    half_x, half_y = skin["semi_axes_mm"]
    fat = skin["fat_thickness_mm"]
    low_z = centre[2] - skin["half_height_mm"] + 3.0  # below every bone, bowel pocket and psoas
    dy = -60.0  # anterior: away from the paraspinal muscles
    start = np.array([-250.0, centre[1] + dy, low_z])
    end = np.array([250.0, centre[1] + dy, low_z])
    outer = half_x * np.sqrt(1 - (dy / half_y) ** 2)
    inner = (half_x - fat) * np.sqrt(1 - (dy / (half_y - fat)) ** 2)
    lengths = case.material_path_lengths(start[None], end[None])[0]
    assert lengths[MATERIALS.index("air")] == pytest.approx(500 - 2 * outer, abs=1e-9)
    assert lengths[MATERIALS.index("fat")] == pytest.approx(2 * (outer - inner), abs=1e-9)
    assert lengths[MATERIALS.index("soft_tissue")] == pytest.approx(2 * inner, abs=1e-9)
    assert lengths.sum() == pytest.approx(500.0, abs=1e-9)


def test_painters_rule_on_hand_made_parts():
    # a cortical box with a CSF cylinder painted over its middle, and a fat ellipsoid underneath both
    parts = (
        Part(ellipsoid([0, 0, 0], [40, 40, 40]), "fat", 0, "soft_tissue"),
        Part(box([0, 0, 0], [10, 10, 10]), "cortical", 20, "vertebral_body"),
        Part(elliptic_cylinder([0, 0, 0], (4, 4), 50.0), "csf", 0, "canal"),
    )
    lengths = material_path_lengths(parts, np.array([[0.0, 0.0, -100.0], [-100.0, 0.0, 0.0]]),
                                    np.array([[0.0, 0.0, 100.0], [100.0, 0.0, 0.0]]))
    along_z, along_x = lengths
    assert along_z[MATERIALS.index("csf")] == pytest.approx(100.0)  # the cylinder is long: CSF all the way
    assert along_z[MATERIALS.index("air")] == pytest.approx(100.0)
    assert along_x[MATERIALS.index("csf")] == pytest.approx(8.0)
    assert along_x[MATERIALS.index("cortical")] == pytest.approx(12.0)
    assert along_x[MATERIALS.index("fat")] == pytest.approx(60.0)
    assert along_x[MATERIALS.index("air")] == pytest.approx(120.0)


def test_line_integral_matches_fine_voxel_integrals(case):
    # random segments (>= 30 mm) through the L4 pedicle region; numeric integrals of the voxelised mu volume
    centre = np.asarray(case.landmarks["L4"]["pedicle_left"]["center"])
    half = np.array([22.0, 22.0, 16.0])
    rng = np.random.default_rng(1)
    starts, ends = [], []
    while len(starts) < 100:
        a, b = centre + rng.uniform(-1, 1, (2, 3)) * (half - 2.0)
        if np.linalg.norm(b - a) >= 30.0:
            starts.append(a)
            ends.append(b)
    starts, ends = np.array(starts), np.array(ends)
    exact = case.line_integral(starts, ends)
    steps = (np.arange(3000) + 0.5) / 3000
    points = (starts[:, None, :] + steps[None, :, None] * (ends - starts)[:, None, :]).reshape(-1, 3)
    errors = {}
    for spacing in (1.0, 0.5):
        shape = tuple(int(n) for n in (2 * half / spacing + 1)[::-1])
        ct, _, _ = case.voxelize(affine_from_geometry([spacing] * 3, centre - half, None), shape)
        ijk = ct.world_to_index_points(points)
        samples = ndimage.map_coordinates(hu_to_mu(ct.voxels), ijk[:, ::-1].T, order=1).reshape(len(starts), -1)
        numeric = samples.mean(axis=1) * np.linalg.norm(ends - starts, axis=1)
        errors[spacing] = np.abs(numeric - exact) / exact
    # first-order convergence of a voxelised binary field; a few rays graze an endplate and converge slowly
    assert np.mean(errors[0.5]) < 0.01
    assert np.percentile(errors[0.5], 90) < 0.02
    assert np.mean(errors[0.5]) < 0.7 * np.mean(errors[1.0])


def test_path_lengths_add_up(other_case):
    rng = np.random.default_rng(2)
    starts = rng.uniform(-200, 200, (500, 3)) + [0, 0, 60]
    ends = rng.uniform(-200, 200, (500, 3)) + [0, 0, 60]
    lengths = other_case.material_path_lengths(starts, ends)
    assert np.allclose(lengths.sum(axis=1), np.linalg.norm(ends - starts, axis=1))
    assert np.all(lengths >= 0)
    mu = hu_to_mu(other_case.material_hu, 0.02, 1.5).astype(float)
    assert np.allclose(other_case.line_integral(starts, ends, mu_water_per_mm=0.02, bone_scale=1.5), lengths @ mu)


# ---- options and output ---------------------------------------------------------------------------------------------
def test_scale_scales_the_anatomy():
    small, normal = phantom(5, spacing_mm=3.0, scale=0.9), phantom(5, spacing_mm=3.0)

    def span(case):
        return np.linalg.norm(np.subtract(case.landmarks["L1"]["body_centroid"], case.landmarks["L5"]["body_centroid"]))

    assert span(small) == pytest.approx(0.9 * span(normal), rel=1e-9)


def test_anisotropic_spacing_and_bad_input():
    case = phantom(0, spacing_mm=(2.0, 2.5, 3.0))
    assert np.allclose(case.ct.spacing_mm, [2.0, 2.5, 3.0])
    assert case.ct.voxels.dtype == np.int16 and case.labels.voxels.dtype == np.uint8
    assert case.ct.modality == "CT" and case.labels.modality == "LABEL" and case.structures.modality == "LABEL"
    with pytest.raises(NeedleplanError, match="seed"):
        phantom(-1)
    with pytest.raises(NeedleplanError, match="spacing"):
        phantom(0, spacing_mm=0.0)
    with pytest.raises(NeedleplanError, match="direction"):
        phantom(0, direction=np.zeros((3, 3)))


def test_ground_truth_is_json(other_case):
    truth = json.loads(json.dumps(other_case.ground_truth()))
    assert truth["seed"] == 7
    assert truth["label_ids"]["L1"] == 20 and truth["label_ids"]["sacrum"] == 26
    assert truth["grid"]["size_xyz"] == list(other_case.ct.size_xyz)
    assert set(truth["landmarks"]) == {"L1", "L2", "L3", "L4", "L5", "S1", "pelvis", "skin"}
    assert truth["materials"]["cortical"]["hu"] == 1200


def test_write_nifti(tmp_path, other_case):
    pytest.importorskip("needleplan.io.files")
    paths = other_case.write(tmp_path / "case", format="nifti")
    assert all(path.exists() for path in paths.values())
    assert json.loads(paths["ground_truth"].read_text())["seed"] == 7
