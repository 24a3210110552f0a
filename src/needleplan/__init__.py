"""needleplan: planning and simulated fluoroscopy for fluoroscopy-guided spine pain procedures."""

from .anatomy import Spine, Vertebra
from .errors import NeedleplanError, NeedleplanWarning
from .fluoro import CArm, Display, Exposure, Fluoro, render
from .io import load, save_volume
from .needle import Needle
from .phantoms import PhantomCase, phantom
from .segment import segment
from .volume import Volume

__all__ = [
    "CArm", "Display", "Exposure", "Fluoro", "Needle", "NeedleplanError", "NeedleplanWarning", "PhantomCase",
    "Spine", "Vertebra", "Volume", "load", "phantom", "render", "save_volume", "segment",
]
__version__ = "0.1.0"
