"""Thin discs found from their endplates: the bright band that two cortical endplates make along the body line.

A thoracic disc is 4-6 mm thin and, on a contrast CT of osteopenic bone, as bright as the marrow (110-160 HU
against 95-130 HU), so the bone share along the body line never drops there (:mod:`.discs`). What stays visible
is the pair of cortical endplates on either side of it: at 1.5 mm voxels the two merge into one bright band
across the body line, one band per disc, every 18-30 mm. The median HU of a probe disc swept along the line,
minus its running median over a vertebra's height, peaks at every band.

Bands are looked for only where the bone share found no disc: above the highest disc found, in stretches
between discs longer than any vertebra, and along the whole line when no disc was found. Below the lowest disc
found lies the sacrum, whose fused segments show bands of their own.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from .curve import SpineCurve
from .discs import MIN_LEVEL_MM, Disc, sample_plane

#: Radius of the probe disc: inside the body, clear of its curved rim (thoracic bodies are 25-35 mm wide), mm.
BAND_PROBE_RADIUS_MM = 6.0
#: The running median that the bands stand out from spans about one thoracic vertebra, mm.
BASELINE_MM = 15.0
#: The band profile is smoothed by this much (Gaussian sigma), so that an endplate pair makes one peak, mm.
PAIR_SMOOTHING_MM = 2.0
#: A band stands this far above its baseline (measured 22-49 HU on the chest CT's thoracic discs), HU.
MIN_BAND_HU = 15.0
#: A stretch without a disc longer than this holds a missed disc (lumbar vertebrae are 35-40 mm disc to disc), mm.
MAX_LEVEL_MM = 45.0
#: Height given to a disc found from its band (thoracic discs are 4-6 mm), mm.
THIN_DISC_MM = 5.0


def band_profile(smooth_hu: np.ndarray, world_to_index: np.ndarray, line: SpineCurve) -> np.ndarray:
    """How far the median HU of a probe disc through each sample of the body line stands above its surroundings.

    Parameters
    ----------
    smooth_hu : ndarray (z, y, x)
        Smoothed HU on the working grid.
    world_to_index : ndarray (4, 4)
        The working grid's world-to-index affine.
    line : SpineCurve
        The body line, samples 1 mm apart.

    Returns
    -------
    ndarray (N,)
        Band strength per line sample, HU (0 where the probe is no brighter than its baseline).
    """
    grid = np.arange(-BAND_PROBE_RADIUS_MM, BAND_PROBE_RADIUS_MM + 1e-6, 1.0)
    inside = (grid[:, None] ** 2 + grid[None, :] ** 2) <= BAND_PROBE_RADIUS_MM**2
    median = np.array([np.median(sample_plane(smooth_hu, world_to_index, centre, line.left[n], line.posterior[n],
                                              grid, grid)[inside]) for n, centre in enumerate(line.points_mm)])
    step = _step_mm(line)
    baseline = ndimage.median_filter(median, size=max(3, int(round(BASELINE_MM / step))), mode="nearest")
    return ndimage.gaussian_filter1d(np.clip(median - baseline, 0.0, None), PAIR_SMOOTHING_MM / step)


def endplate_discs(smooth_hu: np.ndarray, world_to_index: np.ndarray, line: SpineCurve,
                   discs: list[Disc]) -> list[Disc]:
    """``discs`` with the thin discs found from their endplate bands added, cranial to caudal.

    Parameters
    ----------
    smooth_hu : ndarray (z, y, x)
        Smoothed HU on the working grid.
    world_to_index : ndarray (4, 4)
        The working grid's world-to-index affine.
    line : SpineCurve
        The body line.
    discs : list of Disc
        The discs found from the bone share (:func:`.discs.find_discs`), cranial to caudal.
    """
    arc = _arc_mm(line)
    found = np.array([arc[int(line.nearest(d.center_mm[None])[0])] for d in discs])
    searched = _stretches_to_search(arc, found)
    if not searched.any():
        return discs
    strength = band_profile(smooth_hu, world_to_index, line)
    peaks, _ = signal.find_peaks(strength, height=MIN_BAND_HU, distance=max(1, int(MIN_LEVEL_MM / _step_mm(line))))
    far = [n for n in peaks if searched[n] and (found.size == 0 or np.min(np.abs(found - arc[n])) >= MIN_LEVEL_MM)]
    added = [Disc(line.points_mm[n], line.superior[n], THIN_DISC_MM, thin=True) for n in far]
    order = np.argsort([*found, *arc[far]])
    both = [*discs, *added]
    return [both[i] for i in order]


def _stretches_to_search(arc: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Line samples where a band may stand for a missed disc: everywhere when no disc was found, else above the
    highest disc and between discs farther apart than :data:`MAX_LEVEL_MM` (never below the lowest disc)."""
    if found.size == 0:
        return np.ones(arc.size, dtype=bool)
    searched = arc < found[0]
    for upper, lower in zip(found[:-1], found[1:], strict=True):
        if lower - upper > MAX_LEVEL_MM:
            searched |= (arc > upper) & (arc < lower)
    return searched


def _arc_mm(line: SpineCurve) -> np.ndarray:
    """Arc length along the line at each sample, mm."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line.points_mm, axis=0), axis=1))])


def _step_mm(line: SpineCurve) -> float:
    """Mean distance between the line's samples, mm."""
    arc = _arc_mm(line)
    return float(arc[-1] / max(arc.size - 1, 1)) or 1.0

