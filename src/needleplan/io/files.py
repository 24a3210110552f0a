"""Single-file image formats (NIfTI, MetaImage, NRRD) through SimpleITK, which reads their geometry as LPS."""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import (
    CorruptFileError,
    EmptyInputError,
    GeometryError,
    InputNotFoundError,
    NeedleplanError,
    NotAnImageError,
    SingleSliceError,
    describe_path,
)
from ..volume import Volume, affine_from_geometry
from .atomic import atomic_file
from .modality import guess_modality

#: File name endings read by :func:`read_image_file`.
IMAGE_FILE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")


def is_image_file_name(path: str | Path) -> bool:
    """True when the file name ends with a supported single-file image format."""
    name = Path(path).name.lower()
    return any(name.endswith(s) for s in IMAGE_FILE_SUFFIXES)


def read_image_file(path: str | Path, modality: str | None = None) -> Volume:
    """Read a NIfTI / MHA / NRRD file into a Volume.

    Parameters
    ----------
    path : path
        The image file.
    modality : {"CT", "MR", "LABEL", "OT"}, optional
        What the values are; guessed from them when not given (the guess is recorded in ``metadata``).

    Returns
    -------
    Volume
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{describe_path(path)} does not exist; check the path")
    if path.stat().st_size == 0:
        raise EmptyInputError(f"file {describe_path(path)} is empty (0 bytes)")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CorruptFileError(
            f"cannot read image file {describe_path(path)}: {_itk_detail(exc)}; check that the file is complete"
        ) from None
    _check_nifti(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise NotAnImageError(
            f"{describe_path(path)} has {image.GetNumberOfComponentsPerPixel()} values per voxel; "
            "needleplan needs a scalar (grey-value or label) volume"
        )
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise (SingleSliceError if image.GetDimension() == 2 else NotAnImageError)(
            f"{describe_path(path)} is a {image.GetDimension()}D image; needleplan needs one 3D volume"
        )
    voxels = sitk.GetArrayFromImage(image)
    if min(voxels.shape) == 1 and voxels.shape[0] == 1:
        raise SingleSliceError(f"{describe_path(path)} holds a single slice; a volume needs at least two")
    if voxels.dtype.kind == "f":
        _refuse_nonfinite(path, int(voxels.size - np.count_nonzero(np.isfinite(voxels))), voxels.size)
    affine = affine_from_geometry(
        np.array(image.GetSpacing()), np.array(image.GetOrigin()), np.array(image.GetDirection())
    )
    chosen, how = (modality, "given") if modality else guess_modality(voxels)
    voxels = _compact(voxels)
    metadata = {"source": str(path), "format": _format_name(path), "modality_source": how}
    try:
        return Volume(voxels, affine, chosen, metadata)
    except GeometryError as exc:
        raise GeometryError(f"{describe_path(path)}: {exc}") from None


def save_volume(volume: Volume, path: str | Path) -> Path:
    """Write a Volume as NIfTI / MHA / NRRD (chosen by the file name), atomically.

    A sheared volume is resampled onto an orthogonal grid first: these formats (as SimpleITK writes them)
    hold only orthonormal directions.
    """
    path = Path(path)
    if not is_image_file_name(path):
        raise NeedleplanError(
            f"cannot tell the format of {describe_path(path)}: use one of {', '.join(IMAGE_FILE_SUFFIXES)}"
        )
    volume = volume.orthogonalized()
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.voxels))
    image.SetSpacing([float(s) for s in volume.spacing_mm])
    image.SetOrigin([float(o) for o in volume.origin_mm])
    image.SetDirection([float(v) for v in volume.direction.ravel()])
    with atomic_file(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)
    return path


def _itk_detail(exc: RuntimeError) -> str:
    """The informative line of an ITK exception, without source locations, object addresses or stale errno."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception thrown in SimpleITK")
              and not line.startswith("Reason: No such file or directory")]
    detail = useful[-1] if useful else "unreadable"
    return re.sub(r"^ITK ERROR: \w+\(0x[0-9a-f]+\): ", "", detail)[:200].rstrip(".")


def _refuse_nonfinite(path: Path, count: int, total: int) -> None:
    """Refuse an image with NaN or infinite voxels: any value put in their place would be a guess."""
    if count:
        raise CorruptFileError(f"{describe_path(path)} contains {count} NaN or infinite voxel values (of {total}); "
                               "needleplan does not guess what they should be: fix or re-export the image")


def _check_nifti(path: Path) -> None:
    """Refuse a NIfTI file that ends before its voxels do, whose voxel spacing is not a positive number, or whose
    floating-point voxels include NaN or infinity.

    ITK reads all three silently: missing voxels become zeros, an invalid pixdim is replaced by a guess, and NaN
    and infinite voxels become zeros.
    """
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    compressed = name.endswith(".gz")
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fp:
            header = _nifti_header(fp.read(540))
        if header is None:
            return
        needed, spacing, offset, float_type = header
        if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
            raise GeometryError(
                f"NIfTI file {describe_path(path)} gives voxel spacing (pixdim) {tuple(float(v) for v in spacing)}; "
                "spacings must be positive numbers: fix the header or re-export the image"
            )
        if compressed:
            with open(path, "rb") as fp:
                fp.seek(-4, 2)
                trailer = struct.unpack("<I", fp.read(4))[0]  # uncompressed size mod 2**32, when complete
            size = needed if trailer == needed % (1 << 32) else _gunzipped_size(path)
        else:
            size = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(
            f"image file {describe_path(path)} is truncated or damaged ({type(exc).__name__}: {exc}); "
            "check that the file is complete"
        ) from None
    if size < needed:
        raise CorruptFileError(
            f"image file {describe_path(path)} holds {size} bytes{' uncompressed' if compressed else ''}, its "
            f"header needs {needed}: the file is truncated; copy or download it again"
        )
    if float_type is not None:
        _refuse_nonfinite(path, *_count_nonfinite(path, compressed, offset, needed, float_type))


def _count_nonfinite(path: Path, compressed: bool, offset: int, end: int, dtype: np.dtype) -> tuple[int, int]:
    """NaN and infinite values among the voxels stored at bytes ``offset``..``end`` of a file; and all voxels."""
    chunk = (1 << 22) // dtype.itemsize * dtype.itemsize
    bad = 0
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fp:
        fp.seek(offset)
        left = end - offset
        while left > 0 and (data := fp.read(min(chunk, left))):
            left -= len(data)
            values = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
            bad += values.size - int(np.count_nonzero(np.isfinite(values)))
    return bad, (end - offset) // dtype.itemsize


def _nifti_header(header: bytes) -> tuple[int, np.ndarray, int, np.dtype | None] | None:
    """From a NIfTI-1 or NIfTI-2 header: the bytes the file needs (voxel offset + voxel data), the spatial voxel
    spacings (pixdim 1-3, as many as there are dimensions), the voxel offset and the voxels' type when it is
    floating point (else None); None when the header is not NIfTI."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(f"{endian}i", header[:4])[0] == 348:
            datatype = struct.unpack(f"{endian}h", header[70:72])[0]
            dims = struct.unpack(f"{endian}8h", header[40:56])
            bitpix = struct.unpack(f"{endian}h", header[72:74])[0]
            pixdim = struct.unpack(f"{endian}8f", header[76:108])
            offset = struct.unpack(f"{endian}f", header[108:112])[0]
            break
        if len(header) >= 540 and struct.unpack(f"{endian}i", header[:4])[0] == 540:
            datatype = struct.unpack(f"{endian}h", header[12:14])[0]
            dims = struct.unpack(f"{endian}8q", header[16:80])
            bitpix = struct.unpack(f"{endian}h", header[14:16])[0]
            pixdim = struct.unpack(f"{endian}8d", header[104:168])
            offset = struct.unpack(f"{endian}q", header[168:176])[0]
            break
    else:
        return None
    if not 1 <= dims[0] <= 7 or bitpix <= 0 or not np.isfinite(offset):
        return None
    count = int(np.prod([max(int(d), 1) for d in dims[1:dims[0] + 1]], dtype=object))
    spacing = np.array(pixdim[1:1 + min(dims[0], 3)], dtype=np.float64)
    float_type = {16: np.dtype(f"{endian}f4"), 64: np.dtype(f"{endian}f8")}.get(datatype)
    return max(int(offset), 0) + (count * bitpix + 7) // 8, spacing, max(int(offset), 0), float_type


def _gunzipped_size(path: Path) -> int:
    """Decompress a gzip file to count its bytes; raises EOFError when it ends before its end marker."""
    size = 0
    with gzip.open(path, "rb") as fp:
        while chunk := fp.read(1 << 22):
            size += len(chunk)
    return size


def _compact(voxels: np.ndarray) -> np.ndarray:
    """Wide integer voxels stored as int16 when every value fits (halves memory for int32 CT files)."""
    if voxels.dtype.kind in "iu" and voxels.dtype.itemsize > 2:
        info = np.iinfo(np.int16)
        if voxels.min() >= info.min and voxels.max() <= info.max:
            return voxels.astype(np.int16)
    return voxels


def _format_name(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "NIfTI"
    if name.endswith((".mha", ".mhd")):
        return "MetaImage"
    return "NRRD"
