"""Finding DICOM images: walk a folder (or a DICOMDIR), read each header once, group slices into series.

Only headers are read here (pixel data is skipped); for uncompressed files the byte offset of the pixel data is
kept so that :mod:`needleplan.io.dicom_pixels` can read it straight into the volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from ..errors import (
    CorruptFileError,
    EmptyInputError,
    InputNotFoundError,
    NoDicomError,
    NotAnImageError,
    describe_path,
)

#: SOP classes that are a directory or a document, never pixels, by their common names.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class DicomSlice:
    """One 2D image of a series: a single-frame file, or one frame of a multi-frame file."""

    path: Path
    frame: int
    frames_in_file: int
    series_uid: str
    sop_instance_uid: str
    position: np.ndarray | None  # LPS mm of the first pixel's centre
    orientation: np.ndarray | None  # 6 direction cosines: row direction (along i), column direction (along j)
    pixel_spacing: np.ndarray | None  # (between rows = along j, between columns = along i) mm
    rows: int
    columns: int
    slope: float
    intercept: float
    image_type: tuple[str, ...]
    transfer_syntax: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    pixel_tell: int | None  # byte position of the Pixel Data element (uncompressed files), else None
    acquisition: str = ""  # acquisition / echo / temporal position, to explain duplicated positions

    @property
    def is_localizer(self) -> bool:
        """True for scout / localizer images, which are not part of the volume."""
        return any(t.upper() in ("LOCALIZER", "SCOUT", "TOPOGRAM") for t in self.image_type)


@dataclass
class DicomSeries:
    """Every slice found for one SeriesInstanceUID, plus descriptive facts (no patient identity)."""

    uid: str
    number: int | None
    description: str
    modality: str
    slices: list[DicomSlice] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the series is named in messages: number, description and UID."""
        number = f"#{self.number} " if self.number is not None else ""
        desc = f"'{self.description}' " if self.description else ""
        return f"series {number}{desc}({self.uid})"


@dataclass
class DicomScan:
    """What a walk over a path found."""

    root: Path
    series: list[DicomSeries]
    non_image: list[tuple[Path, str]]  # DICOM objects without pixels (SR, SEG, RTSTRUCT, ...)
    corrupt: list[tuple[Path, str]]  # DICOM files that could not be parsed
    other_files: int  # files that are not DICOM at all


_SAFE_FACTS = (
    "Manufacturer", "ManufacturerModelName", "SeriesDescription", "BodyPartExamined", "KVP",
    "ConvolutionKernel", "StudyDate", "SeriesDate", "SliceThickness", "ContrastBolusAgent",
)


def scan_dicom(path: str | Path) -> DicomScan:
    """Read the headers of every DICOM file under ``path`` and group the images into series.

    Parameters
    ----------
    path : path
        A folder (searched recursively), a DICOMDIR file, or a single DICOM file (for example multi-frame).

    Raises
    ------
    InputNotFoundError, EmptyInputError, NoDicomError, NotAnImageError, CorruptFileError
        When nothing usable is found; the message names the path and what was found instead.
    """
    root = Path(path)
    if not root.exists():
        raise InputNotFoundError(f"{describe_path(root)} does not exist; check the path")
    files = _list_files(root)
    if not files:
        raise EmptyInputError(f"folder {describe_path(root)} is empty; point needleplan at a folder of DICOM files")
    series: dict[str, DicomSeries] = {}
    non_image: list[tuple[Path, str]] = []
    corrupt: list[tuple[Path, str]] = []
    other = 0
    for file in files:
        outcome = _read_header(file)
        if outcome is None:
            other += 1
            continue
        if isinstance(outcome, str):
            corrupt.append((file, outcome))
            continue
        ds, tell = outcome
        if not _has_pixels(ds):
            if str(ds.get("SOPClassUID", "")) != DICOMDIR_SOP_CLASS and "DirectoryRecordSequence" not in ds:
                non_image.append((file, _sop_name(ds)))
        else:
            for item in _slices_of(file, ds, tell):
                entry = series.get(item.series_uid)
                if entry is None:
                    entry = series[item.series_uid] = _series_of(ds, item.series_uid)
                entry.slices.append(item)
    scan = DicomScan(root, list(series.values()), non_image, corrupt, other)
    _raise_if_nothing(scan, files)
    return scan


def _list_files(root: Path) -> list[Path]:
    if root.is_file():
        if root.stat().st_size == 0:
            raise EmptyInputError(f"file {describe_path(root)} is empty (0 bytes)")
        if root.name.upper() == "DICOMDIR":
            return _dicomdir_files(root)
        return [root]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            if name.upper() == "DICOMDIR":
                continue
            file = Path(folder) / name
            if file.is_file() and file.stat().st_size > 0:
                files.append(file)
    return files


def _dicomdir_files(dicomdir: Path) -> list[Path]:
    try:
        ds = pydicom.dcmread(dicomdir)
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise CorruptFileError(f"cannot read DICOMDIR {describe_path(dicomdir)}: {exc}") from None
    files = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if ref is None:
            continue
        parts = [ref] if isinstance(ref, str) else list(ref)
        file = dicomdir.parent.joinpath(*parts)
        if not file.exists():  # media written on case-insensitive systems
            alt = dicomdir.parent.joinpath(*[p.lower() for p in parts])
            file = alt if alt.exists() else file
        if not file.exists():
            raise InputNotFoundError(
                f"DICOMDIR {describe_path(dicomdir)} lists {describe_path(file)}, which is missing; "
                "copy the whole disc or load the folder instead"
            )
        files.append(file)
    if not files:
        raise NoDicomError(f"DICOMDIR {describe_path(dicomdir)} lists no files")
    return files


def _looks_like_dicom(file: Path) -> bool:
    with open(file, "rb") as fp:
        head = fp.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # headerless (ACR-NEMA style) files start with a group 0x0008 element, little endian
    return len(head) >= 8 and head[:2] == b"\x08\x00" and head[3:4] == b"\x00"


def _read_header(file: Path) -> tuple[Dataset, int] | str | None:
    """The header and where its pixel data starts; a reason when the file is DICOM but unreadable; None when
    it is not DICOM."""
    try:
        if not _looks_like_dicom(file):
            return None
        with open(file, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            tell = fp.tell()
    except Exception as exc:  # pydicom's parser fails in many ways on damaged bytes; all mean "corrupt"
        return f"{type(exc).__name__}: {str(exc)[:160]}"
    if len(ds) == 0:
        return "no DICOM elements found"
    return ds, tell


def _has_pixels(ds: Dataset) -> bool:
    return "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds


def _sop_name(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    if sop is None:
        return str(ds.get("Modality", "unknown object"))
    name = UID(str(sop)).name
    return name if name and name != str(sop) else f"{ds.get('Modality', 'object')} ({sop})"


def _number(value: object, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _vector(value: object, size: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (size,) and np.all(np.isfinite(arr)) else None


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _instance_uid(ds: Dataset, file: Path) -> str:
    """SOPInstanceUID, else the file meta's copy of it, else the file itself (anonymisers blank UIDs)."""
    meta = getattr(ds, "file_meta", None)
    for value in (ds.get("SOPInstanceUID"), meta.get("MediaStorageSOPInstanceUID") if meta is not None else None):
        if value not in (None, ""):
            return str(value)
    return f"file:{file.resolve()}"


def _pixel_tell(ds: Dataset, tell: int) -> int | None:
    """Where the Pixel Data element starts, for uncompressed files; None when compressed."""
    syntax = _transfer_syntax(ds)
    return None if syntax and UID(syntax).is_compressed else tell


def _slices_of(file: Path, ds: Dataset, tell: int) -> list[DicomSlice]:
    frames = int(_number(ds.get("NumberOfFrames"), 1)) or 1
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    syntax = _transfer_syntax(ds)
    acquisition = "/".join(
        str(ds.get(t, "")) for t in ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier")
    )
    common = dict(
        path=file, frames_in_file=frames, series_uid=str(ds.get("SeriesInstanceUID") or f"no SeriesInstanceUID, folder {file.parent}"),
        sop_instance_uid=_instance_uid(ds, file), rows=int(ds.Rows), columns=int(ds.Columns),
        image_type=tuple(str(t) for t in (ds.get("ImageType") or ())), transfer_syntax=syntax,
        bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.get("BitsStored", ds.BitsAllocated)),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        pixel_tell=_pixel_tell(ds, tell), acquisition=acquisition,
    )
    slices = []
    for frame in range(frames):
        frame_group = _first(per_frame[frame]) if per_frame and frame < len(per_frame) else None
        groups = [g for g in (frame_group, shared) if g is not None]
        slices.append(DicomSlice(
            frame=frame,
            position=_vector(_functional(groups, "PlanePositionSequence", "ImagePositionPatient")
                             or ds.get("ImagePositionPatient"), 3),
            orientation=_vector(_functional(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
                                or ds.get("ImageOrientationPatient"), 6),
            pixel_spacing=_vector(_functional(groups, "PixelMeasuresSequence", "PixelSpacing")
                                  or ds.get("PixelSpacing"), 2),
            slope=_number(_functional(groups, "PixelValueTransformationSequence", "RescaleSlope")
                          or ds.get("RescaleSlope"), 1.0),
            intercept=_number(_functional(groups, "PixelValueTransformationSequence", "RescaleIntercept")
                              or ds.get("RescaleIntercept"), 0.0),
            **common,
        ))
    return slices


def _first(sequence: object) -> Dataset | None:
    if sequence is None:
        return None
    if isinstance(sequence, Dataset):
        return sequence
    try:
        return sequence[0] if len(sequence) else None  # type: ignore[index, arg-type]
    except (TypeError, IndexError):
        return None


def _functional(groups: list[Dataset], macro: str, keyword: str) -> object:
    """A value from the first functional group (per-frame, then shared) that has it."""
    for group in groups:
        item = _first(group.get(macro))
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


def _series_of(ds: Dataset, uid: str) -> DicomSeries:
    number = ds.get("SeriesNumber")
    try:
        number = int(number) if number not in (None, "") else None
    except (TypeError, ValueError):
        number = None
    facts = {k: str(ds.get(k)) for k in _SAFE_FACTS if ds.get(k) not in (None, "")}
    return DicomSeries(uid, number, str(ds.get("SeriesDescription", "")), str(ds.get("Modality", "OT")), [], facts)


def _raise_if_nothing(scan: DicomScan, files: list[Path]) -> None:
    if scan.series:
        return
    where = describe_path(scan.root)
    if scan.non_image:
        kinds = sorted({kind for _, kind in scan.non_image})
        raise NotAnImageError(
            f"{where} holds only DICOM objects without images ({', '.join(kinds)}); load the CT or MR series instead"
        )
    if scan.corrupt:
        file, reason = scan.corrupt[0]
        raise CorruptFileError(
            f"{len(scan.corrupt)} DICOM file(s) under {where} cannot be read, e.g. {describe_path(file)} "
            f"({reason}); the files may be truncated or damaged"
        )
    if len(files) == 1 and scan.root.is_file():
        raise NotAnImageError(
            f"{where} is neither DICOM nor a supported image file (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr)"
        )
    raise NoDicomError(
        f"none of the {len(files)} files under {where} is DICOM or a supported image file; "
        "point needleplan at the folder holding the series"
    )
