"""Contrast-filled blood pools (heart chambers, aorta): bright like bone, but thick and solid.

On a contrast CT the blood in the heart and the great vessels reaches 300-700 HU, far above an osteopenic
vertebra's marrow (100-200 HU) and as bright as its cortex, so no HU threshold tells them apart. Their shape
does: bone above :data:`POOL_HU` is a thin shell (cortex) or a small solid piece (a pedicle, a femoral head),
while a pool is a solid mass of tens to hundreds of millilitres. A pool is the part of the bright voxels that a
ball of :data:`POOL_BALL_RADIUS_MM` fits in everywhere (a morphological opening), in pieces of at least
:data:`POOL_MIN_ML`, grown by its partial-volume rim.

Contrast thins out along the vessels (the descending aorta of an arterial-phase chest CT can be 200 HU where the
heart is 450), and a dimmer stretch of the aorta lying against the vertebral bodies is as bright as their marrow.
So a pool also takes in everything above the bone threshold that it reaches by a wide channel (a ball of
:data:`CHANNEL_BALL_RADIUS_MM` passes) without crossing a cortex: a bright ridge over its surroundings
(:data:`RIDGE_HU` above a grey-level opening), which is how bone ends and blood does not.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .grid import bounding_box
from .label_stats import label_sizes

#: Blood with iodinated contrast is brighter than this; the marrow of all but the densest vertebrae is not, HU.
POOL_HU = 250.0
#: Cortical bone (a femoral shaft) is this bright; pools are below it (undiluted contrast in a small vein aside), HU.
CORTICAL_HU = 1000.0
#: A pool holds a ball of this radius at every point (the aorta is 20-30 mm wide, cortex a few mm), mm.
POOL_BALL_RADIUS_MM = 4.5
#: The largest solid piece of bone above POOL_HU near the spine (a dense vertebral body or femoral head) holds
#: well under this; the heart's chambers and the thoracic aorta hold hundreds of ml, ml.
POOL_MIN_ML = 60.0
#: A pool grows through channels that hold a ball of this radius (wider than a gap in a thin cortex), mm.
CHANNEL_BALL_RADIUS_MM = 4.5
#: A cortex is this much brighter than a grey-level opening of the smoothed HU (by a ball of the channel), HU.
RIDGE_HU = 100.0
#: The pool's partial-volume rim (blood blurred into its wall) reaches this far beyond the solid part, mm.
POOL_RIM_MM = 3.0


def _ball(radius_voxels: int) -> np.ndarray:
    r = radius_voxels
    z, y, x = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return z**2 + y**2 + x**2 <= r * r


def blood_pools(smooth_hu: np.ndarray, body: np.ndarray, bright: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Contrast-filled blood pools on an isotropic grid, with their bright rim.

    Parameters
    ----------
    smooth_hu : ndarray (z, y, x)
        Smoothed HU.
    body : ndarray of bool (z, y, x)
        The patient's body.
    bright : ndarray of bool (z, y, x)
        Voxels bright enough to be bone (above the scan's bone threshold); the rim is grown inside them.
    spacing_mm : float
        Voxel size, mm.

    Returns
    -------
    ndarray of bool (z, y, x)
    """
    pools = np.zeros(body.shape, dtype=bool)
    candidate = (smooth_hu > POOL_HU) & body
    rim = max(1, int(round(POOL_RIM_MM / spacing_mm)))
    box = bounding_box(candidate, margin=rim)  # an opening stays inside its input, the rim within its reach
    if box is not None:
        pools[box] = _pools_in_box(smooth_hu[box], candidate[box], bright[box], spacing_mm, rim)
    return pools


def _pools_in_box(smooth_hu: np.ndarray, candidate: np.ndarray, bright: np.ndarray, spacing_mm: float,
                  rim: int) -> np.ndarray:
    """:func:`blood_pools` on a box holding every voxel above :data:`POOL_HU` and ``rim`` voxels around them."""
    radius = max(1, int(round(POOL_BALL_RADIUS_MM / spacing_mm)))
    solid = ndimage.binary_opening(candidate, _ball(radius))
    labels, count = ndimage.label(solid)
    ml = label_sizes(labels, count) * spacing_mm**3 / 1000.0
    keep = np.zeros(count + 1, dtype=bool)
    for piece in np.flatnonzero(ml >= POOL_MIN_ML) + 1:
        keep[piece] = np.median(smooth_hu[labels == piece]) < CORTICAL_HU
    pools = keep[labels]
    if not pools.any():
        return pools
    pools = _grown_along_vessels(pools, smooth_hu, bright, spacing_mm)
    return pools | (ndimage.binary_dilation(pools, iterations=rim) & bright)


def _grown_along_vessels(pools: np.ndarray, smooth_hu: np.ndarray, bright: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The pools and the bright channels they reach without crossing a cortex (see the module)."""
    ball = _ball(max(1, int(round(CHANNEL_BALL_RADIUS_MM / spacing_mm))))
    ridge = smooth_hu - ndimage.grey_opening(smooth_hu, footprint=ball) > RIDGE_HU
    channels = ndimage.binary_opening(bright & ~ridge, ball)
    labels, count = ndimage.label(channels)
    reached = np.zeros(count + 1, dtype=bool)
    reached[np.unique(labels[pools & channels])] = True
    reached[0] = False
    return pools | reached[labels]
