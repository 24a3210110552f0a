"""From line integrals to what the detector records: Beer-Lambert, scatter, blur and quantum noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Exposure:
    """How the detector signal is formed. The defaults give the exact, noise-free I / I0 = exp(-integral).

    Parameters
    ----------
    photons_per_pixel : float or None
        Mean photons reaching an unattenuated pixel (the dose); the recorded counts are Poisson. None: no noise.
    scatter_fraction : float
        Scatter-to-primary ratio of an open field: a broad Gaussian blur of the primary, this much of it, added.
    scatter_sigma_px : float
        Width (standard deviation, pixels) of that scatter blur.
    blur_px : float
        Detector and focal-spot unsharpness, Gaussian standard deviation in pixels (0: none).
    seed : int
        Seed of the noise, so that a rendering can be reproduced exactly.
    """

    photons_per_pixel: float | None = None
    scatter_fraction: float = 0.0
    scatter_sigma_px: float = 32.0
    blur_px: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.photons_per_pixel is not None and not (np.isfinite(self.photons_per_pixel) and
                                                       self.photons_per_pixel > 0):
            raise ValueError(f"photons_per_pixel must be positive, got {self.photons_per_pixel!r}")
        for name in ("scatter_fraction", "scatter_sigma_px", "blur_px"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be zero or positive, got {value!r}")


def detected_intensity(line_integral: np.ndarray, field: np.ndarray, exposure: Exposure) -> np.ndarray:
    """I / I0 at each pixel (float32): exp(-integral) plus scatter, blurred, with noise; 0 off the field."""
    primary = np.where(field, np.exp(-np.nan_to_num(line_integral, nan=np.inf)), 0.0)
    signal = primary
    if exposure.scatter_fraction > 0:
        signal = signal + exposure.scatter_fraction * ndimage.gaussian_filter(primary, exposure.scatter_sigma_px,
                                                                                mode="constant")
    if exposure.blur_px > 0:
        signal = ndimage.gaussian_filter(signal, exposure.blur_px, mode="nearest")
    if exposure.photons_per_pixel is not None:
        rng = np.random.default_rng(exposure.seed)
        signal = rng.poisson(signal * exposure.photons_per_pixel) / exposure.photons_per_pixel
    return np.where(field, signal, 0.0).astype(np.float32)
