"""The renderer against answers known exactly: analytic line integrals, projected beads, mirror poses, needles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

import needleplan as npl
from needleplan import CArm, Display, Exposure, Needle, Volume
from needleplan.attenuation import fluoroscopy_coefficients
from needleplan.phantoms.anatomy import MATERIALS
from needleplan.volume import affine_from_geometry

MU_WATER, BONE_SCALE, MU_STEEL = fluoroscopy_coefficients()
POSES = {"AP": (0.0, 0.0), "lateral": (90.0, 0.0), "oblique+tilt": (25.0, 12.0), "right+cephalad": (-35.0, -20.0)}


@pytest.fixture(scope="module")
def case():
    return npl.phantom(seed=0)


def exact_and_bone_mm(case, carm):
    """Exact analytic line integral per pixel and the mm of bone each ray crosses."""
    ends = carm.pixel_centers_mm().reshape(-1, 3)
    starts = np.broadcast_to(carm.source_mm, ends.shape)
    lengths = case.material_path_lengths(starts, ends)
    mu = npl.attenuation.hu_to_mu(case.material_hu, MU_WATER, BONE_SCALE)
    bone = [MATERIALS.index("cortical"), MATERIALS.index("cancellous")]
    shape = carm.detector_pixels
    return (lengths @ mu).reshape(shape), lengths[:, bone].sum(axis=1).reshape(shape)


@pytest.mark.parametrize("pose", ["AP", "lateral", "oblique+tilt"])
def test_line_integrals_match_the_analytic_phantom(case, pose):
    oblique, tilt = POSES[pose]
    carm = CArm(oblique=oblique, tilt=tilt, isocenter=case.landmarks["L4"]["body_centroid"], detector_pixels=128)
    rendered = npl.render(case.ct, carm).line_integral
    exact, bone_mm = exact_and_bone_mm(case, carm)
    relative = np.abs(rendered - exact) / exact
    through_bone = bone_mm > 5.0
    # "away from edges": the exact image varies by less than 2% over the pixel's 5x5 neighbourhood
    local_range = ndimage.maximum_filter(exact, 5) - ndimage.minimum_filter(exact, 5)
    away_from_edges = local_range < 0.02 * exact
    assert through_bone.sum() > 3000 and away_from_edges.sum() > 2000
    assert np.median(relative[through_bone]) < 0.005
    assert relative[away_from_edges].max() < 0.02


@pytest.mark.parametrize("method", ["joseph", "trilinear"])
def test_interpolating_walks_agree_with_the_exact_voxel_walk(case, method):
    carm = CArm(oblique=20, tilt=8, detector_pixels=96)
    exact = npl.render(case.ct, carm, method="siddon").line_integral
    walked = npl.render(case.ct, carm, method=method, step_voxels=0.5).line_integral
    assert np.median(np.abs(walked - exact) / exact) < 0.003


def box_volume(direction: np.ndarray, spacing=(1.0, 1.25, 1.5), shape_zyx=(40, 48, 56)) -> tuple[Volume, np.ndarray]:
    """Air with a box of water whose faces lie on voxel boundaries; returns it and the box's 8 world corners."""
    hu = np.full(shape_zyx, -1000, dtype=np.int16)
    hu[8:30, 10:40, 12:44] = 0
    affine = affine_from_geometry(spacing, (-30.0, 15.0, -20.0), direction)
    corners_ijk = np.array([[i, j, k] for i in (11.5, 43.5) for j in (9.5, 39.5) for k in (7.5, 29.5)])
    return Volume(hu, affine, "CT"), corners_ijk @ affine[:3, :3].T + affine[:3, 3]


def exact_box_integrals(carm: CArm, corners_mm: np.ndarray) -> np.ndarray:
    """Chord of every pixel ray through the (parallelepiped) box, times water's attenuation."""
    ends = carm.pixel_centers_mm().reshape(-1, 3)
    start = carm.source_mm
    low_corner = corners_mm[0]
    edges = np.array([corners_mm[4] - low_corner, corners_mm[2] - low_corner, corners_mm[1] - low_corner])
    to_box = np.linalg.inv(edges.T)  # world -> unit cube coordinates
    s = to_box @ (start - low_corner)
    d = (ends - start) @ to_box.T
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (0 - s) / d, (1 - s) / d
    t0 = np.clip(np.nanmax(np.minimum(ta, tb), axis=1), 0, 1)
    t1 = np.clip(np.nanmin(np.maximum(ta, tb), axis=1), 0, 1)
    length = np.linalg.norm(ends - start, axis=1)
    return (np.maximum(t1 - t0, 0) * length * MU_WATER).reshape(carm.detector_pixels)


OBLIQUE = Rotation.from_euler("zyx", [20, -15, 10], degrees=True).as_matrix()
GANTRY_TILT_15 = np.array([[1.0, 0, 0], [0, 1, 0], [0, np.sin(np.radians(15)), np.cos(np.radians(15))]]).T
DIRECTIONS = {"LPS": np.eye(3), "RAS": np.diag([-1.0, -1.0, 1.0]),
              "PIR": np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0.0]]).T, "oblique": OBLIQUE,
              "sheared (gantry tilt)": GANTRY_TILT_15}


@pytest.mark.parametrize("storage", list(DIRECTIONS))
def test_exact_walk_is_exact_for_any_direction_cosines(storage):
    volume, corners = box_volume(DIRECTIONS[storage])
    for oblique, tilt in POSES.values():
        carm = CArm(oblique=oblique, tilt=tilt, isocenter=volume.center_mm, detector_pixels=(40, 56),
                    detector_size_mm=(180, 140))
        rendered = npl.render(volume, carm, method="siddon").line_integral
        np.testing.assert_allclose(rendered, exact_box_integrals(carm, corners), atol=2e-5)


def bead_volume(direction: np.ndarray) -> tuple[Volume, np.ndarray]:
    """Air with one dense voxel off the centre; returns it and the bead's world position."""
    hu = np.full((48, 52, 44), -1000, dtype=np.int16)
    bead_ijk = np.array([30, 17, 21])  # (i, j, k)
    hu[bead_ijk[2], bead_ijk[1], bead_ijk[0]] = 3000
    volume = Volume(hu, affine_from_geometry((0.6, 0.7, 0.8), (5.0, -10.0, 40.0), direction), "CT")
    return volume, volume.index_to_world_points(bead_ijk.astype(float))


@pytest.mark.parametrize("storage", list(DIRECTIONS))
@pytest.mark.parametrize("pose", list(POSES))
def test_a_projected_point_lands_where_a_bead_renders(storage, pose):
    volume, bead = bead_volume(DIRECTIONS[storage])
    oblique, tilt = POSES[pose]
    carm = CArm(oblique=oblique, tilt=tilt, isocenter=volume.center_mm + [4, -3, 2], detector_pixels=256,
                detector_size_mm=100)
    fluoro = npl.render(volume, carm, points={"bead": bead})
    image = fluoro.line_integral
    peak = np.unravel_index(np.argmax(image), image.shape)
    window = (slice(peak[0] - 4, peak[0] + 5), slice(peak[1] - 4, peak[1] + 5))
    weights = image[window]
    rows, cols = np.mgrid[window]
    centroid = np.array([(weights * cols).sum(), (weights * rows).sum()]) / weights.sum()
    keypoint = fluoro.keypoints["bead"]
    assert keypoint.visible
    assert np.hypot(centroid[0] - keypoint.col, centroid[1] - keypoint.row) < 0.5


@pytest.mark.parametrize("tilt", [0.0, 15.0])
@pytest.mark.parametrize("angle", [20.0, 35.0])
def test_opposite_obliques_of_a_symmetric_phantom_are_mirror_images(angle, tilt):
    half = npl.phantom(seed=1, spacing_mm=2.5).ct
    voxels = np.maximum(half.voxels, half.voxels[:, :, ::-1])  # symmetric about the volume's mid-sagittal plane
    symmetric = Volume(voxels, affine_from_geometry(half.spacing_mm, half.origin_mm, np.eye(3)), "CT")
    left = npl.render(symmetric, CArm(oblique=angle, tilt=tilt), size=96).line_integral
    right = npl.render(symmetric, CArm(oblique=-angle, tilt=tilt), size=96).line_integral
    assert np.abs(left).max() > 1.0
    np.testing.assert_allclose(right, left[:, ::-1], rtol=1e-4, atol=1e-4)
    assert not np.allclose(left, left[:, ::-1], rtol=1e-2)  # the oblique view itself is not symmetric


@pytest.fixture(scope="module")
def water_cube():
    return Volume(np.zeros((60, 60, 60), dtype=np.int16), affine_from_geometry((1, 1, 1), (-30, -30, -30), np.eye(3)))


def needle_pixels(fluoro_with, fluoro_without) -> np.ndarray:
    return (fluoro_with.line_integral - fluoro_without.line_integral) > 1e-6


def test_needle_along_the_view_direction_is_a_dot(water_cube):
    direction = np.array([0.3, -0.8, 0.25])
    needle = Needle.from_direction([2.0, 5.0, -3.0], direction, 80.0, gauge=22)
    carm = CArm.coaxial(needle.direction, isocenter=needle.tip_mm, detector_pixels=256, detector_size_mm=100)
    plain = npl.render(water_cube, carm)
    fluoro = npl.render(water_cube, carm, needles=[needle])
    dot = needle_pixels(fluoro, plain)
    rows, cols = np.nonzero(dot)
    tip = fluoro.keypoints["needle.tip"]
    hub = fluoro.keypoints["needle.hub"]
    assert (tip.col, tip.row) == (pytest.approx(hub.col), pytest.approx(hub.row))
    # the dot is the needle's cross-section, magnified: radius 0.36 mm x (SID / depth) over a 0.39 mm pixel
    radius_px = needle.diameter_mm / 2 * carm.source_to_detector_mm / tip.depth_mm / carm.pixel_mm[0]
    assert np.hypot(cols - tip.col, rows - tip.row).max() < radius_px + 1.0
    # down the barrel the ray crosses the whole needle length of steel
    assert fluoro.line_integral[dot].max() - plain.line_integral[dot].max() == pytest.approx(80.0 * MU_STEEL, rel=0.02)


def test_needle_across_the_view_is_a_line_of_the_right_length(water_cube):
    carm = CArm(oblique=30, tilt=10, isocenter=[0.0, 0.0, 0.0], detector_pixels=256, detector_size_mm=200)
    u, v, _ = carm.rotation
    across = (u + v) / np.sqrt(2)  # in the plane through the isocentre parallel to the detector
    needle = Needle(tip_mm=20 * across, hub_mm=-20 * across, gauge=20)
    plain = npl.render(water_cube, carm)
    fluoro = npl.render(water_cube, carm, needles=[needle])
    rows, cols = np.nonzero(needle_pixels(fluoro, plain))
    expected_px = 40.0 * carm.magnification / carm.pixel_mm[0]
    extent = np.hypot(cols - cols.mean(), rows - rows.mean())
    projected_axis = np.array([1.0, 1.0]) / np.sqrt(2)
    along = (cols - cols.mean()) * projected_axis[0] + (rows - rows.mean()) * projected_axis[1]
    assert along.max() - along.min() == pytest.approx(expected_px, abs=1.5)
    assert extent.max() <= expected_px / 2 + 1.5
    # the tip keypoint sits at the end of the rendered line
    tip = fluoro.keypoints["needle.tip"]
    ends = np.hypot(cols - tip.col, rows - tip.row)
    assert ends.min() < 1.0
    # chord through the middle of a 0.908 mm steel rod seen side-on, near its diameter
    peak = (fluoro.line_integral - plain.line_integral).max()
    assert peak == pytest.approx(needle.diameter_mm * MU_STEEL, rel=0.1)


def test_labels_project_to_path_lengths_and_masks(case):
    carm = CArm(detector_pixels=128)
    fluoro = npl.render(case.ct, carm, labels=case.labels, label_ids=[22, 26])
    assert fluoro.label_ids == (22, 26)
    assert fluoro.label_path_mm.shape == (2, 128, 128)
    masks = fluoro.label_masks(min_path_mm=1.0)
    l3 = masks[22]
    assert 100 < l3.sum() < 128 * 128 / 4
    # the mask's centroid is near the projection of L3's body-and-arch centroid (2 px at this size)
    labels = case.labels.voxels
    k, j, i = np.nonzero(labels == 22)
    centroid = case.labels.index_to_world_points(np.stack([i, j, k], axis=1).mean(axis=0))
    projected = fluoro.carm.project(centroid)
    rows, cols = np.nonzero(l3)
    weights = fluoro.label_path_mm[0][l3]
    assert np.hypot(np.average(cols, weights=weights) - projected.col[0],
                    np.average(rows, weights=weights) - projected.row[0]) < 2.0


def test_label_path_lengths_are_exact_chords_for_a_box():
    volume, corners = box_volume(DIRECTIONS["oblique"])
    labels = Volume((volume.voxels == 0).astype(np.uint8) * 7, volume.index_to_world, "LABEL")
    carm = CArm(oblique=10, tilt=5, isocenter=volume.center_mm, detector_pixels=(40, 56), detector_size_mm=(180, 140))
    fluoro = npl.render(volume, carm, labels=labels)
    assert fluoro.label_ids == (7,)
    chord_mm = exact_box_integrals(carm, corners) / MU_WATER
    inside = chord_mm > 5
    relative = np.abs(fluoro.label_path_mm[0][inside] - chord_mm[inside]) / chord_mm[inside]
    assert np.median(relative) < 0.02


def test_display_is_dark_for_bone_and_respects_window_gamma_invert(case):
    carm = CArm(detector_pixels=96)
    fluoro = npl.render(case.ct, carm)
    brightest, darkest = np.unravel_index(np.argmax(fluoro.display), (96, 96)), np.unravel_index(
        np.argmin(fluoro.display), (96, 96))
    assert fluoro.line_integral[darkest] > fluoro.line_integral[brightest]
    np.testing.assert_allclose(fluoro.intensity, np.exp(-fluoro.line_integral), rtol=1e-5)
    fixed = npl.render(case.ct, carm, display=Display(window=(2.0, 6.0)))
    expected = np.clip((6.0 - fixed.line_integral) / 4.0, 0, 1)
    np.testing.assert_allclose(fixed.display, expected, atol=1e-5)
    inverted = npl.render(case.ct, carm, display=Display(window=(2.0, 6.0), invert=True, gamma=2.0))
    np.testing.assert_allclose(inverted.display, (1 - expected) ** 0.5, atol=1e-4)


def test_collimation_blacks_out_the_outside(case):
    fluoro = npl.render(case.ct, CArm(collimator_diameter_mm=200, detector_pixels=64))
    outside = ~fluoro.field
    assert outside[0, 0] and not outside[32, 32]
    assert np.all(np.isnan(fluoro.line_integral[outside])) and np.all(fluoro.display[outside] == 0)
    assert np.all(np.isfinite(fluoro.line_integral[~outside]))


def test_quantum_noise_is_poisson_and_reproducible(water_cube):
    exposure = Exposure(photons_per_pixel=1000, seed=3)
    carm = CArm(detector_pixels=64, detector_size_mm=60)
    noisy = npl.render(water_cube, carm, exposure=exposure)
    again = npl.render(water_cube, carm, exposure=exposure)
    clean = npl.render(water_cube, carm)
    np.testing.assert_array_equal(noisy.intensity, again.intensity)
    counts = noisy.intensity * 1000
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    expected = clean.intensity * 1000
    z = (counts - expected) / np.sqrt(expected)
    assert abs(z.mean()) < 0.1 and 0.85 < z.std() < 1.15


def test_scatter_and_blur_smooth_and_lift_the_signal(case):
    carm = CArm(detector_pixels=96)
    clean = npl.render(case.ct, carm)
    blurred = npl.render(case.ct, carm, exposure=Exposure(blur_px=2.0, scatter_fraction=0.3))
    assert blurred.intensity.mean() > clean.intensity.mean() * 1.1
    assert np.abs(np.diff(blurred.intensity, axis=1)).mean() < np.abs(np.diff(clean.intensity, axis=1)).mean()


def test_volume_and_inputs_are_not_modified(case):
    before = case.ct.voxels.copy()
    npl.render(case.ct, CArm(detector_pixels=32), labels=case.labels)
    np.testing.assert_array_equal(case.ct.voxels, before)


def test_bad_inputs_get_clear_errors(case):
    mr = Volume(np.zeros((8, 8, 8)), np.eye(4), "MR")
    with pytest.raises(npl.NeedleplanError, match="CT"):
        npl.render(mr)
    with pytest.raises(ValueError, match="method"):
        npl.render(case.ct, method="magic")
    with pytest.raises(ValueError, match="backend"):
        npl.render(case.ct, backend="cuda")
    with pytest.raises(npl.NeedleplanError, match="fractional"):
        npl.render(case.ct, CArm(detector_pixels=16), labels=Volume(np.full((4, 4, 4), 0.5), np.eye(4), "LABEL"))
    with pytest.raises(ValueError, match="gauge"):
        Needle([0, 0, 0], [0, 0, 10], gauge=19)
    with pytest.raises(ValueError):
        Needle([0, 0, 0], [0, 0, 0])
