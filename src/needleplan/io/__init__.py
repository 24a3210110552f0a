"""Reading and writing images: DICOM series, NIfTI / MetaImage / NRRD files."""

from __future__ import annotations

import os
from pathlib import Path

from ..volume import Volume
from .dicom import read_dicom
from .dicom_write import write_ct_series
from .files import is_image_file_name, read_image_file, save_volume

__all__ = ["load", "read_dicom", "read_image_file", "save_volume", "write_ct_series"]


def load(
    path: str | os.PathLike[str],
    *,
    series: str | int | None = None,
    modality: str | None = None,
    resample: bool = False,
) -> Volume:
    """Load a CT or MR volume from any supported input.

    Parameters
    ----------
    path : path
        A DICOM folder (searched recursively), a DICOMDIR, a single (multi-frame) DICOM file, or a NIfTI
        (.nii, .nii.gz), MetaImage (.mha, .mhd) or NRRD (.nrrd, .nhdr) file.
    series : str or int, optional
        DICOM only: SeriesInstanceUID or SeriesNumber to load when the input holds several series.
    modality : {"CT", "MR", "LABEL", "OT"}, optional
        Image files only: what the values are, when the guess from the values is not wanted.
    resample : bool
        DICOM only: interpolate across missing slices or uneven spacing instead of refusing the series.

    Returns
    -------
    Volume
        Voxels (nz, ny, nx) and their LPS geometry. The input is only read, never modified.

    Raises
    ------
    NeedleplanError
        A subclass naming the file or folder and what to do, for every kind of unusable input.
    """
    path = Path(path)
    if is_image_file_name(path) and not path.is_dir():
        return read_image_file(path, modality=modality)
    return read_dicom(path, series=series, resample=resample)
