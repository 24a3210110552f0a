"""Off-screen 3D pictures with PyVista/VTK: the OpenGL back end, a colour key and PNG output.

VTK's PyPI wheel picks its OpenGL back end when the first window is made; on Linux without a display it needs
the system's EGL (Mesa's ``libEGL``) or OSMesa, which :func:`offscreen_backend` looks for first, so that a missing
library is a clear error instead of a crash. Shared by the spine picture and the plan picture.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import NeedleplanError
from .io.atomic import atomic_file

__all__ = ["add_key", "offscreen_backend", "write_png"]


def add_key(plotter: Any, entries: list[tuple[str, str]], size: tuple[int, int], corner: str = "lower right"
            ) -> None:
    """A colour key in the lower or upper right corner of a picture: each entry's text in its colour."""
    pixels = max(12, round(min(size) / 36))  # text height; PyVista doubles the font size of placed text
    longest = max((len(text) for text, _ in entries), default=0)
    x = size[0] - 0.6 * pixels * longest - pixels
    for row, (text, colour) in enumerate(reversed(entries)):
        y = pixels * (1.0 + 1.3 * row)
        if corner == "upper right":
            y = size[1] - pixels * (2.5 + 1.3 * (len(entries) - 1 - row))
        plotter.add_text(text, position=(x, y), font_size=pixels // 2, color=colour)


def _loadable(*names: str) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


@contextmanager
def offscreen_backend() -> Iterator[None]:
    """Choose VTK's OpenGL window for off-screen rendering while a picture is made (Linux only).

    VTK's wheel tries X first and, without a display, falls back to EGL and then OSMesa, printing warnings on
    the way and crashing when neither is installed. Picking the back end here avoids both: EGL when its library
    loads, else OSMesa, else the default when a display is set; otherwise a clear error.
    """
    variable = "VTK_DEFAULT_OPENGL_WINDOW"
    if not sys.platform.startswith("linux") or variable in os.environ:
        yield
        return
    if _loadable("libEGL.so.1", "libEGL.so"):
        window = "vtkEGLRenderWindow"
    elif _loadable("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"):
        window = "vtkOSOpenGLRenderWindow"
    elif os.environ.get("DISPLAY"):
        yield
        return
    else:
        raise NeedleplanError(
            "cannot draw a 3D picture: no display and no off-screen OpenGL library (EGL or OSMesa) was found; "
            "install one, e.g. on Debian/Ubuntu `apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri` "
            "(or `libosmesa6`)"
        )
    os.environ[variable] = window
    try:
        yield
    finally:
        del os.environ[variable]


def write_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB(A) image array as a PNG, atomically (alpha dropped)."""
    from PIL import Image

    with atomic_file(path) as tmp:
        Image.fromarray(np.ascontiguousarray(image[..., :3], dtype=np.uint8)).save(tmp, format="PNG")
