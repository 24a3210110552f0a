"""Loading the shared real data (not made by us): geometry must agree with SimpleITK's reading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

import needleplan as npl
from shared_data import SHARED_DATA

pytestmark = pytest.mark.realdata

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data folder {DATA} is absent")

DICOM_DIR = DATA / "totalseg_example_ct_dicom" / "dicom"
CT_NIFTI = DATA / "totalseg_example_abdomen_ct" / "example_ct.nii.gz"
MR_NIFTI = DATA / "sct_cervical_mri_t2" / "t2.nii.gz"
VERSE_MASK = DATA / "verse_sub-verse004_labels_only" / "sub-verse004_seg-vert_msk.nii.gz"
VERSE_CENTROIDS = DATA / "verse_sub-verse004_labels_only" / "sub-verse004_seg-subreg_ctd.json"


def sample_indices(size_xyz, count=12, seed=0):
    rng = np.random.default_rng(seed)
    corners = [(0, 0, 0), tuple(s - 1 for s in size_xyz)]
    return corners + [tuple(int(rng.integers(0, s)) for s in size_xyz) for _ in range(count)]


def assert_same_world_as_sitk(volume: npl.Volume, image: sitk.Image, tolerance_mm: float) -> None:
    assert volume.size_xyz == image.GetSize()
    for ijk in sample_indices(volume.size_xyz):
        ours = volume.index_to_world_points(np.array(ijk, float))
        theirs = np.array(image.TransformIndexToPhysicalPoint([int(v) for v in ijk]))
        np.testing.assert_allclose(ours, theirs, atol=tolerance_mm, err_msg=f"voxel {ijk}")
        i, j, k = ijk
        assert volume.voxels[k, j, i] == image.GetPixel(*[int(v) for v in ijk]), f"value at voxel {ijk}"


@needs_data
def test_compressed_unsorted_dicom_series():
    volume = npl.load(DICOM_DIR)
    assert volume.modality == "CT"
    assert volume.size_xyz == (512, 512, 20)
    np.testing.assert_allclose(volume.spacing_mm, [0.9765625, 0.9765625, 2.0], atol=1e-6)
    assert volume.orientation == "LPS"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(DICOM_DIR)))
    image = reader.Execute()
    assert_same_world_as_sitk(volume, image, tolerance_mm=0.01)
    np.testing.assert_array_equal(volume.voxels, sitk.GetArrayViewFromImage(image))
    assert -1100 < volume.voxels.min() and volume.voxels.max() < 4000  # rescaled to HU
    assert "PatientName" not in volume.metadata and "InstitutionAddress" not in volume.metadata


@needs_data
def test_dicom_slice_spacing_comes_from_positions_not_slice_thickness():
    volume = npl.load(DICOM_DIR)
    assert float(volume.metadata["SliceThickness"]) == 3.0
    assert volume.spacing_mm[2] == pytest.approx(2.0, abs=1e-6)


@needs_data
@pytest.mark.parametrize(
    "path, letters, modality",
    [(CT_NIFTI, "RAS", "CT"), (MR_NIFTI, "PSR", "MR"), (VERSE_MASK, "PIR", "LABEL")],
    ids=["ras-ct", "psr-mr", "oblique-pir-labels"],
)
def test_image_files_match_sitk_world_coordinates(path, letters, modality):
    volume = npl.load(path)
    assert volume.orientation == letters
    assert volume.modality == modality
    assert_same_world_as_sitk(volume, sitk.ReadImage(str(path)), tolerance_mm=1e-6)


@needs_data
def test_verse_mask_is_oblique_and_centroids_land_on_their_labels():
    volume = npl.load(VERSE_MASK)
    assert not np.allclose(np.abs(volume.direction), np.round(np.abs(volume.direction)), atol=1e-3)
    centroids = [c for c in json.loads(VERSE_CENTROIDS.read_text()) if "label" in c]
    assert len(centroids) == 9
    for c in centroids:
        # the centroid is given in voxel coordinates; go to world and back, then look the label up
        world = volume.index_to_world_points([c["X"], c["Y"], c["Z"]])
        i, j, k = np.rint(volume.world_to_index_points(world)).astype(int)
        assert volume.voxels[k, j, i] == c["label"], f"centroid of label {c['label']}"


@needs_data
def test_mr_keeps_its_intensities():
    volume = npl.load(MR_NIFTI)
    image = sitk.ReadImage(str(MR_NIFTI))
    np.testing.assert_array_equal(volume.voxels, sitk.GetArrayViewFromImage(image))
    with pytest.raises(npl.NeedleplanError):
        _ = volume.hu
