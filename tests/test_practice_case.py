"""The volume practice shots render from: cut to the patient and on voxels of at least 1.25 mm, in the same place."""

from __future__ import annotations

import numpy as np
import pytest

import needleplan as npl
from needleplan.errors import NeedleplanError
from needleplan.practice.case import crop_to_body, prepare_case, shot_volume
from needleplan.volume import Volume


def _rotation(z_deg: float, x_deg: float) -> np.ndarray:
    a, b = np.radians(z_deg), np.radians(x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


@pytest.fixture(scope="module")
def oblique_phantom():
    return npl.phantom(seed=1, spacing_mm=1.0, direction=_rotation(20, 10))


@pytest.mark.slow
def test_cutting_away_air_leaves_the_image_unchanged(oblique_phantom):
    ct = oblique_phantom.ct
    padded = Volume(np.pad(ct.voxels, 12, constant_values=-1024), _shifted(ct, -12), "CT")
    cut = crop_to_body(padded)
    assert np.prod(cut.shape) < np.prod(padded.shape)
    carm = npl.CArm(oblique=30, tilt=-10, isocenter=oblique_phantom.landmarks["L4"]["body_centroid"],
                    detector_pixels=128)
    whole, part = npl.render(padded, carm).line_integral, npl.render(cut, carm).line_integral
    assert np.nanmax(np.abs(whole - part)) < 1e-4 * np.nanmax(whole)


def _shifted(ct: Volume, voxels: int) -> np.ndarray:
    affine = ct.index_to_world.copy()
    affine[:3, 3] = ct.index_to_world_points(np.full(3, float(voxels)))
    return affine


def test_the_shot_volume_is_coarser_but_in_the_same_place(oblique_phantom):
    ct = oblique_phantom.ct
    shots = shot_volume(ct)
    assert np.allclose(shots.spacing_mm, 1.25)
    direction = ct.index_to_world[:3, :3] / ct.spacing_mm
    assert np.allclose(shots.index_to_world[:3, :3] / shots.spacing_mm, direction)  # the oblique axes are kept
    centre = oblique_phantom.landmarks["L4"]["body_centroid"]
    carm = npl.CArm(oblique=25, tilt=5, isocenter=centre, detector_pixels=256)
    fine, coarse = npl.render(ct, carm).line_integral, npl.render(shots, carm).line_integral
    inside = np.isfinite(fine) & np.isfinite(coarse)
    assert np.corrcoef(fine[inside], coarse[inside])[0, 1] > 0.995
    rows, cols = np.mgrid[:256, :256]
    weights = np.where(inside, fine, 0.0), np.where(inside, coarse, 0.0)
    centroids = [np.array([(w * cols).sum(), (w * rows).sum()]) / w.sum() for w in weights]
    assert np.linalg.norm(centroids[0] - centroids[1]) < 0.2  # pixels: nothing moved


def test_coarse_scans_are_only_cut(oblique_phantom):
    ct = npl.phantom(seed=1, spacing_mm=2.0).ct
    shots = shot_volume(ct)
    assert np.allclose(shots.spacing_mm, 2.0) and shots.shape[0] <= ct.shape[0]


def test_a_scan_of_air_is_refused():
    air = Volume(np.full((8, 8, 8), -1000, dtype=np.int16), np.eye(4), "CT")
    with pytest.raises(NeedleplanError, match="nothing denser than air"):
        crop_to_body(air)


def test_a_task_without_a_safe_path_or_a_bad_procedure_is_refused():
    with pytest.raises(NeedleplanError, match="unknown procedure"):
        prepare_case(None, "vertebroplasty")
    with pytest.raises(NeedleplanError, match="side must be"):
        prepare_case(None, "tfesi", "L4", "middle")
