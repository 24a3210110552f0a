"""From the slices of one DICOM series to a checked 3D geometry.

Slices are sorted by ImagePositionPatient projected on the slice normal (never by file name or
InstanceNumber) and the slice step comes from those positions (never from SliceThickness). Problems are
found and named here:

- localizer / scout images mixed into the series are dropped (with a warning);
- a slice without a usable position, orientation or pixel spacing: refused (a geometry error);
- mixed sizes, orientations or pixel spacings: refused;
- the same position twice: an identical copy (same SOPInstanceUID) is dropped; different images are refused;
- one slice only: refused;
- missing slices (a step over 1.5x the usual one) or non-uniform steps (over 2% off): refused, unless the
  caller asks to resample, which interpolates onto a uniform grid with a warning;
- gantry tilt (slices shifted in-plane from one to the next): kept exact as a sheared grid, with a warning;
- slices that do not lie on one line: refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import GeometryError, InconsistentSeriesError, NeedleplanWarning, SingleSliceError, describe_path
from .dicom_scan import DicomSeries, DicomSlice

#: A step longer than this many times the usual step means slices are missing.
GAP_FACTOR = 1.5
#: Steps may differ from the usual step by this fraction and still count as uniform.
STEP_TOLERANCE = 0.02
#: In-plane drift per slice (mm) below which a stack counts as straight (not gantry-tilted).
SHEAR_TOLERANCE_MM = 0.01
#: A slice further than this fraction of the step from the line through the others breaks the stack.
OFF_LINE_TOLERANCE = 0.05


@dataclass
class SeriesGeometry:
    """A series' slices in order and the grid they make."""

    slices: list[DicomSlice]  # sorted along the slice normal
    index_to_world: np.ndarray  # 4x4, k along the actual step between slices
    slice_offsets_mm: np.ndarray  # each slice's position along the normal, relative to the first
    step_mm: float  # distance between slices along the normal on the (uniform) grid
    uniform: bool  # False: slices must be interpolated onto the uniform grid of index_to_world
    tilt_deg: float  # angle between the slice step and the slice normal (gantry tilt)


def series_geometry(series: DicomSeries, resample: bool = False) -> SeriesGeometry:
    """Check one series and derive its grid.

    Parameters
    ----------
    series : DicomSeries
        From :func:`needleplan.io.dicom_scan.scan_dicom`.
    resample : bool
        Allow gaps and non-uniform steps, to be interpolated onto a uniform grid.

    Raises
    ------
    SingleSliceError, InconsistentSeriesError, GeometryError
    """
    slices = _drop_localizers(series)
    if len(slices) < 2:
        raise SingleSliceError(
            f"{series.label} has a single image ({describe_path(slices[0].path)}); a volume needs at least two "
            "slices: load the whole series folder"
        )
    _require_same(series, slices)
    first = slices[0]
    assert first.orientation is not None and first.pixel_spacing is not None  # _require_same checked every slice
    row_dir, col_dir = first.orientation[:3], first.orientation[3:]
    normal = np.cross(row_dir, col_dir)
    offsets = np.array([float(np.dot(_position(s), normal)) for s in slices])
    if not np.all(np.isfinite(offsets)):
        raise GeometryError(f"{_where(series)}: slice positions are too large to place the slices; check "
                            "ImagePositionPatient")
    order = np.argsort(offsets, kind="stable")
    slices = [slices[i] for i in order]
    offsets = offsets[order]
    slices, offsets = _drop_duplicates(series, slices, offsets)
    if len(slices) < 2:
        raise SingleSliceError(
            f"{_where(series)}: every image lies at one slice position; a volume needs two or more"
        )
    steps = np.diff(offsets)
    step = _usual_step(steps)
    uniform = _check_steps(series, slices, offsets, steps, step, resample)
    step_vector, tilt_deg = _step_vector(series, slices, offsets, normal, step)
    spacing_row, spacing_col = first.pixel_spacing
    affine = np.eye(4)
    affine[:3, 0] = row_dir * spacing_col
    affine[:3, 1] = col_dir * spacing_row
    affine[:3, 2] = step_vector
    affine[:3, 3] = slices[0].position
    return SeriesGeometry(slices, affine, offsets - offsets[0], step, uniform, tilt_deg)


def _drop_localizers(series: DicomSeries) -> list[DicomSlice]:
    slices = [s for s in series.slices if not s.is_localizer]
    dropped = len(series.slices) - len(slices)
    if not slices:
        raise SingleSliceError(f"{_where(series)} holds only localizer/scout images; load the axial series instead")
    if dropped:
        warnings.warn(f"{_where(series)}: dropped {dropped} localizer/scout image(s)", NeedleplanWarning, stacklevel=3)
    return slices


def _position(s: DicomSlice) -> np.ndarray:
    """ImagePositionPatient of a slice that :func:`_require_same` has checked."""
    assert s.position is not None
    return s.position


def _where(series: DicomSeries) -> str:
    """A series as named in messages: its label and the folder of its first file."""
    return f"{series.label} under {describe_path(series.slices[0].path.parent)}"


def _require_same(series: DicomSeries, slices: list[DicomSlice]) -> None:
    for s in slices:
        if s.position is None or s.orientation is None or s.pixel_spacing is None:
            missing = [name for name, value in (("ImagePositionPatient", s.position),
                                                ("ImageOrientationPatient", s.orientation),
                                                ("PixelSpacing", s.pixel_spacing)) if value is None]
            raise GeometryError(
                f"{describe_path(s.path)} in {series.label} lacks a valid {' and '.join(missing)}; "
                "without it the slice cannot be placed in the patient"
            )
        if np.any(s.pixel_spacing <= 0):
            raise GeometryError(
                f"{describe_path(s.path)} has PixelSpacing {_show(s.pixel_spacing)}; spacings must be positive"
            )
        row, col = s.orientation[:3], s.orientation[3:]
        if (abs(np.linalg.norm(row) - 1) > 1e-3 or abs(np.linalg.norm(col) - 1) > 1e-3
                or abs(float(np.dot(row, col))) > 1e-3):
            raise GeometryError(
                f"{describe_path(s.path)} has ImageOrientationPatient {_show(s.orientation)}, which is not two "
                "orthogonal unit vectors"
            )
    first = slices[0]
    checks = (
        ("size", lambda s: (s.rows, s.columns), lambda a, b: a == b),
        ("orientation", lambda s: s.orientation, lambda a, b: np.allclose(a, b, atol=1e-4)),
        ("pixel spacing", lambda s: s.pixel_spacing, lambda a, b: np.allclose(a, b, rtol=1e-4, atol=1e-5)),
    )
    for what, get, same in checks:
        odd = [s for s in slices if not same(get(s), get(first))]
        if odd:
            raise InconsistentSeriesError(
                f"{series.label} mixes images of different {what}: {describe_path(first.path)} has "
                f"{_show(get(first))}, {describe_path(odd[0].path)} has {_show(get(odd[0]))} "
                f"({len(odd)} of {len(slices)} differ); load a folder with one stack, or choose with series="
            )


def _show(value: object) -> str:
    if isinstance(value, np.ndarray):
        return "(" + ", ".join(f"{v:.4g}" for v in value) + ")"
    return str(value)


def _drop_duplicates(
    series: DicomSeries, slices: list[DicomSlice], offsets: np.ndarray
) -> tuple[list[DicomSlice], np.ndarray]:
    keep = [0]
    copies = 0
    for i in range(1, len(slices)):
        previous = slices[keep[-1]]
        if abs(offsets[i] - offsets[keep[-1]]) > 1e-3:
            keep.append(i)
            continue
        if slices[i].sop_instance_uid == previous.sop_instance_uid and slices[i].frame == previous.frame:
            copies += 1
            continue
        hint = ""
        if slices[i].acquisition != previous.acquisition:
            hint = f" (acquisition/echo/temporal position {previous.acquisition} vs {slices[i].acquisition})"
        raise InconsistentSeriesError(
            f"{series.label} has two different images at the same position {offsets[i]:.3f} mm: "
            f"{describe_path(previous.path)} and {describe_path(slices[i].path)}{hint}; the series holds more "
            "than one volume (echoes, phases or repeats): separate them into folders"
        )
    if copies:
        warnings.warn(f"{_where(series)}: ignored {copies} duplicate copy/copies of the same image",
                      NeedleplanWarning, stacklevel=3)
    return [slices[i] for i in keep], offsets[keep]


def _usual_step(steps: np.ndarray) -> float:
    """The most common slice step: the median of the steps no longer than 1.5x the smallest."""
    smallest = float(np.min(steps))
    return float(np.median(steps[steps <= smallest * GAP_FACTOR]))


def _check_steps(
    series: DicomSeries, slices: list[DicomSlice], offsets: np.ndarray, steps: np.ndarray, step: float,
    resample: bool,
) -> bool:
    gaps = np.nonzero(steps > step * GAP_FACTOR)[0]
    uneven = np.nonzero(np.abs(steps - step) > STEP_TOLERANCE * step)[0]
    if gaps.size == 0 and uneven.size == 0:
        return True
    if gaps.size:
        i = int(gaps[0])
        missing = int(round(steps[i] / step)) - 1
        problem = (f"about {missing} slice(s) missing between {describe_path(slices[i].path)} "
                   f"({offsets[i]:.2f} mm) and {describe_path(slices[i + 1].path)} ({offsets[i + 1]:.2f} mm), "
                   f"{len(gaps)} gap(s) in all")
    else:
        problem = (f"non-uniform slice spacing under {describe_path(slices[0].path.parent)}: steps from "
                   f"{steps.min():.3f} to {steps.max():.3f} mm (usual {step:.3f} mm)")
    if not resample:
        raise InconsistentSeriesError(
            f"{series.label}: {problem}; {'find the missing files, or ' if gaps.size else ''}pass resample=True "
            "(CLI: --resample) to interpolate onto a uniform grid"
        )
    warnings.warn(f"{series.label}: {problem}; interpolated onto a uniform {step:.3f} mm grid",
                  NeedleplanWarning, stacklevel=3)
    return False


def _step_vector(
    series: DicomSeries, slices: list[DicomSlice], offsets: np.ndarray, normal: np.ndarray, step: float
) -> tuple[np.ndarray, float]:
    """The displacement from one slice to the next (the k axis), exact under gantry tilt."""
    positions = np.array([s.position for s in slices])
    along = offsets - offsets[0]
    relative = positions - positions[0]
    # least-squares line through the positions and the first slice (the volume's origin), parametrised by the
    # distance along the normal; its normal component is exactly 1, its in-plane part is the shear
    per_mm = np.linalg.lstsq(along[:, None], relative, rcond=None)[0][0]
    shear = per_mm - normal * float(np.dot(per_mm, normal))
    limit = OFF_LINE_TOLERANCE * step

    def misplacement(direction: np.ndarray) -> np.ndarray:  # mm between each slice and where the grid puts it
        return np.linalg.norm(relative - along[:, None] * direction, axis=1)

    if np.linalg.norm(shear) * step <= SHEAR_TOLERANCE_MM and misplacement(normal).max() <= limit:
        return normal * step, 0.0
    residual = misplacement(per_mm)
    if residual.max() > limit:
        worst = int(np.argmax(residual))
        raise InconsistentSeriesError(
            f"{series.label}: the slices do not lie on one line ({describe_path(slices[worst].path)} is "
            f"{residual[worst]:.2f} mm off); the series may mix stacks: load one stack"
        )
    vector = (normal + shear) * step
    tilt = float(np.degrees(np.arctan(np.linalg.norm(shear))))
    warnings.warn(
        f"{_where(series)}: gantry tilt of {tilt:.2f} degrees; the volume keeps the exact sheared grid "
        "(Volume.orthogonalized() resamples it)", NeedleplanWarning, stacklevel=3,
    )
    return vector, tilt
