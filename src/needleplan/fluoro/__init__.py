"""Simulated fluoroscopy: C-arm geometry, the compiled ray-casting core, needles, labels and image output."""

from .backends import register_backend
from .carm import CArm, Projection
from .display import Display
from .exposure import Exposure
from .render import Fluoro, Keypoint, render
from .writers import write_geometry_json, write_image

__all__ = [
    "CArm", "Display", "Exposure", "Fluoro", "Keypoint", "Projection", "register_backend", "render",
    "write_geometry_json", "write_image",
]
