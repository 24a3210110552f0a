"""Where the ray casting runs. The CPU backend (numba) is the default and the reference.

A backend is any object with the two methods of :class:`Backend`; register it with :func:`register_backend`
and pass its name to :func:`needleplan.render`. A GPU backend (CuPy, PyTorch) gets the same inputs: a
C-contiguous volume, its (nz, ny, nx) shape and a :class:`DetectorRays`, and must return the same arrays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from . import kernels
from .rays import DetectorRays


class Backend(Protocol):
    """What a ray-casting backend provides."""

    def line_integrals(self, mu: np.ndarray, rays: DetectorRays, method: str, step: float) -> np.ndarray:
        """Integral of ``mu`` (1/mm, float32, (nz, ny, nx)) along every ray: float32 (rows, cols), NaN off-field."""
        ...

    def label_path_lengths(self, channels: np.ndarray, n_channels: int, rays: DetectorRays) -> np.ndarray:
        """mm travelled in each channel (``channels`` holds 0 = none, c = channel c - 1): float32 (K, rows, cols)."""
        ...


class CpuBackend:
    """Numba kernels, parallel over tiles of pixels (threads: ``numba.set_num_threads``)."""

    def line_integrals(self, mu: np.ndarray, rays: DetectorRays, method: str, step: float) -> np.ndarray:
        out = np.empty(rays.shape, dtype=np.float32)
        kernels.line_integrals(_flat(mu, np.float32), np.array(mu.shape, dtype=np.int64),
                               *rays.kernel_arguments(), kernels.METHODS.index(method), float(step), out)
        return out

    def label_path_lengths(self, channels: np.ndarray, n_channels: int, rays: DetectorRays) -> np.ndarray:
        out = np.zeros((n_channels, *rays.shape), dtype=np.float32)
        kernels.label_path_lengths(_flat(channels, channels.dtype), np.array(channels.shape, dtype=np.int64),
                                   *rays.kernel_arguments(), out)
        return out


def _flat(array: np.ndarray, dtype) -> np.ndarray:
    """A flat C-order view (a copy only when the array is not already C-contiguous of that dtype)."""
    return np.ascontiguousarray(array, dtype=dtype).reshape(-1)


_BACKENDS: dict[str, Backend] = {"cpu": CpuBackend()}


def register_backend(name: str, backend: Backend) -> None:
    """Make ``backend`` available to :func:`needleplan.render` as ``backend=name``."""
    _BACKENDS[name] = backend


def get_backend(name: str) -> Backend:
    """The registered backend called ``name``; ValueError listing the known ones otherwise."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown render backend {name!r}; available: {sorted(_BACKENDS)}")
    return _BACKENDS[name]
