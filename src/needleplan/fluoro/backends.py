"""Where the ray casting runs. The CPU backend (numba) is the default and the reference.

A backend is any object with the two methods of :class:`Backend`; register it with :func:`register_backend`
and pass its name to :func:`needleplan.render`. A GPU backend (CuPy, PyTorch) gets the same inputs: a
C-contiguous volume, its (nz, ny, nx) shape and a :class:`DetectorRays`, and must return the same arrays.
"""

from __future__ import annotations

import weakref
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
    """Numba kernels, parallel over tiles of pixels (threads: ``numba.set_num_threads``).

    For Joseph's walk it keeps, per attenuation array and for each index axis that some ray walks along,
    a copy in which that axis varies fastest (made on first use, dropped with the array): one extra volume
    of memory for the usual AP-to-oblique poses, in exchange for several times fewer cache misses.
    """

    def __init__(self) -> None:
        self._copies: dict[int, tuple[weakref.ref, dict[int, np.ndarray]]] = {}

    def line_integrals(self, mu: np.ndarray, rays: DetectorRays, method: str, step: float) -> np.ndarray:
        out = np.empty(rays.shape, dtype=np.float32)
        along = self._axis_fastest_copies(mu, rays) if method == "joseph" else (_NONE,) * 3
        # numba's Dispatcher type does not show the kernel's parameters
        kernels.line_integrals(_flat(mu, np.float32), along, np.array(mu.shape, dtype=np.int64),  # type: ignore[call-arg]
                               *rays.kernel_arguments(), kernels.METHODS.index(method), float(step), out)
        return out

    def _axis_fastest_copies(self, mu: np.ndarray, rays: DetectorRays) -> tuple[np.ndarray, ...]:
        key = id(mu)
        if key not in self._copies or self._copies[key][0]() is not mu:
            def forget(_: weakref.ref, key: int = key) -> None:  # the array is gone: drop its copies
                self._copies.pop(key, None)

            self._copies[key] = (weakref.ref(mu, forget), {})
        copies = self._copies[key][1]
        for axis in dominant_axes(rays) - {0} - set(copies):  # axis 0 is fastest already
            copies[axis] = kernels.axis_fastest_copy(np.asarray(mu, dtype=np.float32), axis)
        return tuple(copies.get(axis, _NONE) for axis in range(3))

    def label_path_lengths(self, channels: np.ndarray, n_channels: int, rays: DetectorRays) -> np.ndarray:
        out = np.zeros((n_channels, *rays.shape), dtype=np.float32)
        kernels.label_path_lengths(  # type: ignore[call-arg]  # numba's Dispatcher hides the kernel's parameters
            _flat(channels, channels.dtype), np.array(channels.shape, dtype=np.int64), *rays.kernel_arguments(), out)
        return out


def dominant_axes(rays: DetectorRays) -> set[int]:
    """Index axes (0 = i, 1 = j, 2 = k) along which the rays of the field move most.

    Looked at on every 8th row and column plus the last ones: a ray whose axis was missed still renders
    exactly (the kernel then reads the volume in its own layout), only more slowly.
    """
    rows, cols = rays.shape
    r = np.unique(np.r_[np.arange(0, rows, 8), rows - 1])
    c = np.unique(np.r_[np.arange(0, cols, 8), cols - 1])
    r, c = np.meshgrid(r, c, indexing="ij")
    inside = rays.field[r, c]
    r, c = r[inside], c[inside]
    if r.size == 0:
        return set()
    direction = (rays.origin_ijk - rays.source_ijk + c[:, None] * rays.col_step_ijk + r[:, None] * rays.row_step_ijk)
    return set(np.unique(np.argmax(np.abs(direction), axis=1)).tolist())


_NONE = np.empty(0, dtype=np.float32)


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
