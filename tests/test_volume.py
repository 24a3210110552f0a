"""Volume geometry and values, checked against answers known by construction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from needleplan import NeedleplanError, Volume
from needleplan.attenuation import MU_WATER_70KEV_PER_MM
from needleplan.errors import GeometryError
from needleplan.volume import affine_from_geometry


def rotation(axis: str, angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


OBLIQUE = rotation("z", 30) @ rotation("x", -20) @ rotation("y", 10)


def ramp_volume(affine: np.ndarray, shape=(20, 24, 28), gradient=(0.5, -1.25, 2.0), offset=7.0) -> Volume:
    """Voxels equal to a linear function of the world position: trilinear resampling must reproduce it."""
    nz, ny, nx = shape
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return Volume((world @ np.array(gradient) + offset).astype(np.float32), affine, "OT")


def test_hand_computed_point_under_rotated_direction():
    # i runs toward +y (posterior), j toward -x (right), k toward +z: a 90 degree turn about z
    affine = affine_from_geometry([2.0, 3.0, 4.0], [10.0, 20.0, 30.0], rotation("z", 90))
    vol = Volume(np.zeros((5, 6, 7), np.int16), affine)
    np.testing.assert_allclose(vol.index_to_world_points([1, 0, 0]), [10, 22, 30], atol=1e-12)
    np.testing.assert_allclose(vol.index_to_world_points([0, 1, 0]), [7, 20, 30], atol=1e-12)
    np.testing.assert_allclose(vol.index_to_world_points([2, 3, 4]), [1, 24, 46], atol=1e-12)
    np.testing.assert_allclose(vol.world_to_index_points([1, 24, 46]), [2, 3, 4], atol=1e-12)
    np.testing.assert_allclose(vol.index_to_world_vectors([1, 0, 0]), [0, 2, 0], atol=1e-12)
    np.testing.assert_allclose(vol.spacing_mm, [2, 3, 4])
    assert vol.orientation == "PRS"
    assert vol.size_xyz == (7, 6, 5)


@pytest.mark.parametrize(
    "direction, letters",
    [(np.eye(3), "LPS"), (np.diag([-1.0, -1.0, 1.0]), "RAS"),
     (np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0]], float), "PSR"),
     (np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float), "PIR")],
)
def test_orientation_letters(direction, letters):
    assert Volume(np.zeros((2, 2, 2)), affine_from_geometry([1, 1, 1], [0, 0, 0], direction)).orientation == letters


@settings(max_examples=60, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-180, 180)] * 3),
    spacing=st.tuples(*[st.floats(0.2, 5.0)] * 3),
    origin=st.tuples(*[st.floats(-500, 500)] * 3),
    points=st.lists(st.tuples(*[st.floats(-100, 100)] * 3), min_size=1, max_size=5),
)
def test_world_index_round_trip_any_oblique_grid(angles, spacing, origin, points):
    d = rotation("z", angles[0]) @ rotation("y", angles[1]) @ rotation("x", angles[2])
    vol = Volume(np.zeros((2, 2, 2)), affine_from_geometry(spacing, origin, d))
    ijk = np.array(points)
    world = vol.index_to_world_points(ijk)
    np.testing.assert_allclose(vol.world_to_index_points(world), ijk, atol=1e-8)
    # a displacement of one voxel along i has length spacing_i and direction column 0
    step = vol.index_to_world_vectors([1, 0, 0])
    np.testing.assert_allclose(np.linalg.norm(step), spacing[0], rtol=1e-10)
    np.testing.assert_allclose(step / spacing[0], d[:, 0], atol=1e-10)


def test_resample_reproduces_a_linear_field_on_an_oblique_grid():
    source = ramp_volume(affine_from_geometry([1.0, 1.2, 1.5], [-10, 5, 20], OBLIQUE))
    target_affine = affine_from_geometry([0.9, 0.9, 0.9], source.center_mm - 4.0, rotation("x", 15))
    out = source.resample(target_affine, (8, 8, 8))
    expected = ramp_volume(target_affine, shape=(8, 8, 8))
    inside = source.contains_points(out.index_to_world_points(
        np.stack(np.meshgrid(np.arange(8), np.arange(8), np.arange(8), indexing="ij")[::-1], -1).reshape(-1, 3)))
    assert inside.all(), "the target grid must lie inside the source for this check"
    np.testing.assert_allclose(out.voxels, expected.voxels, atol=2e-3)


def test_resample_one_voxel_shift_is_an_exact_copy():
    vol = Volume(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), affine_from_geometry([1, 2, 3], [0, 0, 0]))
    shifted = affine_from_geometry([1, 2, 3], [1.0, 0, 0])  # one voxel along +i
    out = vol.resample(shifted, (4, 5, 5))
    assert out.voxels.dtype == np.int16
    np.testing.assert_array_equal(out.voxels, vol.voxels[:, :, 1:])


def test_resample_fills_outside_with_air_for_ct():
    vol = Volume(np.full((3, 3, 3), 40, np.int16), affine_from_geometry([1, 1, 1], [0, 0, 0]), "CT")
    out = vol.resample(affine_from_geometry([1, 1, 1], [100, 0, 0]), (3, 3, 3))
    assert (out.voxels == -1024).all()


def test_sheared_grid_is_exact_and_orthogonalizes_a_linear_field():
    affine = affine_from_geometry([1.0, 1.0, 2.0], [0, 0, 0])
    affine[:3, 2] = [0.0, 2.0 * np.tan(np.radians(12)), 2.0]  # gantry tilt: each slice shifts posteriorly
    vol = ramp_volume(affine, shape=(12, 30, 20))
    assert not vol.is_orthogonal
    np.testing.assert_allclose(vol.index_to_world_points([0, 0, 5]), [0, 10 * np.tan(np.radians(12)), 10])
    ortho = vol.orthogonalized()
    assert ortho.is_orthogonal
    nz, ny, nx = ortho.shape
    grid = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), -1).reshape(-1, 3)
    world = ortho.index_to_world_points(grid)
    inner = vol.contains_points(world) & np.all(np.abs(vol.world_to_index_points(world)
                                                       - (np.array(vol.size_xyz) - 1) / 2)
                                                <= (np.array(vol.size_xyz) - 1) / 2 - 1, axis=1)
    expected = world @ np.array([0.5, -1.25, 2.0]) + 7.0
    values = ortho.voxels[grid[:, 2], grid[:, 1], grid[:, 0]]
    assert inner.sum() > 100
    np.testing.assert_allclose(values[inner], expected[inner], atol=2e-3)


def test_voxels_are_read_only_and_input_array_untouched():
    data = np.zeros((2, 3, 4), np.int16)
    vol = Volume(data, np.eye(4))
    with pytest.raises(ValueError):
        vol.voxels[0, 0, 0] = 5
    data[0, 0, 0] = 1  # the caller's own array stays theirs
    assert data.flags.writeable


def test_attenuation_model_and_cache():
    hu = np.array([-3024, -2048, -1000, -500, 0, 1000, 2000], np.int16).reshape(1, 1, 7)
    vol = Volume(hu, np.eye(4), "CT")
    mu = vol.attenuation()
    w = MU_WATER_70KEV_PER_MM
    np.testing.assert_allclose(mu.ravel(), [0, 0, 0, w / 2, w, 2 * w, 3 * w], rtol=1e-6)
    assert vol.attenuation() is mu
    np.testing.assert_allclose(vol.attenuation(bone_scale=2.0).ravel()[-1], 5 * w, rtol=1e-6)
    with pytest.raises(NeedleplanError):
        Volume(hu, np.eye(4), "MR").attenuation()


@pytest.mark.parametrize(
    "affine",
    [np.zeros((4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]), np.full((4, 4), np.nan),
     np.array([[1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], float),
     np.eye(3)],
)
def test_impossible_geometry_is_refused(affine):
    with pytest.raises(GeometryError):
        Volume(np.zeros((2, 2, 2)), affine)


@pytest.mark.parametrize("order", [0, 1])
def test_axis_aligned_resampling_matches_scipy(order):
    """Scales, flips and axis swaps take a separable fast path; scipy's affine_transform is the reference."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    voxels = rng.integers(-1000, 2000, (23, 19, 17)).astype(np.int16)
    source = np.array([[-1.0, 0, 0, 5], [0, 0, 1.5, 2], [0, -2.0, 0, 1], [0, 0, 0, 1]])
    volume = Volume(voxels, source, "CT")
    target = np.diag([1.25, 0.7, 1.5, 1.0])
    target[:3, 3] = [-20.0, -3.0, -30.0]
    shape = (30, 35, 25)
    m = np.linalg.inv(source) @ target
    flip = np.eye(4)[[2, 1, 0, 3]]
    m_zyx = flip @ m @ flip
    expected = ndimage.affine_transform(voxels.astype(np.float32), m_zyx[:3, :3], offset=m_zyx[:3, 3],
                                        output_shape=shape, order=order, mode="constant", cval=-1024.0,
                                        prefilter=False)
    got = volume.resample(target, shape, order=order).voxels
    assert got.dtype == np.int16
    difference = np.abs(got.astype(np.int32) - np.rint(expected).astype(np.int32))
    assert difference.max() <= (0 if order == 0 else 1)  # trilinear: float32 rounding at .5 only
    assert (got == -1024).sum() == (np.rint(expected) == -1024).sum()
