"""Landmarks of the S1 segment that the lumbar rules cannot give: SAP, ala, the L5 dorsal ramus and the S1 foramina.

Everything is measured in the S1 frame with its origin at the centre of the S1 superior endplate: coordinates
(lateral, posterior, height) in mm, "outward" lateral meaning towards the side in question.

- **Ala**: the top of the sacral wing beside the S1 body, in front of the pedicle.
- **SAP**: the sacral voxels rising above the S1 endplate behind the canal's front wall. Its tip is the centre of
  its top; its lateral (non-articular) face is the line through its outermost voxels along its long axis.
- **L5 dorsal ramus** (the S1 ``sap_tp_junction`` and ``medial_branch``): it lies in the groove between the ala
  and the SAP, on the SAP's lateral face at the height of the ala's top, a quarter of the face's length from its
  front end, and runs back over the face and down to its posterior end.
- **S1 foramen**: the channel through the sacrum below the S1 pedicle, found as the holes of the sacrum in
  coronal slices of the S1 frame. Its openings on the dorsal and pelvic surfaces are the channel's ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .grid import voxel_centres_mm
from .landmarks import PEDICLE_HALF_HEIGHT_MM, ROOT_RADIUS_MM, SIDE_SIGN, face_line, to_frame, to_world, top_cap

#: The S1 SAP lies within this distance lateral to its pedicle's centre, mm (the lateral masses rise beyond).
SAP_REACH_MM = 15.0
#: The L5 dorsal ramus runs down the SAP's lateral face this far below the ala's top, mm.
RAMUS_DROP_MM = 8.0
#: The S1 foramen channel is searched this far (lateral, mm) from the midline and down to this depth below the
#: S1 endplate, mm.
CHANNEL_LATERAL_MM = (13.0, 45.0)
CHANNEL_DEPTH_MM = 50.0
#: The dorsal S1 foramen opens about 20-30 mm from the midline; a channel opening farther out is not it, mm.
MAX_OPENING_LATERAL_MM = 35.0
#: Closing radius that fills the S1 channels (radius ~4.5 mm) when tracing their openings, mm.
CHANNEL_CLOSING_MM = 8.0
#: Smallest channel, ml: fewer hole voxels are noise in the cancellous bone.
MIN_CHANNEL_ML = 0.1


def sacrum_landmarks(mask: np.ndarray, affine: np.ndarray, s1: dict[str, Any],
                     spacing_mm: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """S1 landmarks (SAP tip, ramus junction and path, foramen, exiting root) and pelvic ones (ala, dorsal foramina).

    Parameters
    ----------
    mask : ndarray of bool (z, y, x)
        The sacrum on the LPS-aligned working grid.
    affine : ndarray (4, 4)
        The grid's index_to_world.
    s1 : dict
        The S1 landmarks measured so far (axes, superior endplate, pedicles), world mm.
    spacing_mm : float
        Voxel size of the grid.

    Returns
    -------
    s1_marks, pelvic_marks : dict
        Keys as documented in :mod:`needleplan.anatomy`; a key is absent when it could not be found.
    """
    axes = np.column_stack([s1["axes"]["left"], s1["axes"]["posterior"], s1["axes"]["superior"]])
    origin = np.asarray(s1["superior_endplate"]["center"], dtype=np.float64)
    local = to_frame(voxel_centres_mm(np.argwhere(mask), affine), origin, axes)
    front = _body_front(local)
    half_width = _body_half_width(local, front, spacing_mm)
    s1_marks: dict[str, Any] = {}
    pelvic: dict[str, Any] = {}
    channels = _channels(mask, affine, origin, axes, spacing_mm)
    for side, s in SIDE_SIGN.items():
        pedicle = s1.get(f"pedicle_{side}")
        if pedicle is None:
            continue
        ped = to_frame(np.asarray(pedicle["center"]), origin, axes)
        ala = _ala(local, s, half_width, front, ped[1], spacing_mm)
        if ala is not None:
            pelvic[f"sacral_ala_{side}"] = to_world(ala, origin, axes)
        lateral = s * local[:, 0]
        sap = local[(lateral > 5.0) & (lateral < s * ped[0] + SAP_REACH_MM) & (local[:, 1] > ped[1] - 5.0)
                    & (local[:, 2] > spacing_mm)]
        if len(sap) >= 4:
            s1_marks[f"sap_tip_{side}"] = to_world(top_cap(sap, spacing_mm), origin, axes)
            if ala is not None:
                s1_marks.update(_dorsal_ramus(sap, s, ala[2], side, origin, axes, spacing_mm))
        channel = channels.get(side)
        if channel is not None:
            anterior, posterior = channel
            foramen = 0.5 * (anterior + posterior)
            s1_marks[f"foramen_{side}"] = to_world(foramen, origin, axes)
            start = _root_start(ped, axes.T @ np.asarray(pedicle["axis"]), float(pedicle["narrowest_width_mm"]), s)
            s1_marks[f"exiting_root_{side}"] = to_world(np.array([start, foramen, anterior]), origin, axes)
            pelvic[f"s1_posterior_foramen_{side}"] = to_world(posterior, origin, axes)
    return s1_marks, pelvic


def _body_front(local: np.ndarray) -> float:
    """Frame y of the S1 body's anterior wall just below the endplate."""
    near = local[(np.abs(local[:, 0]) < 8.0) & (local[:, 2] > -6.0) & (local[:, 2] < -1.0)]
    return float(np.percentile(near[:, 1], 2)) if len(near) else -35.0


def _body_half_width(local: np.ndarray, front: float, spacing_mm: float) -> float:
    """Half-width of the S1 body in its top voxel layer, in its front 15 mm (behind that the pedicles join).

    The ala's top lies a few mm lower and stays out of that layer; bone beyond a gap beside the body (an ilium
    piece that the split left in the sacrum) is cut off by following the layer's occupied columns outward from the
    midline only while they are contiguous.
    """
    top = max(2.0, spacing_mm + 0.5)
    near = local[(local[:, 1] < front + 15.0) & (local[:, 2] > -top)]
    if len(near) < 4:
        return 25.0
    reach = []
    for s in SIDE_SIGN.values():
        outward = s * near[:, 0]
        occupied = np.unique(np.floor(outward[outward > -0.5 * spacing_mm] / spacing_mm).astype(np.int64))
        run = occupied[occupied >= 0]
        if not len(run) or run[0] > 1:
            continue
        gaps = np.flatnonzero(np.diff(run) > 1)
        last = run[gaps[0]] if len(gaps) else run[-1]
        inside = outward[(outward >= 0) & (outward < (last + 1) * spacing_mm)]
        reach.append(float(np.percentile(inside, 98)))
    return float(np.mean(reach)) if reach else 25.0


def _ala(local: np.ndarray, s: float, half_width: float, front: float, pedicle_y: float,
         spacing_mm: float) -> np.ndarray | None:
    """Point (frame) on the top of the ala 8 mm lateral to the body, half-way between the body front and pedicle."""
    lateral = s * local[:, 0]
    region = local[(lateral > half_width + 3.0) & (lateral < half_width + 13.0) & (local[:, 1] > front + 3.0)
                   & (local[:, 1] < pedicle_y - 6.0) & (local[:, 2] > -30.0)]
    if len(region) < 4:
        return None
    columns = np.floor(region[:, :2] / spacing_mm).astype(np.int64)
    _, inverse = np.unique(columns, axis=0, return_inverse=True)
    tops = np.full(inverse.max() + 1, -np.inf)
    np.maximum.at(tops, inverse.ravel(), region[:, 2])
    return np.array([s * (half_width + 8.0), float(np.median(region[:, 1])), float(np.median(tops)) + 0.5 * spacing_mm])


def _dorsal_ramus(sap: np.ndarray, s: float, ala_top: float, side: str, origin: np.ndarray, axes: np.ndarray,
                  spacing_mm: float) -> dict[str, Any]:
    """Junction of ala and SAP (the L5 dorsal-ramus target) and the ramus path along the SAP's lateral face."""
    face = face_line(sap, s, spacing_mm)
    if face is None:
        return {}
    centre, along, half_length = face
    junction = np.append(centre - 0.5 * half_length * along, ala_top)
    path = np.array([junction, np.append(centre, ala_top),
                     np.append(centre + half_length * along, ala_top - RAMUS_DROP_MM)])
    return {f"sap_tp_junction_{side}": to_world(junction, origin, axes),
            f"medial_branch_{side}": to_world(path, origin, axes)}


def _root_start(pedicle: np.ndarray, axis: np.ndarray, width: float, s: float) -> np.ndarray:
    """Where the S1 root leaves the canal: medial to the pedicle by the root's radius, at its lower border."""
    across = np.array([axis[1], -axis[0], 0.0])
    across *= np.sign(s * across[0]) / max(np.linalg.norm(across), 1e-9)
    width = width if np.isfinite(width) else 8.0
    return pedicle - (0.5 * width + ROOT_RADIUS_MM) * across - np.array([0.0, 0.0, PEDICLE_HALF_HEIGHT_MM])


def _channels(mask: np.ndarray, affine: np.ndarray, origin: np.ndarray, axes: np.ndarray,
              spacing_mm: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Anterior and posterior openings (frame) of each S1 foramen channel.

    The sacrum is resampled on a grid aligned with the S1 frame; the holes of its coronal (x, z) slices, away
    from the midline and below the endplate, are the foramina; each side's largest hole is a channel running
    antero-posteriorly: its openings are where its principal axis, from its centre, last leaves the bone.
    """
    lo_x, hi_x = CHANNEL_LATERAL_MM
    xs = np.arange(-hi_x, hi_x + 1e-6, spacing_mm)
    ys = np.arange(-60.0, 80.0 + 1e-6, spacing_mm)
    zs = np.arange(-CHANNEL_DEPTH_MM, 0.0 + 1e-6, spacing_mm)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1)
    world = to_world(grid.reshape(-1, 3), origin, axes)
    index = np.rint((world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T).astype(np.int64)[:, ::-1]
    inside = np.all((index >= 0) & (index < mask.shape), axis=1)
    bone: np.ndarray = np.zeros(len(index), dtype=bool)
    bone[inside] = mask[tuple(index[inside].T)]
    bone = bone.reshape(grid.shape[:3])
    in_slice = np.zeros((3, 3, 3), dtype=bool)
    in_slice[:, 1, :] = True  # fill holes within each (x, z) slice only
    holes = ndimage.binary_fill_holes(bone, structure=in_slice) & ~bone
    pieces, _ = ndimage.label(holes, structure=np.ones((3, 3, 3), dtype=bool))
    min_voxels = MIN_CHANNEL_ML * 1000.0 / spacing_mm**3
    solid = _closed(bone, CHANNEL_CLOSING_MM / spacing_mm)  # the sacrum with its channels filled in
    out = {}
    for side, s in SIDE_SIGN.items():
        band = (s * grid[..., 0] >= lo_x) & (s * grid[..., 0] <= hi_x)
        ids, counts = np.unique(pieces[band & (pieces > 0)], return_counts=True)
        if not len(ids) or counts.max() < min_voxels:
            continue
        points = grid[(pieces == ids[np.argmax(counts)]) & band]
        centre = points.mean(axis=0)
        direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
        direction *= np.sign(direction[1]) or 1.0
        anterior, posterior = (_last_bone(solid, (xs[0], ys[0], zs[0]), spacing_mm, centre, sign * direction)
                               for sign in (-1.0, 1.0))
        if s * posterior[0] <= MAX_OPENING_LATERAL_MM:  # farther out is not the S1 foramen (a hole in the ala)
            out[side] = (anterior, posterior)
    return out


def _closed(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological closing by a ball of ``radius`` voxels, padded so that the grid's border does not erode."""
    r = int(np.ceil(radius))
    zz, yy, xx = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = zz**2 + yy**2 + xx**2 <= radius**2
    padded = np.pad(mask, r + 1)
    return ndimage.binary_closing(padded, structure=ball)[(slice(r + 1, -r - 1),) * 3]


def _last_bone(bone: np.ndarray, corner: tuple[float, float, float], spacing_mm: float, start: np.ndarray,
               direction: np.ndarray, reach_mm: float = 80.0) -> np.ndarray:
    """Where the ray from ``start`` along ``direction`` last leaves the bone of a frame-aligned grid (frame mm)."""
    t = np.arange(0.0, reach_mm, 0.5 * spacing_mm)
    ray = start + t[:, None] * direction
    index = np.rint((ray - np.asarray(corner)) / spacing_mm).astype(np.int64)
    inside = np.all((index >= 0) & (index < bone.shape), axis=1)
    hit = np.zeros(len(t), dtype=bool)
    hit[inside] = bone[tuple(index[inside].T)]
    last = t[np.flatnonzero(hit)[-1]] + 0.5 * spacing_mm if hit.any() else 0.0
    return start + last * direction
