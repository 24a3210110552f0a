"""Writing DICOM and reading it back: oblique, tilted, multi-frame, DICOMDIR and multi-series inputs."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import needleplan as npl
from needleplan import NeedleplanWarning
from needleplan.errors import SeriesNotFoundError
from needleplan.io import write_ct_series
from needleplan.volume import affine_from_geometry

from test_volume import OBLIQUE


def ct_volume(shape=(9, 11, 13), affine=None, seed=0) -> npl.Volume:
    rng = np.random.default_rng(seed)
    voxels = rng.integers(-1024, 3000, size=shape).astype(np.int16)
    if affine is None:
        affine = affine_from_geometry([0.8, 0.9, 2.5], [-120.25, 33.5, -410.0], OBLIQUE)
    return npl.Volume(voxels, affine, "CT")


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_oblique_series_round_trip_is_exact(tmp_path):
    original = ct_volume()
    write_ct_series(original, tmp_path / "ct")
    before = tree_digest(tmp_path / "ct")
    loaded = npl.load(tmp_path / "ct")
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    np.testing.assert_allclose(loaded.index_to_world, original.index_to_world, atol=1e-6)
    assert tree_digest(tmp_path / "ct") == before, "loading must not modify the input"


def test_written_files_carry_no_identity(tmp_path):
    files = write_ct_series(ct_volume(), tmp_path / "ct")
    ds = pydicom.dcmread(files[0])
    assert str(ds.PatientName) == "Anonymous"
    assert ds.PatientIdentityRemoved == "YES" and ds.DeidentificationMethod  # PS3.15 says so explicitly
    for tag in ("PatientBirthDate", "AccessionNumber", "InstitutionName", "OtherPatientIDs"):
        assert str(ds.get(tag, "")) == ""


def test_float_volume_round_trips_within_rescale_precision(tmp_path):
    rng = np.random.default_rng(1)
    volume = npl.Volume(rng.normal(0, 300, (4, 5, 6)).astype(np.float32), affine_from_geometry([1, 1, 1], [0, 0, 0]))
    write_ct_series(volume, tmp_path / "ct")
    loaded = npl.load(tmp_path / "ct")
    slope = (volume.voxels.max() - volume.voxels.min()) / 65000
    np.testing.assert_allclose(loaded.voxels, volume.voxels, atol=slope)


def test_gantry_tilted_series_keeps_the_exact_sheared_grid(tmp_path):
    affine = affine_from_geometry([0.7, 0.7, 3.0], [-180, -150, 20])
    affine[:3, 2] = [0.0, 3.0 * np.tan(np.radians(15)), 3.0]
    original = ct_volume(affine=affine)
    write_ct_series(original, tmp_path / "ct")
    with pytest.warns(NeedleplanWarning, match="gantry tilt of 15.00 degrees"):
        loaded = npl.load(tmp_path / "ct")
    np.testing.assert_allclose(loaded.index_to_world, affine, atol=1e-6)
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    assert loaded.metadata["gantry_tilt_deg"] == pytest.approx(15.0, abs=1e-4)


def enhanced_ct(path: Path, volume: npl.Volume) -> None:
    """A single Enhanced CT multi-frame file holding the volume (frames stored in reverse order)."""
    d = volume.direction
    sx, sy, _ = volume.spacing_mm
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", generate_uid(), 3
    nz, ny, nx = volume.shape
    ds.NumberOfFrames, ds.Rows, ds.Columns = nz, ny, nx
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = [f"{sy:.10g}", f"{sx:.10g}"]
    orientation.ImageOrientationPatient = [f"{v:.10g}" for v in np.concatenate([d[:, 0], d[:, 1]])]
    transform.RescaleSlope, transform.RescaleIntercept = 1, -2048
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in reversed(range(nz)):
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [f"{v:.10g}" for v in volume.index_to_world_points([0, 0, k])]
        item.PlanePositionSequence = Sequence([position])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = (volume.voxels[::-1].astype(np.int32) + 2048).astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_multiframe_file(tmp_path):
    original = ct_volume()
    enhanced_ct(tmp_path / "enhanced.dcm", original)
    loaded = npl.load(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    np.testing.assert_allclose(loaded.index_to_world, original.index_to_world, atol=1e-6)


def test_dicomdir_lists_the_series(tmp_path):
    from pydicom.fileset import FileSet

    original = ct_volume()
    files = write_ct_series(original, tmp_path / "flat")
    fileset = FileSet()
    for file in files:
        fileset.add(file)
    fileset.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert dicomdir.is_file()
    for target in (dicomdir, tmp_path / "media"):
        loaded = npl.load(target)
        np.testing.assert_array_equal(loaded.voxels, original.voxels)
        np.testing.assert_allclose(loaded.index_to_world, original.index_to_world, atol=1e-6)


def test_several_series_pick_the_largest_ct_and_allow_choosing(tmp_path):
    small = ct_volume(shape=(5, 11, 13), seed=1)
    large = ct_volume(shape=(12, 11, 13), seed=2)
    write_ct_series(small, tmp_path / "study" / "a", series_number=7)
    write_ct_series(large, tmp_path / "study" / "b", series_number=8)
    mr_files = write_ct_series(ct_volume(shape=(20, 11, 13), seed=3), tmp_path / "study" / "c", series_number=9)
    for file in mr_files:  # turn the biggest series into an MR: CT must still win
        ds = pydicom.dcmread(file)
        ds.Modality = "MR"
        ds.save_as(file)
    with pytest.warns(NeedleplanWarning, match="3 image series"):
        chosen = npl.load(tmp_path / "study")
    np.testing.assert_array_equal(chosen.voxels, large.voxels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_number = npl.load(tmp_path / "study", series=7)
        np.testing.assert_array_equal(by_number.voxels, small.voxels)
        uid = pydicom.dcmread(mr_files[0]).SeriesInstanceUID
        mr = npl.load(tmp_path / "study", series=uid)
    assert mr.modality == "MR"
    with pytest.raises(SeriesNotFoundError, match="available"):
        npl.load(tmp_path / "study", series=99)


def test_oblique_phantom_through_dicom_keeps_voxels_geometry_and_landmark_labels(tmp_path):
    from needleplan.phantoms import VERTEBRA_LABELS

    case = npl.phantom(seed=3, spacing_mm=2.5, direction=OBLIQUE)
    case.write(tmp_path / "case", format="dicom")
    ct = npl.load(tmp_path / "case" / "ct")
    labels = npl.load(tmp_path / "case" / "labels.nii.gz", modality="LABEL")
    np.testing.assert_array_equal(ct.voxels, case.ct.voxels)
    np.testing.assert_allclose(ct.index_to_world, case.ct.index_to_world, atol=1e-5)
    np.testing.assert_allclose(labels.index_to_world, case.ct.index_to_world, atol=1e-4)
    for level in ("L1", "L2", "L3", "L4", "L5"):
        i, j, k = np.rint(labels.world_to_index_points(np.asarray(case.landmarks[level]["body_centroid"]))).astype(int)
        assert labels.voxels[k, j, i] == VERTEBRA_LABELS[level], level


def test_headerless_implicit_vr_files_load(tmp_path):
    """Files without file meta (ACR-NEMA style) use implicit VR little endian: header and pixels agree on it."""
    original = ct_volume(shape=(3, 4, 5), affine=affine_from_geometry([1.0, 1.0, 2.0], [0, 0, 0]))
    bare_folder = tmp_path / "bare"
    bare_folder.mkdir()
    for path in write_ct_series(original, tmp_path / "written"):
        bare = Dataset()
        bare.update(pydicom.dcmread(path))  # the elements only: no preamble, no file meta
        bare.save_as(bare_folder / path.name, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert (bare_folder / "slice_0000.dcm").read_bytes()[:2] == b"\x08\x00"  # no preamble, no "DICM"
    loaded = npl.load(bare_folder)
    np.testing.assert_array_equal(loaded.voxels, original.voxels)
    np.testing.assert_allclose(loaded.index_to_world, original.index_to_world, atol=1e-6)
