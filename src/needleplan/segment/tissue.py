"""Body outline, air-filled bowel and bone, with thresholds that adapt to the scan.

Real lumbar bodies on thick-slice CT can have a median of only 120-175 HU, so a fixed 200 HU bone cut loses
them. The bone threshold here sits a few standard deviations above the scan's own soft-tissue peak, and the
cancellous interior that still falls below it is recovered by filling holes enclosed by cortex in axial,
coronal or sagittal slices, except holes as dark as fluid or fat (the vertebral canal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .grid import bounding_box
from .label_stats import label_means
from .organs import blood_pools

#: Voxels above this HU (smoothed) are inside the body.
BODY_HU = -400.0
#: Air-filled bowel and lung: below this HU inside the body (CLINICAL.md section 1).
GAS_HU = -200.0
#: Gas this close to the body's outline is the skin's partial-volume rim or a skin fold, not bowel.
GAS_SKIN_MARGIN_MM = 6.0
#: The bone threshold is the soft-tissue peak plus this many of its standard deviations...
BONE_SIGMAS = 3.0
#: ...kept inside this range of HU.
BONE_HU_RANGE = (100.0, 140.0)
#: Bone components must hold voxels this far above the bone threshold (cortex); others are soft tissue.
CORTEX_ABOVE_BONE_HU = 120.0
#: A hole enclosed by bone is cancellous (filled) when its mean HU exceeds the soft-tissue peak by this much.
MARROW_ABOVE_SOFT_HU = 25.0

#: Outer bone voxels below this share of the step from soft tissue to their brightest neighbour are dropped.
EDGE_SHARE = 0.35
#: Gaussian smoothing (standard deviation, mm) before thresholding: tames noise, keeps thin cortex.
SMOOTHING_MM = 0.8

#: Structuring element that connects voxels within an axial slice (axis 0) only.
IN_SLICE = np.zeros((3, 3, 3), dtype=bool)
IN_SLICE[1] = ndimage.generate_binary_structure(2, 1)


@dataclass(frozen=True)
class Tissue:
    """Masks on one grid, and the thresholds that made them.

    ``bone`` is trimmed of partial-volume edge voxels (:func:`trim_partial_volume`); ``bone_wide`` is not, and
    encloses the canal more reliably.
    """

    body: np.ndarray
    gas: np.ndarray
    bone: np.ndarray
    bone_wide: np.ndarray
    soft_peak_hu: float
    soft_sd_hu: float
    bone_hu: float


def fill_holes_per_slice(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Fill the 2D holes of every slice of a 3D mask across ``axis`` (0: axial on a (z, y, x) grid).

    A hole is a 4-connected in-slice region of background that does not reach the slice's edge (as
    ``ndimage.binary_fill_holes`` with an in-slice structure, found by one labelling instead of iterated dilation).
    """
    background, count = ndimage.label(~mask, structure=np.moveaxis(IN_SLICE, 0, axis))
    outside = np.zeros(count + 1, dtype=bool)
    outside[0] = True  # the mask itself
    for edge_axis in {0, 1, 2} - {axis}:
        outside[np.take(background, 0, axis=edge_axis)] = True
        outside[np.take(background, -1, axis=edge_axis)] = True
    return ~outside[background] | mask


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient's body: the largest connected region above :data:`BODY_HU`, its slices' holes filled."""
    inside = ndimage.binary_opening(hu > BODY_HU, iterations=2)
    labels, count = ndimage.label(inside)
    if count == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return fill_holes_per_slice(labels == int(np.argmax(sizes)))


def soft_tissue_peak(hu: np.ndarray, body: np.ndarray) -> tuple[float, float]:
    """Peak HU of the body's soft tissue (muscle and organs, -30..150 HU) and its spread (standard deviation).

    The spread is measured on the peak's lower flank (half-width at 60.7% of the peak height), which bone
    and contrast on the upper flank cannot widen.
    """
    values = hu[body]
    values = values[(values > -30) & (values < 150)]
    if values.size < 100:
        return 40.0, 15.0
    counts, edges = np.histogram(values, bins=np.arange(-30.0, 151.0, 2.0))
    counts = ndimage.uniform_filter1d(counts.astype(float), 5)
    peak = int(np.argmax(counts))
    centres = 0.5 * (edges[1:] + edges[:-1])
    below = np.nonzero(counts[:peak] < 0.607 * counts[peak])[0]
    sd = centres[peak] - centres[below[-1]] if below.size else 10.0
    return float(centres[peak]), float(max(sd, 2.0))


def bone_mask(hu: np.ndarray, body: np.ndarray, soft_peak_hu: float, bone_hu: float) -> np.ndarray:
    """Bone: above ``bone_hu``, in components that hold cortex, with cancellous holes filled slice by slice.

    The work is done on the bounding box of the voxels above ``bone_hu`` (holes filled lie inside it).
    """
    candidate = (hu > bone_hu) & body
    box = bounding_box(candidate, margin=1)
    if box is None:
        return candidate
    bone = np.zeros(candidate.shape, dtype=bool)
    bone[box] = _bone_in_box(hu[box], candidate[box], soft_peak_hu, bone_hu)
    return bone


def _bone_in_box(hu: np.ndarray, candidate: np.ndarray, soft_peak_hu: float, bone_hu: float) -> np.ndarray:
    """:func:`bone_mask` on a box around the ``candidate`` voxels (above ``bone_hu`` inside the body)."""
    labels, count = ndimage.label(candidate)
    has_cortex = np.zeros(count + 1, dtype=bool)
    has_cortex[np.unique(labels[(hu > bone_hu + CORTEX_ABOVE_BONE_HU) & candidate])] = True
    has_cortex[0] = False
    bone = has_cortex[labels]
    marrow = np.zeros_like(bone)
    for axis in range(3):
        holes = fill_holes_per_slice(bone, axis) & ~bone
        hole_labels, hole_count = ndimage.label(holes, structure=np.moveaxis(IN_SLICE, 0, axis))
        if hole_count:
            means = label_means(hu, hole_labels, hole_count)
            marrow |= np.concatenate([[False], means > soft_peak_hu + MARROW_ABOVE_SOFT_HU])[hole_labels]
    return bone | marrow


def trim_partial_volume(bone: np.ndarray, hu: np.ndarray, soft_peak_hu: float) -> np.ndarray:
    """Drop the bone's outer voxels that hold less than :data:`EDGE_SHARE` of the way to their brightest neighbour.

    A voxel that only grazes a bright cortex passes any fixed threshold; the edge of an object sits near the
    half-way value between the tissues on either side, which this approximates one voxel layer deep. The work is
    done on the bone's bounding box.
    """
    trimmed = np.zeros(bone.shape, dtype=bool)
    box = bounding_box(bone, margin=1)
    if box is not None:
        bone, hu = bone[box], hu[box]
        edge = bone & ~ndimage.binary_erosion(bone)
        brightest = ndimage.maximum_filter(np.where(bone, hu, -1000.0), size=3)
        trimmed[box] = bone & ~(edge & (hu < soft_peak_hu + EDGE_SHARE * (brightest - soft_peak_hu)))
    return trimmed


def tissue_masks(hu: np.ndarray, spacing_mm: float) -> Tissue:
    """Body, gas and bone masks of a CT on an isotropic grid (HU array (z, y, x), voxel size ``spacing_mm``)."""
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), SMOOTHING_MM / spacing_mm)
    body = body_mask(smooth)
    peak, sd = soft_tissue_peak(smooth, body)
    bone_hu = float(np.clip(peak + BONE_SIGMAS * sd, *BONE_HU_RANGE))
    deep = ndimage.binary_erosion(body, iterations=max(1, int(round(GAS_SKIN_MARGIN_MM / spacing_mm))))
    gas = (smooth < GAS_HU) & deep
    pools = blood_pools(smooth, body, (smooth > bone_hu) & body, spacing_mm)
    wide = bone_mask(smooth, body & ~pools, peak, bone_hu)
    return Tissue(body, gas, trim_partial_volume(wide, smooth, peak), wide, peak, sd, bone_hu)
