"""Hounsfield units to linear X-ray attenuation, for the renderer.

CT numbers are defined against water at the scanner's effective energy: HU = 1000 (mu - mu_water) / mu_water.
Below 0 HU (air, fat, lung) the inverse relation is used as is. Above 0 HU the slope can be scaled for bone,
whose photoelectric share makes it attenuate relatively more at fluoroscopy energies than at CT energies.
"""

from __future__ import annotations

import numpy as np

#: Linear attenuation of water near 70 keV in 1/mm (mass attenuation 0.193 cm2/g, density 1 g/cm3; NIST XCOM).
MU_WATER_70KEV_PER_MM = 0.0193

#: At or below this value a voxel is air or scanner padding and attenuates nothing.
AIR_HU = -1000.0


def hu_to_mu(
    hu: np.ndarray,
    mu_water_per_mm: float = MU_WATER_70KEV_PER_MM,
    bone_scale: float = 1.0,
) -> np.ndarray:
    """Convert Hounsfield units to linear attenuation.

    Parameters
    ----------
    hu : ndarray
        CT numbers in HU, any shape. Padding values (-2048, -3024) count as air.
    mu_water_per_mm : float
        Attenuation of water at the effective energy, in 1/mm.
    bone_scale : float
        Multiplier on the slope above 0 HU (1.0: the CT's own energy; above 1: bone relatively darker).

    Returns
    -------
    ndarray of float32, same shape, in 1/mm, never negative.
    """
    if mu_water_per_mm <= 0 or bone_scale <= 0:
        raise ValueError("mu_water_per_mm and bone_scale must be positive")
    h = np.asarray(hu, dtype=np.float32)
    slope = np.where(h > 0, np.float32(bone_scale), np.float32(1.0))
    mu = np.float32(mu_water_per_mm) * (np.float32(1.0) + slope * h / np.float32(1000.0))
    mu[h <= AIR_HU] = 0.0
    return np.maximum(mu, np.float32(0.0), out=mu)
