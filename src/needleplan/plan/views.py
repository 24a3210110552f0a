"""The C-arm view sequence of each procedure (CLINICAL.md sections 2-5), with what the user should see."""

from __future__ import annotations

import numpy as np

from ..fluoro import CArm
from .angles import describe_angles, squared_tilt_deg
from .model import View


def _view(name: str, oblique: float, tilt: float, target: np.ndarray, normal: np.ndarray | None, side: str,
          expect: str) -> View:
    """One view; with ``normal`` None (the SI joint: no endplate to square) its angles are said relative to the
    table only."""
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


def view_sequence(procedure: str, approach: str, level: str, below: str | None, side: str, target: np.ndarray,
                  normal: np.ndarray, oblique: float, tilt: float, endplate_of: str,
                  endplate_center: np.ndarray | None = None) -> list[View]:
    """The views to take, in order, for a plan whose coaxial trajectory view is (oblique, tilt).

    Every view is centred on the target except the squared-endplate view, which is centred on the endplate it
    squares (off-centre, the divergent beam would not see the endplate edge-on).
    """
    b0_ap = squared_tilt_deg(normal, 0.0)
    lateral = 90.0 if side == "left" else -90.0
    first = _view("AP", 0.0, 0.0, target, normal, side,
                  f"count the levels up from the sacrum and find {level}" if procedure != "si" else
                  "find the sacroiliac joints and the lower end of the joint on the target side")
    squared = _view("Squared endplate", 0.0, b0_ap, target if endplate_center is None else endplate_center, normal,
                    side,
                    f"the superior endplate of {endplate_of} is one crisp line (tilt squares it)")
    if procedure == "tfesi" and level == "S1":
        views = [first, squared,
                 _view("Trajectory", oblique, tilt, target, normal, side,
                       "the posterior S1 foramen is a round lucency under the S1 pedicle; the needle is a dot at "
                       "its superolateral edge"),
                 _view("Lateral", lateral, 0.0, target, normal, side,
                       "the tip just through the dorsal sacral surface into the S1 canal, well behind the ventral "
                       "sacrum"),
                 _view("AP check", 0.0, b0_ap, target, normal, side,
                       "the tip in the superolateral quadrant of the S1 foramen, below the S1 pedicle")]
    elif procedure == "tfesi":
        where = ("just under 6 o'clock of the pedicle, the SAP tip of " + (below or "the level below") +
                 " under it" if approach == "supraneural" else
                 f"low in the foramen, just above the {below or 'lower'} pedicle and lateral to its SAP")
        depth = ("the tip in the dorsal-cranial part of the foramen" if approach == "supraneural" else
                 "the tip in the caudal part of the foramen, just behind the disc (posterior body line)")
        views = [first, squared,
                 _view("Trajectory", oblique, tilt, target, normal, side, f"the needle is a dot {where}"),
                 _view("Lateral", lateral, 0.0, target, normal, side, f"depth: {depth}"),
                 _view("AP check", 0.0, b0_ap, target, normal, side,
                       "the tip under the pedicle, not past the middle of the pedicle medially")]
    elif procedure == "mbb":
        if approach == "dorsal ramus":
            aim = "the needle is a dot in the groove between the sacral ala and the S1 superior articular process"
        else:
            aim = (f"the Scotty dog of {endplate_of}: the needle is a dot at the junction of the superior "
                   "articular process and the transverse process (the dog's eye and neck)")
        views = [first, squared, _view("Trajectory", oblique, tilt, target, normal, side, aim),
                 _view("AP check", 0.0, b0_ap, target, normal, side,
                       "the tip on the lateral silhouette of the superior articular process, at the upper border of "
                       "the transverse process (ala for the dorsal ramus)")]
    elif procedure == "rfa":
        views = [first, squared,
                 _view("Trajectory", oblique, tilt, target, normal, side,
                       "the electrode is a dot over the lateral neck of the superior articular process, entering "
                       "from below along the nerve"),
                 _view("Lateral", lateral, 0.0, target, normal, side,
                       "the active tip along the neck of the superior articular process, the tip not past the "
                       "posterior border of the foramen"),
                 _view("AP check", 0.0, b0_ap, target, normal, side,
                       "the tip on the lateral margin of the superior articular process, the shaft running up "
                       "along it")]
    else:  # si: the joint, not an endplate, sets the view
        views = [_view("AP", 0.0, 0.0, target, None, side, first.expect),
                 _view("Trajectory", oblique, tilt, target, None, side,
                       "the inferior third of the joint shows as two separate lines with the lucent gap between "
                       "them; the needle is a dot in the gap 1-2 cm above its lower end"),
                 _view("Lateral", lateral, 0.0, target, None, side,
                       "the tip anterior to the dorsal sacral border, inside the joint")]
    return views
