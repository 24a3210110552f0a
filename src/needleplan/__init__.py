"""needleplan: planning and simulated fluoroscopy for fluoroscopy-guided spine pain procedures."""

from .errors import NeedleplanError, NeedleplanWarning
from .io import load, save_volume
from .phantoms import PhantomCase, phantom
from .volume import Volume

__all__ = ["NeedleplanError", "NeedleplanWarning", "PhantomCase", "Volume", "load", "phantom", "save_volume"]
__version__ = "0.1.0"
