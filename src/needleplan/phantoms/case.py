"""A built phantom case: the parts painted on a voxel grid, exact ray integrals, and the ground truth.

Two views of one object. The voxel volumes sample the painter's list at voxel centres (each part painted only
over its bounding box in index space, later parts overwriting earlier ones). The ray integrals never look at
voxels: for each segment they collect every part's entry and exit parameters, sort them, and give each piece
between consecutive breakpoints the material of the top-most part containing its midpoint, which is the same
painter's rule evaluated exactly along the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..attenuation import MU_WATER_70KEV_PER_MM, hu_to_mu
from ..volume import Volume
from .anatomy import LUMBAR_LEVELS, MATERIALS, STRUCTURE_IDS, VERTEBRA_LABELS
from .shapes import Part

if TYPE_CHECKING:
    from ..anatomy import Spine

_RAYS_PER_CHUNK = 2048
_VOXELS_PER_CHUNK = 4_000_000


class PointProperties(NamedTuple):
    """What the phantom is at some points: ids into ``MATERIALS``, VerSe labels and ``STRUCTURE_IDS``."""

    material: np.ndarray
    label: np.ndarray
    structure: np.ndarray


def _part_codes(parts: tuple[Part, ...]) -> np.ndarray:
    """(P, 3) uint8 array of material id, vertebra label and structure id per part."""
    return np.array(
        [[MATERIALS.index(p.material), p.vertebra_label, STRUCTURE_IDS[p.structure]] for p in parts], dtype=np.uint8
    ).reshape(-1, 3)


def paint(parts: tuple[Part, ...], index_to_world: np.ndarray, shape_zyx: tuple[int, int, int]) -> PointProperties:
    """Paint the parts, in order, at the voxel centres of a grid.

    Parameters
    ----------
    parts : tuple of Part
        The painter's list (first painted first; later parts overwrite).
    index_to_world : ndarray, shape (4, 4)
        Grid affine from (i, j, k, 1) to LPS mm.
    shape_zyx : (nz, ny, nx)
        Grid size.

    Returns
    -------
    PointProperties of uint8 arrays, each of shape (nz, ny, nx); air (0) where no part is.
    """
    affine = np.asarray(index_to_world, dtype=np.float64)
    maps = [np.zeros(shape_zyx, dtype=np.uint8) for _ in range(3)]
    size_ijk = np.array(shape_zyx[::-1])
    inverse = np.linalg.inv(affine)
    for part, codes in zip(parts, _part_codes(parts), strict=True):
        ijk = part.solid.corners_mm() @ inverse[:3, :3].T + inverse[:3, 3]
        lower = np.maximum(np.ceil(ijk.min(axis=0) - 1e-9), 0).astype(int)
        upper = np.minimum(np.floor(ijk.max(axis=0) + 1e-9) + 1, size_ijk).astype(int)
        if np.any(upper <= lower):
            continue
        slab = max(1, _VOXELS_PER_CHUNK // int((upper[0] - lower[0]) * (upper[1] - lower[1])))
        for k in range(lower[2], upper[2], slab):
            k_end = min(k + slab, upper[2])
            inside = part.solid.contains_on_grid(affine, (lower[0], lower[1], k), (upper[0], upper[1], k_end))
            window = (slice(k, k_end), slice(lower[1], upper[1]), slice(lower[0], upper[0]))
            for values, code in zip(maps, codes, strict=True):
                values[window][inside] = code
    return PointProperties(*maps)


def properties_at(parts: tuple[Part, ...], points_mm: np.ndarray) -> PointProperties:
    """Material, label and structure ids (uint8, (N,)) of the top-most part at each world point (N, 3)."""
    points = np.reshape(np.asarray(points_mm, dtype=np.float64), (-1, 3))
    out = [np.zeros(len(points), dtype=np.uint8) for _ in range(3)]
    for part, codes in zip(parts, _part_codes(parts), strict=True):
        low, high = part.solid.bounding_box()
        near = np.flatnonzero(np.all((points >= low) & (points <= high), axis=1))
        inside = near[part.solid.contains(points[near])]
        for values, code in zip(out, codes, strict=True):
            values[inside] = code
    return PointProperties(*out)


def material_path_lengths(parts: tuple[Part, ...], starts_mm: np.ndarray, ends_mm: np.ndarray) -> np.ndarray:
    """Exact length of each material along each segment.

    Parameters
    ----------
    parts : tuple of Part
        The painter's list.
    starts_mm, ends_mm : ndarray, shape (N, 3)
        Segment end points, world LPS mm.

    Returns
    -------
    ndarray, shape (N, len(MATERIALS)), float64
        Millimetres of each material (column order of ``MATERIALS``); the rows sum to the segment lengths.
    """
    starts = np.reshape(np.asarray(starts_mm, dtype=np.float64), (-1, 3))
    ends = np.reshape(np.asarray(ends_mm, dtype=np.float64), (-1, 3))
    if starts.shape != ends.shape:
        raise ValueError(f"starts {starts.shape} and ends {ends.shape} must have the same shape")
    part_materials = _part_codes(parts)[:, 0].astype(np.intp)
    boxes = np.array([part.solid.bounding_box() for part in parts]).reshape(-1, 2, 3)
    n_materials = len(MATERIALS)
    out = np.zeros((len(starts), n_materials))
    for first in range(0, len(starts), _RAYS_PER_CHUNK):
        chunk = slice(first, first + _RAYS_PER_CHUNK)
        out[chunk] = _chunk_path_lengths(parts, part_materials, boxes, starts[chunk], ends[chunk], n_materials)
    return out


def _box_candidates(boxes: np.ndarray, starts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """(N, P) True where segment n meets the bounding box of part p (slab test), so only those are traced."""
    # a zero direction component becomes tiny: its slab then spans +-huge when the start is inside it, else misses
    step = np.where(direction == 0, 1e-300, direction)
    inverse = 1.0 / step
    near = np.zeros((len(starts), len(boxes)))
    far = np.ones((len(starts), len(boxes)))
    for axis in range(3):
        t_low = (boxes[None, :, 0, axis] - starts[:, axis, None]) * inverse[:, axis, None]
        t_high = (boxes[None, :, 1, axis] - starts[:, axis, None]) * inverse[:, axis, None]
        np.maximum(near, np.minimum(t_low, t_high), out=near)
        np.minimum(far, np.maximum(t_low, t_high), out=far)
    return near <= far


def _chunk_path_lengths(parts, part_materials, boxes, starts, ends, n_materials) -> np.ndarray:
    n = len(starts)
    direction = ends - starts
    length = np.linalg.norm(direction, axis=1)
    t_in = np.full((n, len(parts)), np.inf)
    t_out = np.full((n, len(parts)), -np.inf)
    candidates = _box_candidates(boxes, starts, direction)
    for index, part in enumerate(parts):
        rows = np.flatnonzero(candidates[:, index])
        if len(rows):
            t_in[rows, index], t_out[rows, index] = part.solid.ray_interval(starts[rows], direction[rows])
    t_in = np.clip(t_in, 0.0, 1.0)
    t_out = np.clip(t_out, 0.0, 1.0)
    hit = t_in < t_out
    most = int(hit.sum(axis=1).max()) if len(parts) else 0
    if most == 0:
        lengths = np.zeros((n, n_materials))
        lengths[:, 0] = length
        return lengths
    # keep, per ray, only the parts it meets, in painting order
    order = np.argsort(~hit, axis=1, kind="stable")[:, :most]
    met = np.take_along_axis(hit, order, axis=1)
    enter = np.where(met, np.take_along_axis(t_in, order, axis=1), 2.0)
    leave = np.where(met, np.take_along_axis(t_out, order, axis=1), -1.0)
    materials = part_materials[order]
    breaks = np.sort(np.concatenate([np.zeros((n, 1)), np.ones((n, 1)), np.clip(enter, 0, 1), np.clip(leave, 0, 1)],
                                    axis=1), axis=1)
    pieces = np.diff(breaks, axis=1)
    middle = 0.5 * (breaks[:, 1:] + breaks[:, :-1])
    inside = (enter[:, None, :] <= middle[:, :, None]) & (middle[:, :, None] <= leave[:, None, :])
    top = most - 1 - np.argmax(inside[:, :, ::-1], axis=2)
    piece_material = np.where(inside.any(axis=2), np.take_along_axis(materials, top, axis=1), 0)
    flat = (np.arange(n)[:, None] * n_materials + piece_material).ravel()
    weights = (pieces * length[:, None]).ravel()
    return np.bincount(flat, weights=weights, minlength=n * n_materials).reshape(n, n_materials)


@dataclass(frozen=True)
class PhantomCase:
    """A synthetic lumbar CT with exact ground truth.

    Attributes
    ----------
    ct : Volume
        CT in HU (int16, modality "CT"), noise included when asked for.
    labels : Volume
        VerSe vertebra ids (uint8, modality "LABEL"): 20-24 L1-L5, 26 sacrum, 0 elsewhere (ilia included).
    structures : Volume
        Structure ids (uint8, modality "LABEL") from ``STRUCTURE_IDS``.
    landmarks : dict
        World LPS mm landmarks, plain lists (see :func:`needleplan.phantoms.anatomy.build_anatomy`).
    recipe : dict
        The realised recipe: ``lumbar.toml`` after overrides, the seed's variation and scaling.
    seed : int
        The seed that made it.
    parts : tuple of Part
        The painter's list behind both the voxels and the exact integrals.
    """

    ct: Volume
    labels: Volume
    structures: Volume
    landmarks: dict[str, Any]
    recipe: dict[str, Any]
    seed: int
    parts: tuple[Part, ...] = field(repr=False)

    @property
    def material_hu(self) -> np.ndarray:
        """Noise-free HU per material, shape (len(MATERIALS),), in ``MATERIALS`` order."""
        return np.array([self.recipe["materials"][name] for name in MATERIALS], dtype=np.float64)

    def properties_at(self, points_mm: np.ndarray) -> PointProperties:
        """Exact material, label and structure ids at world points (N, 3)."""
        return properties_at(self.parts, points_mm)

    def material_path_lengths(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Exact mm of each material along segments (N, 3) -> (N, len(MATERIALS)); see the module docstring."""
        return material_path_lengths(self.parts, starts, ends)

    def line_integral(
        self, starts: np.ndarray, ends: np.ndarray, *, mu_water_per_mm: float = MU_WATER_70KEV_PER_MM,
        bone_scale: float = 1.0,
    ) -> np.ndarray:
        """Exact integral of linear attenuation (dimensionless, (N,)) along segments starts -> ends (N, 3) mm.

        Attenuation per material is :func:`needleplan.attenuation.hu_to_mu` of its noise-free HU.
        """
        mu = hu_to_mu(self.material_hu, mu_water_per_mm, bone_scale).astype(np.float64)
        return self.material_path_lengths(starts, ends) @ mu

    def hu_line_integral(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Exact integral of (HU + 1000) along segments (N, 3) -> (N,), in HU mm."""
        return self.material_path_lengths(starts, ends) @ (self.material_hu + 1000.0)

    def voxelize(self, index_to_world: np.ndarray, shape_zyx: tuple[int, int, int]) -> tuple[Volume, Volume, Volume]:
        """Sample this case, noise-free, on any grid: (ct int16 HU, vertebra labels, structures)."""
        painted = paint(self.parts, index_to_world, shape_zyx)
        return volumes_from_paint(painted, index_to_world, self.material_hu, self.seed)

    def spine(self) -> "Spine":
        """The exact anatomy as a :class:`~needleplan.anatomy.Spine` (what a perfect segmentation would give)."""
        from .truth import truth_spine

        return truth_spine(self)

    def ground_truth(self) -> dict[str, Any]:
        """JSON-ready facts: seed, recipe, grid geometry, label, structure and material ids, landmarks."""
        ct = self.ct
        return {
            "generator": "needleplan.phantoms",
            "seed": self.seed,
            "grid": {
                "size_xyz": list(ct.size_xyz),
                "spacing_mm": ct.spacing_mm.tolist(),
                "origin_mm": ct.origin_mm.tolist(),
                "direction": ct.direction.tolist(),
                "index_to_world": ct.index_to_world.tolist(),
            },
            "label_ids": {**{name: VERTEBRA_LABELS[name] for name in LUMBAR_LEVELS}, "sacrum": VERTEBRA_LABELS["S1"]},
            "structure_ids": dict(STRUCTURE_IDS),
            "materials": {name: {"id": index, "hu": float(hu)} for index, (name, hu) in
                          enumerate(zip(MATERIALS, self.material_hu, strict=True))},
            "landmarks": self.landmarks,
            "recipe": self.recipe,
        }

    def write(self, out_dir: str | Path, format: str = "dicom") -> dict[str, Path]:
        """Write the CT, both label maps and ``ground_truth.json`` into a new folder, atomically.

        Parameters
        ----------
        out_dir : str or Path
            Created; must not exist or be empty. Everything is written beside it first and appears in one
            rename, so an interrupted write leaves nothing half-done.
        format : {"dicom", "nifti"}
            "dicom": the CT as a DICOM series in ``out_dir/ct``; "nifti": ``ct.nii.gz``. The label maps are
            always ``labels.nii.gz`` and ``structures.nii.gz``.

        Returns
        -------
        dict of the written paths: "ct", "labels", "structures", "ground_truth".
        """
        if format not in ("dicom", "nifti"):
            raise ValueError(f"format must be 'dicom' or 'nifti', got {format!r}")
        from ..io.atomic import atomic_directory
        from ..io.dicom_write import write_ct_series
        from ..io.files import save_volume

        out = Path(out_dir)
        names = {"ct": "ct" if format == "dicom" else "ct.nii.gz", "labels": "labels.nii.gz",
                 "structures": "structures.nii.gz", "ground_truth": "ground_truth.json"}
        with atomic_directory(out) as staging:
            if format == "dicom":
                write_ct_series(self.ct, staging / names["ct"],
                                series_description=f"needleplan lumbar phantom, seed {self.seed}")
            else:
                save_volume(self.ct, staging / names["ct"])
            save_volume(self.labels, staging / names["labels"])
            save_volume(self.structures, staging / names["structures"])
            (staging / names["ground_truth"]).write_text(json.dumps(self.ground_truth(), indent=1))
        return {what: out / name for what, name in names.items()}


def volumes_from_paint(
    painted: PointProperties, index_to_world: np.ndarray, material_hu: np.ndarray, seed: int,
    noise_hu: float = 0.0, noise_rng: np.random.Generator | None = None,
) -> tuple[Volume, Volume, Volume]:
    """Turn painted id maps into the CT (int16 HU) and the two label Volumes.

    ``noise_hu > 0`` adds Gaussian noise of that standard deviation drawn from ``noise_rng`` (required then).
    """
    hu = material_hu.astype(np.float32)[painted.material]
    if noise_hu > 0:
        if noise_rng is None:
            raise ValueError("noise_hu > 0 needs a noise_rng")
        hu += np.float32(noise_hu) * noise_rng.standard_normal(hu.shape, dtype=np.float32)
    info = np.iinfo(np.int16)
    ct = np.clip(np.rint(hu), info.min, info.max).astype(np.int16)
    metadata = {"source": "needleplan.phantoms", "seed": seed}
    return (
        Volume(ct, index_to_world, "CT", metadata),
        Volume(painted.label, index_to_world, "LABEL", {**metadata, "label_set": "VerSe"}),
        Volume(painted.structure, index_to_world, "LABEL", {**metadata, "label_set": "needleplan.phantoms structures"}),
    )
