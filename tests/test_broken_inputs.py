"""The broken-input corpus: every kind of unusable input gives a specific, helpful NeedleplanError.

Each case is built here, in ``tmp_path``, from one small synthetic CT with a known voxel pattern (12 x 10 x 8
voxels, 1 x 1.2 x 2.5 mm, oblique direction cosines). For every case the test checks that

- the specific :class:`needleplan.NeedleplanError` subclass is raised (any other exception fails the test),
- its message is one line and names the offending file or folder,
- ``load`` returns in bounded time (a SIGALRM guard turns a hang into a failure),
- the input is unchanged (every file under it hashed before and after, and the file list compared).

Inputs that are odd but usable (a gap with ``resample=True``, a duplicate copy, a localizer, shuffled names,
gantry tilt, two series) must load with a warning and the exact geometry. Property-based tests damage the bytes
and the header values of a valid 3-slice series: ``load`` must then raise a NeedleplanError or return a Volume
whose geometry is the original one, or, when the damage changed what the geometry tags themselves say, the one
those damaged files state; never a raw exception, a hang, or a geometry that no file supports.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import struct
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.fileset import FileSet
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLSLossless,
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    RTStructureSetStorage,
    SegmentationStorage,
    generate_uid,
)

import needleplan as npl
from needleplan.errors import (
    CorruptFileError,
    EmptyInputError,
    GeometryError,
    InconsistentSeriesError,
    InputNotFoundError,
    NeedleplanError,
    NeedleplanWarning,
    NoDicomError,
    NotAnImageError,
    SeriesNotFoundError,
    SingleSliceError,
    UnsupportedTransferSyntaxError,
)
from needleplan.io import write_ct_series
from needleplan.volume import Volume, affine_from_geometry
from shared_data import SHARED_DATA

# ---- the reference CT ----------------------------------------------------------------------------------------

SPACING_MM = (1.0, 1.2, 2.5)  # along i, j, k
ORIGIN_MM = (-30.5, 12.25, 100.0)
NX, NY, NZ = 12, 10, 8
SHARED_J2K = SHARED_DATA / "totalseg_example_ct_dicom" / "dicom"
#: A load that takes longer than this has hung (a guard against hangs, not a speed requirement).
HANG_SECONDS = 30.0


def rotation(x_deg: float, y_deg: float, z_deg: float) -> np.ndarray:
    """A proper rotation (det +1): rotate about x, then y, then z."""
    x, y, z = np.radians([x_deg, y_deg, z_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


OBLIQUE = rotation(20.0, -12.0, 8.0)


def reference_voxels(nz: int = NZ, ny: int = NY, nx: int = NX) -> np.ndarray:
    """HU that differ at every voxel and vary non-linearly along k (so interpolation is visible)."""
    k, j, i = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    return (7 * k * k + 10 * j + i - 1000).astype(np.int16)


def reference_volume(
    direction: np.ndarray = OBLIQUE, nz: int = NZ, ny: int = NY, nx: int = NX, k_column: np.ndarray | None = None
) -> Volume:
    affine = affine_from_geometry(np.array(SPACING_MM), np.array(ORIGIN_MM), direction)
    if k_column is not None:
        affine[:3, 2] = k_column
    return Volume(reference_voxels(nz, ny, nx), affine, "CT")


def write_series(folder: Path, volume: Volume | None = None, **options: object) -> list[Path]:
    """The reference CT (or ``volume``) as a DICOM series, one file per slice, slice_0000.dcm first."""
    return write_ct_series(volume if volume is not None else reference_volume(), folder, **options)


# ---- editing DICOM files the way damaged files look --------------------------------------------------------


@contextlib.contextmanager
def lenient_pydicom() -> Iterator[None]:
    """Let pydicom read and write invalid values (the point of these tests)."""
    cfg = pydicom.config.settings
    saved = cfg.reading_validation_mode, cfg.writing_validation_mode
    cfg.reading_validation_mode = cfg.writing_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        cfg.reading_validation_mode, cfg.writing_validation_mode = saved


def edit(path: Path, **changes: object) -> None:
    """Set (or, with None, delete) top-level elements of a DICOM file, in place."""
    with lenient_pydicom():
        ds = pydicom.dcmread(path)
        for keyword, value in changes.items():
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        ds.save_as(path)


def write_raw_text(path: Path, keyword: str, text: str) -> None:
    """Store ``text`` verbatim as the value of a string element (DS, IS, ...), however invalid it is.

    pydicom refuses to build a DS element from non-numbers, so the element is written as LO and its VR bytes
    are patched back to the dictionary VR afterwards (explicit VR little endian files only).
    """
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    with lenient_pydicom():
        ds = pydicom.dcmread(path)
        if keyword in ds:
            del ds[tag]
        ds.add_new(tag, "LO", text)
        ds.save_as(path)
    data = bytearray(path.read_bytes())
    marker = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"LO"
    at = data.find(marker, 132)
    assert at > 0, f"{keyword} not found after writing it"
    data[at + 4:at + 6] = vr.encode()
    path.write_bytes(bytes(data))


def element_offset(path: Path, keyword: str) -> int:
    """Byte offset of a top-level element's tag in an explicit VR little endian file."""
    tag = tag_for_keyword(keyword)
    at = path.read_bytes().find(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132)
    assert at > 0
    return at


def pixel_data_offset(path: Path) -> int:
    with open(path, "rb") as fp:
        pydicom.dcmread(fp, stop_before_pixels=True)
        return fp.tell()


def non_image_object(path: Path, sop_class: str, modality: str) -> Path:
    """A DICOM object with a SOP class and no pixels (an SR, RTSTRUCT or SEG-like document)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.PatientName = "Anonymous"
    ds.save_as(path, enforce_file_format=True)
    return path


def encapsulated_copy(source: Path, target: Path, syntax: str, frames: list[bytes]) -> Path:
    """``source`` with its pixel data replaced by encapsulated ``frames`` under transfer syntax ``syntax``."""
    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds.save_as(target)
    return target


def random_bytes(size: int, seed: int) -> bytes:
    data = bytearray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    data[0] = 0xFF  # never mistaken for a headerless (ACR-NEMA) DICOM file
    return bytes(data)


# ---- running load under guard ------------------------------------------------------------------------------


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` in the loader can swallow it."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"load did not return within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(path: Path) -> dict[str, str]:
    """Every file (content hash) and folder under ``path``; {} when it does not exist."""
    if not path.exists():
        return {}
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    found = {}
    for folder, dirs, names in os.walk(path):
        rel = Path(folder).relative_to(path)
        for name in dirs:
            found[f"{rel / name}/"] = "folder"
        for name in names:
            found[str(rel / name)] = hashlib.sha256((Path(folder) / name).read_bytes()).hexdigest()
    return found


def guarded_load(path: Path, **kwargs: object) -> Volume | NeedleplanError:
    """``npl.load`` returning its Volume or its NeedleplanError; any other exception, a hang, or a changed input
    fails the test."""
    before = snapshot(path)
    try:
        with hang_guard():
            result: Volume | NeedleplanError = npl.load(path, **kwargs)
    except NeedleplanError as exc:
        result = exc
    except Hang as exc:
        raise AssertionError(f"load({str(path)!r}) hung: {exc}") from None
    except Exception as exc:
        raise AssertionError(f"load({str(path)!r}) let a raw {type(exc).__name__} escape: {exc}") from exc
    assert snapshot(path) == before, f"load({str(path)!r}) modified its input"
    return result


def expect_error(path: Path, expected: type[NeedleplanError], offending: Path, **kwargs: object) -> NeedleplanError:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = guarded_load(path, **kwargs)
    assert not isinstance(result, Volume), f"expected {expected.__name__}, got a volume: {result!r}"
    assert type(result) is expected, f"expected {expected.__name__}, got {type(result).__name__}: {result}"
    message = str(result)
    assert message.strip() and "\n" not in message, f"message is not one line: {message!r}"
    assert str(offending) in message, f"message does not name {str(offending)!r}: {message}"
    return result


def expect_volume(path: Path, warning: str | None = None, **kwargs: object) -> Volume:
    """Load a usable input; with ``warning``, a NeedleplanWarning containing it must be raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = guarded_load(path, **kwargs)
    assert isinstance(result, Volume), f"expected a volume, got {type(result).__name__}: {result}"
    ours = [str(w.message) for w in caught if issubclass(w.category, NeedleplanWarning)]
    if warning is not None:
        assert any(warning in m for m in ours), f"no NeedleplanWarning about {warning!r}; got {ours}"
    return result


def assert_same_geometry(volume: Volume, reference: Volume) -> None:
    assert volume.shape == reference.shape
    np.testing.assert_allclose(volume.index_to_world, reference.index_to_world, atol=1e-6, rtol=0)


def file_positions(files: list[Path]) -> np.ndarray:
    return np.array([[float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
                     for f in files])


# ---- the corpus of inputs that must be refused ---------------------------------------------------------------


@dataclass
class Broken:
    """A damaged input, the error it must give, and the path its message must name."""

    path: Path
    error: type[NeedleplanError]
    offending: Path | None = None  # default: ``path``
    kwargs: dict[str, object] = field(default_factory=dict)
    mentions: tuple[str, ...] = ()  # further text the message must contain
    misleads: tuple[str, ...] = ()  # text the message must not contain


CASES: dict[str, Callable[[Path, pytest.MonkeyPatch], Broken]] = {}


def case(build: Callable[[Path, pytest.MonkeyPatch], Broken]) -> Callable[[Path, pytest.MonkeyPatch], Broken]:
    CASES[build.__name__] = build
    return build


def series_with(tmp: Path, index: int = 4, **changes: object) -> tuple[Path, Path]:
    """The reference series with ``changes`` applied to slice ``index``: (folder, changed file)."""
    folder = tmp / "series"
    files = write_series(folder)
    if changes:
        edit(files[index], **changes)
    return folder, files[index]


@case
def missing_path(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    return Broken(tmp / "no_such_folder", InputNotFoundError)


@case
def empty_folder(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "empty").mkdir()
    return Broken(tmp / "empty", EmptyInputError)


@case
def zero_byte_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "slice.dcm").write_bytes(b"")
    return Broken(tmp / "slice.dcm", EmptyInputError)


@case
def zero_byte_nifti(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "ct.nii.gz").write_bytes(b"")
    return Broken(tmp / "ct.nii.gz", EmptyInputError)


@case
def folder_of_zero_byte_files(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "export").mkdir()
    for n in range(3):
        (tmp / "export" / f"IM{n}").write_bytes(b"")
    return Broken(tmp / "export", EmptyInputError)


@case
def folder_of_text_files(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("patient CT, see PACS\n")
    (folder / "sub" / "report.txt").write_text("L4-L5 TFESI\n" * 50)
    return Broken(folder, NoDicomError)


@case
def text_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "report.txt").write_text("not an image\n")
    return Broken(tmp / "report.txt", NotAnImageError)


@case
def random_bytes_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "IM0001").write_bytes(random_bytes(5000, seed=1))
    return Broken(tmp / "IM0001", NotAnImageError)


@case
def random_bytes_with_dicm_preamble(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    data = bytearray(random_bytes(5000, seed=2))
    data[128:132] = b"DICM"
    (tmp / "IM0001.dcm").write_bytes(bytes(data))
    return Broken(tmp / "IM0001.dcm", CorruptFileError)


@case
def structured_report_only(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "sr").mkdir()
    non_image_object(tmp / "sr" / "report.dcm", BasicTextSRStorage, "SR")
    return Broken(tmp / "sr", NotAnImageError, mentions=("Basic Text SR",))


@case
def rtstruct_only(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "rt").mkdir()
    non_image_object(tmp / "rt" / "contours.dcm", RTStructureSetStorage, "RTSTRUCT")
    return Broken(tmp / "rt", NotAnImageError, mentions=("RT Structure Set",))


@case
def seg_without_pixels(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    non_image_object(tmp / "seg.dcm", SegmentationStorage, "SEG")
    return Broken(tmp / "seg.dcm", NotAnImageError, mentions=("Segmentation",))


@case
def seg_with_one_bit_frames(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """A SEG-like multi-frame object with 1-bit masks at two positions: pixels, but not a scan."""
    folder, _ = series_with(tmp)
    source = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(source)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SegmentationStorage
    ds.Modality = "SEG"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = 2
    frames = []
    for k in range(2):
        item = Dataset()
        item.PlanePositionSequence = [Dataset()]
        item.PlanePositionSequence[0].ImagePositionPatient = [0.0, 0.0, 2.5 * k]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    ds.PixelData = np.packbits(np.ones(2 * NX * NY, dtype=np.uint8), bitorder="little").tobytes()
    target = tmp / "seg"
    target.mkdir()
    ds.save_as(target / "mask.dcm")
    return Broken(target, NotAnImageError, target / "mask.dcm")


@case
def colour_images(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "rgb"
    files = write_series(folder, reference_volume(nz=2))
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(NX * NY * 3)
        ds.save_as(f)
    return Broken(folder, NotAnImageError, files[0])


@case
def truncated_in_pixel_data(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """The file ends in the middle of its pixels; the Pixel Data length still claims them all."""
    folder, damaged = series_with(tmp, 5)
    data = damaged.read_bytes()
    damaged.write_bytes(data[: pixel_data_offset(damaged) + 12 + NX * NY])
    return Broken(folder, CorruptFileError, damaged)


@case
def pixel_data_shorter_than_rows_times_columns(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, damaged = series_with(tmp, 2)
    ds = pydicom.dcmread(damaged)
    ds.PixelData = ds.PixelData[: NX * NY]
    ds.save_as(damaged)
    return Broken(folder, CorruptFileError, damaged)


@case
def pixel_data_short_then_trailing_padding(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """Pixel Data too short for Rows x Columns, hidden by trailing padding that makes the file long enough."""
    folder, damaged = series_with(tmp, 6)
    ds = pydicom.dcmread(damaged)
    ds.PixelData = ds.PixelData[: NX * NY]
    ds.add_new(0xFFFCFFFC, "OB", bytes(400))  # DataSetTrailingPadding
    ds.save_as(damaged)
    return Broken(folder, CorruptFileError, damaged)


@case
def truncated_in_header_in_series(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """A slice cut inside its ImagePositionPatient value: the scan cannot place it, so it must not vanish."""
    folder, damaged = series_with(tmp, 7)
    damaged.write_bytes(damaged.read_bytes()[: element_offset(damaged, "ImagePositionPatient") + 12])
    return Broken(folder, CorruptFileError, damaged)


@case
def truncated_in_header_single_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    _, damaged = series_with(tmp, 0)
    damaged.write_bytes(damaged.read_bytes()[: element_offset(damaged, "SOPInstanceUID") + 20])
    return Broken(damaged, CorruptFileError)


@case
def truncated_before_image_attributes(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """Cut exactly between two elements, before Rows: a CT image header without any image attributes."""
    _, damaged = series_with(tmp, 0)
    damaged.write_bytes(damaged.read_bytes()[: element_offset(damaged, "SamplesPerPixel")])
    return Broken(damaged, CorruptFileError)


@case
def one_slice_in_folder(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "one"
    files = write_series(folder, reference_volume(nz=1))
    return Broken(folder, SingleSliceError, files[0])


@case
def one_slice_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    files = write_series(tmp / "one", reference_volume(nz=1))
    return Broken(files[0], SingleSliceError)


@case
def slice_with_other_rows_columns(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 5, Rows=NX, Columns=NY)  # same pixel count, other shape
    return Broken(folder, InconsistentSeriesError, odd, mentions=("size",))


@case
def slice_with_other_orientation(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    other = rotation(20.0, -12.0, 38.0)
    iop = [f"{v:.10f}" for v in np.concatenate([other[:, 0], other[:, 1]])]
    folder, odd = series_with(tmp, 3, ImageOrientationPatient=iop)
    return Broken(folder, InconsistentSeriesError, odd, mentions=("orientation",))


@case
def slice_with_other_pixel_spacing(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 6, PixelSpacing=["0.8", "0.8"])
    return Broken(folder, InconsistentSeriesError, odd, mentions=("pixel spacing",))


@case
def missing_middle_slice(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, gone = series_with(tmp)
    gone.unlink()
    return Broken(folder, InconsistentSeriesError, mentions=("missing", "resample=True"))


@case
def non_uniform_spacing(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, moved = series_with(tmp, 5)
    position = file_positions([moved])[0] + OBLIQUE[:, 2] * 0.4  # 0.4 mm further along the normal
    edit(moved, ImagePositionPatient=[f"{v:.10g}" for v in position])
    return Broken(folder, InconsistentSeriesError, mentions=("non-uniform",))


@case
def two_images_at_one_position(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, source = series_with(tmp, 3)
    other = folder / "slice_0003_repeat.dcm"
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = (ds.pixel_array + 5).astype("<i2").tobytes()
    ds.save_as(other)
    return Broken(folder, InconsistentSeriesError, other, mentions=("same position",))


@case
def position_missing(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 4, ImagePositionPatient=None)
    return Broken(folder, GeometryError, odd, mentions=("ImagePositionPatient",))


@case
def position_not_numeric(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 2)
    write_raw_text(odd, "ImagePositionPatient", "left\\back\\head")
    return Broken(folder, GeometryError, odd, mentions=("ImagePositionPatient",))


@case
def position_with_two_values(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 0, ImagePositionPatient=["1.5", "2.5"])
    return Broken(folder, GeometryError, odd, mentions=("ImagePositionPatient",))


@case
def orientation_not_orthonormal(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 1, ImageOrientationPatient=["1", "0.2", "0", "0", "1", "0"])
    return Broken(folder, GeometryError, odd, mentions=("ImageOrientationPatient",))


@case
def orientation_missing_everywhere(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "series"
    files = write_series(folder)
    for f in files:
        edit(f, ImageOrientationPatient=None)
    return Broken(folder, GeometryError, mentions=("ImageOrientationPatient",))


@case
def pixel_spacing_zero(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "series"
    files = write_series(folder)
    for f in files:
        edit(f, PixelSpacing=["0", "0"])
    return Broken(folder, GeometryError, mentions=("PixelSpacing",))


@case
def rescale_slope_not_a_number(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder, odd = series_with(tmp, 3)
    write_raw_text(odd, "RescaleSlope", "NaN")
    return Broken(folder, CorruptFileError, odd, mentions=("RescaleSlope",))


@case
def rows_zero(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "series"
    files = write_series(folder)
    for f in files:
        edit(f, Rows=0)
    return Broken(folder, CorruptFileError, files[0], mentions=("Rows",))


@case
def more_frames_than_the_file_holds(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """A header claiming a billion frames must be refused at once, not scanned frame by frame."""
    folder, odd = series_with(tmp, 0)
    write_raw_text(odd, "NumberOfFrames", "999999999")
    return Broken(folder, CorruptFileError, odd, mentions=("NumberOfFrames",))


def compressed_pair(tmp: Path) -> tuple[list[Path], Volume | None]:
    """Two JPEG 2000 lossless slices and the volume they hold: encoded here from the reference pattern when an
    encoder is installed (the volume is returned), else two real slices from the shared data (None)."""
    volume = reference_volume(nz=2, ny=32, nx=32)  # the encoder needs at least 32 x 32 pixels
    plain = write_series(tmp / "plain", volume)
    folder = tmp / "j2k"
    folder.mkdir()
    try:
        for f in plain:
            ds = pydicom.dcmread(f)
            ds.compress(JPEG2000Lossless)
            ds.save_as(folder / f.name)
    except Exception:  # no JPEG 2000 encoder: take two real lossless slices
        shutil.rmtree(folder)
        if not SHARED_J2K.is_dir():
            pytest.skip(f"no JPEG 2000 encoder and no JPEG 2000 sample data at {SHARED_J2K}")
        folder.mkdir()
        for f in sorted(SHARED_J2K.iterdir())[:2]:
            shutil.copy(f, folder / f.name)
        volume = None
    return sorted(folder.iterdir()), volume


class _NoDecoder:
    """What the decoder lookup reports when no plugin for a transfer syntax is installed."""

    is_available = False
    missing_dependencies = ["pretended missing by the test"]


def pretend_no_decoders(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(pydicom.pixels, "get_decoder", lambda uid: _NoDecoder())


@case
def jpeg2000_without_decoder(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    files, _ = compressed_pair(tmp)
    pretend_no_decoders(mp)
    return Broken(files[0].parent, UnsupportedTransferSyntaxError, mentions=("JPEG 2000",))


@case
def jpeg_ls_without_decoder(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "jls"
    folder.mkdir()
    for f in write_series(tmp / "plain", reference_volume(nz=2)):
        encapsulated_copy(f, folder / f.name, JPEGLSLossless, [random_bytes(300, seed=3)])
    pretend_no_decoders(mp)
    return Broken(folder, UnsupportedTransferSyntaxError, mentions=("JPEG-LS",))


@case
def jpeg2000_holding_garbage(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "j2k"
    folder.mkdir()
    for n, f in enumerate(write_series(tmp / "plain", reference_volume(nz=2))):
        encapsulated_copy(f, folder / f.name, JPEG2000Lossless, [random_bytes(300, seed=10 + n)])
    return Broken(folder, CorruptFileError)


@case
def unknown_transfer_syntax(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "private"
    folder.mkdir()
    for f in write_series(tmp / "plain", reference_volume(nz=2)):
        encapsulated_copy(f, folder / f.name, "1.2.3.4.5.6.7", [random_bytes(300, seed=20)])
    return Broken(folder, UnsupportedTransferSyntaxError, mentions=("1.2.3.4.5.6.7",))


@case
def series_that_does_not_exist(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    folder = tmp / "study"
    write_series(folder / "a", series_number=3, series_description="bone")
    write_series(folder / "b", reference_volume(nz=4), series_number=4, series_description="soft")
    return Broken(folder, SeriesNotFoundError, kwargs={"series": "99"}, mentions=("#3", "#4", "bone", "soft"))


def disc(tmp: Path) -> Path:
    """The reference series as a DICOM disc: a DICOMDIR and its referenced files; returns the DICOMDIR."""
    fileset = FileSet()
    for f in write_series(tmp / "series"):
        fileset.add(f)
    fileset.write(tmp / "disc")
    return tmp / "disc" / "DICOMDIR"


@case
def dicomdir_lists_a_missing_file(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    dicomdir = disc(tmp)
    gone = sorted(p for p in dicomdir.parent.rglob("IM*"))[3]
    gone.unlink()
    return Broken(dicomdir, InputNotFoundError, gone)


@case
def dicomdir_truncated(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    """A cut DICOMDIR lists only some images; loading those would silently lose slices."""
    dicomdir = disc(tmp)
    dicomdir.write_bytes(dicomdir.read_bytes()[: int(dicomdir.stat().st_size * 0.8)])
    return Broken(dicomdir, CorruptFileError, mentions=("truncated",))


@case
def dicomdir_of_random_bytes(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "DICOMDIR").write_bytes(random_bytes(3000, seed=6))
    return Broken(tmp / "DICOMDIR", CorruptFileError)


def nifti_with_pixdim(tmp: Path, axis: int, value: float) -> Path:
    """The reference volume as NIfTI-1 with pixdim[axis] overwritten (ITK would silently guess a spacing)."""
    path = npl.save_volume(reference_volume(), tmp / "ct.nii")
    data = bytearray(path.read_bytes())
    data[76 + 4 * axis:80 + 4 * axis] = struct.pack("<f", value)
    path.write_bytes(bytes(data))
    return path


@case
def nifti_spacing_zero(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    return Broken(nifti_with_pixdim(tmp, 2, 0.0), GeometryError, mentions=("pixdim",))


@case
def nifti_spacing_not_a_number(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    return Broken(nifti_with_pixdim(tmp, 3, float("nan")), GeometryError, mentions=("pixdim",))


def nifti(path: Path, voxels: np.ndarray) -> Path:
    image = sitk.GetImageFromArray(voxels, isVector=False)
    assert image.GetDimension() == voxels.ndim and image.GetNumberOfComponentsPerPixel() == 1
    sitk.WriteImage(image, str(path))
    return path


@case
def nifti_truncated_gzip(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    path = nifti(tmp / "ct.nii.gz", reference_voxels().astype(np.float32) + np.linspace(0, 1, NX, dtype=np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Broken(path, CorruptFileError)


@case
def nifti_truncated_uncompressed(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    path = nifti(tmp / "ct.nii", reference_voxels())
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 100])
    return Broken(path, CorruptFileError, mentions=("truncated",))


@case
def mha_truncated(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    path = tmp / "ct.mha"
    sitk.WriteImage(sitk.GetImageFromArray(reference_voxels()), str(path), useCompression=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Broken(path, CorruptFileError, misleads=("No such file",))


@case
def nifti_of_random_bytes(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    (tmp / "ct.nii.gz").write_bytes(random_bytes(4000, seed=4))
    return Broken(tmp / "ct.nii.gz", CorruptFileError)


@case
def mha_2d(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    path = tmp / "xray.mha"
    sitk.WriteImage(sitk.GetImageFromArray(reference_voxels()[0]), str(path))
    return Broken(path, SingleSliceError)


@case
def nifti_one_slice_3d(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    return Broken(nifti(tmp / "slice.nii", reference_voxels(nz=1)), SingleSliceError)


@case
def nifti_4d_several_volumes(tmp: Path, mp: pytest.MonkeyPatch) -> Broken:
    return Broken(nifti(tmp / "fmri.nii.gz", np.stack([reference_voxels()] * 3)), NotAnImageError, mentions=("4D",))


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_broken_input_gives_a_helpful_error(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = CASES[name](tmp_path, monkeypatch)
    error = expect_error(broken.path, broken.error, broken.offending or broken.path, **broken.kwargs)
    for text in broken.mentions:
        assert text in str(error), f"message does not mention {text!r}: {error}"
    for text in broken.misleads:
        assert text not in str(error), f"message misleads with {text!r}: {error}"


# ---- odd but usable inputs: a warning and the exact geometry -------------------------------------------------


def test_reference_series_round_trips_exactly(tmp_path: Path) -> None:
    reference = reference_volume()
    write_series(tmp_path / "series")
    volume = expect_volume(tmp_path / "series")
    assert_same_geometry(volume, reference)
    np.testing.assert_array_equal(volume.voxels, reference.voxels)


def test_gap_is_interpolated_when_resampling(tmp_path: Path) -> None:
    reference = reference_volume()
    folder, gone = series_with(tmp_path, 3)
    gone.unlink()
    volume = expect_volume(folder, warning="interpolated", resample=True)
    assert_same_geometry(volume, reference)
    original = reference.voxels.astype(np.int32)
    np.testing.assert_array_equal(volume.voxels[3], (original[2] + original[4]) // 2)  # linear along k
    assert not np.array_equal(volume.voxels[3], reference.voxels[3])  # the pattern is not linear in k
    others = [k for k in range(NZ) if k != 3]
    np.testing.assert_array_equal(volume.voxels[others], reference.voxels[others])


def test_exact_duplicate_copy_is_ignored(tmp_path: Path) -> None:
    reference = reference_volume()
    folder, source = series_with(tmp_path, 2)
    (folder / "copy").mkdir()
    shutil.copy(source, folder / "copy" / "slice_0002 (1).dcm")
    volume = expect_volume(folder, warning="duplicate")
    assert_same_geometry(volume, reference)
    np.testing.assert_array_equal(volume.voxels, reference.voxels)


def test_localizer_in_the_series_is_dropped(tmp_path: Path) -> None:
    reference = reference_volume()
    folder, source = series_with(tmp_path, 0)
    scout = folder / "scout.dcm"
    shutil.copy(source, scout)
    coronal = [f"{v:.10f}" for v in np.concatenate([OBLIQUE[:, 0], OBLIQUE[:, 2]])]
    edit(scout, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], ImageOrientationPatient=coronal,
         ImagePositionPatient=["-200", "0", "300"], SOPInstanceUID=generate_uid())
    volume = expect_volume(folder, warning="localizer")
    assert_same_geometry(volume, reference)
    np.testing.assert_array_equal(volume.voxels, reference.voxels)


@pytest.mark.parametrize("order", ["reversed", "random"])
def test_shuffled_names_and_instance_numbers(tmp_path: Path, order: str) -> None:
    reference = reference_volume()
    files = write_series(tmp_path / "plain")
    rng = np.random.default_rng(5)
    ranks = np.arange(NZ)[::-1] if order == "reversed" else rng.permutation(NZ)
    folder = tmp_path / "shuffled"
    folder.mkdir()
    for k, f in enumerate(files):
        target = folder / f"IMG{ranks[k]:03d}"
        shutil.copy(f, target)
        edit(target, InstanceNumber=int(rng.integers(1, 1000)))
    volume = expect_volume(folder)
    assert_same_geometry(volume, reference)
    np.testing.assert_array_equal(volume.voxels, reference.voxels)


def test_gantry_tilt_keeps_the_exact_positions(tmp_path: Path) -> None:
    shear = OBLIQUE[:, 1] * 0.45 + OBLIQUE[:, 0] * 0.1  # in-plane drift per slice, mm
    tilted = reference_volume(k_column=OBLIQUE[:, 2] * SPACING_MM[2] + shear)
    files = write_series(tmp_path / "tilted", tilted)
    volume = expect_volume(tmp_path / "tilted", warning="gantry tilt")
    positions = file_positions(files)
    np.testing.assert_allclose(volume.index_to_world[:3, 2], np.diff(positions, axis=0).mean(axis=0), atol=1e-6)
    centres = volume.index_to_world_points(np.column_stack([np.zeros(NZ), np.zeros(NZ), np.arange(NZ)]))
    np.testing.assert_allclose(centres, positions, atol=1e-6, rtol=0)
    np.testing.assert_allclose(volume.index_to_world[:3, :2], tilted.index_to_world[:3, :2], atol=1e-6)
    assert volume.metadata["gantry_tilt_deg"] > 1.0
    np.testing.assert_array_equal(volume.voxels, tilted.voxels)


def test_slow_drift_over_a_long_stack_is_kept(tmp_path: Path) -> None:
    """0.009 mm of in-plane drift per slice is below the per-slice tilt threshold, but 80 slices add up to
    0.7 mm: the grid must follow the positions rather than silently straighten the stack."""
    drifting = reference_volume(nz=80, k_column=OBLIQUE[:, 2] * SPACING_MM[2] + OBLIQUE[:, 0] * 0.009)
    files = write_series(tmp_path / "long", drifting)
    volume = expect_volume(tmp_path / "long", warning="gantry tilt")
    centres = volume.index_to_world_points(np.column_stack([np.zeros(80), np.zeros(80), np.arange(80)]))
    np.testing.assert_allclose(centres, file_positions(files), atol=1e-6, rtol=0)


def test_two_series_in_one_folder_load_one_with_a_warning(tmp_path: Path) -> None:
    big, small = reference_volume(), reference_volume(direction=rotation(0, 0, 30), nz=3)
    write_series(tmp_path / "study" / "a", small, series_number=2)
    write_series(tmp_path / "study" / "b", big, series_number=5)
    chosen = expect_volume(tmp_path / "study", warning="2 image series")
    assert_same_geometry(chosen, big)
    other = expect_volume(tmp_path / "study", series=2)
    assert_same_geometry(other, small)
    np.testing.assert_array_equal(other.voxels, small.voxels)


def test_disc_with_dicomdir_loads(tmp_path: Path) -> None:
    volume = expect_volume(disc(tmp_path))
    assert_same_geometry(volume, reference_volume())
    np.testing.assert_array_equal(volume.voxels, reference_volume().voxels)


def test_nifti_round_trips_geometry(tmp_path: Path) -> None:
    reference = reference_volume()
    volume = expect_volume(npl.save_volume(reference, tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(volume.index_to_world, reference.index_to_world, atol=1e-5)
    np.testing.assert_array_equal(volume.voxels, reference.voxels)


def test_compressed_series_loads_when_the_decoder_is_there(tmp_path: Path) -> None:
    files, expected = compressed_pair(tmp_path)
    volume = expect_volume(files[0].parent)
    if expected is not None:
        assert_same_geometry(volume, expected)
        np.testing.assert_array_equal(volume.voxels, expected.voxels)


# ---- property-based damage ---------------------------------------------------------------------------------

#: Reproducible by default; NEEDLEPLAN_FUZZ_EXAMPLES=5000 runs a longer, random hunt.
_HUNT = int(os.environ.get("NEEDLEPLAN_FUZZ_EXAMPLES", "0"))
FUZZ_SETTINGS = settings(max_examples=_HUNT or 150, deadline=None, database=None, derandomize=not _HUNT)


@pytest.fixture(scope="module")
def three_slices(tmp_path_factory: pytest.TempPathFactory) -> tuple[Volume, dict[str, bytes], dict[str, int]]:
    """A valid 3-slice series: the reference volume, each file's bytes, and where each file's pixels start."""
    reference = reference_volume(nz=3)
    folder = tmp_path_factory.mktemp("three") / "series"
    files = write_series(folder, reference)
    return reference, {f.name: f.read_bytes() for f in files}, {f.name: pixel_data_offset(f) for f in files}


def write_files(folder: Path, contents: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return folder


def assert_geometry_follows_files(volume: Volume, folder: Path, reference: Volume) -> None:
    """The original geometry, or, if the damage changed what the geometry tags say, the damaged files' own."""
    if volume.shape == reference.shape and np.allclose(volume.index_to_world, reference.index_to_world, atol=1e-6):
        return
    uid = volume.metadata.get("series_uid")
    stated = []
    with lenient_pydicom():
        for f in sorted(folder.iterdir()):
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                value = ds.get("SeriesInstanceUID")
                if (" ".join(str(value).split()) != uid) if value else not str(uid).startswith("no SeriesInstance"):
                    continue  # another series (a damaged UID makes its file a series of its own)
                stated.append([np.array([float(v) for v in ds.get(key)], dtype=float) for key in
                               ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")])
            except Exception:
                continue
    step = float(np.linalg.norm(volume.index_to_world[:3, 2]))
    message = f"silently different geometry: {volume.index_to_world.tolist()} is not what the files say"
    assert len(stated) == volume.shape[0], message
    for position, orientation, spacing in stated:
        np.testing.assert_allclose(volume.index_to_world[:3, 0], orientation[:3] * spacing[1], atol=1e-3,
                                   err_msg=message)
        np.testing.assert_allclose(volume.index_to_world[:3, 1], orientation[3:] * spacing[0], atol=1e-3,
                                   err_msg=message)
        k = float(volume.world_to_index_points(position)[2])
        centre = volume.index_to_world_points([0.0, 0.0, round(k)])
        assert 0 <= round(k) < volume.shape[0], message
        assert np.linalg.norm(centre - position) <= 0.05 * step + 1e-6, message


def check_damaged(folder: Path, reference: Volume) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = guarded_load(folder)
    event(type(result).__name__)
    if isinstance(result, Volume):
        assert result.shape[1:] == reference.shape[1:]
        assert_geometry_follows_files(result, folder, reference)
    else:
        message = str(result)
        assert message.strip() and "\n" not in message, f"message is not one line: {message!r}"
        assert str(folder) in message, f"message names no file or folder: {message}"


@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_damaged_bytes(three_slices: tuple[Volume, dict[str, bytes], dict[str, int]], data: st.DataObject) -> None:
    reference, contents, header_ends = three_slices
    name = data.draw(st.sampled_from(sorted(contents)), label="file")
    original = contents[name]
    if data.draw(st.booleans(), label="truncate"):
        damaged = original[: data.draw(st.integers(0, len(original) - 1), label="length")]
    else:
        offset = data.draw(st.integers(0, header_ends[name] - 1), label="offset")
        new = data.draw(st.binary(min_size=1, max_size=8), label="bytes")
        damaged = original[:offset] + new + original[offset + len(new):]
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_files(Path(tmp) / "series", {**contents, name: damaged})
        check_damaged(folder, reference)


def _number_text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(-1e3, 1e3).map(lambda v: f"{v:.6g}"),
        st.sampled_from(["", " ", "nan", "inf", "-inf", "1e999", "-0", "0", "1e-320", "abc", "1,5", "+", "."]),
    )


@FUZZ_SETTINGS
@given(data=st.data())
def test_fuzz_header_values(three_slices: tuple[Volume, dict[str, bytes], dict[str, int]], data: st.DataObject) -> None:
    reference, contents, _ = three_slices
    name = data.draw(st.sampled_from(sorted(contents)), label="file")
    keyword = data.draw(st.sampled_from(["ImagePositionPatient", "PixelSpacing", "ImageOrientationPatient",
                                         "RescaleSlope", "RescaleIntercept", "Rows", "Columns"]), label="tag")
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_files(Path(tmp) / "series", contents)
        target = folder / name
        if keyword in ("Rows", "Columns"):
            value = data.draw(st.one_of(st.none(), st.integers(0, 65535),
                                        st.lists(st.integers(0, 65535), min_size=2, max_size=3)), label="value")
            if value is None:
                with lenient_pydicom():
                    ds = pydicom.dcmread(target)
                    ds[keyword].value = None
                    ds.save_as(target)
            else:
                edit(target, **{keyword: value})
        else:
            values = data.draw(st.lists(_number_text(), min_size=0, max_size=7), label="values")
            write_raw_text(target, keyword, "\\".join(values))
        check_damaged(folder, reference)
