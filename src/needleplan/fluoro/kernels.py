"""The compiled ray-casting core: line integrals of a voxel volume along the rays of a detector.

Everything happens in the volume's continuous index space, where voxel (i, j, k) is the cell
[i - 1/2, i + 1/2] x [j - 1/2, j + 1/2] x [k - 1/2, k + 1/2] and its value sits at the cell centre. An affine map
keeps straight lines straight and scales lengths along a line uniformly, so a ray from the source to a pixel,
parametrised by t in [0, 1] in both spaces, has world length ``L * dt`` for any direction cosines, spacing or
shear. Each ray is clipped to the volume's box before it is walked.

Three ways to walk a ray:
- ``joseph``: one sample per slice crossed along the ray's dominant index axis, bilinear within the slice
  (Joseph 1982); each sample stands for the ray's length inside that slice. The default: fast and accurate.
- ``trilinear``: samples every ``step`` voxels (of the dominant axis) at segment midpoints, trilinear.
- ``siddon``: exact voxel walk (Siddon 1985, incremental form of Amanatides and Woo 1987): the exact integral
  of the piecewise-constant volume. The reference.

Rays are processed in square tiles of neighbouring pixels, one tile per task, so that consecutive rays read
the same cache lines; tiles are spread over threads with ``numba.prange``. Joseph's walk reads a copy of the
volume in which its dominant axis varies fastest (:func:`axis_fastest_copy`, made once per volume and axis by
the backend), so each of its four interpolation neighbours is a contiguous run along the ray. Pixels outside
``field`` are NaN.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TILE = 16
METHODS = ("joseph", "trilinear", "siddon")
_JOSEPH, _TRILINEAR = 0, 1  # and 2: Siddon, the remaining case


@njit(inline="always", cache=True)
def _clip(sx, sy, sz, dx, dy, dz, nx, ny, nz):
    """Parameter interval [t0, t1] within [0, 1] of s + t d inside the box [-1/2, n - 1/2]^3."""
    t0 = 0.0
    t1 = 1.0
    for s, d, n in ((sx, dx, nx), (sy, dy, ny), (sz, dz, nz)):
        low = -0.5
        high = n - 0.5
        if abs(d) < 1e-12:
            if s < low or s > high:
                return 1.0, 0.0
        else:
            ta = (low - s) / d
            tb = (high - s) / d
            if ta > tb:
                ta, tb = tb, ta
            t0 = max(t0, ta)
            t1 = min(t1, tb)
    return t0, t1


@njit(inline="always", cache=True)
def _cell(x, n):
    """Lower neighbour index and weight of the upper neighbour for linear interpolation, edges clamped."""
    if n == 1 or x <= 0.0:
        return 0, 0.0
    if x >= n - 1:
        return n - 2, 1.0
    i = int(x)
    return i, x - i


@njit(inline="always", cache=True)
def _slices(sx, sy, sz, dx, dy, dz, nx, ny, nz, t0, t1, along_fastest):
    """Set-up for walking slice by slice along the dominant axis a of s + t d, t in [t0, t1].

    Returns which axis a is (0, 1, 2 for i, j, k), its start, direction and flat stride, the same for the two
    other axes b and c (with their sizes), the clipped range [q_low, q_high] of the a coordinate, and the
    first and last slice it touches. Strides are those of the (nz, ny, nx) C-order array, or, when
    ``along_fastest``, of the copy of it in which axis a varies fastest (see :func:`axis_fastest_copy`).
    """
    if _dominant(dx, dy, dz) == 0:  # the natural layout already has i fastest
        axis, sa, da, na, stride_a = 0, sx, dx, nx, 1
        sb, db, nb, stride_b = sy, dy, ny, nx
        sc, dc, nc, stride_c = sz, dz, nz, nx * ny
    elif _dominant(dx, dy, dz) == 1:
        axis, sa, da, na, stride_a = 1, sy, dy, ny, nx
        sb, db, nb, stride_b = sx, dx, nx, 1
        sc, dc, nc, stride_c = sz, dz, nz, nx * ny
        if along_fastest:  # (nz, nx, ny) copy
            stride_a, stride_b = 1, ny
    else:
        axis, sa, da, na, stride_a = 2, sz, dz, nz, nx * ny
        sb, db, nb, stride_b = sx, dx, nx, 1
        sc, dc, nc, stride_c = sy, dy, ny, nx
        if along_fastest:  # (ny, nx, nz) copy
            stride_a, stride_b, stride_c = 1, nz, nx * nz
    q_low = min(sa + t0 * da, sa + t1 * da)
    q_high = max(sa + t0 * da, sa + t1 * da)
    m_first = max(int(math.floor(q_low + 0.5)), 0)
    m_last = min(int(math.floor(q_high + 0.5)), na - 1)
    return axis, sa, da, stride_a, sb, db, nb, stride_b, sc, dc, nc, stride_c, q_low, q_high, m_first, m_last


def axis_fastest_copy(volume: np.ndarray, axis: int) -> np.ndarray:
    """Flat copy of a (nz, ny, nx) array in which index axis ``axis`` (0 = i, 1 = j, 2 = k) varies fastest.

    Joseph's walk along that axis then reads each of its four interpolation neighbours as a contiguous run,
    so one cache line serves several consecutive samples.
    """
    order = {0: (0, 1, 2), 1: (0, 2, 1), 2: (1, 2, 0)}[axis]
    return np.ascontiguousarray(volume.transpose(order)).reshape(-1)


@njit(inline="always", cache=True)
def _dominant(dx, dy, dz):
    """0, 1 or 2: the index axis along which the direction d moves most (ties to the lower axis)."""
    ax, ay, az = abs(dx), abs(dy), abs(dz)
    if ax >= ay and ax >= az:
        return 0
    return 1 if ay >= az else 2


@njit(inline="always", cache=True)
def _tile_box(tile, tiles_across, rows, cols):
    """First row, end row, first column and end column of square tile number ``tile`` (row-major tiles)."""
    row0 = (tile // tiles_across) * TILE
    col0 = (tile % tiles_across) * TILE
    return row0, min(row0 + TILE, rows), col0, min(col0 + TILE, cols)


@njit(inline="always", cache=True)
def _pixel_ray(r, c, source_ijk, origin_ijk, col_step_ijk, row_step_ijk, source_mm, origin_mm, col_step_mm,
               row_step_mm):
    """Direction (index units, source to pixel centre) and world length of the ray to pixel (r, c)."""
    dx = origin_ijk[0] + c * col_step_ijk[0] + r * row_step_ijk[0] - source_ijk[0]
    dy = origin_ijk[1] + c * col_step_ijk[1] + r * row_step_ijk[1] - source_ijk[1]
    dz = origin_ijk[2] + c * col_step_ijk[2] + r * row_step_ijk[2] - source_ijk[2]
    wx = origin_mm[0] + c * col_step_mm[0] + r * row_step_mm[0] - source_mm[0]
    wy = origin_mm[1] + c * col_step_mm[1] + r * row_step_mm[1] - source_mm[1]
    wz = origin_mm[2] + c * col_step_mm[2] + r * row_step_mm[2] - source_mm[2]
    return dx, dy, dz, math.sqrt(wx * wx + wy * wy + wz * wz)


@njit(inline="always", cache=True)
def _interior(low, high, x0, step, n):
    """Narrow [low, high] to the m for which x0 + m step lies safely inside [0, n - 1) (by one sample)."""
    if abs(step) > 1e-9:
        first, last = -x0 / step, (n - 1 - x0) / step
        if step < 0:
            first, last = last, first
        # compare as floats before converting: a nearly axis-parallel ray gives huge bounds
        if first > low - 1:
            low = int(math.ceil(min(first, high + 1.0))) + 1
        if last < high + 1:
            high = int(math.floor(max(last, low - 1.0))) - 1
        return low, high
    if 1e-3 <= x0 <= n - 1 - 1e-3:  # drifts by < 1e-9 per slice: stays inside for any volume size
        return low, high
    return 1, 0


@njit(inline="always", cache=True)
def _joseph_edge_sample(mu, m, q_low, q_high, stride_a, b0, step_b, nb, stride_b, c0, step_c, nc, stride_c):
    """Slice m's share of the ray (in slices) times the bilinear value at (b0 + m step_b, c0 + m step_c).

    For the samples near the ray's ends or the volume's sides: partial weights, edges clamped.
    """
    weight = min(m + 0.5, q_high) - max(m - 0.5, q_low)
    if weight <= 0.0:
        return 0.0
    ib, fb = _cell(b0 + m * step_b, nb)
    ic, fc = _cell(c0 + m * step_c, nc)
    next_b = stride_b if nb > 1 else 0
    next_c = stride_c if nc > 1 else 0
    base = m * stride_a + ib * stride_b + ic * stride_c
    low = mu[base] + fb * (mu[base + next_b] - mu[base])
    high = mu[base + next_c] + fb * (mu[base + next_c + next_b] - mu[base + next_c])
    return weight * (low + fc * (high - low))


@njit(fastmath=True, cache=True)
def _joseph_interior(mu, offset_a, stride_a, xb, step_b, stride_b, xc, step_c, stride_c, count):
    """Sum of ``count`` bilinear samples, slice by slice, all safely inside the volume (no clamping).

    A separate, small compiled function: LLVM keeps this hot loop's variables in registers.
    """
    # unsigned offsets spare numba's negative-index wrap-around test on every read (they are >= 0 here)
    next_b, next_c = np.uint64(stride_b), np.uint64(stride_c)
    total = 0.0
    for _ in range(count):
        ib = int(xb)
        ic = int(xc)
        fb = xb - ib
        fc = xc - ic
        base = np.uint64(offset_a + ib * stride_b + ic * stride_c)
        v00 = mu[base]
        v10 = mu[base + next_b]
        v01 = mu[base + next_c]
        v11 = mu[base + next_c + next_b]
        low = v00 + fb * (v10 - v00)
        high = v01 + fb * (v11 - v01)
        total += low + fc * (high - low)
        xb += step_b
        xc += step_c
        offset_a += stride_a
    return total


@njit(inline="always", cache=True)
def _joseph(mu, mu_along, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1):
    """Joseph's method; returns the integral per unit t (multiply by the ray's world length).

    ``mu`` is the flat (nz, ny, nx) volume and ``mu_along`` the three axis-fastest copies, each an empty
    array where it was not made (then ``mu`` is read). The samples whose bilinear footprint lies inside the
    slice and whose weight is a whole slice take a branch-free loop; the few others (ray ends, volume edges)
    take the careful one.
    """
    axis = _dominant(dx, dy, dz)
    copy = mu_along[axis]
    along_fastest = copy.size > 0
    if along_fastest:
        mu = copy
    (axis, sa, da, stride_a, sb, db, nb, stride_b, sc, dc, nc, stride_c, q_low, q_high, m_first,
     m_last) = _slices(sx, sy, sz, dx, dy, dz, nx, ny, nz, t0, t1, along_fastest)
    step_b = db / da
    step_c = dc / da
    b0 = sb - sa * step_b  # b coordinate of the ray in slice m is b0 + m step_b
    c0 = sc - sa * step_c
    fast_first, fast_last = _interior(m_first + 1, m_last - 1, b0, step_b, nb)
    fast_first, fast_last = _interior(fast_first, fast_last, c0, step_c, nc)
    if fast_first > fast_last:
        fast_first, fast_last = m_last + 1, m_last
    total = _joseph_interior(mu, fast_first * stride_a, stride_a, b0 + fast_first * step_b, step_b, stride_b,
                             c0 + fast_first * step_c, step_c, stride_c, fast_last + 1 - fast_first)
    for m in range(m_first, min(fast_first, m_last + 1)):
        total += _joseph_edge_sample(mu, m, q_low, q_high, stride_a, b0, step_b, nb, stride_b, c0, step_c, nc,
                                     stride_c)
    for m in range(max(fast_last + 1, m_first), m_last + 1):
        total += _joseph_edge_sample(mu, m, q_low, q_high, stride_a, b0, step_b, nb, stride_b, c0, step_c, nc,
                                     stride_c)
    return total / abs(da)


@njit(inline="always", cache=True)
def _trilinear(mu, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1, step):
    """Midpoint samples every ``step`` voxels of the dominant axis, trilinear; integral per unit t."""
    dominant = max(abs(dx), abs(dy), abs(dz))
    count = max(1, int(math.ceil((t1 - t0) * dominant / step)))
    dt = (t1 - t0) / count
    next_x = 1 if nx > 1 else 0
    next_y = nx if ny > 1 else 0
    next_z = nx * ny if nz > 1 else 0
    total = 0.0
    for n in range(count):
        t = t0 + (n + 0.5) * dt
        i, fx = _cell(sx + t * dx, nx)
        j, fy = _cell(sy + t * dy, ny)
        k, fz = _cell(sz + t * dz, nz)
        base = i + nx * (j + ny * k)
        c00 = mu[base] + fx * (mu[base + next_x] - mu[base])
        c10 = mu[base + next_y] + fx * (mu[base + next_y + next_x] - mu[base + next_y])
        c01 = mu[base + next_z] + fx * (mu[base + next_z + next_x] - mu[base + next_z])
        c11 = mu[base + next_z + next_y] + fx * (mu[base + next_z + next_y + next_x] - mu[base + next_z + next_y])
        c0 = c00 + fy * (c10 - c00)
        c1 = c01 + fy * (c11 - c01)
        total += c0 + fz * (c1 - c0)
    return total * dt


@njit(inline="always", cache=True)
def _axis_walk(s, d, t, n):
    """Start cell, step direction, parameter of the next cell boundary and parameter per cell for one axis."""
    cell = min(max(int(math.floor(s + t * d + 0.5)), 0), n - 1)
    if d > 0:
        return cell, 1, (cell + 0.5 - s) / d, 1.0 / d
    if d < 0:
        return cell, -1, (cell - 0.5 - s) / d, -1.0 / d
    return cell, 0, np.inf, np.inf


@njit(inline="always", cache=True)
def _siddon(mu, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1):
    """Exact integral of the piecewise-constant volume; per unit t."""
    # start the walk from a point just inside the clipped segment so the first cell is the right one
    t_mid = t0 + 1e-9 * (t1 - t0)
    i, step_i, next_i, delta_i = _axis_walk(sx, dx, t_mid, nx)
    j, step_j, next_j, delta_j = _axis_walk(sy, dy, t_mid, ny)
    k, step_k, next_k, delta_k = _axis_walk(sz, dz, t_mid, nz)
    t = t0
    total = 0.0
    while t < t1:
        t_next = min(next_i, next_j, next_k, t1)
        total += (t_next - t) * mu[i + nx * (j + ny * k)]
        t = t_next
        if t >= t1:
            break
        if next_i <= next_j and next_i <= next_k:
            i += step_i
            next_i += delta_i
            if i < 0 or i >= nx:
                break
        elif next_j <= next_k:
            j += step_j
            next_j += delta_j
            if j < 0 or j >= ny:
                break
        else:
            k += step_k
            next_k += delta_k
            if k < 0 or k >= nz:
                break
    return total


# nogil: a server answering other requests while a shot renders (the practice simulator) is not held up
@njit(parallel=True, fastmath=True, cache=True, nogil=True)
def line_integrals(mu, mu_along, shape_zyx, source_ijk, origin_ijk, col_step_ijk, row_step_ijk, source_mm,
                   origin_mm, col_step_mm, row_step_mm, field, method, step, out):
    """Fill ``out`` (rows, cols) with the line integral from the source to every pixel centre.

    Parameters
    ----------
    mu : float32 array, flat, C order of (nz, ny, nx)
        Linear attenuation in 1/mm.
    mu_along : tuple of three float32 arrays
        :func:`axis_fastest_copy` of ``mu`` for axes i, j, k, or an empty array for an axis without a copy.
    shape_zyx : int64 array (3,)
    source_ijk, origin_ijk, col_step_ijk, row_step_ijk : float64 arrays (3,)
        Source, centre of pixel (0, 0), and the steps to the next column and row, in continuous (i, j, k).
    source_mm, origin_mm, col_step_mm, row_step_mm : float64 arrays (3,)
        The same in world mm (for ray lengths).
    field : bool array (rows, cols)
        Pixels to compute; others get NaN.
    method : int
        0 Joseph, 1 trilinear, 2 Siddon.
    step : float
        Trilinear sample spacing in voxels of the dominant axis.
    out : float32 array (rows, cols)
    """
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    rows, cols = out.shape
    tiles_across = (cols + TILE - 1) // TILE
    for tile in prange(tiles_across * ((rows + TILE - 1) // TILE)):
        row0, row_end, col0, col_end = _tile_box(tile, tiles_across, rows, cols)
        for r in range(row0, row_end):
            for c in range(col0, col_end):
                if not field[r, c]:
                    out[r, c] = np.nan
                    continue
                dx, dy, dz, length_mm = _pixel_ray(r, c, source_ijk, origin_ijk, col_step_ijk, row_step_ijk,
                                                   source_mm, origin_mm, col_step_mm, row_step_mm)
                sx, sy, sz = source_ijk[0], source_ijk[1], source_ijk[2]
                t0, t1 = _clip(sx, sy, sz, dx, dy, dz, nx, ny, nz)
                if t1 <= t0:
                    out[r, c] = 0.0
                    continue
                if method == _JOSEPH:
                    value = _joseph(mu, mu_along, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1)
                elif method == _TRILINEAR:
                    value = _trilinear(mu, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1, step)
                else:
                    value = _siddon(mu, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1)
                out[r, c] = value * length_mm


@njit(parallel=True, cache=True, nogil=True)
def label_path_lengths(channels, shape_zyx, source_ijk, origin_ijk, col_step_ijk, row_step_ijk, source_mm,
                       origin_mm, col_step_mm, row_step_mm, field, out):
    """Fill ``out`` (K, rows, cols) with the mm each ray travels through each label channel.

    ``channels`` is a flat integer volume of channel numbers (0 = none, c = channel c - 1), read by nearest
    neighbour at Joseph's sample points; each sample counts the ray's length within its slice.
    """
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    _, rows, cols = out.shape
    tiles_across = (cols + TILE - 1) // TILE
    for tile in prange(tiles_across * ((rows + TILE - 1) // TILE)):
        row0, row_end, col0, col_end = _tile_box(tile, tiles_across, rows, cols)
        for r in range(row0, row_end):
            for c in range(col0, col_end):
                if not field[r, c]:
                    continue
                dx, dy, dz, length_mm = _pixel_ray(r, c, source_ijk, origin_ijk, col_step_ijk, row_step_ijk,
                                                   source_mm, origin_mm, col_step_mm, row_step_mm)
                sx, sy, sz = source_ijk[0], source_ijk[1], source_ijk[2]
                t0, t1 = _clip(sx, sy, sz, dx, dy, dz, nx, ny, nz)
                if t1 <= t0:
                    continue
                _label_ray(channels, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1, length_mm, out, r, c)


@njit(inline="always", cache=True)
def _label_ray(channels, nx, ny, nz, sx, sy, sz, dx, dy, dz, t0, t1, length_mm, out, r, c):
    (_, sa, da, stride_a, sb, db, nb, stride_b, sc, dc, nc, stride_c, q_low, q_high, m_first,
     m_last) = _slices(sx, sy, sz, dx, dy, dz, nx, ny, nz, t0, t1, False)
    mm_per_slice = length_mm / abs(da)
    for m in range(m_first, m_last + 1):
        weight = min(m + 0.5, q_high) - max(m - 0.5, q_low)
        if weight <= 0.0:
            continue
        ib = min(max(int(math.floor(sb + (m - sa) * db / da + 0.5)), 0), nb - 1)
        ic = min(max(int(math.floor(sc + (m - sa) * dc / da + 0.5)), 0), nc - 1)
        channel = channels[m * stride_a + ib * stride_b + ic * stride_c]
        if channel > 0:
            out[channel - 1, r, c] += weight * mm_per_slice
