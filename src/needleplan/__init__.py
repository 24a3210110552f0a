"""needleplan: planning and simulated fluoroscopy for fluoroscopy-guided spine pain procedures.

The public API is loaded on first use (PEP 562): ``import needleplan.cli`` stays light, so the command answers a
Ctrl+C that comes while it starts with one line, not a traceback from deep inside an import.
"""

import importlib
import sys
import types
from typing import Any

#: Public name -> the module that defines it.
_EXPORTS = {
    "Spine": "anatomy", "Vertebra": "anatomy", "NeedleplanError": "errors", "NeedleplanWarning": "errors",
    "CArm": "fluoro", "Display": "fluoro", "Exposure": "fluoro", "Fluoro": "fluoro", "render": "fluoro",
    "load": "io", "save_volume": "io", "Needle": "needle", "PhantomCase": "phantoms", "phantom": "phantoms",
    "Plan": "plan", "PlanOptions": "plan", "plan": "plan", "plan_all": "plan", "plan_joint": "plan",
    "segment": "segment", "Volume": "volume",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Load the whole public API (as a plain ``import needleplan`` used to) the first time any of it is asked for."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for export, module in _EXPORTS.items():
        if export not in globals():
            globals()[export] = getattr(importlib.import_module(f".{module}", __name__), export)
    if name not in globals():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(types.ModuleType):
    """The package: importing the sub-package ``plan`` or ``segment`` must not hide the function of that name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return  # the import system binding needleplan.plan / needleplan.segment to the sub-package
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
