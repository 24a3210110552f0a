"""C-arm geometry against answers worked out by hand (DESIGN.md conventions: prone patient, LPS, degrees)."""

from __future__ import annotations

import numpy as np
import pytest

from needleplan import CArm

ISO = np.array([10.0, -20.0, 30.0])
SID, SOD = 1000.0, 600.0
PIXEL = 300.0 / 512
MAG = SID / SOD
CENTER = (512 - 1) / 2


def ap() -> CArm:
    return CArm(isocenter=ISO, source_to_detector_mm=SID, source_to_isocenter_mm=SOD, detector_size_mm=300,
                detector_pixels=512)


def test_ap_source_is_anterior_and_detector_posterior():
    carm = ap()
    np.testing.assert_allclose(carm.source_mm, ISO + [0, -SOD, 0])
    np.testing.assert_allclose(carm.detector_center_mm, ISO + [0, SID - SOD, 0])
    np.testing.assert_allclose(carm.view_direction, [0, -1, 0])


def test_ap_projection_by_hand():
    carm = ap()
    left, superior = ISO + [10, 0, 0], ISO + [0, 0, 10]
    projection = carm.project(np.array([ISO, left, superior]))
    # the isocentre lands on the detector centre at depth SOD
    assert projection.col[0] == pytest.approx(CENTER) and projection.row[0] == pytest.approx(CENTER)
    assert projection.depth_mm[0] == pytest.approx(SOD)
    # patient's left is on the image's left; head is up; 10 mm at the isocentre is 10 * SID / SOD on the panel
    assert projection.col[1] == pytest.approx(CENTER - 10 * MAG / PIXEL)
    assert projection.row[1] == pytest.approx(CENTER)
    assert projection.row[2] == pytest.approx(CENTER - 10 * MAG / PIXEL)


def test_a_point_nearer_the_source_is_magnified_more():
    carm = ap()
    near_source = ISO + [10, -300, 0]  # 300 mm from the source
    projection = carm.project(near_source)
    assert projection.depth_mm[0] == pytest.approx(300.0)
    assert projection.col[0] == pytest.approx(CENTER - 10 * SID / 300 / PIXEL)


def test_left_lateral_and_oblique_sign():
    lateral = CArm.lateral("left", isocenter=ISO)
    assert lateral.oblique == 90
    np.testing.assert_allclose(lateral.detector_center_mm - ISO, [400, 0, 0], atol=1e-9)
    posterior = lateral.project(ISO + [0, 10, 0])
    assert posterior.col[0] > CENTER  # the back is to the image's right in a left lateral
    oblique = CArm(oblique=30, isocenter=ISO)
    direction = oblique.beam_direction
    np.testing.assert_allclose(direction, [np.sin(np.radians(30)), np.cos(np.radians(30)), 0], atol=1e-12)
    assert CArm.oblique_view("right", 30).oblique == -30


def test_caudal_tilt_moves_the_detector_toward_the_feet():
    carm = CArm(tilt=20, isocenter=ISO)
    assert carm.detector_center_mm[2] < ISO[2] < carm.source_mm[2]
    np.testing.assert_allclose(carm.beam_direction, [0, np.cos(np.radians(20)), -np.sin(np.radians(20))])


def test_compound_pose_frame_is_orthonormal_and_matches_formula():
    a, b = np.radians(25), np.radians(-12)
    carm = CArm(oblique=25, tilt=-12, isocenter=ISO)
    rotation = carm.rotation
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotation[2], [np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), -np.sin(b)])
    assert np.linalg.det(rotation) == pytest.approx(-1.0)  # mirrored: the image is seen from behind the panel


@pytest.mark.parametrize("pose", [(0, 0), (25, 10), (-40, -15), (90, 0), (10, 60)])
def test_pixel_centres_project_onto_their_own_pixels(pose):
    carm = CArm(oblique=pose[0], tilt=pose[1], isocenter=ISO, detector_pixels=(48, 64), detector_size_mm=(320, 240))
    centres = carm.pixel_centers_mm()
    projection = carm.project(centres.reshape(-1, 3))
    rows, cols = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(projection.col, cols.ravel(), atol=1e-7)
    np.testing.assert_allclose(projection.row, rows.ravel(), atol=1e-7)
    np.testing.assert_allclose(projection.depth_mm, SID, rtol=1e-12)
    # every point along a pixel's ray projects onto that pixel
    source, directions = carm.pixel_rays()
    on_ray = source + 700.0 * directions[5, 7]
    again = carm.project(on_ray)
    assert (again.col[0], again.row[0]) == (pytest.approx(7), pytest.approx(5))


def test_rectangular_pixels_and_matrix_form():
    carm = CArm(isocenter=ISO, detector_pixels=(100, 200), detector_size_mm=(300, 200))
    assert carm.pixel_mm == (1.5, 2.0)
    matrix = carm.projection_matrix
    assert matrix.shape == (3, 4)
    point = ISO + [3.0, 4.0, 5.0]
    w = matrix @ np.append(point, 1)
    projection = carm.project(point)
    assert w[0] / w[2] == pytest.approx(projection.col[0]) and w[1] / w[2] == pytest.approx(projection.row[0])


@pytest.mark.parametrize("direction", [[0, -1, 0], [0.3, -0.9, 0.2], [-0.5, -0.5, -0.4], [1, 0, 0]])
def test_coaxial_view_looks_down_the_needle(direction):
    carm = CArm.coaxial(direction, isocenter=ISO)
    unit = np.asarray(direction) / np.linalg.norm(direction)
    np.testing.assert_allclose(carm.view_direction, unit, atol=1e-12)
    # two points along the needle project onto the same pixel
    projection = carm.project(np.array([ISO, ISO + 40 * unit]))
    assert projection.col[0] == pytest.approx(projection.col[1], abs=1e-9)
    assert projection.row[0] == pytest.approx(projection.row[1], abs=1e-9)


def test_visibility_and_collimation():
    carm = ap().replace(collimator_diameter_mm=200.0)
    mask = carm.field_mask()
    assert mask[256, 256] and not mask[0, 0]
    assert mask.sum() == pytest.approx(np.pi * (100 / PIXEL) ** 2, rel=0.01)
    corner = carm.pixel_centers_mm()[0, 0]
    behind_source = carm.source_mm - 10 * carm.beam_direction
    projection = carm.project(np.array([ISO, corner, behind_source, ISO + [500, 0, 0]]))
    assert carm.on_detector(projection).tolist() == [True, False, False, False]
    assert ap().on_detector(ap().project(corner)).tolist() == [True]


def test_table_offset_moves_the_isocentre_the_other_way():
    carm = ap().replace(table_offset_mm=[0, 0, 50])
    np.testing.assert_allclose(carm.source_mm, ISO + [0, -SOD, -50])


def test_words():
    assert CArm().describe() == "AP"
    assert CArm(oblique=25, tilt=10).describe() == "25 degrees left oblique, 10 degrees caudal"
    assert CArm(oblique=-30, tilt=-15).describe() == "30 degrees right oblique, 15 degrees cephalad"


@pytest.mark.parametrize("bad", [dict(tilt=95), dict(oblique=float("nan")), dict(source_to_isocenter_mm=1200),
                                 dict(detector_pixels=0), dict(detector_pixels=2.5), dict(detector_size_mm=-3),
                                 dict(isocenter=[1, 2]), dict(collimator_diameter_mm=0)])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        CArm(**bad)


def test_unposed_carm_asks_for_an_isocentre():
    with pytest.raises(ValueError, match="isocenter"):
        _ = CArm().source_mm
