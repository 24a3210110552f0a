"""The compiled walk along candidate needle paths: from the target back to the skin, voxel by voxel.

Each ray visits, in order, every voxel of the scan grid it passes through (an exact 3D DDA walk in index space,
so no corner is skipped however coarse the grid) and stops at the first event met walking outward from the
target: leaving the body (the skin: feasible so far), or entering the canal, a forbidden disc, bone beyond the
intended contact, or the zone in front of the vertebral bodies. Bowel gas is checked afterwards on the survivors
(:mod:`.search`). Voxels are the nearest-neighbour cells of the label maps (unit cubes around integer indices).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Event codes of :func:`march`.
SKIN, CANAL, DISC, FRONT, BONE, NOT_REACHED = 0, 1, 2, 3, 4, 5


@njit(cache=True)
def _in_front(x: float, y: float, z: float, points: np.ndarray, posterior: np.ndarray, superior: np.ndarray,
              margin: float) -> bool:
    """Whether a point lies within ``margin`` mm behind (or in front of) the nearest vertebral body's front."""
    best, behind = 1e30, 1e30
    for q in range(points.shape[0]):
        d0, d1, d2 = x - points[q, 0], y - points[q, 1], z - points[q, 2]
        height = abs(d0 * superior[q, 0] + d1 * superior[q, 1] + d2 * superior[q, 2])
        if height < best:
            best = height
            behind = d0 * posterior[q, 0] + d1 * posterior[q, 1] + d2 * posterior[q, 2]
    return behind < margin


@njit(parallel=True, cache=True)
def march(target: np.ndarray, directions: np.ndarray, max_mm: float, world_to_index: np.ndarray,
          body: np.ndarray, bone: np.ndarray, rim: np.ndarray, canal: np.ndarray, disc: np.ndarray,
          disc_forbidden: bool, contact_mm: float, rim_extra_mm: float, plane_points: np.ndarray,
          plane_posterior: np.ndarray, plane_superior: np.ndarray, front_margin_mm: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk every ray target - t * direction (t from 0 to ``max_mm``) and report its first event.

    ``bone`` > 0 is bone, named by its value; where ``rim`` is set that bone is a partial-volume rim voxel, allowed
    ``rim_extra_mm`` beyond the intended contact ``contact_mm`` (the target's own bone lies that close to it).

    Returns
    -------
    event : (B,) int64
        One of SKIN, CANAL, DISC, FRONT, BONE, NOT_REACHED.
    at_mm : (B,) float64
        Distance from the target where the event's voxel is entered (SKIN: where the ray leaves the body).
    bone_label : (B,) int64
        The bone label met (BONE events), else 0.
    """
    n_rays = directions.shape[0]
    shape = body.shape  # (nz, ny, nx)
    m = world_to_index
    event = np.full(n_rays, NOT_REACHED, dtype=np.int64)
    at_mm = np.full(n_rays, max_mm)
    bone_label = np.zeros(n_rays, dtype=np.int64)
    start = np.empty(3)
    for a in range(3):
        start[a] = m[a, 0] * target[0] + m[a, 1] * target[1] + m[a, 2] * target[2] + m[a, 3]
    for r in prange(n_rays):
        step = np.empty(3)  # index change per mm along the walk (toward the skin)
        cell = np.empty(3, dtype=np.int64)
        t_next = np.empty(3)
        t_delta = np.empty(3)
        for a in range(3):
            step[a] = -(m[a, 0] * directions[r, 0] + m[a, 1] * directions[r, 1] + m[a, 2] * directions[r, 2])
            cell[a] = int(np.floor(start[a] + 0.5))
            if step[a] > 1e-12:
                t_next[a] = (cell[a] + 0.5 - start[a]) / step[a]
                t_delta[a] = 1.0 / step[a]
            elif step[a] < -1e-12:
                t_next[a] = (cell[a] - 0.5 - start[a]) / step[a]
                t_delta[a] = -1.0 / step[a]
            else:
                t_next[a] = 1e30
                t_delta[a] = 1e30
        t_in = 0.0
        while t_in <= max_mm:
            t_out = min(t_next[0], t_next[1], t_next[2])
            i, j, k = cell[0], cell[1], cell[2]
            inside = 0 <= i < shape[2] and 0 <= j < shape[1] and 0 <= k < shape[0]
            if not inside or not body[k, j, i]:
                if t_in > 0.0:
                    event[r] = SKIN if inside else NOT_REACHED
                    at_mm[r] = t_in
                    break
            elif canal[k, j, i]:
                event[r], at_mm[r] = CANAL, t_in
                break
            elif disc_forbidden and disc[k, j, i]:
                event[r], at_mm[r] = DISC, t_in
                break
            elif bone[k, j, i] > 0 and t_out > contact_mm + (rim_extra_mm if rim[k, j, i] else 0.0):
                event[r], at_mm[r], bone_label[r] = BONE, max(t_in, contact_mm), bone[k, j, i]
                break
            else:
                t_far = min(t_out, max_mm)
                x = target[0] - t_far * directions[r, 0]
                y = target[1] - t_far * directions[r, 1]
                z = target[2] - t_far * directions[r, 2]
                if plane_points.shape[0] > 0 and _in_front(x, y, z, plane_points, plane_posterior, plane_superior,
                                                           front_margin_mm):
                    event[r], at_mm[r] = FRONT, t_in
                    break
            axis = 0
            if t_next[1] < t_next[axis]:
                axis = 1
            if t_next[2] < t_next[axis]:
                axis = 2
            cell[axis] += 1 if step[axis] > 0 else -1
            t_in = t_next[axis]
            t_next[axis] += t_delta[axis]
    return event, at_mm, bone_label
