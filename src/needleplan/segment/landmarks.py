"""Landmarks of one vertebra, measured on its own voxels in its own frame, and the modelled nerves.

Each vertebra's frame has its origin at the canal centre, ``superior`` along the spine (mean of its two disc
normals), ``posterior`` perpendicular to it and ``left = posterior x superior``. Coordinates below are
(lateral, posterior, height) in that frame, mm; "outward" lateral means towards the side in question.
Nerves are invisible on CT and are modelled from bone landmarks as CLINICAL.md section 1 says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..anatomy import SIDE_SIGN

#: Radius of the modelled exiting nerve root tube, mm (CLINICAL.md section 1 [eng]).
ROOT_RADIUS_MM = 3.0
#: Half the height of a lumbar pedicle where the nerve models need it, mm (Zindrick 1987: heights 14-15.4 mm).
PEDICLE_HALF_HEIGHT_MM = 7.5
#: Angle of a lumbar facet (SAP lateral face) from the sagittal plane in the axial plane, degrees: about 25 at L1-L2
#: to 50 at L5-S1, range about 15-65 (Masharawi 2004) with a margin.
FACET_ANGLE_RANGE_DEG = (10.0, 70.0)
#: The TP's root, where its upper border meets the SAP, is the bone this far beyond the SAP's lateral face, mm.
ROOT_REACH_MM = 5.0
#: A pedicle's cross-section is the bone within this distance of its axis, mm: beyond a lumbar pedicle's half-height
#: (7-8 mm, Zindrick 1987) and half-width (4-9 mm), short of the body and the processes around it.
SECTION_RADIUS_MM = 10.0
#: Angles of a lumbar pedicle's axis from the sagittal plane in the axial plane, running back and out, degrees:
#: about 11 at L1 to 30 at L5 (Zindrick 1987), searched every 5 from the sagittal plane.
PEDICLE_ANGLES_DEG = np.arange(0.0, 31.0, 5.0)
#: Cross-sections with at most this many more voxels than the narrowest (a fraction) belong to the isthmus.
ISTHMUS_TOLERANCE = 0.15
#: Coarsest voxel that finds the isthmus, mm: a lumbar pedicle's cross-section (about 9 x 15 mm) then holds 26 voxels.
ISTHMUS_MAX_SPACING_MM = 2.0
#: The canal's centre is that of its voxels within this height of the pedicles' centres (its outline that of the
#: voxel layer at their height), mm.
CANAL_HALF_SLAB_MM = 4.0


def to_frame(points: np.ndarray, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """World points (..., 3) -> frame coordinates (lateral-left, posterior, superior) about ``origin``."""
    return (points - origin) @ axes


def to_world(local: np.ndarray, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Frame coordinates (..., 3) -> world points."""
    return origin + np.asarray(local) @ axes.T


def cap(points: np.ndarray, direction: np.ndarray, depth_mm: float, spacing_mm: float) -> np.ndarray:
    """Centre of the surface of a point cloud that faces ``direction``: the mean of the points within ``depth_mm``
    of the extreme along it, moved out to the surface (half a voxel beyond the extreme voxel centre)."""
    along = points @ direction
    top = float(along.max())
    centre = points[along >= top - depth_mm].mean(axis=0)
    return centre + (top + 0.5 * spacing_mm - float(centre @ direction)) * direction


def top_cap(points: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Centre of the top of a process (frame points (M, 3)): its uppermost voxel layer, at the surface."""
    return cap(points, np.array([0.0, 0.0, 1.0]), spacing_mm, spacing_mm)


def face_line(points: np.ndarray, s: float, spacing_mm: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The lateral face of an articular process from its axial cross-section (frame points (M, 3)).

    The process's long axis in the axial plane (its principal direction, turned to point posteriorly) runs along
    the face; the face lies at the outermost points across that axis, on the side ``s`` (+1 left, -1 right).

    Returns
    -------
    (centre (2,), along (2,) unit, half_length) or None
        Centre of the face (frame x, y), its direction and half its length; None with fewer than 4 points.
    """
    if len(points) < 4:
        return None
    flat = points[:, :2]
    middle = flat.mean(axis=0)
    along = _plausible_facet_direction(np.linalg.svd(flat - middle, full_matrices=False)[2][0], s)
    normal = np.array([along[1], -along[0]])
    normal = normal if s * normal[0] >= 0 else -normal
    t = (flat - middle) @ along
    outward = float(np.percentile((flat - middle) @ normal, 98)) + 0.5 * spacing_mm
    centre = middle + 0.5 * (t.max() + t.min()) * along + outward * normal
    return centre, along, 0.5 * float(np.ptp(t) + spacing_mm)


def _plausible_facet_direction(along: np.ndarray, s: float) -> np.ndarray:
    """A measured facet direction (frame x, y) turned posterior and, when it leaves the anatomical range, clamped
    to it: the lateral face of a lumbar SAP runs back and out at :data:`FACET_ANGLE_RANGE_DEG` from the sagittal
    plane (a cross-section that holds pieces of lamina or of the IAP above gives any direction)."""
    along = along if along[1] >= 0 else -along
    angle = np.degrees(np.arctan2(s * along[0], along[1]))
    low, high = FACET_ANGLE_RANGE_DEG
    if low <= angle <= high:
        return along
    angle = np.radians(np.clip(angle, low, high))
    return np.array([s * np.sin(angle), np.cos(angle)])


def _plane_fit_normal(points: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Unit normal of the least-squares plane through points, oriented along ``hint``."""
    keep = np.ones(len(points), dtype=bool)
    normal = hint / np.linalg.norm(hint)
    for _ in range(3):  # refit without the points far off the plane (rim osteophytes, partial-volume steps)
        if keep.sum() < 3:
            break
        centre = points[keep].mean(axis=0)
        normal = np.linalg.svd(points[keep] - centre, full_matrices=False)[2][-1]
        residual = np.abs((points - centre) @ normal)
        keep = residual <= max(1.0, 2.0 * float(np.median(residual)))
    return normal if np.dot(normal, hint) >= 0 else -normal


def _endplate(local: np.ndarray, which: str, radius_mm: float, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and normal (frame coordinates) of an endplate: the body's top or bottom surface near its axis."""
    centre_lp = local[:, :2].mean(axis=0)
    near = np.linalg.norm(local[:, :2] - centre_lp, axis=1) < radius_mm
    pts = local[near]
    sign = 1.0 if which == "superior" else -1.0
    bins = np.floor(pts[:, :2] / spacing_mm).astype(np.int64)
    keys = bins[:, 0] * 100003 + bins[:, 1]
    order = np.lexsort((sign * pts[:, 2], keys))
    last = np.r_[keys[order][1:] != keys[order][:-1], True]
    surface = pts[order][last]  # the extreme voxel of each column
    surface[:, 2] += sign * 0.5 * spacing_mm
    normal = _plane_fit_normal(surface, np.array([0.0, 0.0, sign]))
    return surface.mean(axis=0), normal


def _pedicle(local: np.ndarray, side: str, canal_half_width: float, body_back: float, height: tuple[float, float],
             spacing_mm: float, is_sacrum: bool = False) -> dict[str, Any] | None:
    """Pedicle in frame coordinates: its narrowest cross-section between the body's back wall and the canal centre.

    A box beside the canal, between the body's back wall (``body_back``, 3 mm in front of the canal's front wall)
    and the canal centre, seeds the search for the narrowest section normal to each plausible pedicle direction
    (:data:`PEDICLE_ANGLES_DEG`, :func:`_narrowest_section`). The isthmus is made of those directions' isthmuses
    whose areas are within :data:`ISTHMUS_TOLERANCE` of the least: the centroid of their voxels is the pedicle's
    centre; the narrowest one's normal is the axis and its median extent across at mid-height the (transverse)
    width (:func:`_transverse_width`). The sacrum's pedicles merge below into its solid lateral mass and have no
    isthmus, and on a grid coarser than :data:`ISTHMUS_MAX_SPACING_MM` a cross-section holds too few voxels to tell
    the isthmus: those are measured on the box alone (:func:`_box_pedicle`).
    """
    s = SIDE_SIGN[side]
    lateral = s * local[:, 0]
    region = ((lateral > canal_half_width - 4.0) & (lateral < canal_half_width + 16.0)
              & (local[:, 1] > body_back) & (local[:, 1] < 2.0)
              & (local[:, 2] > height[0]) & (local[:, 2] < height[1]))
    pts = local[region]
    if len(pts) < 4:
        return None
    if is_sacrum or spacing_mm > ISTHMUS_MAX_SPACING_MM:
        return _box_pedicle(pts, spacing_mm)
    depth = (body_back + 3.0, 0.0)
    found = []
    for angle in np.radians(PEDICLE_ANGLES_DEG):
        direction = np.array([s * np.sin(angle), np.cos(angle)])
        _, isthmus = _narrowest_section(local, pts.mean(axis=0), direction, depth, spacing_mm)
        centre = np.concatenate(isthmus).mean(axis=0)
        found.append((*_narrowest_section(local, centre, direction, depth, spacing_mm), direction))  # re-centred
    least = min(area for area, _, _ in found)
    _, isthmus, direction = min(found, key=lambda item: item[0])
    # directions a few degrees apart give sections of nearly the same area (1 / cos): all those as narrow as the
    # narrowest within the tolerance make the isthmus
    centre = np.concatenate([np.concatenate(slices) for area, slices, _ in found
                             if area <= (1.0 + ISTHMUS_TOLERANCE) * least]).mean(axis=0)
    return {"center": centre, "axis2d": direction,
            "narrowest_width_mm": _transverse_width(isthmus, centre[2], direction, spacing_mm),
            "half_height": 0.5 * float(np.ptp(pts[:, 2]) + spacing_mm)}


def _box_pedicle(pts: np.ndarray, spacing_mm: float) -> dict[str, Any]:
    """Pedicle from the bone in its box (frame points (M, 3)): the box's centroid, its principal axial direction
    and the lower quartile of the widths of the full bands across it (the box cuts the pedicle's ends obliquely,
    leaving thin partial bands there; the quartile, not the minimum, so that one band thinned by voxel noise does
    not decide)."""
    centre = pts.mean(axis=0)
    flat = pts[:, :2] - centre[:2]
    direction = np.linalg.svd(flat, full_matrices=False)[2][0] if len(flat) > 2 else np.array([0.0, 1.0])
    if direction[1] < 0:
        direction = -direction
    across = np.array([direction[1], -direction[0]])
    along = flat @ direction
    low, high = np.percentile(along, [15.0, 85.0])
    widths, counts = [], []
    for start in np.arange(low, high - spacing_mm + 1e-6, spacing_mm):
        band = (along >= start) & (along < start + spacing_mm)
        if band.sum() >= 2:
            spread = flat[band] @ across
            widths.append(float(spread.max() - spread.min() + spacing_mm))
            counts.append(int(band.sum()))
    full = [w for w, c in zip(widths, counts, strict=True) if c >= 0.5 * np.median(counts)]
    return {"center": centre, "axis2d": direction,
            "narrowest_width_mm": float(np.percentile(full, 25.0)) if full else float("nan"),
            "half_height": 0.5 * float(np.ptp(pts[:, 2]) + spacing_mm)}


def _transverse_width(slices: list[np.ndarray], height: float, direction: np.ndarray, spacing_mm: float) -> float:
    """Narrowest transverse width of a pedicle, mm: the median extent across its axis (``direction``, frame x, y) of
    its isthmus's slices (frame points (K, 3) each) at mid-height (``height``); NaN when none reaches it."""
    across = np.array([direction[1], -direction[0]])
    middles = (section[np.abs(section[:, 2] - height) <= spacing_mm] for section in slices)
    widths = [float(np.ptp(middle[:, :2] @ across)) + spacing_mm for middle in middles if len(middle)]
    return float(np.median(widths)) if widths else float("nan")


def _narrowest_section(local: np.ndarray, centre: np.ndarray, direction: np.ndarray, depth: tuple[float, float],
                       spacing_mm: float) -> tuple[float, list[np.ndarray]]:
    """The narrowest cross-section of the bone normal to a pedicle's axis: its area in voxels and the isthmus.

    Cross-sections normal to the axis through ``centre`` along ``direction`` (frame x, y; posterior), every half
    voxel between the frame depths (y) ``depth`` (the canal's front wall and its centre), hold the bone within
    :data:`SECTION_RADIUS_MM` of the axis. A section's area is its voxels' count, each voxel weighted by a tent
    falling from 1 on the section to 0 one voxel away (a hard one-voxel slab, oblique to the voxels, would hold more
    or fewer of them by its phase alone). The narrowest section and its neighbours within
    :data:`ISTHMUS_TOLERANCE` of its area make the isthmus (a pedicle of even width has no single narrowest
    section); the voxels of each of its sections (within half a voxel of it, frame (K, 3)) are returned. With no
    section of three voxels the area is infinite and the one section is the three voxels nearest ``centre``.
    """
    axis = np.array([direction[0], direction[1], 0.0])
    rel = local - centre
    along = rel @ axis
    near = np.linalg.norm(rel - along[:, None] * axis, axis=1) < SECTION_RADIUS_MM
    near_points, along = local[near], along[near]
    ends = (np.asarray(depth) - centre[1]) / direction[1]
    positions = np.arange(ends.min(), ends.max() + 1e-6, 0.5 * spacing_mm)
    offset = np.abs(along[:, None] - positions[None, :]) / spacing_mm
    areas = np.maximum(0.0, 1.0 - offset).sum(axis=0)
    if not len(areas) or areas.max() < 3.0:
        return np.inf, [local[np.argsort(np.linalg.norm(rel, axis=1))[:3]]]
    areas[areas < 3.0] = np.inf
    narrowest = int(np.argmin(areas))
    narrow = areas <= (1.0 + ISTHMUS_TOLERANCE) * areas[narrowest]
    first, last = narrowest, narrowest
    while first > 0 and narrow[first - 1]:
        first -= 1
    while last + 1 < len(areas) and narrow[last + 1]:
        last += 1
    return float(areas[narrowest]), [near_points[offset[:, k] <= 0.5] for k in range(first, last + 1)]


def vertebra_landmarks(points_mm: np.ndarray, canal_points_mm: np.ndarray, origin_mm: np.ndarray,
                       axes: np.ndarray, spacing_mm: float, is_sacrum: bool = False) -> dict[str, Any]:
    """Landmarks of a vertebra from its voxel centres (world mm) and the canal voxels at its level.

    Parameters
    ----------
    points_mm : ndarray (M, 3)
        World centres of the vertebra's voxels.
    canal_points_mm : ndarray (C, 3)
        World centres of the canal voxels within the vertebra's slab (may be empty).
    origin_mm : ndarray (3,)
        A point of the spine curve at the vertebra's level (canal centre estimate).
    axes : ndarray (3, 3)
        Columns left, posterior, superior of the vertebra's frame.
    spacing_mm : float
        Voxel size of the grid the points come from.
    is_sacrum : bool
        The sacrum gets body, endplate, canal and pedicle landmarks only (its processes are fused).

    Returns
    -------
    dict
        Keys as documented in :mod:`needleplan.anatomy`, values in world mm.
    """
    if len(canal_points_mm) >= 4:
        canal_local = to_frame(canal_points_mm, origin_mm, axes)
        origin_mm = to_world(np.array([*canal_local[:, :2].mean(axis=0), 0.0]), origin_mm, axes)
    local = to_frame(points_mm, origin_mm, axes)
    canal_local = to_frame(canal_points_mm, origin_mm, axes) if len(canal_points_mm) else np.zeros((0, 3))
    canal_front = float(np.percentile(canal_local[:, 1], 2)) - 0.5 * spacing_mm if len(canal_local) >= 4 else -8.0
    canal_half_width = (float(np.percentile(np.abs(canal_local[:, 0]), 98)) + 0.5 * spacing_mm
                        if len(canal_local) >= 4 else 11.0)
    body_local = local[(local[:, 1] < canal_front - 1.0) & (np.abs(local[:, 0]) < 35.0)]
    if len(body_local) < 10:
        return {}
    marks: dict[str, Any] = {}
    body_centre = body_local.mean(axis=0)
    marks["body_centroid"] = to_world(body_centre, origin_mm, axes)
    marks["axes"] = {"left": axes[:, 0], "posterior": axes[:, 1], "superior": axes[:, 2]}
    around = body_local - np.array([body_centre[0], body_centre[1], 0.0])
    for which in ("superior", "inferior"):
        centre, normal = _endplate(around, which, 12.0, spacing_mm)
        centre = centre + np.array([body_centre[0], body_centre[1], 0.0])
        marks[f"{which}_endplate"] = {"center": to_world(centre, origin_mm, axes), "normal": axes @ normal}
    top = float(np.percentile(body_local[:, 2], 98))
    height = (top - 25.0, top + 2.0)
    pedicles = {side: _pedicle(local, side, canal_half_width, canal_front - 3.0, height, spacing_mm, is_sacrum)
                for side in SIDE_SIGN}
    pedicle_z = np.mean([p["center"][2] for p in pedicles.values() if p is not None]) if any(pedicles.values()) \
        else 0.5 * (top + body_local[:, 2].min())
    from_pedicles = np.abs(canal_local[:, 2] - pedicle_z)
    canal_here = canal_local[from_pedicles < CANAL_HALF_SLAB_MM]
    marks["canal_center"] = to_world(np.array([*(canal_here[:, :2].mean(axis=0) if len(canal_here) else (0, 0)),
                                                pedicle_z]), origin_mm, axes)
    layer = canal_local[from_pedicles < max(spacing_mm, 2.0)]
    if len(layer) >= 3:
        marks["canal_outline"] = _outline(layer[:, :2], pedicle_z, origin_mm, axes)
    for side, ped in pedicles.items():
        if ped is None:
            continue
        axis3 = np.array([*ped["axis2d"], 0.0])
        marks[f"pedicle_{side}"] = {"center": to_world(ped["center"], origin_mm, axes), "axis": axes @ axis3,
                                    "narrowest_width_mm": ped["narrowest_width_mm"]}
    if not is_sacrum:
        marks.update(_posterior_elements(local, origin_mm, axes, canal_half_width, pedicles, top, spacing_mm))
    return marks


def _outline(points2d: np.ndarray, z: float, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Closed polygon (world) around 2D frame points at height z: the farthest point per 10-degree sector."""
    centre = points2d.mean(axis=0)
    rel = points2d - centre
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    sector = np.floor((angle + np.pi) / np.radians(10.0)).astype(int)
    farthest = []
    for s in np.unique(sector):
        here = rel[sector == s]
        farthest.append(here[np.argmax(np.linalg.norm(here, axis=1))])
    ring = np.array(farthest) + centre
    ring = np.vstack([ring, ring[:1]])
    return to_world(np.column_stack([ring, np.full(len(ring), z)]), origin, axes)


def _posterior_elements(local: np.ndarray, origin: np.ndarray, axes: np.ndarray, canal_half_width: float,
                        pedicles: dict[str, dict[str, Any] | None], body_top: float,
                        spacing_mm: float) -> dict[str, Any]:
    """SAP, IAP and TP tips, the SAP-TP junction, the medial branch and the spinous tip (frame -> world)."""
    marks: dict[str, Any] = {}
    back = local[local[:, 1] > 0.0]
    mid = back[np.abs(back[:, 0]) < 6.0]
    if len(mid):  # the spinous tip's end face droops: take its whole height
        marks["spinous_tip"] = to_world(cap(mid, np.array([0.0, 1.0, 0.0]), spacing_mm + 3.0, spacing_mm), origin,
                                        axes)
    for side, s in SIDE_SIGN.items():
        lateral = s * local[:, 0]
        facet = local[(lateral > canal_half_width - 8.0) & (lateral < canal_half_width + 14.0) & (local[:, 1] > -2.0)]
        if len(facet):
            marks[f"sap_tip_{side}"] = to_world(top_cap(facet, spacing_mm), origin, axes)
        # the IAP hangs from the lamina beside the canal's side wall; nearer the midline the lamina's lower border
        # and the spinous process reach lower and are not the IAP
        iap = local[(lateral > canal_half_width - 4.0) & (lateral < canal_half_width + 14.0) & (local[:, 1] > 2.0)]
        if len(iap):
            marks[f"iap_tip_{side}"] = to_world(cap(iap, np.array([0.0, 0.0, -1.0]), spacing_mm, spacing_mm),
                                                origin, axes)
        face = face_line(_above(facet, body_top + 0.5 * spacing_mm), s, spacing_mm)
        candidates = local[(lateral > canal_half_width + 12.0) & (np.abs(local[:, 1]) < 25.0)]
        tp = _transverse_process(_outside_face(candidates, face, s, spacing_mm), s, spacing_mm)
        if tp is None:
            continue
        marks[f"tp_tip_{side}"] = to_world(tp["tip"], origin, axes)
        if face is not None:
            pedicle = pedicles[side]
            floor = pedicle["center"][2] - pedicle["half_height"] + 1.0 if pedicle else -np.inf
            beside = local[(lateral > canal_half_width) & (np.abs(local[:, 1]) < 25.0)]
            junction, path = _medial_branch(tp, face, floor, _root_top(beside, face, s, spacing_mm, tp["top"]))
            marks[f"sap_tp_junction_{side}"] = to_world(junction, origin, axes)
            marks[f"medial_branch_{side}"] = to_world(path, origin, axes)
    return marks


def _above(points: np.ndarray, height: float) -> np.ndarray:
    """The points above ``height`` (the SAP where it rises free of body and pedicle), or, when fewer than four
    are, those above a level 4 mm lower (coarse voxels, short processes)."""
    high = points[points[:, 2] > height]
    return high if len(high) >= 4 else points[points[:, 2] > height - 4.0]


def _outside_face(points: np.ndarray, face: tuple[np.ndarray, np.ndarray, float] | None, s: float,
                  spacing_mm: float) -> np.ndarray:
    """The points (frame (M, 3)) beyond the SAP's lateral face: the transverse process without the SAP.

    Where the SAP stands lateral to the canal (L5's wide facets) its voxels fall into the box the transverse
    process is searched in and tilt its axis; the SAP is an upright plate, so at every height it lies on the inner
    side of its lateral face's line and the process beyond it. The points are returned unchanged when the face is
    unknown or when fewer than four would remain.
    """
    if face is None:
        return points
    centre, along, _ = face
    outward = np.array([along[1], -along[0]])
    outward = outward if s * outward[0] >= 0 else -outward
    beyond = points[(points[:, :2] - centre) @ outward > 0.5 * spacing_mm]
    return beyond if len(beyond) >= 4 else points


def _transverse_process(tp: np.ndarray, s: float, spacing_mm: float) -> dict[str, Any] | None:
    """Axis, tip, upper and lower margins and half-thickness of a transverse process from its lateral voxels.

    The axis runs through the centres of the outer 12 mm of the process (its root merges with pedicle and SAP),
    fitted as the frame y of those centres against the lateral distance; the tip is the axis's end, at mid-height.
    The thickness is the median over the lateral bins of the extent across the axis (an outlying voxel or a
    slightly tilted axis widens the overall extent, not the median of the bins').
    """
    if len(tp) < 3:
        return None
    lateral = s * tp[:, 0]
    outer = tp[lateral > lateral.max() - 12.0]
    bins = np.floor(s * outer[:, 0] / spacing_mm).astype(np.int64)
    keys, inverse = np.unique(bins, return_inverse=True)
    inverse = inverse.ravel()
    if len(keys) >= 3:
        count = np.bincount(inverse)
        xs = np.bincount(inverse, s * outer[:, 0]) / count
        ys = np.bincount(inverse, outer[:, 1]) / count
        slope = np.polyfit(xs, ys, 1)[0]
        direction = np.array([s, slope]) / np.hypot(1.0, slope)
    else:
        direction = np.array([s, 0.0])
    point = outer[:, :2].mean(axis=0)
    behind = np.array([-direction[1], direction[0]]) * s  # perpendicular to the axis, pointing posteriorly
    across = (outer[:, :2] - point) @ behind
    columns = np.floor(outer[:, :2] / spacing_mm).astype(np.int64)
    _, column = np.unique(columns, axis=0, return_inverse=True)
    column = column.ravel()
    tops = np.full(column.max() + 1, -np.inf)
    bottoms = np.full(column.max() + 1, np.inf)
    np.maximum.at(tops, column, outer[:, 2])
    np.minimum.at(bottoms, column, outer[:, 2])
    top = float(np.median(tops)) + 0.5 * spacing_mm
    bottom = float(np.median(bottoms)) - 0.5 * spacing_mm
    reach = float(((tp[:, :2] - point) @ direction).max()) + 0.5 * spacing_mm
    return {"point": point, "direction": direction, "behind": behind, "top": top, "bottom": bottom,
            "half_thickness": 0.5 * (_median_extent(across, inverse) + spacing_mm),
            "tip": np.append(point + reach * direction, 0.5 * (top + bottom))}


def _root_top(points: np.ndarray, face: tuple[np.ndarray, np.ndarray, float], s: float, spacing_mm: float,
              fallback: float) -> float:
    """Height (frame z) of the TP's upper margin at its root, where the medial branch crosses it.

    The median of the tops of the bone columns (frame points (M, 3) beside the canal) within
    :data:`ROOT_REACH_MM` beyond the SAP's lateral face, at the bone's surface; ``fallback`` when there are none.
    """
    centre, along, _ = face
    outward = np.array([along[1], -along[0]])
    outward = outward if s * outward[0] >= 0 else -outward
    beyond = (points[:, :2] - centre) @ outward
    root = points[(beyond > 0.5 * spacing_mm) & (beyond < ROOT_REACH_MM)]
    if not len(root):
        return fallback
    _, column = np.unique(np.floor(root[:, :2] / spacing_mm).astype(np.int64), axis=0, return_inverse=True)
    tops = np.full(column.max() + 1, -np.inf)
    np.maximum.at(tops, column.ravel(), root[:, 2])
    return float(np.median(tops)) + 0.5 * spacing_mm


def _median_extent(values: np.ndarray, groups: np.ndarray) -> float:
    """Median over the groups (ids 0..G-1 per value) of each group's extent (max - min) of ``values``."""
    high = np.full(groups.max() + 1, -np.inf)
    low = np.full(groups.max() + 1, np.inf)
    np.maximum.at(high, groups, values)
    np.minimum.at(low, groups, values)
    return float(np.median(high - low))


def _medial_branch(tp: dict[str, Any], face: tuple[np.ndarray, np.ndarray, float], floor: float,
                   root_top: float) -> tuple[np.ndarray, np.ndarray]:
    """SAP-TP junction and the medial-branch polyline on the SAP's lateral face (frame coordinates).

    The junction is where the TP's axis meets the face, at the height of the TP's upper margin at its root
    (``root_top``: the margin falls towards the tip, and the nerve crosses it at the root). The nerve runs back
    along the face over the TP to 1 mm behind it (at the TP's mean upper margin), then down the SAP's lateral neck
    to the face's posterior end at the height of the TP's lower margin (not below the pedicle's lower border
    + 1 mm): the mamillo-accessory notch.
    """
    centre, along, half_length = face
    offset = float((centre - tp["point"]) @ tp["behind"])
    rate = float(along @ tp["behind"])
    rate = rate if abs(rate) > 1e-3 else 1e-3

    def on_face(at: float, z: float) -> np.ndarray:
        return np.append(centre + float(np.clip(at, -half_length, half_length)) * along, z)

    junction = on_face(-offset / rate, root_top)
    path = np.array([junction, on_face((tp["half_thickness"] + 1.0 - offset) / rate, tp["top"]),
                     on_face(half_length, max(tp["bottom"], floor))])
    return junction, path


def foramen_and_root(upper: dict[str, Any], lower: dict[str, Any], side: str) -> dict[str, Any]:
    """Foramen centre and the modelled exiting root below ``upper``'s pedicle on one side (world mm).

    The foramen centre is half-way between the upper pedicle's lower border and the lower pedicle's upper
    border. The root starts under the medial-inferior corner of the upper pedicle and runs through the foramen
    antero-infero-laterally (CLINICAL.md section 1).
    """
    key = f"pedicle_{side}"
    if key not in upper or "axes" not in upper:
        return {}
    axes = np.column_stack([upper["axes"]["left"], upper["axes"]["posterior"], upper["axes"]["superior"]])
    s = SIDE_SIGN[side]
    centre = np.asarray(upper[key]["center"])
    width = float(upper[key]["narrowest_width_mm"]) if np.isfinite(upper[key]["narrowest_width_mm"]) else 8.0
    half_height = PEDICLE_HALF_HEIGHT_MM
    sup = axes[:, 2]
    low_border = centre - half_height * sup
    if key in lower:
        foramen = 0.5 * (low_border + np.asarray(lower[key]["center"]) + half_height * sup)
    else:
        foramen = low_border - 6.0 * sup
    start = centre - s * 0.5 * width * axes[:, 0] - (half_height + ROOT_RADIUS_MM) * sup
    lateral = centre + s * 0.5 * width * axes[:, 0] - 4.0 * axes[:, 1] - (half_height + ROOT_RADIUS_MM + 4.0) * sup
    out = lateral + s * 12.0 * axes[:, 0] - 8.0 * axes[:, 1] - 10.0 * sup
    return {f"foramen_{side}": foramen, f"exiting_root_{side}": np.array([start, lateral, out])}
