"""Check every peer adapter of ``peers.py`` against exact analytic line integrals.

Usage: ``.venv/bin/python benchmarks/check_peers.py [--threads 2]``

The test volume is a 96 x 80 x 64 voxel grid (x, y, z) of spacing (1.0, 1.2, 1.5) mm with a non-zero
origin, holding a box of mu 0.02/mm and, inside it, an off-centre box adding 0.05/mm. Every box face lies
on a voxel boundary, so the voxelised object equals the continuous one and each ray's integral is exact by
slab clipping. Three views (850 mm source to isocentre, 1020 mm source to detector, 96 rows x 128 columns
of 2 mm): AP (u x v toward the source), lateral (u x v away from it) and an oblique one (AP turned 30
degrees about z, then 15 degrees about the turned x axis). Errors are taken away from edges: pixels
within 2 px of a jump in the exact image are left out. Prints, per peer and view, the maximum absolute
error, the median relative error over the object, the correlation with the exact image and the best
correlation of the image flipped up-down, left-right or both (orientation is right when the first is above
0.99 and above the second), and the render time; then the per-render timings of the AP view.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from peers import PEERS, ConeGeometry, available
from scipy import ndimage

SHAPE_ZYX = (64, 80, 96)
SPACING = np.array([1.0, 1.2, 1.5])
ORIGIN = np.array([-40.5, 12.3, -70.2])
# (first index, one past last index) along (i, j, k), and the mu added.
BOXES = [((20, 15, 10), (76, 65, 50), 0.02), ((25, 20, 35), (40, 35, 47), 0.05)]
SID, SDD, ROWS, COLS, PIXEL = 850.0, 1020.0, 96, 128, 2.0


def phantom() -> tuple[np.ndarray, np.ndarray]:
    """Build the test volume.

    Returns
    -------
    mu_zyx : numpy.ndarray
        float32, shape (64, 80, 96), 1/mm.
    index_to_world : numpy.ndarray
        4x4 affine.
    """
    mu = np.zeros(SHAPE_ZYX, dtype=np.float32)
    for (i0, j0, k0), (i1, j1, k1), value in BOXES:
        mu[k0:k1, j0:j1, i0:i1] += value
    affine = np.diag(np.append(SPACING, 1.0))
    affine[:3, 3] = ORIGIN
    return mu, affine


def exact_image(geom: ConeGeometry) -> np.ndarray:
    """Exact line integrals of the boxes, by slab clipping of each segment.

    Parameters
    ----------
    geom : ConeGeometry
        Projection geometry.

    Returns
    -------
    numpy.ndarray
        float64, shape (rows, cols).
    """
    ends = geom.pixel_centres()
    d = ends - geom.source_mm
    image = np.zeros((geom.rows, geom.cols))
    for first, stop, value in BOXES:
        lo = ORIGIN + (np.array(first) - 0.5) * SPACING
        hi = ORIGIN + (np.array(stop) - 0.5) * SPACING
        with np.errstate(divide="ignore", invalid="ignore"):
            t0 = (lo - geom.source_mm) / d
            t1 = (hi - geom.source_mm) / d
        # A ray parallel to a slab gives nan (on a face) or +-inf: inside or not.
        t_in = np.nanmax(np.minimum(t0, t1), axis=-1).clip(0.0, 1.0)
        t_out = np.nanmin(np.maximum(t0, t1), axis=-1).clip(0.0, 1.0)
        image += value * np.linalg.norm(d, axis=-1) * np.clip(t_out - t_in, 0.0, None)
    return image


def rotation(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Rotation matrix about a unit ``axis`` (Rodrigues)."""
    a = np.radians(degrees)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(a) * k + (1.0 - np.cos(a)) * (k @ k)


def views(centre: np.ndarray) -> dict[str, ConeGeometry]:
    """The AP, lateral and oblique test views about ``centre``.

    Parameters
    ----------
    centre : numpy.ndarray
        Isocentre, world mm.

    Returns
    -------
    dict[str, ConeGeometry]
        Geometries by view name.
    """
    x, y, z = np.eye(3)

    def cone(beam: np.ndarray, u: np.ndarray, v: np.ndarray) -> ConeGeometry:
        return ConeGeometry(centre - SID * beam, centre + (SDD - SID) * beam, u, v, PIXEL, ROWS, COLS)

    turn = rotation(z, 30.0)
    turn = rotation(turn @ x, 15.0) @ turn
    return {
        "AP": cone(y, -x, -z),
        "lateral": cone(x, -y, -z),
        "oblique": cone(turn @ y, turn @ -x, turn @ -z),
    }


def interior(exact: np.ndarray) -> np.ndarray:
    """Pixels more than 2 px away from any jump of the exact image."""
    jump = 1e-3 * exact.max()
    edge = np.zeros(exact.shape, dtype=bool)
    for axis in (0, 1):
        step = np.abs(np.diff(exact, axis=axis)) > jump
        lead = [(0, 0), (0, 0)]
        lead[axis] = (0, 1)
        trail = [(0, 0), (0, 0)]
        trail[axis] = (1, 0)
        edge |= np.pad(step, lead) | np.pad(step, trail)
    return ~ndimage.binary_dilation(edge, iterations=2, structure=np.ones((3, 3), dtype=bool))


def correlation(image: np.ndarray, exact: np.ndarray) -> float:
    """Pearson correlation of two images."""
    return float(np.corrcoef(image.ravel(), exact.ravel())[0, 1])


def main() -> None:
    """Run the checks and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    status = available()
    mu, affine = phantom()
    centre = ORIGIN + SPACING * (np.array(SHAPE_ZYX[::-1]) - 1) / 2.0
    geoms = views(centre)
    exacts = {name: exact_image(g) for name, g in geoms.items()}

    print(
        f"{'peer':12} {'view':8} {'max abs err':>12} {'median rel':>11} {'corr':>9} {'flip corr':>9}"
        f" {'orient':>6} {'render s':>9}"
    )
    timings: dict[str, str] = {}
    for peer, cls in PEERS.items():
        if status[peer] != "ok":
            print(f"{peer:12} unavailable: {status[peer]}")
            continue
        start = time.perf_counter()
        adapter = cls(mu, affine, threads=args.threads)
        setup = time.perf_counter() - start
        try:
            for view, geom in geoms.items():
                image = adapter.render(geom)
                assert image.shape == (ROWS, COLS) and image.dtype == np.float32
                exact = exacts[view]
                keep = interior(exact)
                inside = keep & (exact > 0.0)
                err = np.abs(image - exact)
                rel = float(np.median(err[inside] / exact[inside]))
                corr = correlation(image, exact)
                flipped = max(correlation(f, exact) for f in (image[::-1], image[:, ::-1], image[::-1, ::-1]))
                oriented = corr > 0.99 and corr > flipped
                print(
                    f"{peer:12} {view:8} {err[keep].max():12.3e} {rel:11.3e} {corr:9.6f} {flipped:9.6f}"
                    f" {'ok' if oriented else 'BAD':>6} {adapter.last_timing['render_s']:9.4f}"
                )
            runs = []
            for _ in range(3):
                adapter.render(geoms["AP"])
                runs.append(dict(adapter.last_timing))
            parts = [f"setup {setup:.3f} s"]
            for key in runs[0]:
                parts.append(f"{key} {statistics.median(r[key] for r in runs):.4f} s")
            timings[peer] = ", ".join(parts)
        finally:
            adapter.close()

    print(f"\nAP view, {ROWS}x{COLS}, {args.threads} threads, median of 3 renders:")
    for peer, text in timings.items():
        print(f"  {peer:12} {text}")


if __name__ == "__main__":
    main()
