"""Landmarks of one vertebra, measured on its own voxels in its own frame, and the modelled nerves.

Each vertebra's frame has its origin at the canal centre, ``superior`` along the spine (mean of its two disc
normals), ``posterior`` perpendicular to it and ``left = posterior x superior``. Coordinates below are
(lateral, posterior, height) in that frame, mm; "outward" lateral means towards the side in question.
Nerves are invisible on CT and are modelled from bone landmarks as CLINICAL.md section 1 says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Radius of the modelled exiting nerve root tube, mm (CLINICAL.md section 1 [eng]).
ROOT_RADIUS_MM = 3.0
_SIDE_SIGN = {"left": 1.0, "right": -1.0}


def _to_frame(points: np.ndarray, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return (points - origin) @ axes


def _to_world(local: np.ndarray, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    return origin + np.asarray(local) @ axes.T


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
             spacing_mm: float) -> dict[str, Any] | None:
    """Pedicle in frame coordinates: voxels between the body's back wall and the canal centre, beside the canal."""
    s = _SIDE_SIGN[side]
    lateral = s * local[:, 0]
    region = ((lateral > canal_half_width - 4.0) & (lateral < canal_half_width + 16.0)
              & (local[:, 1] > body_back) & (local[:, 1] < 2.0)
              & (local[:, 2] > height[0]) & (local[:, 2] < height[1]))
    pts = local[region]
    if len(pts) < 4:
        return None
    centre = pts.mean(axis=0)
    # axis: principal direction of the pedicle in the axial plane, pointing posteriorly
    flat = pts[:, :2] - centre[:2]
    direction = np.linalg.svd(flat, full_matrices=False)[2][0] if len(flat) > 2 else np.array([0.0, 1.0])
    if direction[1] < 0:
        direction = -direction
    across = np.array([direction[1], -direction[0]])
    along = flat @ direction
    widths = []
    for start in np.arange(along.min(), along.max() - spacing_mm + 1e-6, spacing_mm):
        band = (along >= start) & (along < start + spacing_mm)
        if band.sum() >= 2:
            spread = flat[band] @ across
            widths.append(float(spread.max() - spread.min() + spacing_mm))
    return {"center": centre, "axis2d": direction,
            "narrowest_width_mm": float(min(widths)) if widths else float("nan"),
            "half_height": 0.5 * float(np.ptp(pts[:, 2]) + spacing_mm)}


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
        canal_local = _to_frame(canal_points_mm, origin_mm, axes)
        origin_mm = _to_world(np.array([*canal_local[:, :2].mean(axis=0), 0.0]), origin_mm, axes)
    local = _to_frame(points_mm, origin_mm, axes)
    canal_local = _to_frame(canal_points_mm, origin_mm, axes) if len(canal_points_mm) else np.zeros((0, 3))
    canal_front = float(np.percentile(canal_local[:, 1], 2)) - 0.5 * spacing_mm if len(canal_local) >= 4 else -8.0
    canal_half_width = (float(np.percentile(np.abs(canal_local[:, 0]), 98)) + 0.5 * spacing_mm
                        if len(canal_local) >= 4 else 11.0)
    body_local = local[(local[:, 1] < canal_front - 1.0) & (np.abs(local[:, 0]) < 35.0)]
    if len(body_local) < 10:
        return {}
    marks: dict[str, Any] = {}
    body_centre = body_local.mean(axis=0)
    marks["body_centroid"] = _to_world(body_centre, origin_mm, axes)
    marks["axes"] = {"left": axes[:, 0], "posterior": axes[:, 1], "superior": axes[:, 2]}
    around = body_local - np.array([body_centre[0], body_centre[1], 0.0])
    for which in ("superior", "inferior"):
        centre, normal = _endplate(around, which, 12.0, spacing_mm)
        centre = centre + np.array([body_centre[0], body_centre[1], 0.0])
        marks[f"{which}_endplate"] = {"center": _to_world(centre, origin_mm, axes), "normal": axes @ normal}
    top = float(np.percentile(body_local[:, 2], 98))
    height = (top - 25.0, top + 2.0)
    pedicles = {side: _pedicle(local, side, canal_half_width, canal_front - 3.0, height, spacing_mm)
                for side in _SIDE_SIGN}
    pedicle_z = np.mean([p["center"][2] for p in pedicles.values() if p is not None]) if any(pedicles.values()) \
        else 0.5 * (top + body_local[:, 2].min())
    canal_here = canal_local[np.abs(canal_local[:, 2] - pedicle_z) < max(spacing_mm, 2.0)]
    marks["canal_center"] = _to_world(np.array([*(canal_here[:, :2].mean(axis=0) if len(canal_here) else (0, 0)),
                                                pedicle_z]), origin_mm, axes)
    if len(canal_here) >= 3:
        marks["canal_outline"] = _outline(canal_here[:, :2], pedicle_z, origin_mm, axes)
    for side, ped in pedicles.items():
        if ped is None:
            continue
        axis3 = np.array([*ped["axis2d"], 0.0])
        marks[f"pedicle_{side}"] = {"center": _to_world(ped["center"], origin_mm, axes), "axis": axes @ axis3,
                                    "narrowest_width_mm": ped["narrowest_width_mm"]}
    if not is_sacrum:
        marks.update(_posterior_elements(local, origin_mm, axes, canal_half_width, pedicles, spacing_mm))
    return marks


def _outline(points2d: np.ndarray, z: float, origin: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Closed polygon (world) around 2D frame points at height z: the farthest point per 10-degree sector."""
    centre = points2d.mean(axis=0)
    rel = points2d - centre
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    sector = np.floor((angle + np.pi) / np.radians(10.0)).astype(int)
    ring = []
    for s in np.unique(sector):
        here = rel[sector == s]
        ring.append(here[np.argmax(np.linalg.norm(here, axis=1))])
    ring = np.array(ring) + centre
    ring = np.vstack([ring, ring[:1]])
    return _to_world(np.column_stack([ring, np.full(len(ring), z)]), origin, axes)


def _posterior_elements(local: np.ndarray, origin: np.ndarray, axes: np.ndarray, canal_half_width: float,
                        pedicles: dict[str, dict[str, Any] | None], spacing_mm: float) -> dict[str, Any]:
    """SAP, IAP and TP tips, the SAP-TP junction and the spinous tip (frame coordinates -> world)."""
    marks: dict[str, Any] = {}
    back = local[local[:, 1] > 0.0]
    mid = back[np.abs(back[:, 0]) < 6.0]
    if len(mid):
        marks["spinous_tip"] = _to_world(mid[np.argmax(mid[:, 1])], origin, axes)
    for side, s in _SIDE_SIGN.items():
        lateral = s * local[:, 0]
        facet = local[(lateral > canal_half_width - 8.0) & (lateral < canal_half_width + 14.0) & (local[:, 1] > -2.0)]
        if len(facet):
            marks[f"sap_tip_{side}"] = _to_world(facet[np.argmax(facet[:, 2])], origin, axes)
        arch = local[(lateral > 3.0) & (lateral < canal_half_width + 10.0) & (local[:, 1] > 2.0)]
        if len(arch):
            marks[f"iap_tip_{side}"] = _to_world(arch[np.argmin(arch[:, 2])], origin, axes)
        tp = local[(lateral > canal_half_width + 12.0) & (np.abs(local[:, 1]) < 25.0)]
        if len(tp) < 3:
            continue
        marks[f"tp_tip_{side}"] = _to_world(tp[np.argmax(s * tp[:, 0])], origin, axes)
        # SAP-TP junction: where the TP's upper border meets the SAP's lateral face
        root = tp[s * tp[:, 0] < canal_half_width + 18.0]
        if len(root) and f"sap_tip_{side}" in marks:
            sap_local = _to_frame(marks[f"sap_tip_{side}"], origin, axes)
            junction = np.array([sap_local[0] + s * 3.0, float(np.median(root[:, 1])), float(root[:, 2].max())])
            marks[f"sap_tp_junction_{side}"] = _to_world(junction, origin, axes)
            notch = junction + np.array([0.0, 6.0, -10.0])
            path = np.array([junction, junction + np.array([0.0, 4.0, 0.0]), notch])
            marks[f"medial_branch_{side}"] = _to_world(path, origin, axes)
    return marks


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
    s = _SIDE_SIGN[side]
    centre = np.asarray(upper[key]["center"])
    width = float(upper[key]["narrowest_width_mm"]) if np.isfinite(upper[key]["narrowest_width_mm"]) else 8.0
    half_height = 7.5
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
