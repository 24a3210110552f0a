"""The line of vertebral bodies in front of the canal, and the discs along it.

Discs are found on planes perpendicular to the body line (not on axial slices, which cut a lordotic disc
obliquely): the share of bone in a disc of :data:`PROBE_RADIUS_MM` around the line drops in every
intervertebral disc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .curve import SpineCurve, frames_along
from .label_stats import label_sizes

#: The body is searched this far in front of the canal centre (posterior offsets, mm) ...
BODY_WINDOW_POSTERIOR_MM = (-75.0, -6.0)
#: ... and this far to either side.
BODY_WINDOW_LATERAL_MM = 22.0
#: Radius of the probe disc swept along the body line, mm.
PROBE_RADIUS_MM = 11.0
#: Tilts of the probe about the left-right axis, degrees (the least bone share over them is used).
PROBE_TILTS_DEG = (0.0, -10.0, 10.0, -20.0, 20.0, -30.0, 30.0)
#: A tilted probe replaces a less tilted one (tried first) only when it holds this much less bone.
TILT_GAIN = 0.03
#: Along the body line, a disc is where less than this share of the probe is bone.
DISC_BONE_SHARE = 0.5
#: A run of the profile whose least bone share is below this is a clear disc.
CLEAR_DISC_SHARE = 0.15
#: A faint run is a disc when it lies this many pitches (disc-to-disc distances) from a kept disc.
PITCH_RANGE = (0.75, 1.3)
#: Shortest vertebra (disc centre to disc centre) considered, mm; closer minima are merged.
MIN_LEVEL_MM = 15.0


@dataclass(frozen=True)
class Disc:
    """An intervertebral disc: centre, normal (pointing cranially) and height along the normal, mm.

    ``thin`` marks a disc found from its endplates (:mod:`.endplates`), too thin to darken the body line: a
    thoracic disc, never the L5-S1 disc.
    """

    center_mm: np.ndarray
    normal: np.ndarray
    height_mm: float
    thin: bool = False


def sample_plane(array: np.ndarray, world_to_index: np.ndarray, centre: np.ndarray, u: np.ndarray, v: np.ndarray,
                 u_mm: np.ndarray, v_mm: np.ndarray, order: int = 1) -> np.ndarray:
    """Values of a (z, y, x) array on the plane ``centre + a u + b v`` at a grid of (a, b) offsets in mm.

    Returns an array of shape (len(u_mm), len(v_mm)); 0 outside the array.
    """
    a, b = np.meshgrid(u_mm, v_mm, indexing="ij")
    world = centre + a[..., None] * u + b[..., None] * v
    ijk = world @ world_to_index[:3, :3].T + world_to_index[:3, 3]
    coords = np.stack([ijk[..., 2], ijk[..., 1], ijk[..., 0]])
    return ndimage.map_coordinates(array, coords, order=order, mode="constant", cval=0.0)


def body_line(bone: np.ndarray, world_to_index: np.ndarray, curve: SpineCurve, spacing_mm: float) -> SpineCurve:
    """The line through the vertebral bodies: body centroids in front of the canal, smoothed along the curve."""
    step = max(spacing_mm, 1.0)
    lateral = np.arange(-BODY_WINDOW_LATERAL_MM, BODY_WINDOW_LATERAL_MM + 1e-6, step)
    forward = np.arange(BODY_WINDOW_POSTERIOR_MM[0], BODY_WINDOW_POSTERIOR_MM[1] + 1e-6, step)
    offsets = np.full((len(curve.points_mm), 2), np.nan)
    weight = np.zeros(len(curve.points_mm))
    for n, centre in enumerate(curve.points_mm):
        plane = sample_plane(bone, world_to_index, centre, curve.left[n], curve.posterior[n], lateral, forward) > 0.5
        labels, count = ndimage.label(plane)
        if count == 0:
            continue
        sizes = label_sizes(labels, count)
        body = labels == int(np.argmax(sizes)) + 1
        where = np.nonzero(body)
        offsets[n] = lateral[where[0]].mean(), forward[where[1]].mean()
        weight[n] = body.sum()
    solid = weight > 0.5 * np.median(weight[weight > 0]) if np.any(weight > 0) else weight > 0
    if solid.sum() < 2:
        return curve
    index = np.arange(len(offsets))
    for axis in range(2):
        offsets[:, axis] = np.interp(index, index[solid], offsets[solid, axis])
        offsets[:, axis] = ndimage.gaussian_filter1d(offsets[:, axis], 10.0, mode="nearest")
    points = curve.points_mm + offsets[:, :1] * curve.left + offsets[:, 1:] * curve.posterior
    return frames_along(points)


def bone_share_profile(bone: np.ndarray, world_to_index: np.ndarray, line: SpineCurve,
                       spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Least share of bone in a probe disc through each sample of the body line, over a fan of tilts.

    The probe is perpendicular to the line, then tilted about the patient's left-right axis by each of
    :data:`PROBE_TILTS_DEG`, because a wedge-shaped disc (L5-S1) is not perpendicular to the line through the
    bodies. Returns the shares (N,) and the probe normal that gave each (N, 3).
    """
    step = max(0.75 * spacing_mm, 1.0)
    grid = np.arange(-PROBE_RADIUS_MM, PROBE_RADIUS_MM + 1e-6, step)
    inside = (grid[:, None] ** 2 + grid[None, :] ** 2) <= PROBE_RADIUS_MM**2
    share = np.full(len(line.points_mm), np.inf)
    normal = line.superior.copy()
    for tilt in np.radians(PROBE_TILTS_DEG):
        for n, centre in enumerate(line.points_mm):
            back = np.cos(tilt) * line.posterior[n] - np.sin(tilt) * line.superior[n]
            plane = sample_plane(bone, world_to_index, centre, line.left[n], back, grid, grid)
            value = float(plane[inside].mean())
            if value < share[n] - TILT_GAIN:
                share[n] = value
                normal[n] = np.cos(tilt) * line.superior[n] + np.sin(tilt) * line.posterior[n]
    return share, normal


def find_discs(bone: np.ndarray, world_to_index: np.ndarray, line: SpineCurve, spacing_mm: float) -> list[Disc]:
    """Discs along the body line, cranial to caudal.

    A disc is a run of the probe profile below :data:`DISC_BONE_SHARE`. Runs whose least share is below
    :data:`CLEAR_DISC_SHARE` are clear discs; they set the spine's pitch (disc to disc distance). A fainter run
    (a lordotic L5-S1 cut obliquely, a disc with osteophytes) is kept only where it lies about one pitch from a
    disc already kept, so that a vertebral body with a dark core is not split in two.
    """
    share, normals = bone_share_profile(bone, world_to_index, line, spacing_mm)
    share = ndimage.gaussian_filter1d(share, 1.0)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line.points_mm, axis=0), axis=1))])
    runs, count = ndimage.label(share < DISC_BONE_SHARE)
    candidates = []  # (least share, arc position, sample index, run length in mm)
    for run in range(1, count + 1):
        where = np.nonzero(runs == run)[0]
        if where[0] == 0 or where[-1] == len(share) - 1:
            continue  # the profile starts or ends outside bone: not a disc between two bodies
        centre = int(where[np.argmin(share[where])]) if share[where].min() < 0.05 else int(round(where.mean()))
        length = float(arc[where[-1]] - arc[where[0]])
        candidates.append((float(share[where].min()), float(arc[centre]), centre, length))
    kept = [c for c in candidates if c[0] < CLEAR_DISC_SHARE]
    kept = _drop_close(sorted(kept, key=lambda c: c[1]))
    if len(kept) >= 2:
        pitch = float(np.median(np.diff([c[1] for c in kept])))
        for faint in sorted((c for c in candidates if c[0] >= CLEAR_DISC_SHARE), key=lambda c: c[0]):
            gaps = [abs(faint[1] - c[1]) for c in kept]
            if PITCH_RANGE[0] * pitch <= min(gaps) <= PITCH_RANGE[1] * pitch:
                kept = sorted([*kept, faint], key=lambda c: c[1])
    return [Disc(line.points_mm[c[2]], normals[c[2]], max(c[3], spacing_mm)) for c in kept]


def _drop_close(candidates: list[tuple[float, float, int, float]]) -> list[tuple[float, float, int, float]]:
    out: list[tuple[float, float, int, float]] = []
    for candidate in candidates:
        if out and candidate[1] - out[-1][1] < MIN_LEVEL_MM:
            if candidate[0] < out[-1][0]:
                out[-1] = candidate
            continue
        out.append(candidate)
    return out
