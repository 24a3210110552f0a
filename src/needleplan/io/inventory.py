"""What an input holds: every series with its size, geometry, values and problems (for `needleplan info`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NeedleplanError, describe_path
from ..volume import Volume
from .dicom import rank_series, series_volume
from .dicom_scan import scan_dicom
from .files import is_image_file_name, read_image_file


@dataclass
class SeriesSummary:
    """One image series (or image file) as found, whether it loads or not."""

    name: str
    modality: str
    images: int
    chosen: bool
    size_xyz: tuple[int, int, int] | None = None
    spacing_mm: tuple[float, float, float] | None = None
    orientation: str | None = None
    value_range: tuple[float, float] | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable description, one fact per line, the first naming the series."""
        mark = "*" if self.chosen else " "
        out = [f"{mark} {self.name}: {self.modality}, {self.images} image(s)"]
        if self.size_xyz is not None:
            sx, sy, sz = self.spacing_mm  # type: ignore[misc]
            out.append(f"    size {self.size_xyz[0]} x {self.size_xyz[1]} x {self.size_xyz[2]} voxels, "
                       f"spacing {sx:.4g} x {sy:.4g} x {sz:.4g} mm, orientation {self.orientation}")
        if self.value_range is not None:
            unit = " HU" if self.modality == "CT" else ""
            out.append(f"    values {self.value_range[0]:.6g} .. {self.value_range[1]:.6g}{unit}")
        out.extend(f"    note: {n}" for n in self.notes)
        if self.problem:
            out.append(f"    cannot load: {self.problem}")
        return out


def inventory(path: str | Path, resample: bool = False) -> tuple[list[SeriesSummary], list[str]]:
    """Describe every image series under ``path`` and which one :func:`needleplan.load` would use.

    ``resample`` is passed on to the series reader (gaps and uneven spacing interpolated instead of refused).

    Returns
    -------
    (series, remarks)
        Series summaries in order of preference (the first loadable one is marked chosen), and remarks on
        other files found (non-image objects, unreadable files, non-DICOM files).
    """
    path = Path(path)
    if is_image_file_name(path) and not path.is_dir():
        volume = read_image_file(path)
        summary = _summarise(path.name, volume.modality, volume.shape[0], volume)
        summary.chosen = True
        summary.notes.append(f"modality {volume.metadata.get('modality_source', '')}")
        return [summary], []
    scan = scan_dicom(path)
    summaries = []
    for series in rank_series(scan):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                volume = series_volume(series, resample=resample)
                summary = _summarise(series.label, series.modality, len(series.slices), volume)
            except NeedleplanError as exc:
                summary = SeriesSummary(series.label, series.modality, len(series.slices), False, problem=str(exc))
        summary.notes.extend(str(w.message) for w in caught)
        summaries.append(summary)
    loadable = [s for s in summaries if s.problem is None]
    if loadable:
        loadable[0].chosen = True
    remarks = [f"{describe_path(p)}: {kind} (no image)" for p, kind in scan.non_image]
    remarks += [f"{describe_path(p)}: unreadable ({why})" for p, why in scan.corrupt]
    if scan.other_files:
        remarks.append(f"{scan.other_files} file(s) that are not DICOM were ignored")
    return summaries, remarks


def _summarise(name: str, modality: str, images: int, volume: Volume) -> SeriesSummary:
    values = volume.voxels
    return SeriesSummary(
        name=name, modality=volume.modality or modality, images=images, chosen=False,
        size_xyz=volume.size_xyz, spacing_mm=tuple(float(s) for s in volume.spacing_mm),  # type: ignore[arg-type]
        orientation=volume.orientation, value_range=(float(np.min(values)), float(np.max(values))),
    )
