"""The renderer's shortcuts change nothing: needle chords on a window, label maps cropped to their labels."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import needleplan as npl
from needleplan import CArm, Needle, Volume
from needleplan.fluoro.backends import get_backend
from needleplan.fluoro.needles import _cylinder_chords, _pixel_window, needle_chords_mm
from needleplan.fluoro.rays import DetectorRays
from needleplan.volume import affine_from_geometry

render_module = importlib.import_module("needleplan.fluoro.render")  # the package exports render() the function

ISOCENTER = np.array([5.0, -10.0, 20.0])
OBLIQUE_CARM = CArm(oblique=25, tilt=12, isocenter=ISOCENTER, detector_pixels=(200, 240))
AP_CARM = CArm(isocenter=ISOCENTER, detector_pixels=256)
OBLIQUE_GRID = Rotation.from_euler("xyz", [20, -15, 30], degrees=True).as_matrix()


def full_image_chords(carm: CArm, needle: Needle) -> np.ndarray:
    """The chords of every pixel ray, computed on the whole image (the reference)."""
    source = carm.source_mm
    rays = carm.pixel_centers_mm() - source
    ray_length = np.linalg.norm(rays, axis=-1)
    return _cylinder_chords(source, rays / ray_length[..., None], ray_length, needle)


def coaxial_carm(direction: np.ndarray, off_axis_deg: float) -> CArm:
    """A C-arm looking down ``direction`` turned by ``off_axis_deg``: the needle is seen as a dot or a stub."""
    carm = CArm.coaxial(direction, isocenter=ISOCENTER, detector_pixels=256, detector_size_mm=100)
    return carm.replace(oblique=carm.oblique + off_axis_deg)


NEEDLE_CASES = {
    "oblique, oblique C-arm": (OBLIQUE_CARM, Needle(ISOCENTER + [30, 40, -20], ISOCENTER + [-60, -50, 40])),
    "nearly coaxial: a dot": (coaxial_carm([0.3, -0.8, 0.5], 0.2),
                              Needle.from_direction(ISOCENTER, [0.3, -0.8, 0.5], 80.0)),
    "exactly coaxial": (coaxial_carm([0.0, 0.0, -1.0], 0.0), Needle.from_direction(ISOCENTER, [0, 0, -1], 80.0)),
    "partly outside the image": (OBLIQUE_CARM, Needle(ISOCENTER + [20, 0, 10], ISOCENTER + [400, 30, -150])),
    "crossing behind the source": (AP_CARM, Needle(ISOCENTER + [10, 0, 5], ISOCENTER + [40, -900, 30])),
    # the tilted end disc spreads further than radius * SID / depth: a pad of that plus 2 pixels would miss rays
    "end 3 mm from the source, wide detector": (OBLIQUE_CARM.replace(detector_pixels=256, detector_size_mm=1000),
                                                Needle([-240.5, -539.7, 143.4], [-210.0, -471.2, 111.9], gauge=16)),
    "thick gauge 16, oblique C-arm": (OBLIQUE_CARM, Needle(ISOCENTER + [-5, 60, 30], ISOCENTER + [15, -70, -25],
                                                           gauge=16)),
    "outside the image": (AP_CARM, Needle(ISOCENTER + [300, 0, 0], ISOCENTER + [300, 50, 40])),
}


@pytest.mark.parametrize("case", NEEDLE_CASES)
def test_needle_chords_on_a_window_equal_the_whole_image_computation(case):
    carm, needle = NEEDLE_CASES[case]
    windowed = needle_chords_mm(carm, [needle])
    full = full_image_chords(carm, needle)
    assert windowed.shape == (1, *carm.detector_pixels)
    np.testing.assert_allclose(windowed[0], full, rtol=0, atol=1e-9)
    assert (full > 0).any() == (case != "outside the image")


def test_needle_chords_of_several_needles_keep_their_order():
    carm, first = NEEDLE_CASES["oblique, oblique C-arm"]
    _, second = NEEDLE_CASES["thick gauge 16, oblique C-arm"]
    chords = needle_chords_mm(carm, [first, second])
    np.testing.assert_allclose(chords, [full_image_chords(carm, first), full_image_chords(carm, second)],
                               rtol=0, atol=1e-9)
    assert needle_chords_mm(carm, []).shape == (0, *carm.detector_pixels)


def test_a_usual_needle_is_computed_on_a_small_window_and_one_behind_the_source_on_the_whole_image():
    rows, cols = _pixel_window(*NEEDLE_CASES["nearly coaxial: a dot"])
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < 0.01 * 256 * 256
    carm, needle = NEEDLE_CASES["crossing behind the source"]
    assert _pixel_window(carm, needle) == (slice(0, 256), slice(0, 256))


# ---- labels cropped to their bounding box ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantoms():
    """A small phantom on an LPS grid and one on an oblique grid."""
    return {"LPS": npl.phantom(seed=0, spacing_mm=2.5), "oblique": npl.phantom(seed=0, spacing_mm=2.5,
                                                                                direction=OBLIQUE_GRID)}


def uncropped_path_lengths(labels: Volume, ids: tuple[int, ...], carm: CArm) -> np.ndarray:
    """The backend's kernel run on the whole label map (the reference)."""
    channels = render_module._channel_volume(labels, ids)
    rays = DetectorRays.from_carm(carm, labels.world_to_index)
    return get_backend("cpu").label_path_lengths(channels, len(ids), rays)


@pytest.mark.parametrize("grid", ["LPS", "oblique"])
@pytest.mark.parametrize("pose", [(0.0, 0.0), (25.0, 12.0), (90.0, 0.0), (-40.0, -25.0)])
@pytest.mark.parametrize("label_ids", [None, (22,), (26, 20)])
def test_cropped_label_projection_equals_the_whole_label_map(phantoms, grid, pose, label_ids):
    case = phantoms[grid]
    carm = CArm(oblique=pose[0], tilt=pose[1], isocenter=case.landmarks["L3"]["body_centroid"], detector_pixels=96)
    fluoro = npl.render(case.ct, carm, labels=case.labels, label_ids=label_ids)
    reference = uncropped_path_lengths(case.labels, fluoro.label_ids, fluoro.carm)
    assert reference.max() > 10.0
    np.testing.assert_allclose(fluoro.label_path_mm, reference, rtol=0, atol=1e-4)


def label_blobs(direction: np.ndarray) -> Volume:
    """An oblique label map: a blob inside, one touching the grid's first and last k slices, one at a corner."""
    voxels = np.zeros((30, 36, 40), dtype=np.int16)
    voxels[10:18, 12:20, 15:27] = 3
    voxels[:, 25:30, 5:9] = 300
    voxels[0:4, 0:5, 36:40] = 7
    return Volume(voxels, affine_from_geometry((1.5, 2.0, 2.5), (-30.0, 10.0, -20.0), direction), "OT")


@pytest.mark.parametrize("pose", [(0.0, 0.0), (30.0, 15.0), (90.0, 0.0), (-60.0, 40.0)])
@pytest.mark.parametrize("label_ids", [(3,), (7, 300), (3, 300, 7)])
def test_cropped_oblique_label_map_gives_the_same_path_lengths(pose, label_ids):
    labels = label_blobs(OBLIQUE_GRID)
    carm = CArm(oblique=pose[0], tilt=pose[1], isocenter=labels.center_mm, detector_pixels=80,
                detector_size_mm=150)
    projected_ids, path_mm = render_module._project_labels(labels, label_ids, carm, get_backend("cpu"))
    assert projected_ids == label_ids
    reference = uncropped_path_lengths(labels, label_ids, carm)
    assert (reference > 0).sum(axis=(1, 2)).min() > 10
    np.testing.assert_allclose(path_mm, reference, rtol=0, atol=1e-4)


def test_the_crop_keeps_each_voxel_at_its_world_position():
    labels = label_blobs(OBLIQUE_GRID)
    cropped = render_module.crop_to_labels(labels, (3,))
    assert cropped.shape == (10, 10, 14) and cropped.modality == "LABEL"
    np.testing.assert_array_equal(cropped.voxels, labels.voxels[9:19, 11:21, 14:28])
    np.testing.assert_allclose(cropped.index_to_world[:3, :3], labels.index_to_world[:3, :3], rtol=0, atol=0)
    ijk = np.array([[0.0, 0.0, 0.0], [13.0, 9.0, 9.0], [2.5, -0.5, 7.25]])
    np.testing.assert_allclose(cropped.index_to_world_points(ijk), labels.index_to_world_points(ijk + [14, 11, 9]),
                               rtol=0, atol=1e-9)
    touching = render_module.crop_to_labels(labels, (300,))
    assert touching.shape == (30, 7, 6)  # no margin beyond the grid's first and last k slices


def test_labels_that_are_absent_project_to_zero():
    labels = label_blobs(OBLIQUE_GRID)
    carm = CArm(isocenter=labels.center_mm, detector_pixels=32)
    ids, path_mm = render_module._project_labels(labels, (5, 3), carm, get_backend("cpu"))
    assert ids == (5, 3) and not path_mm[0].any() and path_mm[1].any()
    assert render_module.crop_to_labels(labels, (5,)).shape == (1, 1, 1)


def test_the_crop_and_its_channels_are_computed_once_per_label_map():
    labels = label_blobs(np.eye(3))
    carm = CArm(isocenter=labels.center_mm, detector_pixels=32)
    first = render_module._project_labels(labels, (3, 7), carm, get_backend("cpu"))[1]
    cropped = labels.derived(("label_crop", (3, 7)), lambda volume: pytest.fail("the crop was not cached"))
    cropped.derived(("label_channels", (3, 7)), lambda volume: pytest.fail("the channels were not cached"))
    np.testing.assert_array_equal(render_module._project_labels(labels, (3, 7), carm, get_backend("cpu"))[1], first)
