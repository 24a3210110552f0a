"""Loading a DICOM series as a Volume: pick the series, check its geometry, read its pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import GeometryError, NeedleplanWarning, SeriesNotFoundError, describe_path
from ..volume import Volume
from .dicom_pixels import interpolate_slices, read_slices
from .dicom_scan import DicomScan, DicomSeries, damaged_files_error, scan_dicom
from .dicom_series import series_geometry

_MODALITY_RANK = {"CT": 0, "MR": 1}


def read_dicom(path: str | Path, series: str | int | None = None, resample: bool = False) -> Volume:
    """Read one DICOM image series as a Volume.

    Parameters
    ----------
    path : path
        A folder (searched recursively), a DICOMDIR, or one (multi-frame) DICOM file.
    series : str or int, optional
        SeriesInstanceUID or SeriesNumber of the series to load. Default: the best series (see
        :func:`rank_series`), named in a warning when there were several.
    resample : bool
        Interpolate across missing slices or non-uniform spacing instead of refusing the series.

    Returns
    -------
    Volume
        CT in HU (rescale applied per slice), MR with its own intensities.

    Raises
    ------
    CorruptFileError
        When any DICOM file under ``path`` cannot be read: it may be a slice of the series, whose loss would
        silently shorten the volume or open a gap.
    """
    scan = scan_dicom(path)
    refuse_damaged(scan)
    chosen = choose_series(scan, series)
    return series_volume(chosen, resample=resample)


def refuse_damaged(scan: DicomScan) -> None:
    """Raise when the scan found DICOM files it could not read (their series is unknown, so none is safe)."""
    if scan.corrupt:
        raise damaged_files_error(scan)


def series_volume(series: DicomSeries, resample: bool = False) -> Volume:
    """Check one scanned series and read its voxels into a Volume."""
    geometry = series_geometry(series, resample=resample)
    stack = read_slices(geometry.slices)
    if not geometry.uniform:
        stack = interpolate_slices(stack, geometry.slice_offsets_mm, geometry.step_mm)
    modality = series.modality if series.modality in ("CT", "MR") else "OT"
    metadata = {
        "source": str(series.slices[0].path.parent),
        "format": "DICOM",
        "series_uid": series.uid,
        "series_number": series.number,
        "series_description": series.description,
        "slices_read": len(geometry.slices),
        "gantry_tilt_deg": geometry.tilt_deg,
        "resampled": not geometry.uniform,
        **series.facts,
    }
    try:
        return Volume(stack, geometry.index_to_world, modality, metadata)
    except GeometryError as exc:
        raise GeometryError(f"{series.label} under {describe_path(series.slices[0].path.parent)}: {exc}") from None


def rank_series(scan: DicomScan) -> list[DicomSeries]:
    """Series from the most to the least suitable: CT before MR before others, axial first, most voxels first."""

    def key(s: DicomSeries) -> tuple[int, int, int]:
        usable = [x for x in s.slices if not x.is_localizer] or s.slices
        first = usable[0]
        axial = 1
        if first.orientation is not None:
            normal = np.cross(first.orientation[:3], first.orientation[3:])
            axial = 0 if abs(normal[2]) > 0.8 else 1
        return _MODALITY_RANK.get(s.modality, 2), axial, -len(usable) * first.rows * first.columns

    return sorted(scan.series, key=key)


def choose_series(scan: DicomScan, series: str | int | None = None) -> DicomSeries:
    """The series asked for (by UID or number), or the best one, named in a warning when there is a choice."""
    ranked = rank_series(scan)
    if series is None:
        if len(ranked) > 1:
            others = ", ".join(s.label for s in ranked[1:4]) + (" ..." if len(ranked) > 4 else "")
            warnings.warn(
                f"{len(ranked)} image series under {describe_path(scan.root)}; using {ranked[0].label} "
                f"({ranked[0].modality}, {len(ranked[0].slices)} images); others: {others}; choose with series=",
                NeedleplanWarning, stacklevel=3,
            )
        return ranked[0]
    wanted = str(series).strip()
    for s in ranked:
        if s.uid == wanted or (s.number is not None and wanted.isdigit() and s.number == int(wanted)):
            return s
    available = "; ".join(s.label for s in ranked)
    raise SeriesNotFoundError(
        f"no series {wanted!r} under {describe_path(scan.root)}; available: {available}"
    )
