"""Writing Fluoro images and their geometry: every format read back, DICOM tags and angles, atomic writes."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
import pydicom
import pytest
from PIL import Image

import needleplan as npl
from needleplan import CArm, Needle, NeedleplanError
from needleplan.fluoro import Keypoint, writers
from needleplan.fluoro.writers import (
    dicom_positioner_angles,
    display_pixels,
    sidecar_path,
    write_geometry_json,
    write_image,
)
from needleplan.volume import affine_from_geometry

ISOCENTER = np.array([30.0, 28.0, 24.0])


def box_ct() -> npl.Volume:
    """Air around a water block holding a bone bar: 32 x 28 x 24 voxels of 2 mm."""
    voxels = np.full((24, 28, 32), -1000, dtype=np.int16)
    voxels[3:21, 4:24, 4:28] = 0
    voxels[8:16, 10:18, 12:20] = 1200
    return npl.Volume(voxels, affine_from_geometry([2.0, 2.0, 2.0], [0.0, 0.0, 0.0]))


@pytest.fixture(scope="module")
def fluoro():
    """A non-square, collimated image (NaN off-field) with a needle and a landmark at the isocentre."""
    carm = CArm(oblique=25, tilt=10, isocenter=ISOCENTER, detector_size_mm=(288.0, 200.0),
                detector_pixels=(40, 48), collimator_diameter_mm=250.0)
    needle = Needle(tip_mm=ISOCENTER, hub_mm=ISOCENTER + [20.0, -30.0, 10.0], name="n1")
    return npl.render(box_ct(), carm, needles=[needle], points={"centre": ISOCENTER})


def no_leftovers(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".part-")]


# ---- image formats ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("suffix", [".png", ".tif", ".TIFF"])
def test_display_image_round_trips_through_pillow(fluoro, tmp_path, bits, suffix):
    path = write_image(fluoro, tmp_path / "deep" / "er" / f"shot{suffix}", bits=bits)
    with Image.open(path) as image:
        read = np.array(image)
    assert read.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert read.shape == (40, 48)
    expected = np.rint(fluoro.display.astype(np.float64) * (2**bits - 1))
    np.testing.assert_array_equal(read, expected)
    assert read.max() == 2**bits - 1 and read.min() == 0
    assert no_leftovers(path.parent)


def test_display_pixels_round_rather_than_truncate():
    display = np.array([[0.0, 0.6 / 255, 1.4 / 255, 254.6 / 255, 1.0, 1.2, -0.1, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(display_pixels(display, 8), [[0, 1, 1, 255, 255, 255, 0, 0]])
    assert display_pixels(np.array([0.7 / 65535]), 16)[0] == 1
    assert display_pixels(np.array([0.5]), 16).dtype == np.uint16


@pytest.mark.parametrize("quantity", ["line_integral", "intensity"])
def test_float_tiff_keeps_values_and_nan(fluoro, tmp_path, quantity):
    path = write_image(fluoro, tmp_path / "shot.tif", quantity=quantity, bits=16)
    with Image.open(path) as image:
        assert image.mode == "F"
        read = np.array(image)
    expected = getattr(fluoro, quantity)
    assert read.dtype == np.float32
    np.testing.assert_array_equal(read, expected)  # NaN positions equal too
    if quantity == "line_integral":
        assert np.isnan(read).any() and np.isfinite(read).any()


@pytest.mark.parametrize("quantity", [None, "line_integral", "intensity", "display"])
def test_npy_holds_float32_arrays(fluoro, tmp_path, quantity):
    path = write_image(fluoro, tmp_path / "shot.npy", quantity=quantity)
    read = np.load(path)
    assert read.dtype == np.float32 and read.shape == (40, 48)
    np.testing.assert_array_equal(read, getattr(fluoro, quantity or "line_integral"))


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("shot.jpg", {}, "cannot tell the image format"),
        ("shot", {}, "cannot tell the image format"),
        ("shot.png", {"bits": 12}, "bits must be 8 or 16"),
        ("shot.png", {"quantity": "line_integral"}, "display image only"),
        ("shot.dcm", {"quantity": "intensity"}, "display image only"),
        ("shot.npy", {"quantity": "labels"}, "quantity must be one of"),
    ],
)
def test_bad_output_requests_are_refused_before_writing(fluoro, tmp_path, name, options, message):
    with pytest.raises(NeedleplanError, match=message):
        write_image(fluoro, tmp_path / "new" / name, **options)
    assert not (tmp_path / "new").exists()


# ---- atomicity -------------------------------------------------------------------------------------------------
def test_a_failing_write_leaves_no_file_and_keeps_the_old_one(fluoro, tmp_path, monkeypatch):
    def half_then_fail(pixels, path, fmt):
        path.write_bytes(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers, "save_pixels", half_then_fail)
    with pytest.raises(NeedleplanError, match="cannot write .*new.png.*No space left"):
        write_image(fluoro, tmp_path / "new.png")
    assert not (tmp_path / "new.png").exists()
    (tmp_path / "old.png").write_bytes(b"previous render")
    with pytest.raises(NeedleplanError):
        write_image(fluoro, tmp_path / "old.png")
    assert (tmp_path / "old.png").read_bytes() == b"previous render"
    assert no_leftovers(tmp_path)


def test_a_failing_dicom_or_json_write_leaves_nothing(fluoro, tmp_path, monkeypatch):
    def broken_save(self, filename, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"DICM" * 10)
        raise RuntimeError("encoder crashed")

    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", broken_save)
    with pytest.raises(RuntimeError):
        write_image(fluoro, tmp_path / "shot.dcm")

    def half_text(self, text, **kwargs):
        with open(self, "w") as handle:
            handle.write(text[:10])
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(pathlib.Path, "write_text", half_text)
    with pytest.raises(NeedleplanError, match="cannot write .*shot.json.*Permission denied"):
        write_geometry_json(fluoro, tmp_path / "shot.json")
    assert list(tmp_path.iterdir()) == []


# ---- DICOM -----------------------------------------------------------------------------------------------------
# Hand-worked expectations. DICOM (PS3.3 C.8.7.5.1.2) places the detector around the patient in the patient's
# frame: primary 0 = detector in front of the chest (anterior), +90 = at the patient's left (LAO), -90 at the right
# (RAO), 180 = behind the back; secondary > 0 = detector toward the head (cranial), < 0 toward the feet (caudal).
# Our patient is prone and the AP view has the detector over the back: primary 180. Left lateral (oblique 90, the
# detector at the patient's left): primary 90. 25 degrees left oblique turns the detector from the back 25 degrees
# toward the left: 180 - 25 = 155; 10 degrees caudal tilt moves it toward the feet: secondary -10. 30 degrees right
# oblique with 15 degrees cephalad tilt: 180 + 30 = 210 = -150 and secondary +15.
@pytest.mark.parametrize(
    "oblique, tilt, primary, secondary",
    [(0, 0, 180, 0), (90, 0, 90, 0), (-90, 0, -90, 0), (25, 10, 155, -10), (-30, -15, -150, 15), (180, 0, 0, 0)],
)
def test_dicom_positioner_angles(oblique, tilt, primary, secondary):
    got = dicom_positioner_angles(CArm(oblique=oblique, tilt=tilt, isocenter=ISOCENTER))
    np.testing.assert_allclose(got, (primary, secondary), atol=1e-9)


def test_dicom_is_an_anonymous_radiofluoroscopic_image_with_the_geometry(fluoro, tmp_path):
    path = write_image(fluoro, tmp_path / "shot.dcm", bits=8)  # bits does not apply: always 16-bit
    ds = pydicom.dcmread(path)
    carm = fluoro.carm
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.12.1" == ds.SOPClassUID
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
    assert ds.Modality == "XA" and ds.Manufacturer == "needleplan"
    assert (str(ds.PatientName), ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == ("Anonymous", "ANON", "", "O")
    for tag in ("InstitutionName", "OtherPatientIDs", "ReferringPhysicianName"):
        assert not ds.get(tag), tag
    # type 1 and type 2 attributes of the modules of the XA Image IOD
    type1 = ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "ImageType", "PixelIntensityRelationship",
             "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
             "HighBit", "PixelData", "RadiationSetting", "SOPClassUID", "SOPInstanceUID"]
    type2 = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
             "ReferringPhysicianName", "StudyID", "AccessionNumber", "SeriesNumber", "Manufacturer", "InstanceNumber",
             "PatientOrientation", "KVP", "XRayTubeCurrent", "ExposureTime"]
    assert all(ds.get(name) not in (None, "") for name in type1), [n for n in type1 if not ds.get(n)]
    assert all(name in ds for name in type2)
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "SINGLE PLANE"]
    assert ds.RadiationSetting == "SC" and ds.PixelIntensityRelationship == "DISP"
    assert ds.PatientPosition == "HFP"
    # pixels: 16 bits stored, round(display * 65535)
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 0)
    assert ds.PhotometricInterpretation == "MONOCHROME2" and (ds.Rows, ds.Columns) == (40, 48)
    np.testing.assert_array_equal(ds.pixel_array, np.rint(fluoro.display.astype(np.float64) * 65535))
    # geometry
    assert float(ds.DistanceSourceToDetector) == 1000 and float(ds.DistanceSourceToPatient) == 600
    assert float(ds.EstimatedRadiographicMagnificationFactor) == pytest.approx(1000 / 600, rel=1e-9)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [200 / 40, 288 / 48]  # (between rows, between columns)
    assert (float(ds.PositionerPrimaryAngle), float(ds.PositionerSecondaryAngle)) == (155, -10)
    assert ds.FieldOfViewShape == "ROUND" and int(ds.FieldOfViewDimensions) == 250
    # u = (-cos 25, sin 25, 0): mostly right, some posterior; v = (-sin25 sin10, -cos25 sin10, -cos10): feet first
    assert list(ds.PatientOrientation) == ["RP", "FAR"]
    lines = ds.ImageComments.splitlines()
    assert "25 degrees left oblique, 10 degrees caudal" in ds.ImageComments
    assert "SID 1000 mm, SOD 600 mm" in ds.ImageComments and "250 mm circle" in ds.ImageComments
    matrix = json.loads(lines[lines.index(next(line for line in lines if line.startswith("Projection"))) + 1])
    np.testing.assert_allclose(matrix, carm.projection_matrix, rtol=1e-10)


def test_dicom_of_an_ap_view(tmp_path):
    fluoro = npl.render(box_ct(), CArm.ap(detector_pixels=16))
    ds = pydicom.dcmread(write_image(fluoro, tmp_path / "ap.dcm"))
    assert (float(ds.PositionerPrimaryAngle), float(ds.PositionerSecondaryAngle)) == (180, 0)
    assert list(ds.PatientOrientation) == ["R", "F"]  # columns grow to the patient's right, rows to the feet
    assert ds.FieldOfViewShape == "RECTANGLE"
    other = pydicom.dcmread(write_image(fluoro, tmp_path / "again.dcm"))
    assert other.SOPInstanceUID != ds.SOPInstanceUID and other.StudyInstanceUID != ds.StudyInstanceUID


# ---- geometry sidecar ------------------------------------------------------------------------------------------
def test_geometry_json_reproduces_the_projection(fluoro, tmp_path):
    lost = Keypoint(np.nan, np.inf, 0.0, False)  # e.g. a point in the source plane
    fluoro = dataclasses.replace(fluoro, keypoints={**fluoro.keypoints, "lost": lost})
    path = write_geometry_json(fluoro, tmp_path / "sub" / "shot.png.json")
    assert sidecar_path(tmp_path / "sub" / "shot.png") == path
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    carm = fluoro.carm
    point = np.array([41.0, 12.0, 30.0])
    col, row, w = np.array(data["projection_matrix"]) @ np.append(point, 1.0)
    projected = carm.project(point)
    np.testing.assert_allclose([col / w, row / w, w], [projected.col[0], projected.row[0], projected.depth_mm[0]],
                               rtol=1e-12)
    rebuilt = CArm(**data["carm"])
    np.testing.assert_allclose(rebuilt.projection_matrix, carm.projection_matrix, rtol=1e-12)
    assert data["pose"] == "25 degrees left oblique, 10 degrees caudal"
    assert data["carm"]["detector_pixels"] == [40, 48] and data["carm"]["collimator_diameter_mm"] == 250
    np.testing.assert_allclose(data["source_mm"], carm.source_mm)
    np.testing.assert_allclose(data["detector_center_mm"], carm.detector_center_mm)
    np.testing.assert_allclose([data["detector_u"], data["detector_v"]], carm.rotation[:2])
    np.testing.assert_allclose(data["view_direction"], carm.view_direction)
    assert data["window"] == list(fluoro.window)
    assert data["dicom_positioner_angles_deg"] == {"primary": pytest.approx(155), "secondary": pytest.approx(-10)}
    keypoints = data["keypoints"]
    assert set(keypoints) == {"centre", "lost", "n1.tip", "n1.hub"}
    centre = keypoints["centre"]
    assert centre["visible"] is True
    assert (centre["col"], centre["row"]) == pytest.approx(((48 - 1) / 2, (40 - 1) / 2))
    assert centre["depth_mm"] == pytest.approx(600)
    assert keypoints["lost"] == {"col": None, "row": None, "depth_mm": 0.0, "visible": False}
    tip = keypoints["n1.tip"]
    assert [tip["col"], tip["row"], tip["depth_mm"]] == pytest.approx([centre["col"], centre["row"], 600])
