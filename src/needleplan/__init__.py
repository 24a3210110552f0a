"""needleplan: planning and simulated fluoroscopy for fluoroscopy-guided spine pain procedures."""

from .anatomy import Spine, Vertebra
from .errors import NeedleplanError, NeedleplanWarning
from .fluoro import CArm, Display, Exposure, Fluoro, render
from .io import load, save_volume
from .needle import Needle
from .phantoms import PhantomCase, phantom
from .plan import Plan, PlanOptions, plan, plan_all, plan_joint
from .segment import segment
from .volume import Volume

__all__ = [
    "CArm", "Display", "Exposure", "Fluoro", "Needle", "NeedleplanError", "NeedleplanWarning", "PhantomCase",
    "Plan", "PlanOptions", "Spine", "Vertebra", "Volume", "load", "phantom", "plan", "plan_all", "plan_joint", "render", "save_volume", "segment",
]
__version__ = "0.1.0"
