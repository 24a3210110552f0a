"""Synthetic lumbar spine CT with exact analytic ground truth.

``phantom(seed)`` builds L1-L5, the sacrum, both ilia and SI joints, discs, canal, foramina, soft tissue and
bowel gas as a painter's list of convex solids (:mod:`.shapes`, :mod:`.anatomy`), samples it on a voxel grid
and returns a :class:`PhantomCase` with the CT, the VerSe label map, a structure map, exact landmarks and exact
ray integrals. Dimensions, HU values and curvature come from the recipe ``lumbar.toml`` (each number says
whether it is published anatomy or an engineering choice). The seed varies every length by a few percent,
the level angles and the curvature by a few degrees, places the bowel gas, and draws the noise; the same seed
gives the identical case.

The default grid is 1.0 mm isotropic with identity direction: about 366 x 265 x 320 voxels (31 M), built in
about 2 s on one core. Building paints each part only over its bounding box in index space.
"""

from __future__ import annotations

import copy
import math
import functools
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GeometryError, NeedleplanError
from ..volume import affine_from_geometry
from .anatomy import MATERIALS, STRUCTURE_IDS, VERTEBRA_LABELS, build_anatomy
from .case import PhantomCase, PointProperties, paint, volumes_from_paint

__all__ = [
    "MATERIALS", "STRUCTURE_IDS", "VERTEBRA_LABELS", "PhantomCase", "PointProperties", "load_recipe", "phantom",
    "vary_recipe",
]

_RECIPE_PATH = Path(__file__).with_name("lumbar.toml")
#: Recipe tables whose "_mm" numbers the seed varies; level tables also get their "_deg" numbers varied.
_VARIED_TABLES = ("body", "vertebra", "levels", "discs", "sacrum", "si_joint", "ilium")


def load_recipe(path: str | Path | None = None) -> dict[str, Any]:
    """Read a phantom recipe (default: the packaged ``lumbar.toml``) into a plain dict."""
    with open(path or _RECIPE_PATH, "rb") as handle:
        return tomllib.load(handle)


def vary_recipe(recipe: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A copy of ``recipe`` with the seed's anatomical variation and the bowel gas pockets drawn from ``rng``.

    Lengths are multiplied by ``1 + e`` and level angles shifted by ``e`` degrees, ``e`` normal with the
    recipe's ``[variation]`` standard deviations, clipped at two of them; lordosis, sacral slope and
    scoliosis get their own draws. ``recipe["bowel"]`` becomes a list of pockets
    ``{"centre_mm": [x, y, z], "semi_axes_mm": [a, b, c]}``.
    """
    out = copy.deepcopy(recipe)
    spread = out["variation"]

    def draw(sd: float) -> float:
        return float(np.clip(rng.normal(0.0, sd), -2.0 * sd, 2.0 * sd)) if sd > 0 else 0.0

    def vary(table: dict[str, Any], angles: bool) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                vary(value, angles)
            elif key.endswith("_mm"):
                factor = lambda: 1.0 + draw(spread["length_sd_fraction"])  # noqa: E731
                table[key] = [v * factor() for v in value] if isinstance(value, list) else value * factor()
            elif angles and key.endswith("_deg"):
                table[key] = value + draw(spread["angle_sd_deg"])

    for name in _VARIED_TABLES:
        vary(out[name], angles=name == "levels")
    curve = out["curvature"]
    curve["lordosis_deg"] += draw(spread["curvature_sd_deg"])
    curve["sacral_slope_deg"] += draw(spread["curvature_sd_deg"])
    curve["scoliosis_deg"] += draw(spread["scoliosis_sd_deg"])
    body = out["body"]
    x0, x1, y0, y1, z0, z1 = body["bowel_box_mm"]
    smallest, largest = body["bowel_semi_axes_range_mm"]
    out["bowel"] = [
        {
            "centre_mm": [float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(z0, z1))],
            "semi_axes_mm": [float(v) for v in rng.uniform(smallest, largest, size=3)],
        }
        for _ in range(int(body["bowel_pockets"]))
    ]
    return out


def _scaled(value: Any, scale: float, key: str = "") -> Any:
    """Multiply every number under a key ending in "_mm" by ``scale``."""
    if isinstance(value, dict):
        return {k: _scaled(v, scale, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scaled(v, scale, key) for v in value]
    if key.endswith("_mm") and isinstance(value, (int, float)):
        return value * scale
    return value


def _grid(region_mm: np.ndarray, spacing_mm: np.ndarray, direction: np.ndarray
          ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and (nz, ny, nx) of the smallest grid with the given spacing and direction covering a world box."""
    corners = np.array([[x, y, z] for x in region_mm[:, 0] for y in region_mm[:, 1] for z in region_mm[:, 2]])
    along = corners @ np.linalg.inv(direction).T  # coordinates along the grid axes, in mm
    low, high = along.min(axis=0), along.max(axis=0)
    size = np.ceil((high - low) / spacing_mm).astype(int) + 1
    affine = affine_from_geometry(spacing_mm, direction @ low, direction)
    return affine, (int(size[2]), int(size[1]), int(size[0]))


def _direction(direction: np.ndarray | None) -> np.ndarray:
    """The grid's 3x3 direction cosines with unit columns; identity by default."""
    if direction is None:
        return np.eye(3)
    axes = np.asarray(direction, dtype=np.float64)
    lengths = np.linalg.norm(axes, axis=0) if axes.shape == (3, 3) else np.zeros(3)
    if not np.all(np.isfinite(axes)) or np.any(lengths < 1e-9) or abs(np.linalg.det(axes / lengths)) < 1e-6:
        raise GeometryError("direction must be a 3x3 matrix of non-parallel columns (LPS axes of i, j, k), "
                            f"got {direction!r}")
    return axes / lengths


#: Voxel spacings the command line offers (mm): finer needs more memory than most computers have.
SPACING_RANGE_MM = (0.5, 5.0)
#: The largest phantom grid built (about 12 GiB to build); at 0.5 mm the default phantom has about 2.5e8 voxels.
MAX_VOXELS = 400_000_000
#: Memory a phantom's build needs per voxel (peak, measured; bytes).
BYTES_PER_VOXEL = 32


def phantom(
    seed: int = 0,
    *,
    spacing_mm: float | tuple[float, float, float] = 1.0,
    scale: float = 1.0,
    lordosis_deg: float | None = None,
    scoliosis_deg: float = 0.0,
    noise_hu: float = 0.0,
    direction: np.ndarray | None = None,
    margin_mm: float = 10.0,
) -> PhantomCase:
    """Build a synthetic lumbar spine CT with exact ground truth.

    Parameters
    ----------
    seed : int
        Drives the anatomical variation, the bowel gas and the noise. Same seed, same case.
    spacing_mm : float or (3,) floats
        Voxel spacing along i, j, k in mm.
    scale : float
        Multiplies every length of the recipe (0.9: a smaller adult).
    lordosis_deg : float, optional
        L1-S1 lordosis before the seed's variation; default the recipe's (45 degrees).
    scoliosis_deg : float
        Lumbar Cobb angle of a C-curve to the left (negative: to the right), before the seed's variation.
    noise_hu : float
        Standard deviation of Gaussian noise added to the CT, HU (the exact integrals stay noise-free).
    direction : ndarray, shape (3, 3), optional
        Direction cosines of the grid (columns: LPS directions of i, j, k); default identity.
    margin_mm : float
        Air beside the body outline, and soft tissue above the highest and below the lowest bone.

    Returns
    -------
    PhantomCase
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise NeedleplanError(f"seed must be a non-negative integer, got {seed!r}")
    spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise GeometryError(f"spacing_mm must be one or three positive numbers, got {spacing_mm!r}")
    if not scale > 0:
        raise NeedleplanError(f"scale must be a positive number (1.0: recipe size), got {scale!r}")
    axes = _direction(direction)

    anatomy_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(2))
    recipe = load_recipe()
    if lordosis_deg is not None:
        recipe["curvature"]["lordosis_deg"] = float(lordosis_deg)
    recipe["curvature"]["scoliosis_deg"] = float(scoliosis_deg)
    recipe = _scaled(vary_recipe(recipe, anatomy_rng), float(scale))
    anatomy = build_anatomy(recipe, float(margin_mm))

    affine, shape = _grid(anatomy.region_mm, spacing, axes)
    voxels = math.prod(shape)
    if voxels > MAX_VOXELS:
        raise NeedleplanError(
            f"a phantom at spacing {spacing_mm} mm would have {voxels:.3g} voxels and need about "
            f"{voxels * BYTES_PER_VOXEL / 2**30:.3g} GiB of memory; at most {MAX_VOXELS:.3g} voxels are built: "
            "use a coarser spacing (0.5 mm or more at scale 1)"
        )
    painted = paint(anatomy.parts, affine, shape)
    material_hu = np.array([recipe["materials"][name] for name in MATERIALS], dtype=np.float64)
    ct, labels, structures = volumes_from_paint(painted, affine, material_hu, int(seed), float(noise_hu), noise_rng)
    return PhantomCase(ct, labels, structures, anatomy.landmarks, recipe, int(seed), anatomy.parts)


@functools.lru_cache(maxsize=2)
def shared_phantom(seed: int, spacing_mm: float = 1.0) -> PhantomCase:
    """The default phantom of ``seed`` at ``spacing_mm``, built once per process for the readers that share it (a
    dataset's cases, the practice simulator): its CT and its exact anatomy come from the same build. Read only."""
    return phantom(seed=seed, spacing_mm=spacing_mm)
