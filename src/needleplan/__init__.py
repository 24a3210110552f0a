"""needleplan: planning and simulated fluoroscopy for fluoroscopy-guided spine pain procedures."""

from .errors import NeedleplanError, NeedleplanWarning
from .io import load, save_volume
from .volume import Volume

__all__ = ["NeedleplanError", "NeedleplanWarning", "Volume", "load", "save_volume", "phantom"]
__version__ = "0.1.0"


def phantom(seed: int = 0, **options):  # noqa: ANN201 - the phantom package documents its own signature
    """Build the synthetic lumbar spine phantom; see :func:`needleplan.phantom.phantom`."""
    from .phantom import phantom as build

    return build(seed=seed, **options)
