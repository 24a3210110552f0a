"""Showing the detector signal like a C-arm monitor: bone and metal dark, air bright."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Display:
    """Window, gamma and polarity of the displayed image.

    Parameters
    ----------
    window : (low, high) or None
        Range of measured attenuation, -ln(I / I0), mapped from white (low) to black (high). None: chosen per
        image from the 0.5th and 99.5th percentiles inside the field.
    gamma : float
        Displayed brightness is ``b ** (1 / gamma)``; above 1 lifts the mid-tones.
    invert : bool
        Bone and metal bright instead of dark (radiograph look).
    """

    window: tuple[float, float] | None = None
    gamma: float = 1.0
    invert: bool = False

    def __post_init__(self) -> None:
        if self.window is not None:
            low, high = (float(v) for v in self.window)
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                raise ValueError(f"window must be (low, high) with high > low, got {self.window!r}")
            object.__setattr__(self, "window", (low, high))
        if not (np.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be positive, got {self.gamma!r}")


def measured_attenuation(intensity: np.ndarray) -> np.ndarray:
    """-ln(I / I0), with I floored at 1e-6 so that a fully blocked pixel stays finite (float32)."""
    return (-np.log(np.maximum(intensity, 1e-6))).astype(np.float32)


def auto_window(attenuation: np.ndarray, field: np.ndarray) -> tuple[float, float]:
    """(0.5th, 99.5th) percentile of the attenuation inside the field; a unit-wide window if it is flat."""
    values = attenuation[field]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low, high) if high > low else (low, low + 1.0)


def display_image(intensity: np.ndarray, field: np.ndarray, display: Display) -> tuple[np.ndarray, tuple[float, float]]:
    """Brightness in [0, 1] (float32, black off the field) and the window used."""
    attenuation = measured_attenuation(intensity)
    low, high = display.window if display.window is not None else auto_window(attenuation, field)
    brightness = np.clip((high - attenuation) / (high - low), 0.0, 1.0)
    if display.invert:
        brightness = 1.0 - brightness
    if display.gamma != 1.0:
        brightness = brightness ** (1.0 / display.gamma)
    return np.where(field, brightness, 0.0).astype(np.float32), (low, high)
