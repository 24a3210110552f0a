"""Finding DICOM images: walk a folder (or a DICOMDIR), read each header once, group slices into series.

Only headers are read here (pixel data is skipped); for uncompressed files the byte offset of the pixel data is
kept so that :mod:`needleplan.io.dicom_pixels` can read it straight into the volume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

#: SOP class of a DICOMDIR: a directory, never pixels.
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"


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
        raise EmptyInputError(
            f"folder {describe_path(root)} is empty (no files, or only 0-byte ones); point needleplan at a folder "
            "of DICOM files"
        )
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
        try:  # pydicom converts values only when they are read: damaged ones fail here, not in dcmread
            if not _has_pixels(ds):
                _require_not_truncated_image(ds)
                if str(ds.get("SOPClassUID", "")) != DICOMDIR_SOP_CLASS and "DirectoryRecordSequence" not in ds:
                    non_image.append((file, _sop_name(ds)))
                continue
            items = _slices_of(file, ds, tell)
            uid = items[0].series_uid
            if uid not in series:  # the first file of a series describes it
                series[uid] = _series_of(ds, uid)
        except Exception as exc:
            corrupt.append((file, _reason(exc)))
            continue
        series[uid].slices.extend(items)
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
        cut = _cut_element(ds)
        records = list(ds.get("DirectoryRecordSequence", []))
    except Exception as exc:  # pydicom raises many types for a damaged file
        reason = "no DICOM header" if isinstance(exc, pydicom.errors.InvalidDicomError) else _reason(exc)
        raise CorruptFileError(
            f"cannot read DICOMDIR {describe_path(dicomdir)} ({reason}); it is damaged or not a DICOMDIR: "
            "load the folder instead"
        ) from None
    if cut:  # a cut DICOMDIR lists only some of the images: loading them would silently lose slices
        raise CorruptFileError(
            f"DICOMDIR {describe_path(dicomdir)} is truncated ({cut}); copy the disc again or load the folder instead"
        )
    files = []
    for record in records:
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
        cut = _cut_element(ds)
    except Exception as exc:  # pydicom's parser fails in many ways on damaged bytes; all mean "corrupt"
        return _reason(exc)
    if len(ds) == 0:
        return "no DICOM elements found"
    return cut or (ds, tell)


def _cut_element(ds: Dataset) -> str | None:
    """The element whose value the end of the file cut short (pydicom keeps such values silently), if any."""
    for tag in ds.keys():
        elem = ds.get_item(tag, keep_deferred=True)  # unconverted: converting can fail on damaged values
        length = getattr(elem, "length", 0)
        if getattr(elem, "is_raw", False) and length != 0xFFFFFFFF and len(elem.value or b"") < length:
            return f"the file ends inside element {elem.tag} ({len(elem.value or b'')} of {length} bytes)"
    return None


class _DamagedHeader(ValueError):
    """A header value that makes the file unusable; its message is the reason shown to the user."""


def _reason(exc: Exception) -> str:
    """Why a file is unusable, as one short line."""
    text = str(exc) if isinstance(exc, _DamagedHeader) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:200]


def _require_not_truncated_image(ds: Dataset) -> None:
    """Refuse a header without pixel attributes that cannot be a document: an image cut short, or noise."""
    meta = getattr(ds, "file_meta", None)
    sop = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if not sop and "DirectoryRecordSequence" not in ds:
        raise _DamagedHeader("no SOPClassUID and no image attributes: damaged, or not DICOM")
    if "Image Storage" in (UID(str(sop)).name if sop else ""):
        raise _DamagedHeader(f"a {UID(str(sop)).name} header without Rows, Columns or BitsAllocated: truncated")


def _has_pixels(ds: Dataset) -> bool:
    return "Rows" in ds and "Columns" in ds and "BitsAllocated" in ds


def _text(value: object) -> str:
    """A header value as text for grouping and messages: one line, whatever damage put into it."""
    return " ".join(str(value).split())


def _sop_name(ds: Dataset) -> str:
    sop = ds.get("SOPClassUID")
    if sop is None:
        return _text(ds.get("Modality", "unknown object"))
    name = UID(str(sop)).name
    return _text(name if name and name != str(sop) else f"{ds.get('Modality', 'object')} ({sop})")


def _number(value: object, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def _vector(value: Any, size: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (size,) and np.all(np.isfinite(arr)) else None


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return _text(meta.get("TransferSyntaxUID", "")) if meta is not None else ""


def _instance_uid(ds: Dataset, file: Path) -> str:
    """SOPInstanceUID, else the file meta's copy of it, else the file itself (anonymisers blank UIDs)."""
    meta = getattr(ds, "file_meta", None)
    for value in (ds.get("SOPInstanceUID"), meta.get("MediaStorageSOPInstanceUID") if meta is not None else None):
        if value not in (None, ""):
            return _text(value)
    return f"file:{file.resolve()}"


def is_implicit_vr(syntax: str) -> bool:
    """True for Implicit VR Little Endian, and for files without file meta (headerless), which use it."""
    return syntax in ("", IMPLICIT_VR_LITTLE_ENDIAN)


def pixel_element_header_bytes(syntax: str) -> int:
    """Bytes of the Pixel Data element's tag and length before its value (implicit VR 8, explicit VR 12)."""
    return 8 if is_implicit_vr(syntax) else 12


def is_compressed_syntax(syntax: str) -> bool:
    """True when pixels under this transfer syntax need a decoder; unknown (private) syntaxes count as such."""
    uid = UID(syntax)
    return bool(syntax) and (not uid.is_transfer_syntax or uid.is_compressed)


def _slices_of(file: Path, ds: Dataset, tell: int) -> list[DicomSlice]:
    syntax = _transfer_syntax(ds)
    pixel_tell = None if is_compressed_syntax(syntax) else tell
    frames = _frame_count(file, ds, syntax, pixel_tell)
    shared = _first(ds.get("SharedFunctionalGroupsSequence"))
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    acquisition = "/".join(
        _text(ds.get(t, "")) for t in ("AcquisitionNumber", "EchoNumbers", "TemporalPositionIdentifier")
    )
    common: dict[str, Any] = dict(
        path=file, frames_in_file=frames,
        series_uid=_text(ds.get("SeriesInstanceUID") or f"no SeriesInstanceUID, folder {file.parent}"),
        sop_instance_uid=_instance_uid(ds, file), rows=int(ds.Rows), columns=int(ds.Columns),
        image_type=tuple(_text(t) for t in (ds.get("ImageType") or ())), transfer_syntax=syntax,
        bits_allocated=int(ds.BitsAllocated), bits_stored=int(ds.get("BitsStored", ds.BitsAllocated)),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1)),
        photometric=_text(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        pixel_tell=pixel_tell, acquisition=acquisition,
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
            slope=_rescale(_functional(groups, "PixelValueTransformationSequence", "RescaleSlope")
                           or ds.get("RescaleSlope"), "RescaleSlope", 1.0),
            intercept=_rescale(_functional(groups, "PixelValueTransformationSequence", "RescaleIntercept")
                               or ds.get("RescaleIntercept"), "RescaleIntercept", 0.0),
            **common,
        ))
    return slices


def _frame_count(file: Path, ds: Dataset, syntax: str, pixel_tell: int | None) -> int:
    """NumberOfFrames, checked against the size of the file before any per-frame work is done.

    ``pixel_tell`` is where uncompressed pixel data starts (None when compressed).
    """
    value = ds.get("NumberOfFrames")
    frames = _number(value, 1.0)
    if not np.isfinite(frames) or frames < 0 or frames != int(frames):
        raise _DamagedHeader(f"NumberOfFrames {value!r} is not a frame count")
    frames = int(frames) or 1
    rows, columns = int(ds.Rows), int(ds.Columns)
    if rows <= 0 or columns <= 0:
        raise _DamagedHeader(f"Rows x Columns is {rows} x {columns}: an image needs at least one pixel")
    size = file.stat().st_size
    bits = frames * rows * columns * int(ds.get("SamplesPerPixel") or 1) * int(ds.BitsAllocated)
    available = size - pixel_tell - pixel_element_header_bytes(syntax) if pixel_tell is not None else size
    if pixel_tell is not None and bits // 8 > available:
        raise _DamagedHeader(
            f"Rows x Columns x NumberOfFrames = {rows} x {columns} x {frames} pixels need {bits // 8} bytes, "
            f"the file holds {max(available, 0)}: truncated"
        )
    if frames > size:  # compressed: every frame takes at least one byte
        raise _DamagedHeader(f"NumberOfFrames {frames} is more than the file's {size} bytes can hold")
    return frames


def _rescale(value: object, keyword: str, default: float) -> float:
    """RescaleSlope or RescaleIntercept; a present but unusable value is damage, not a default."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _DamagedHeader(f"{keyword} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise _DamagedHeader(f"{keyword} {value!r} is not a finite number")
    return number


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
    facts = {k: _text(ds.get(k)) for k in _SAFE_FACTS if ds.get(k) not in (None, "")}
    return DicomSeries(uid, number, _text(ds.get("SeriesDescription", "")), _text(ds.get("Modality", "OT")), [], facts)


def damaged_files_error(scan: DicomScan) -> CorruptFileError:
    """The error for DICOM files the scan could not read, naming the first and counting the rest."""
    file, reason = scan.corrupt[0]
    more = f" (and {len(scan.corrupt) - 1} more)" if len(scan.corrupt) > 1 else ""
    return CorruptFileError(
        f"DICOM file {describe_path(file)}{more} under {describe_path(scan.root)} cannot be read: {reason}; "
        "re-export the series, or move the damaged file(s) out of the folder to load the rest"
    )


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
        raise damaged_files_error(scan)
    if len(files) == 1 and scan.root.is_file():
        raise NotAnImageError(
            f"{where} is neither DICOM nor a supported image file (.nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr)"
        )
    raise NoDicomError(
        f"none of the {len(files)} files under {where} is DICOM or a supported image file; "
        "point needleplan at the folder holding the series"
    )
