"""C-arm views and the two every vertebral procedure starts with (CLINICAL.md sections 2-5); each procedure
(:mod:`.procedures`) adds its own, with what the user should see."""

from __future__ import annotations

import numpy as np

from ..fluoro import CArm
from .angles import describe_angles, squared_tilt_deg
from .model import View


def view(name: str, oblique: float, tilt: float, target: np.ndarray, normal: np.ndarray | None, side: str,
         expect: str) -> View:
    """One view centred on ``target``; with ``normal`` None (the SI joint: no endplate to square) its angles are said
    relative to the table only."""
    carm = CArm(oblique=float(oblique), tilt=float(tilt), isocenter=target)
    if abs(oblique) >= 75.0:  # a lateral view: no endplate to square by tilting
        words = f"lateral, detector on the patient's {'left' if oblique > 0 else 'right'}"
        if round(tilt) != 0:
            words += f", {abs(tilt):.0f} degrees {'caudal' if tilt > 0 else 'cephalad'} tilt"
        return View(name, carm, expect, None, words)
    if normal is None:
        return View(name, carm, expect, None, describe_angles(oblique, tilt, side))
    b0 = squared_tilt_deg(normal, oblique)
    return View(name, carm, expect, float(tilt - b0), describe_angles(oblique, tilt, side, b0))


def lateral_oblique_deg(side: str) -> float:
    """The lateral view's oblique: the detector on the side of the plan."""
    return 90.0 if side == "left" else -90.0


def opening_views(level: str, side: str, target: np.ndarray, normal: np.ndarray, endplate_of: str,
                  endplate_center: np.ndarray) -> list[View]:
    """AP (count the levels) and the squared-endplate view, centred on the endplate it squares (off-centre, the
    divergent beam would not see the endplate edge-on)."""
    return [view("AP", 0.0, 0.0, target, normal, side, f"count the levels up from the sacrum and find {level}"),
            view("Squared endplate", 0.0, squared_tilt_deg(normal, 0.0), endplate_center, normal, side,
                 f"the superior endplate of {endplate_of} is one crisp line (tilt squares it)")]


def ap_check(target: np.ndarray, normal: np.ndarray, side: str, expect: str) -> View:
    """The AP view squared on the endplate, to check the tip's medial-lateral place."""
    return view("AP check", 0.0, squared_tilt_deg(normal, 0.0), target, normal, side, expect)
