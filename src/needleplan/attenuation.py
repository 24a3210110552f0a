"""Hounsfield units to linear X-ray attenuation, for the renderer.

CT numbers are defined against water at the scanner's effective energy: HU = 1000 (mu - mu_water) / mu_water.
Below 0 HU (air, fat, lung) the inverse relation is used as is. Above 0 HU the slope can be scaled for bone,
whose photoelectric share makes it attenuate relatively more at fluoroscopy energies than at CT energies.
:func:`fluoroscopy_coefficients` derives that scale, water's attenuation and steel's from mass attenuation
tables at the fluoroscope's effective energy.
"""

from __future__ import annotations

import numpy as np

#: Linear attenuation of water near 70 keV in 1/mm (mass attenuation 0.193 cm2/g, density 1 g/cm3; NIST XCOM).
MU_WATER_70KEV_PER_MM = 0.0193

#: Effective energy of the CT beam that defines HU (a 120 kVp spectrum is about 70 keV effective) [eng].
CT_EFFECTIVE_KEV = 70.0

#: Effective energy of a C-arm beam on a lumbar spine (70-90 kVp, aluminium + copper filtration) [eng].
FLUORO_EFFECTIVE_KEV = 50.0

#: Mass attenuation coefficients in cm2/g (NIST XCOM / Hubbell & Seltzer tables; "bone" is ICRU-44 cortical
#: bone, "steel" is iron), at the energies in ``_TABLE_KEV``.
_TABLE_KEV = np.array([40.0, 50.0, 60.0, 80.0, 100.0])
_MASS_ATTENUATION_CM2_PER_G = {
    "water": np.array([0.2683, 0.2269, 0.2059, 0.1837, 0.1707]),
    "bone": np.array([0.6655, 0.4242, 0.3148, 0.2229, 0.1855]),
    "steel": np.array([3.629, 1.958, 1.205, 0.5952, 0.3717]),
}
_DENSITY_G_PER_CM3 = {"water": 1.0, "bone": 1.92, "steel": 7.9}

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


def linear_attenuation_per_mm(material: str, energy_kev: float) -> float:
    """Linear attenuation of "water", "bone" (cortical) or "steel" at an energy, in 1/mm.

    Log-log interpolation of the mass attenuation table between 40 and 100 keV, times the density.
    """
    if material not in _MASS_ATTENUATION_CM2_PER_G:
        raise ValueError(f"material must be one of {sorted(_MASS_ATTENUATION_CM2_PER_G)}, got {material!r}")
    if not _TABLE_KEV[0] <= energy_kev <= _TABLE_KEV[-1]:
        raise ValueError(f"energy must be within {_TABLE_KEV[0]:g}-{_TABLE_KEV[-1]:g} keV, got {energy_kev:g}")
    log_mass = np.interp(np.log(energy_kev), np.log(_TABLE_KEV), np.log(_MASS_ATTENUATION_CM2_PER_G[material]))
    return float(np.exp(log_mass) * _DENSITY_G_PER_CM3[material] / 10.0)


def fluoroscopy_coefficients(
    energy_kev: float = FLUORO_EFFECTIVE_KEV, ct_energy_kev: float = CT_EFFECTIVE_KEV
) -> tuple[float, float, float]:
    """Attenuation model for a fluoroscope at ``energy_kev`` reading a CT acquired at ``ct_energy_kev``.

    Returns
    -------
    mu_water_per_mm : float
        Water at the fluoroscopy energy.
    bone_scale : float
        Slope multiplier above 0 HU for :func:`hu_to_mu`: cortical bone's excess attenuation over water at the
        fluoroscopy energy divided by its excess at the CT energy (1.0 when the energies are equal).
    mu_steel_per_mm : float
        Needle steel at the fluoroscopy energy.
    """
    def bone_excess(kev: float) -> float:
        return linear_attenuation_per_mm("bone", kev) / linear_attenuation_per_mm("water", kev) - 1.0

    return (
        linear_attenuation_per_mm("water", energy_kev),
        bone_excess(energy_kev) / bone_excess(ct_energy_kev),
        linear_attenuation_per_mm("steel", energy_kev),
    )
