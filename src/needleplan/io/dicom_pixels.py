"""Reading the pixels of a sorted series into one array, with each slice's own rescale applied.

Uncompressed slices are read straight from the file into the output (no intermediate copies); compressed
ones are decoded by pydicom's plugins (pylibjpeg-openjpeg for JPEG 2000, pylibjpeg-libjpeg for JPEG and
JPEG-LS). The output is int16 when every slice's values fit (the usual CT), float32 otherwise.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import UID

from ..errors import CorruptFileError, NotAnImageError, UnsupportedTransferSyntaxError, describe_path
from .dicom_scan import DicomSlice, is_compressed_syntax, is_implicit_vr, pixel_element_header_bytes

_EXPLICIT_BIG = "1.2.840.10008.1.2.2"
_INT16 = np.iinfo(np.int16)
#: Largest rescale slope / intercept applied in int32 arithmetic (16-bit pixels times this cannot overflow).
_INT_RESCALE_LIMIT = (1024, 1 << 20)


def read_slices(slices: list[DicomSlice]) -> np.ndarray:
    """Read the slices in order into an array of shape (n, rows, columns) holding rescaled values.

    Raises
    ------
    CorruptFileError, UnsupportedTransferSyntaxError, NotAnImageError
        Naming the file that failed.
    """
    first = slices[0]
    integral = all(float(s.slope).is_integer() and float(s.intercept).is_integer()
                   and abs(s.slope) <= _INT_RESCALE_LIMIT[0] and abs(s.intercept) <= _INT_RESCALE_LIMIT[1]
                   for s in slices)
    out = np.empty((len(slices), first.rows, first.columns), dtype=np.int16 if integral else np.float32)
    decoded: dict[Path, np.ndarray] = {}  # multi-frame compressed files, decoded once
    for z, item in enumerate(slices):
        stored = _stored_pixels(item, decoded)
        if out.dtype == np.int16:
            values = stored.astype(np.int32, copy=False) * int(item.slope) + int(item.intercept)
            if values.size and (values.min() < _INT16.min or values.max() > _INT16.max):
                out = out.astype(np.float32)  # rare: values beyond int16 (for example metal in 16-bit CT)
            out[z] = values
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                np.multiply(stored, np.float32(item.slope), out=out[z], casting="unsafe")
                out[z] += np.float32(item.intercept)
            if not np.all(np.isfinite(out[z])):
                raise CorruptFileError(
                    f"{describe_path(item.path)}: RescaleSlope {item.slope:g} and RescaleIntercept "
                    f"{item.intercept:g} give values beyond any image's range; the header is damaged"
                )
    return out


def interpolate_slices(stack: np.ndarray, offsets_mm: np.ndarray, step_mm: float) -> np.ndarray:
    """Linearly interpolate slices at ``offsets_mm`` (increasing) onto a uniform grid from 0 with ``step_mm``."""
    count = int(round((offsets_mm[-1] - offsets_mm[0]) / step_mm)) + 1
    targets = offsets_mm[0] + step_mm * np.arange(count)
    upper = np.clip(np.searchsorted(offsets_mm, targets, side="right"), 1, len(offsets_mm) - 1)
    lower = upper - 1
    weight = np.clip((targets - offsets_mm[lower]) / (offsets_mm[upper] - offsets_mm[lower]), 0.0, 1.0)
    out = np.empty((count,) + stack.shape[1:], dtype=stack.dtype)
    for k in range(count):
        value = stack[lower[k]] * (1.0 - weight[k]) + stack[upper[k]] * weight[k]
        out[k] = np.rint(value) if stack.dtype.kind in "iu" else value
    return out


def _stored_pixels(item: DicomSlice, decoded: dict[Path, np.ndarray]) -> np.ndarray:
    if item.samples_per_pixel != 1:
        raise NotAnImageError(
            f"{describe_path(item.path)} is a colour image ({item.photometric}); needleplan reads grey-value "
            "CT and MR only"
        )
    if item.bits_allocated not in (8, 16, 32):
        raise NotAnImageError(
            f"{describe_path(item.path)} has {item.bits_allocated}-bit pixels (a mask or overlay, not a scan)"
        )
    if item.pixel_tell is not None:
        native = _read_native(item)
        if native is not None:
            return native
    return _decode(item, decoded)


def _read_native(item: DicomSlice) -> np.ndarray | None:
    """Uncompressed pixels read directly; None when the element is not laid out as expected."""
    big = item.transfer_syntax == _EXPLICIT_BIG
    implicit = is_implicit_vr(item.transfer_syntax)
    kind = "i" if item.pixel_representation == 1 else "u"
    dtype = np.dtype(f"{'>' if big else '<'}{kind}{item.bits_allocated // 8}")
    count = item.rows * item.columns
    assert item.pixel_tell is not None  # read natively only when the scan found where the pixels start
    with open(item.path, "rb") as fp:
        fp.seek(item.pixel_tell)
        head = fp.read(pixel_element_header_bytes(item.transfer_syntax))
        endian = ">" if big else "<"
        if len(head) < 8:
            raise _truncated(item, "no pixel data")
        group, element = struct.unpack(f"{endian}HH", head[:4])
        if (group, element) != (0x7FE0, 0x0010):
            return None
        length = struct.unpack(f"{endian}I", head[4:8] if implicit else head[8:12])[0]
        if length == 0xFFFFFFFF:  # encapsulated despite the transfer syntax: let pydicom handle it
            return None
        frame_bytes = count * dtype.itemsize
        if length < frame_bytes * item.frames_in_file:
            raise _truncated(item, f"pixel data holds {length} bytes, {frame_bytes * item.frames_in_file} needed")
        fp.seek(item.frame * frame_bytes, 1)
        data = np.fromfile(fp, dtype=dtype, count=count)
    if data.size < count:
        raise _truncated(item, f"file ends after {data.size} of {count} pixels")
    return _mask_bits(data.reshape(item.rows, item.columns), item)


def _mask_bits(data: np.ndarray, item: DicomSlice) -> np.ndarray:
    """Keep only BitsStored bits (other bits may hold overlays), sign-extending signed values."""
    unused = item.bits_allocated - item.bits_stored
    if unused <= 0:
        return data
    if item.pixel_representation == 1:
        return (data << unused) >> unused
    return data & ((1 << item.bits_stored) - 1)


def _decode(item: DicomSlice, decoded: dict[Path, np.ndarray]) -> np.ndarray:
    if item.path not in decoded:
        if is_compressed_syntax(item.transfer_syntax):
            _require_decoder(item, UID(item.transfer_syntax))
        try:
            ds = pydicom.dcmread(item.path, force=True)
            array = ds.pixel_array
        except Exception as exc:  # decoders raise many exception types for damaged data
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise CorruptFileError(
                f"cannot decode the pixels of {describe_path(item.path)} ({detail}); the file may be damaged: "
                "re-export the series"
            ) from None
        if item.frames_in_file == 1:
            array = array[np.newaxis]
        if array.shape != (item.frames_in_file, item.rows, item.columns):
            raise CorruptFileError(
                f"{describe_path(item.path)} decodes to shape {array.shape}, its header says "
                f"{item.frames_in_file} frame(s) of {item.rows}x{item.columns}"
            )
        if item.frames_in_file == 1:
            return array[0]
        decoded[item.path] = array
    return decoded[item.path][item.frame]


def _require_decoder(item: DicomSlice, syntax: UID) -> None:
    from pydicom.pixels import get_decoder

    if not syntax.is_transfer_syntax:
        raise UnsupportedTransferSyntaxError(
            f"{describe_path(item.path)} uses the unknown (private) transfer syntax {syntax}, which no decoder "
            "reads; convert the series to uncompressed DICOM"
        )
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        decoder = None
    if decoder is None or not decoder.is_available:
        raise UnsupportedTransferSyntaxError(
            f"{describe_path(item.path)} is compressed as {syntax.name} and no decoder for it is installed; "
            "install pylibjpeg-openjpeg / pylibjpeg-libjpeg (JPEG family) or python-gdcm, or convert the "
            "series to uncompressed DICOM"
        )


def _truncated(item: DicomSlice, detail: str) -> CorruptFileError:
    return CorruptFileError(f"{describe_path(item.path)} is truncated or damaged: {detail}; re-export the series")
