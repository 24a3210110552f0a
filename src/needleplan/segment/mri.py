"""Spine MRI: spine curve, discs, vertebral bodies and canal on T2, and what MR cannot give.

The scan is reindexed (or resampled) onto a patient-aligned isotropic grid and its intensities scaled by
percentiles. The fluid-filled canal is the bright tube through the axial slices and its centre line is the spine
curve; the discs are the plate-like bright ridges in front of the canal that repeat along the curve
(:mod:`.mri_column`). Each vertebral body lies between two consecutive discs: its outline is traced on the plane
halfway between them, and its endplates are the discs' faces. T1-weighted scans (fluid dark) are recognised and
refused with a clear message: their discs and canal need a different detector that has not been built.

Bone has no MR signal of its own (cortical bone is dark on every sequence), and the thin posterior processes
are a few voxels of dark next to dark ligament and muscle at clinical spacing, so the landmarks built on them
(pedicles, facets, transverse and spinous processes, foramina, nerve models, pelvis) are listed in
``Spine.unavailable`` with the reason instead of being guessed. The numbering needs an anchor (sacrum, C2 with
its dens, ribs); a cropped MR rarely shows one, and then the bodies are left unnumbered ("V1", "V2"... cranial
to caudal, label ids from :data:`UNNUMBERED_LABEL_BASE` + 1) rather than given a level name that nothing
supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import STRUCTURE_IDS, Numbering, Spine, Vertebra
from ..errors import NeedleplanError
from ..volume import Volume, affine_from_geometry
from .mri_column import (PITCH_RANGE_MM, PITCH_TOLERANCE, Curve, Disc, canal_mask, disc_candidates,
                         fill_holes_in_slices, select_discs, spine_curve, straighten)

#: Working grid spacing: the scan's finest spacing, kept within this range, mm.
WORK_SPACING_RANGE_MM = (1.0, 2.0)
#: Smallest extent of a usable scan: across (left-right and front-back) and along the spine, mm.
MIN_EXTENT_MM = (20.0, 30.0)
#: Intensity percentiles that map to 0 and 1 on the working scale.
NORMALISE_PERCENTILES = (1.0, 99.5)
#: Unnumbered vertebrae get label ids above this (VerSe ids stop at 28).
UNNUMBERED_LABEL_BASE = 100
#: Rays and reach of a body outline, the relative change of intensity that ends a ray, and the Gaussian
#: smoothing along a ray (mm).
OUTLINE_RAYS, OUTLINE_REACH_MM, OUTLINE_CONTRAST, OUTLINE_SMOOTHING_MM = 48, 40.0, 0.3, 1.0
#: The canal centre is taken this fraction of the body's height above its centroid (the usual pedicle height).
PEDICLE_HEIGHT_FRACTION = 0.2
#: Disc-to-disc distances (mm) that suggest the region when no level can be anchored.
REGION_PITCH_MM = (("cervical", 22.0), ("thoracic", 31.0), ("lumbar", float("inf")))

#: What MR cannot give, and why ("{spacing}" becomes the scan's voxel spacing).
_DARK_BONE = ("cortical bone has no MR signal: the {what} is dark against dark ligament and muscle, a few voxels "
              "wide at this scan's {spacing} mm spacing; measure it on CT")
_REASONS: dict[str, str] = {
    "pedicle": _DARK_BONE.replace("{what}", "pedicle (narrowest width 4-10 mm, between two dark cortices)"),
    "sap_tip": _DARK_BONE.replace("{what}", "superior articular process"),
    "iap_tip": _DARK_BONE.replace("{what}", "inferior articular process"),
    "tp_tip": _DARK_BONE.replace("{what}", "transverse process (2-5 mm thick)"),
    "sap_tp_junction": "needs the SAP and the transverse process, which MR does not resolve; plan MBB and RFA on CT",
    "spinous_tip": _DARK_BONE.replace("{what}", "spinous process"),
    "foramen": "bounded by the pedicles and the SAP, which MR does not resolve",
    "exiting_root": "modelled from the pedicle (CLINICAL.md section 1), which MR does not give",
    "medial_branch": "modelled from the SAP-TP junction (CLINICAL.md section 1), which MR does not give",
    "pelvis": "sacral ala, S1 foramina, iliac crests, PSIS and SI joints are cortical landmarks, not segmented on MR",
    "posterior_arch": "the label map holds the vertebral bodies only, not laminae, pedicles or processes",
}
_SIDED = ("pedicle", "sap_tip", "iap_tip", "tp_tip", "sap_tp_junction", "foramen", "exiting_root", "medial_branch")


@dataclass(frozen=True)
class WorkGrid:
    """The scan on a patient-aligned isotropic grid (``image[z, y, x]``, LPS axes), intensities scaled to about
    0-1 by percentiles; ``valid`` marks the voxels inside the scan's field of view.

    ``reorder`` is set when the grid is the scan's own grid with its axes permuted and flipped (see
    :func:`_axis_reorder`), so that results go back to the scan without interpolation.
    """

    image: np.ndarray
    valid: np.ndarray
    index_to_world: np.ndarray
    spacing_mm: float
    reorder: tuple[tuple[int, bool], ...] | None = None

    @property
    def world_to_index(self) -> np.ndarray:
        return np.linalg.inv(self.index_to_world)


@dataclass(frozen=True)
class Body:
    """One vertebral body between two discs, in world mm.

    Attributes
    ----------
    centroid : ndarray, shape (3,)
    axes : ndarray, shape (3, 3)
        Columns: unit left, posterior and superior vectors of the body.
    superior_endplate, inferior_endplate : tuple of ndarray
        (centre (3,), unit normal (3,) pointing out of the body).
    radii_mm : ndarray, shape (OUTLINE_RAYS,)
        The outline: distance from the body axis along rays at equal angles from ``left`` towards anterior.
    """

    centroid: np.ndarray
    axes: np.ndarray
    superior_endplate: tuple[np.ndarray, np.ndarray]
    inferior_endplate: tuple[np.ndarray, np.ndarray]
    radii_mm: np.ndarray


# ---- input and working grid ----------------------------------------------------------------------------------
def _check_input(volume: Volume) -> None:
    """Raise a NeedleplanError for anything but a finite 3D MR volume big enough to hold two discs, with contrast."""
    if not isinstance(volume, Volume):
        raise NeedleplanError(f"segment_mri() needs a needleplan Volume (from npl.load), got {type(volume).__name__}")
    if volume.modality != "MR":
        raise NeedleplanError(f"segment_mri() needs an MR volume, got modality {volume.modality!r}; "
                              "npl.segment(volume) sends CT to the CT pipeline")
    extent = np.ptp(volume.corners_mm(), axis=0)
    across, along = MIN_EXTENT_MM
    if min(volume.size_xyz) < 3 or extent[0] < across or extent[1] < across or extent[2] < along:
        raise NeedleplanError(
            f"this MR covers {extent[0]:.0f} x {extent[1]:.0f} x {extent[2]:.0f} mm (left-right, front-back, "
            f"head-feet) in {volume.size_xyz} voxels; the MR pipeline needs a 3D scan at least {across:.0f} mm "
            f"across and {along:.0f} mm along the spine (two discs)")
    values = volume.voxels
    if not np.all(np.isfinite(values)):
        raise NeedleplanError("this MR has non-finite voxel values (NaN or infinity); re-export the series")
    low, high = np.percentile(values, NORMALISE_PERCENTILES)
    if not high > low:
        share = float(np.mean(values == low))
        raise NeedleplanError(f"this MR has no contrast: {100 * share:.1f}% of its voxels hold the value "
                              f"{float(low):g}; is it an empty or masked series?")


def _axis_reorder(volume: Volume, spacing: float) -> tuple[tuple[int, bool], ...] | None:
    """How the working grid's (z, y, x) array axes come from the scan's: (scan array axis, flipped) for each, when
    the scan's axes are LPS axes (any order and sign) at the working spacing; else None."""
    direction = volume.direction
    if not (np.allclose(np.abs(direction).max(axis=0), 1.0, atol=1e-6)
            and np.allclose(volume.spacing_mm, spacing, rtol=1e-6)):
        return None
    out = []
    for axis in (2, 1, 0):  # z, y, x
        column = int(np.argmax(np.abs(direction[axis])))
        out.append((2 - column, bool(direction[axis, column] < 0)))
    return tuple(out)


def _reordered(voxels: np.ndarray, reorder: tuple[tuple[int, bool], ...]) -> np.ndarray:
    """Scan array -> working array (``reorder`` from :func:`_axis_reorder`)."""
    out = np.transpose(voxels, [axis for axis, _ in reorder])
    return np.flip(out, tuple(n for n, (_, flipped) in enumerate(reorder) if flipped))


def _restored(values: np.ndarray, reorder: tuple[tuple[int, bool], ...]) -> np.ndarray:
    """Working array -> scan array (inverse of :func:`_reordered`)."""
    out = np.flip(values, tuple(n for n, (_, flipped) in enumerate(reorder) if flipped))
    return np.ascontiguousarray(np.transpose(out, np.argsort([axis for axis, _ in reorder])))


def _working_grid(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, tuple | None]:
    """Normalised intensities (about 0-1), field-of-view mask, affine, spacing and axis reorder of the LPS-aligned
    working grid (a reordering of the scan's grid when possible, else a trilinear resampling)."""
    spacing = float(np.clip(volume.spacing_mm.min(), *WORK_SPACING_RANGE_MM))
    corners = volume.index_to_world_points(np.array(
        [[i, j, k] for i in (0, volume.size_xyz[0] - 1) for j in (0, volume.size_xyz[1] - 1)
         for k in (0, volume.size_xyz[2] - 1)], dtype=np.float64))
    low, high = corners.min(axis=0), corners.max(axis=0)
    size = np.floor((high - low) / spacing + 1e-6).astype(int) + 1
    affine = affine_from_geometry(np.full(3, spacing), low)
    reorder = _axis_reorder(volume, spacing)
    if reorder is not None:
        values = _reordered(volume.voxels, reorder).astype(np.float32)
    else:
        floating = Volume(volume.voxels.astype(np.float32), volume.index_to_world, "MR")
        shape = (int(size[2]), int(size[1]), int(size[0]))
        values = floating.resample(affine, shape, order=1, fill_value=np.nan).voxels
    valid = np.isfinite(values)
    lowest, highest = np.percentile(values[valid], NORMALISE_PERCENTILES)
    scaled = (values - lowest) / max(float(highest - lowest), 1e-12)
    image = np.where(valid, np.clip(scaled, 0.0, 1.5), 0.0).astype(np.float32)
    return image, valid, affine, spacing, reorder


def working_grid(volume: Volume) -> tuple[WorkGrid, np.ndarray]:
    """The scan on the working grid and its canal mask (the fluid-bright tube of a T2-weighted scan).

    Raises
    ------
    NeedleplanError
        When no canal is found; the message says whether the scan looks T1-weighted (fluid dark), which this
        pipeline does not handle.
    """
    image, valid, affine, spacing, reorder = _working_grid(volume)
    canal, _ = canal_mask(image, valid, spacing)
    if canal is not None:
        return WorkGrid(image, valid, affine, spacing, reorder), canal
    inverted = np.where(valid, 1.0 - np.clip(image, 0.0, 1.0), 0.0).astype(np.float32)
    if canal_mask(inverted, valid, spacing)[0] is not None:
        raise NeedleplanError("this MR looks T1-weighted (a tube of dark fluid runs through it, no bright one): the "
                              "MR pipeline needs a T2-weighted series, where the canal's fluid is bright; T1 is "
                              "not supported yet")
    raise NeedleplanError("found no fluid-filled spinal canal in this MR (no tube of bright fluid running through "
                          "most axial slices); the MR pipeline needs a T2-weighted spine MRI, sagittal or axial, "
                          "that covers the canal over at least two discs")


# ---- bodies --------------------------------------------------------------------------------------------------
def _ray_directions(left: np.ndarray, anterior: np.ndarray) -> np.ndarray:
    angles = np.linspace(0.0, 2 * np.pi, OUTLINE_RAYS, endpoint=False)
    return np.cos(angles)[:, None] * left + np.sin(angles)[:, None] * anterior


def _outline_radii(work: WorkGrid, centre: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Distance from ``centre`` to the body's edge along each ray in the plane of ``axes``' first two columns.

    A ray ends where the (slightly smoothed) intensity leaves the body's own level by :data:`OUTLINE_CONTRAST`
    of it, darker (cortex, ligament) or brighter (canal, fat, disc). The radii are median-filtered around the
    outline and kept within 0.7 to 1.3 times their median (a vertebral body is no more elongated than that).
    """
    left, posterior, superior = axes.T
    h = work.spacing_mm
    radii = np.arange(0.0, OUTLINE_REACH_MM, 0.5 * h)
    rays = _ray_directions(left, -posterior)
    heights = np.array([-h, 0.0, h])
    points = (centre + heights[:, None, None, None] * superior + radii[None, None, :, None] * rays[None, :, None, :])
    ijk = points @ work.world_to_index[:3, :3].T + work.world_to_index[:3, 3]
    values = ndimage.map_coordinates(work.image, ijk[..., ::-1].transpose(3, 0, 1, 2), order=1, cval=0.0)
    values = ndimage.gaussian_filter1d(values.mean(axis=0), OUTLINE_SMOOTHING_MM / (0.5 * h), axis=1)
    level = float(np.median(values[:, radii <= 4.0]))
    away = (np.abs(values - level) > OUTLINE_CONTRAST * max(level, 0.05)) & (radii[None, :] >= 2.0)
    ends = np.where(away.any(axis=1), radii[np.argmax(away, axis=1)], radii[-1])
    ends = ndimage.median_filter(ends, size=5, mode="wrap")
    typical = float(np.median(ends))
    return np.clip(ends, 0.7 * typical, 1.3 * typical)


def _outline_centroid(radii: np.ndarray) -> np.ndarray:
    """Area centroid of a star polygon given by its radii at equal angles, in (left, anterior) coordinates."""
    angles = np.linspace(0.0, 2 * np.pi, len(radii), endpoint=False)
    x, y = radii * np.cos(angles), radii * np.sin(angles)
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = 0.5 * cross.sum()
    return np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)


def _plane_hit(point: np.ndarray, direction: np.ndarray, plane_point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Where the line through ``point`` along ``direction`` meets a plane."""
    t = float(np.dot(plane_point - point, normal) / np.dot(direction, normal))
    return point + t * direction


def _axes(superior: np.ndarray, posterior_hint: np.ndarray) -> np.ndarray:
    """Right-handed LPS frame (columns left, posterior, superior) from a superior axis and a posterior hint."""
    superior = superior / np.linalg.norm(superior)
    posterior = posterior_hint - np.dot(posterior_hint, superior) * superior
    posterior /= np.linalg.norm(posterior)
    return np.column_stack([np.cross(posterior, superior), posterior, superior])


def body_between(work: WorkGrid, curve: Curve, above: Disc, below: Disc) -> Body:
    """The vertebral body between two discs: its endplates are the discs' faces, its outline is traced halfway.

    The body axis runs through the outline's centroid along the mean of the two disc normals; the endplate
    centres are where that axis meets the discs' faces, and their normals are the axis (up for the superior
    endplate, down for the inferior): a disc's own normal is tilted against its neighbours' endplates by half the
    disc's wedge angle, which reaches 10 degrees and more at the lordotic lumbosacral discs.
    """
    superior_face = above.center - 0.5 * above.height_mm * above.normal
    inferior_face = below.center + 0.5 * below.height_mm * below.normal
    mid_s = 0.5 * (above.s + below.s)
    axes = _axes(above.normal + below.normal, curve.frame_at(mid_s)[2])
    centre = 0.5 * (superior_face + inferior_face)
    for _ in range(2):  # trace, move to the outline's centroid, trace again
        radii = _outline_radii(work, centre, axes)
        offset = _outline_centroid(radii)
        centre = centre + offset[0] * axes[:, 0] - offset[1] * axes[:, 1]
    radii = _outline_radii(work, centre, axes)
    superior = axes[:, 2]
    top = _plane_hit(centre, superior, superior_face, above.normal)
    bottom = _plane_hit(centre, superior, inferior_face, below.normal)
    canal_point = curve.frame_at(mid_s)[0]
    axes = _axes(superior, canal_point - centre)
    return Body(0.5 * (top + bottom), axes, (top, superior), (bottom, -superior), radii)


def _regular_pairs(discs: list[Disc], step_mm: float) -> tuple[list[tuple[Disc, Disc]], float]:
    """Consecutive disc pairs one pitch apart (a longer gap hides a missed disc), and the pitch in mm."""
    gaps = np.diff([d.s for d in discs]) * step_mm
    pitch = float(np.median(gaps))
    pairs = [(a, b) for a, b, gap in zip(discs[:-1], discs[1:], gaps, strict=True)
             if gap <= (1 + PITCH_TOLERANCE) * pitch]
    return pairs, pitch


# ---- canal outline -------------------------------------------------------------------------------------------
def _pedicle_level(curve: Curve, body: Body) -> float:
    """Fractional curve sample level with the usual pedicle height: :data:`PEDICLE_HEIGHT_FRACTION` of the body's
    height above its centroid (the pedicles are not seen on MR; they arise from the upper half of the body)."""
    top, bottom = body.superior_endplate[0], body.inferior_endplate[0]
    superior = body.axes[:, 2]
    target = body.centroid + PEDICLE_HEIGHT_FRACTION * float(np.dot(top - bottom, superior)) * superior
    signed = (curve.points - target) @ superior
    crossing = np.flatnonzero(np.diff(np.sign(signed)) != 0)
    if len(crossing) == 0:
        return float(np.argmin(np.abs(signed)))
    i = int(crossing[np.argmin(np.abs(crossing - np.argmin(np.abs(signed))))])
    return i + float(signed[i] / (signed[i] - signed[i + 1]))


def canal_section(canal: np.ndarray, work: WorkGrid, curve: Curve, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (3,) and closed outline (N + 1, 3) of the canal mask on the plane perpendicular to the curve at
    sample ``s``, traced by rays from the curve."""
    point, _, posterior, left = curve.frame_at(s)
    radii = np.arange(0.0, 30.0, 0.5 * work.spacing_mm)
    rays = _ray_directions(left, -posterior)
    points = point + radii[None, :, None] * rays[:, None, :]
    ijk = points @ work.world_to_index[:3, :3].T + work.world_to_index[:3, 3]
    inside = ndimage.map_coordinates(canal.astype(np.float32), ijk[..., ::-1].transpose(2, 0, 1), order=1) >= 0.5
    ends = np.where((~inside).any(axis=1), radii[np.argmax(~inside, axis=1)], radii[-1])
    outline = point + ends[:, None] * rays
    offset = _outline_centroid(ends) if ends.min() > 0 else np.zeros(2)
    return point + offset[0] * left - offset[1] * posterior, np.vstack([outline, outline[:1]])


# ---- label maps ----------------------------------------------------------------------------------------------
def _index_box(volume: Volume, corners_mm: np.ndarray) -> tuple[slice, slice, slice] | None:
    """(z, y, x) slices of the scan's grid covering world points, or None when they miss the grid."""
    ijk = volume.world_to_index_points(corners_mm)
    low = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    high = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, volume.size_xyz)
    if np.any(high <= low):
        return None
    return slice(low[2], high[2]), slice(low[1], high[1]), slice(low[0], high[0])


def _inside_prism(volume: Volume, body: Body, top: tuple[np.ndarray, np.ndarray],
                  bottom: tuple[np.ndarray, np.ndarray]) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Scan voxels between two planes (each a point and an outward normal) inside the body's outline."""
    reach = float(body.radii_mm.max())
    left, posterior, superior = body.axes.T
    ends = [top[0], bottom[0]]
    corners = np.array([e + a * left + b * posterior for e in ends for a in (-reach, reach) for b in (-reach, reach)])
    box = _index_box(volume, corners)
    if box is None:
        return None
    k, j, i = np.meshgrid(*(np.arange(b.start, b.stop) for b in box), indexing="ij")
    world = volume.index_to_world_points(np.stack([i, j, k], axis=-1).astype(np.float64))
    offset = world - body.centroid
    u, v = offset @ left, -(offset @ posterior)
    angle = np.mod(np.arctan2(v, u), 2 * np.pi)
    rays = len(body.radii_mm)
    limit = np.interp(angle, np.arange(rays + 1) * 2 * np.pi / rays, np.r_[body.radii_mm, body.radii_mm[0]])
    inside = np.hypot(u, v) <= limit
    for point, normal in (top, bottom):
        inside &= (world - point) @ normal <= 0.0
    return box, inside


def _paint(target: np.ndarray, found: tuple[tuple[slice, slice, slice], np.ndarray] | None, value: int) -> None:
    if found is not None:
        box, inside = found
        target[box][inside] = value


def _disc_faces(disc: Disc) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The disc's upper and lower faces as (point, outward normal) planes."""
    half = 0.5 * disc.height_mm * disc.normal
    return (disc.center + half, disc.normal), (disc.center - half, -disc.normal)


def label_maps(volume: Volume, work: WorkGrid, canal: np.ndarray, bodies: list[Body], labels: list[int],
               discs: list[Disc]) -> tuple[Volume, Volume]:
    """Vertebral-body labels and structures (patient body, bone, canal, discs) on the scan's grid."""
    body_labels = np.zeros(volume.shape, dtype=np.uint8)
    for body, label in zip(bodies, labels, strict=True):
        _paint(body_labels, _inside_prism(volume, body, body.superior_endplate, body.inferior_endplate), label)
    soft = _patient_mask(work) * np.uint8(STRUCTURE_IDS["body"])
    soft[canal] = STRUCTURE_IDS["canal"]
    soft = _to_scan(soft, work, volume)
    structures = soft.copy()
    structures[body_labels > 0] = STRUCTURE_IDS["bone"]
    for disc in discs:
        nearest = min(bodies, key=lambda b: float(np.linalg.norm(b.centroid - disc.center)))
        top, bottom = _disc_faces(disc)
        _paint(structures, _inside_prism(volume, nearest, top, bottom), STRUCTURE_IDS["disc"])
    structures[soft == STRUCTURE_IDS["canal"]] = STRUCTURE_IDS["canal"]
    metadata = {"source": "needleplan.segment.mri"}
    return (Volume(body_labels, volume.index_to_world, "LABEL", metadata),
            Volume(structures, volume.index_to_world, "LABEL", metadata))


def _patient_mask(work: WorkGrid) -> np.ndarray:
    """Inside the patient (uint8 0/1): signal above the noise floor, holes filled within axial slices."""
    present = (ndimage.gaussian_filter(work.image, 1.0) > 0.05) & work.valid
    return fill_holes_in_slices(present).astype(np.uint8)


def _to_scan(ids: np.ndarray, work: WorkGrid, volume: Volume) -> np.ndarray:
    """A working-grid uint8 id array on the scan's grid (nearest voxel)."""
    if work.reorder is not None:
        return _restored(ids, work.reorder)
    carrier = Volume(ids, work.index_to_world, "LABEL")
    return carrier.resample(volume.index_to_world, volume.shape, order=0).voxels.copy()


# ---- assembling the Spine ------------------------------------------------------------------------------------
def _region(pitch_mm: float) -> str:
    return next(name for name, limit in REGION_PITCH_MM if pitch_mm < limit)


def _vertebra(index: int, body: Body, canal_center: np.ndarray, canal_outline: np.ndarray) -> Vertebra:
    landmarks: dict[str, Any] = {
        "body_centroid": body.centroid,
        "axes": {"left": body.axes[:, 0], "posterior": body.axes[:, 1], "superior": body.axes[:, 2]},
        "superior_endplate": {"center": body.superior_endplate[0], "normal": body.superior_endplate[1]},
        "inferior_endplate": {"center": body.inferior_endplate[0], "normal": body.inferior_endplate[1]},
        "canal_center": canal_center,
        "canal_outline": canal_outline,
    }
    notes = ["unnumbered (no anchor level in view)",
             "canal_center and canal_outline: the fluid-filled dural sac at the usual pedicle height, not the bony "
             "foramen"]
    return Vertebra(f"V{index}", UNNUMBERED_LABEL_BASE + index, 0.0, landmarks, notes)


def _numbering(pitch_mm: float, count: int, discs: list[Disc], pairs: int) -> Numbering:
    notes = [
        f"{len(discs)} discs, {count} vertebral bodies between consecutive discs; median disc-to-disc distance "
        f"{pitch_mm:.1f} mm, in the range of the {_region(pitch_mm)} spine",
        "no anchor level in view (the MR pipeline does not recognise the sacrum, ribs or C2), so the bodies are "
        "unnumbered V1, V2... cranial to caudal; count the levels on a scan that shows the sacrum or C2, then name "
        "one level or disc at a point (segment(volume, anchors={'T9-T10': (x, y, z)}))",
        "vertebrae cut by the field of view (beyond the first or last disc) are not reported",
    ]
    if pairs < len(discs) - 1:
        notes.append("a gap between two discs is longer than one pitch: a disc may be missed (a degenerate disc "
                     "is dark on T2); no body is reported across it")
    return Numbering("none", 0.0, notes)


def _unavailable(spacing_mm: np.ndarray) -> dict[str, str]:
    """Every landmark key MR cannot give (sided ones per side), with the reason."""
    spacing = " x ".join(f"{s:.2g}" for s in spacing_mm)
    out = {}
    for name, reason in _REASONS.items():
        keys = [f"{name}_{side}" for side in ("left", "right")] if name in _SIDED else [name]
        out.update({key: reason.replace("{spacing}", spacing) for key in keys})
    return out


def segment_mri(volume: Volume) -> Spine:
    """Spine curve, discs, vertebral bodies and canal of a spine MRI; see the module docstring.

    Parameters
    ----------
    volume : Volume
        A T2-weighted MR volume (modality "MR"), any orientation and spacing, covering at least two discs.

    Returns
    -------
    Spine
        ``labels``: vertebral bodies only; ``structures``: patient body, bone (bodies), canal, discs;
        ``curve_mm``: the canal centre line, cranial to caudal; ``unavailable``: the landmarks MR cannot give.

    Raises
    ------
    NeedleplanError
        For a non-MR volume, a scan too small or without contrast, a T1-weighted scan, or one in which no canal
        or fewer than two discs one vertebra apart are found.
    """
    _check_input(volume)
    work, canal = working_grid(volume)
    curve = spine_curve(canal, work.index_to_world, work.spacing_mm)
    block = straighten(work.image, work.valid, work.world_to_index, curve, canal)
    discs = select_discs(disc_candidates(block, curve), work.spacing_mm)
    if len(discs) < 2:
        raise NeedleplanError(f"found the spinal canal but {len(discs)} intervertebral disc(s) along it; the MR "
                              "pipeline needs two consecutive discs to delimit a vertebral body (is the scan "
                              f"at least {PITCH_RANGE_MM[0] * 2:.0f}-{PITCH_RANGE_MM[1] * 2:.0f} mm long?)")
    pairs, pitch = _regular_pairs(discs, work.spacing_mm)
    if not pairs:
        raise NeedleplanError("found discs along the canal but no two are one vertebra apart; no vertebral body "
                              "can be delimited in this MR")
    bodies = [body_between(work, curve, above, below) for above, below in pairs]
    vertebrae = {}
    for index, body in enumerate(bodies, start=1):
        vertebra = _vertebra(index, body, *canal_section(canal, work, curve, _pedicle_level(curve, body)))
        vertebrae[vertebra.name] = vertebra
    labels, structures = label_maps(volume, work, canal, bodies, [v.label for v in vertebrae.values()], discs)
    return Spine(labels=labels, vertebrae=vertebrae, structures=structures, curve_mm=curve.points,
                 numbering=_numbering(pitch, len(bodies), discs, len(pairs)), modality="MR",
                 engine="classical", unavailable=_unavailable(volume.spacing_mm))
