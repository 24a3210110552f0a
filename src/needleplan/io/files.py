"""Single-file image formats (NIfTI, MetaImage, NRRD) through SimpleITK, which reads their geometry as LPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import (
    CorruptFileError,
    GeometryError,
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
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise CorruptFileError(
            f"cannot read image file {describe_path(path)}: {detail[:200]}; check that the file is complete"
        ) from None
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
    if not np.all(np.isfinite(voxels)) and voxels.dtype.kind == "f":
        raise CorruptFileError(f"{describe_path(path)} contains NaN or infinite voxel values")
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
