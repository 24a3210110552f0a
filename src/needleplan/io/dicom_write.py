"""Write a CT Volume as a DICOM CT image series (one file per slice, uncompressed, no patient identity)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ..errors import NeedleplanError
from ..volume import Volume
from .atomic import atomic_directory

#: Identity written into every file: explicitly anonymous.
ANONYMOUS_PATIENT = {"PatientName": "Anonymous", "PatientID": "ANON", "PatientBirthDate": "", "PatientSex": "O"}


def write_ct_series(
    volume: Volume,
    folder: str | Path,
    *,
    series_description: str = "needleplan CT",
    series_number: int = 1,
) -> list[Path]:
    """Write a CT volume as a DICOM series, one file per k-slice.

    Parameters
    ----------
    volume : Volume
        A CT volume in HU. Its i and j axes must be orthogonal (DICOM slices are rectangles); k may be oblique
        to them, which is written as the gantry tilt it is.
    folder : path
        Created; must not exist or be empty. Written atomically: the folder appears complete or not at all.
    series_description : str
        SeriesDescription tag.
    series_number : int
        SeriesNumber tag.

    Returns
    -------
    list of Path
        The files, in slice order (k = 0 first).
    """
    if volume.modality != "CT":
        raise NeedleplanError(f"only CT volumes are written as DICOM CT series, this one is {volume.modality}")
    d = volume.direction
    if abs(float(np.dot(d[:, 0], d[:, 1]))) > 1e-6:
        raise NeedleplanError("DICOM slices need orthogonal row and column axes; resample the volume first")
    pixels, slope, intercept = _to_int16(volume.voxels)
    sx, sy, _ = volume.spacing_mm
    now = datetime.datetime.now(datetime.timezone.utc)
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    folder = Path(folder)
    paths: list[Path] = []
    with atomic_directory(folder) as work:
        for k in range(volume.shape[0]):
            position = volume.index_to_world_points([0.0, 0.0, float(k)])
            ds = _slice_dataset(pixels[k], position, d, (sx, sy), slope, intercept)
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
            ds.StudyID = "1"
            ds.AccessionNumber = ds.ReferringPhysicianName = ""  # type 2: present, empty
            ds.SeriesDescription = series_description
            ds.SeriesNumber = series_number
            ds.InstanceNumber = k + 1
            ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = now.strftime("%H%M%S")
            ds.SliceThickness = float(abs(np.dot(volume.index_to_world[:3, 2], np.cross(d[:, 0], d[:, 1]))))
            name = f"slice_{k:04d}.dcm"
            ds.save_as(work / name, enforce_file_format=True)
            paths.append(folder / name)
    return paths


def _slice_dataset(
    pixels: np.ndarray,
    position: np.ndarray,
    direction: np.ndarray,
    spacing_xy: tuple[float, float],
    slope: float,
    intercept: float,
) -> Dataset:
    ds = new_dataset(CTImageStorage)
    ds.Modality = "CT"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.ImagePositionPatient = [decimal_string(v) for v in position]
    ds.ImageOrientationPatient = [decimal_string(v) for v in np.concatenate([direction[:, 0], direction[:, 1]])]
    # (row spacing = along j, column spacing = along i)
    ds.PixelSpacing = [decimal_string(spacing_xy[1]), decimal_string(spacing_xy[0])]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = decimal_string(slope)
    ds.RescaleIntercept = decimal_string(intercept)
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<i2").tobytes()
    return ds


def new_dataset(sop_class_uid: str) -> Dataset:
    """A new explicit-VR little-endian dataset of the given SOP class.

    It has a fresh SOP instance UID with matching file meta, the anonymous patient identity
    (:data:`ANONYMOUS_PATIENT`, PatientIdentityRemoved YES with the method) and "needleplan" as the manufacturer:
    the part every file we write shares.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for tag, value in ANONYMOUS_PATIENT.items():
        setattr(ds, tag, value)
    ds.PatientIdentityRemoved = "YES"  # PS3.15: nothing that identifies a person is written
    ds.DeidentificationMethod = "needleplan: no patient identity is written"
    ds.Manufacturer = "needleplan"
    return ds


def decimal_string(value: float) -> str:
    """A decimal string of at most 16 characters, as DICOM's DS requires."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.8e}"
    return text


def _to_int16(voxels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Stored pixels and the rescale that gives the original values back (exactly for integer HU)."""
    if voxels.dtype.kind in "iub":
        lowest, highest = int(voxels.min()), int(voxels.max())
        if -32768 <= lowest and highest <= 32767:
            return voxels.astype(np.int16), 1.0, 0.0
    low, high = float(np.min(voxels)), float(np.max(voxels))
    slope = max((high - low) / 65000.0, 1e-6)
    intercept = low + 32500.0 * slope
    stored = np.rint((np.asarray(voxels, dtype=np.float64) - intercept) / slope)
    stored = np.clip(stored, -32768, 32767).astype(np.int16)
    return stored, float(decimal_string(slope)), float(decimal_string(intercept))

