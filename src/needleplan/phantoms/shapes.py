"""Analytic convex solids: exact point tests, exact ray intervals, grid sampling.

Every solid here is convex: a core (an ellipsoid, an elliptic cylinder capped by two planes, or a box)
intersected with any number of extra half-spaces, all written in the solid's own local frame. The local frame
has its origin at ``centre_mm`` and its axes are the columns of ``rotation`` (orthonormal, right-handed), both
in world LPS millimetres. Extra half-spaces give tilted caps (a wedge-shaped disc between two endplates),
tapers (the sacrum) and cut corners (the lamina's sloping lower border).

Convexity is what makes the phantom exact: a straight line meets a convex solid in one interval, so a ray's
path through a solid is two numbers. Anatomy that is not convex is a union of solids, and carving is painting:
parts are painted in order and a later part overwrites the earlier ones wherever it contains a point (the
vertebral canal is a CSF part painted after the arch). :meth:`ConvexSolid.clipped` is the other boolean: the
intersection of a solid with a half-space.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class ConvexSolid:
    """A convex solid: the set of local points q with ``sum((q / semi_axes_mm)**2) <= 1`` and ``planes``.

    Build one with :func:`ellipsoid`, :func:`elliptic_cylinder` or :func:`box` rather than directly.

    Parameters
    ----------
    centre_mm : ndarray, shape (3,)
        World LPS position of the local origin.
    rotation : ndarray, shape (3, 3)
        Columns are the local x, y, z axes as unit world vectors.
    semi_axes_mm : ndarray, shape (3,)
        Quadric core semi-axes along local x, y, z; ``inf`` where the core is unbounded (cylinder axis, box).
    planes : ndarray, shape (M, 4)
        Half-spaces ``n . q <= d`` as rows ``(nx, ny, nz, d)`` in local coordinates, ``n`` unit.
    half_extent_mm : ndarray, shape (3,)
        Half-sizes of a local box that contains the solid (used only for bounding boxes).
    """

    centre_mm: np.ndarray
    rotation: np.ndarray
    semi_axes_mm: np.ndarray
    planes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    half_extent_mm: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))

    # ---- frames ---------------------------------------------------------------------------------------------
    def to_local(self, points_mm: np.ndarray) -> np.ndarray:
        """World LPS points (N, 3) to local coordinates (N, 3)."""
        return (np.asarray(points_mm, dtype=np.float64) - self.centre_mm) @ self.rotation

    def to_world(self, local_mm: np.ndarray) -> np.ndarray:
        """Local coordinates (N, 3) or (3,) to world LPS points."""
        return np.asarray(local_mm, dtype=np.float64) @ self.rotation.T + self.centre_mm

    # ---- queries --------------------------------------------------------------------------------------------
    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """True for world points (N, 3) inside or on the surface; returns bool (N,)."""
        q = self.to_local(np.reshape(points_mm, (-1, 3)))
        inside = np.sum((q / self.semi_axes_mm) ** 2, axis=1) <= 1.0
        if len(self.planes):
            inside &= np.all(q @ self.planes[:, :3].T <= self.planes[:, 3], axis=1)
        return inside

    def ray_interval(self, origins_mm: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact parameters where lines ``origin + t * direction`` enter and leave the solid.

        Parameters
        ----------
        origins_mm : ndarray, shape (N, 3)
            World LPS points on the lines.
        directions : ndarray, shape (N, 3)
            World direction vectors, any non-zero length; ``t`` is measured in units of that length.

        Returns
        -------
        t_in, t_out : ndarray, shape (N,)
            The line is inside for ``t_in <= t <= t_out``. A line that misses has ``t_in = +inf`` and
            ``t_out = -inf`` (so ``t_in > t_out``); a line inside along its whole length has ``-inf, +inf``.
        """
        o = self.to_local(origins_mm)
        v = np.asarray(directions, dtype=np.float64) @ self.rotation
        t_in, t_out = _quadric_interval(o / self.semi_axes_mm, v / self.semi_axes_mm)
        if len(self.planes):
            normals, offsets = self.planes[:, :3], self.planes[:, 3]
            along = v @ normals.T  # (N, M)
            room = offsets - o @ normals.T
            with np.errstate(divide="ignore", invalid="ignore"):
                t_plane = room / along
            t_in = np.maximum(t_in, np.max(np.where(along < 0, t_plane, -np.inf), axis=1))
            t_out = np.minimum(t_out, np.min(np.where(along > 0, t_plane, np.inf), axis=1))
            parallel_outside = np.any((along == 0) & (room < 0), axis=1)
            missed = parallel_outside | (t_in > t_out)
            t_in = np.where(missed, np.inf, t_in)
            t_out = np.where(missed, -np.inf, t_out)
        return t_in, t_out

    def corners_mm(self) -> np.ndarray:
        """The 8 corners (8, 3) of a world-space box around the solid (the local bounding box, rotated)."""
        half = np.minimum(self.half_extent_mm, self.semi_axes_mm)
        if not np.all(np.isfinite(half)):
            raise ValueError("this solid is unbounded: give it a finite half_extent_mm")
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=float)
        return self.to_world(signs * half)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned box (low (3,), high (3,)) in LPS mm that contains the solid."""
        corners = self.corners_mm()
        low, high = corners.min(axis=0), corners.max(axis=0)
        if np.all(np.isfinite(self.semi_axes_mm)):  # ellipsoid core: its exact box is often tighter
            half = np.sqrt((self.rotation**2) @ self.semi_axes_mm**2)
            low = np.maximum(low, self.centre_mm - half)
            high = np.minimum(high, self.centre_mm + half)
        return low, high

    # ---- derived solids -------------------------------------------------------------------------------------
    def clipped(self, point_mm: ArrayLike, outward_normal: ArrayLike) -> "ConvexSolid":
        """This solid intersected with the world half-space ``(p - point_mm) . outward_normal <= 0``."""
        n = np.asarray(outward_normal, dtype=np.float64)
        n = n / np.linalg.norm(n)
        n_local = self.rotation.T @ n
        d_local = float(n @ (np.asarray(point_mm, dtype=np.float64) - self.centre_mm))
        planes = np.vstack([self.planes, np.append(n_local, d_local)])
        return ConvexSolid(self.centre_mm, self.rotation, self.semi_axes_mm, planes, self.half_extent_mm)

    def shrunk(self, by_mm: float) -> "ConvexSolid":
        """The solid moved inward by ``by_mm``: semi-axes and half-extents shortened, planes pushed in.

        For a box or a half-space this is the exact inner offset; for an elliptic core it is the ellipse with
        shorter semi-axes, which is within a few hundredths of a millimetre of the offset surface for the shell
        thicknesses used here. Used to make a cancellous core inside a cortical shell.
        """
        semi = self.semi_axes_mm - by_mm
        extent = self.half_extent_mm - by_mm
        if np.any(semi <= 0) or np.any(extent <= 0):
            raise ValueError(f"cannot shrink a solid of semi-axes {self.semi_axes_mm} by {by_mm} mm")
        planes = self.planes.copy()
        planes[:, 3] -= by_mm
        return ConvexSolid(self.centre_mm, self.rotation, semi, planes, extent)

    # ---- sampling on a voxel grid ---------------------------------------------------------------------------
    def contains_on_grid(
        self, index_to_world: np.ndarray, lower_ijk: Sequence[int] | np.ndarray, upper_ijk: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Test the voxel centres of an index box of a grid; returns bool (nk, nj, ni).

        Parameters
        ----------
        index_to_world : ndarray, shape (4, 4)
            The grid's affine from (i, j, k, 1) to LPS mm.
        lower_ijk, upper_ijk : sequence of 3 int
            Index box ``[lower, upper)`` along i, j, k.

        Local coordinates are affine in (i, j, k), so each is built by broadcasting three 1D arrays: no
        (N, 3) point array is ever formed.
        """
        g = self.rotation.T @ index_to_world[:3, :3]  # local coordinates per unit index step
        g0 = self.rotation.T @ (index_to_world[:3, 3] - self.centre_mm)
        axes = [np.arange(lo, hi, dtype=np.float64) for lo, hi in zip(lower_ijk, upper_ijk, strict=True)]

        def affine_field(row: np.ndarray, offset: float) -> np.ndarray:
            return (
                (row[0] * axes[0])[None, None, :]
                + (row[1] * axes[1])[None, :, None]
                + (row[2] * axes[2] + offset)[:, None, None]
            )

        shape = (len(axes[2]), len(axes[1]), len(axes[0]))
        inside = np.ones(shape, dtype=bool)
        finite = np.isfinite(self.semi_axes_mm)
        if np.any(finite):
            total = np.zeros(shape)
            for axis in np.flatnonzero(finite):
                q = affine_field(g[axis] / self.semi_axes_mm[axis], g0[axis] / self.semi_axes_mm[axis])
                total += q * q
            inside &= total <= 1.0
        for plane in self.planes:
            inside &= affine_field(plane[:3] @ g, float(plane[:3] @ g0 - plane[3])) <= 0.0
        return inside


def _quadric_interval(o: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval of t with |o + t v|^2 <= 1 for scaled local rays (N, 3); axes with infinite semi-axis are 0."""
    o = np.where(np.isfinite(o), o, 0.0)
    v = np.where(np.isfinite(v), v, 0.0)
    a = np.sum(v * v, axis=1)
    b = np.sum(o * v, axis=1)
    c = np.sum(o * o, axis=1) - 1.0
    disc = b * b - a * c
    hit = (a > 0) & (disc >= 0)
    root = np.sqrt(np.where(hit, disc, 0.0))
    safe_a = np.where(hit, a, 1.0)
    t_in = np.where(hit, (-b - root) / safe_a, np.inf)
    t_out = np.where(hit, (-b + root) / safe_a, -np.inf)
    parallel = a == 0  # the core does not bound the line: all of it is in or all of it is out
    t_in = np.where(parallel, np.where(c <= 0, -np.inf, np.inf), t_in)
    t_out = np.where(parallel, np.where(c <= 0, np.inf, -np.inf), t_out)
    return t_in, t_out


def _orthonormal(rotation: ArrayLike | None) -> np.ndarray:
    r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise ValueError("rotation must be orthonormal and right-handed (columns = local axes)")
    return r


def ellipsoid(centre_mm: ArrayLike, semi_axes_mm: ArrayLike, rotation: ArrayLike | None = None) -> ConvexSolid:
    """Ellipsoid with semi-axes (3,) mm along the local axes (columns of ``rotation``, default world axes)."""
    semi = np.asarray(semi_axes_mm, dtype=np.float64)
    return ConvexSolid(np.asarray(centre_mm, dtype=np.float64), _orthonormal(rotation), semi, np.zeros((0, 4)), semi)


def elliptic_cylinder(
    centre_mm: ArrayLike, semi_axes_mm: ArrayLike, half_height_mm: float, rotation: ArrayLike | None = None
) -> ConvexSolid:
    """Elliptic cylinder along local z with semi-axes (a, b) mm along local x, y and ``|z| <= half_height_mm``.

    Tilt its caps with :meth:`ConvexSolid.clipped` (keep ``half_height_mm`` large enough to contain the tilt).
    """
    a, b = (float(s) for s in np.asarray(semi_axes_mm, dtype=np.float64))
    h = float(half_height_mm)
    planes = np.array([[0.0, 0.0, 1.0, h], [0.0, 0.0, -1.0, h]])
    return ConvexSolid(
        np.asarray(centre_mm, dtype=np.float64), _orthonormal(rotation), np.array([a, b, np.inf]), planes,
        np.array([a, b, h]),
    )


def box(centre_mm: ArrayLike, half_sizes_mm: ArrayLike, rotation: ArrayLike | None = None) -> ConvexSolid:
    """Box with half-sizes (3,) mm along the local axes (columns of ``rotation``, default world axes)."""
    half = np.asarray(half_sizes_mm, dtype=np.float64)
    planes = np.array([[*row, h] for axis, h in enumerate(half) for row in (np.eye(3)[axis], -np.eye(3)[axis])])
    return ConvexSolid(np.asarray(centre_mm, dtype=np.float64), _orthonormal(rotation), np.full(3, np.inf), planes,
                       half)


@dataclass(frozen=True)
class Part:
    """One entry of the painter's list: a solid, what it is made of and what it belongs to.

    Parameters
    ----------
    solid : ConvexSolid
        Where the part is.
    material : str
        A material name (its HU comes from the recipe), e.g. ``"cortical"``, ``"csf"``.
    vertebra_label : int
        VerSe id written into the vertebra label map (20-24 L1-L5, 26 sacrum; 0 for anything else).
    structure : str
        A key of ``STRUCTURE_IDS``, written into the structure map.
    """

    solid: ConvexSolid
    material: str
    vertebra_label: int
    structure: str
