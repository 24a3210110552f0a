"""Where each procedure's needle tip goes, from a vertebra's landmarks (CLINICAL.md sections 2-5).

Pure geometry: every function takes landmarks (world LPS mm) and the few measured sizes it needs, so the same
rule gives the planner's target on a segmented spine and the analytic target on the phantom's exact anatomy.
``side`` is "left" or "right"; "lateral" means toward that side.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..anatomy import SIDE_SIGN
from ..errors import NeedleplanError


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def need(marks: dict[str, Any], key: str, where: str) -> Any:
    """A landmark, or a NeedleplanError saying which one is missing and where."""
    value = marks.get(key)
    if value is None:
        raise NeedleplanError(f"{where} has no {key.replace('_', ' ')} landmark, which this plan needs")
    return value


#: TFESI levels whose default approach is infraneural (CLINICAL.md section 2: the artery of Adamkiewicz).
INFRANEURAL_BY_DEFAULT = ("L1", "L2", "L3")


def default_tfesi_approach(level: str) -> str:
    """"infraneural" at L1-L3 (and thoracic levels), "supraneural" at L4-L5; S1 has its own target."""
    return "infraneural" if level in INFRANEURAL_BY_DEFAULT or level.startswith("T") else "supraneural"


def pedicle_across(marks: dict[str, Any], side: str) -> np.ndarray:
    """Unit vector across the pedicle toward its lateral margin: lateral, perpendicular to the pedicle axis and
    to the vertebra's superior axis."""
    lateral = SIDE_SIGN[side] * np.asarray(marks["axes"]["left"], dtype=np.float64)
    superior = _unit(marks["axes"]["superior"])
    axis = np.asarray(marks[f"pedicle_{side}"]["axis"], dtype=np.float64)
    axis = _unit(axis - (axis @ superior) * superior)
    across = lateral - (lateral @ axis) * axis - (lateral @ superior) * superior
    return _unit(across)


def tfesi_supraneural(marks: dict[str, Any], side: str, pedicle_half_height_mm: float, below_mm: float,
                      inset_mm: float) -> np.ndarray:
    """Safe-triangle target: under the pedicle's inferior border, just inside the line of its lateral margins.

    Parameters
    ----------
    marks : dict
        Landmarks of the level whose pedicle roofs the foramen (L4 for the L4-L5 foramen).
    side : str
    pedicle_half_height_mm : float
        Distance from the pedicle centre down to its inferior border, along the vertebra's superior axis.
    below_mm, inset_mm : float
        Tip below the border, and inside the lateral margin line.
    """
    pedicle = marks[f"pedicle_{side}"]
    half_width = 0.5 * float(pedicle["narrowest_width_mm"])
    superior = _unit(marks["axes"]["superior"])
    return (np.asarray(pedicle["center"], dtype=np.float64) + (half_width - inset_mm) * pedicle_across(marks, side)
            - (pedicle_half_height_mm + below_mm) * superior)


def tfesi_infraneural(lower: dict[str, Any], side: str, pedicle_half_height_mm: float, above_mm: float,
                      inset_mm: float) -> np.ndarray:
    """Kambin (retrodiscal) target: low in the foramen, above the lower pedicle's superior border.

    ``lower`` holds the landmarks of the vertebra below the foramen (L5 for the L4-L5 foramen) and
    ``pedicle_half_height_mm`` the distance from its pedicle centre up to the pedicle's superior border.
    """
    pedicle = lower[f"pedicle_{side}"]
    half_width = 0.5 * float(pedicle["narrowest_width_mm"])
    superior = _unit(lower["axes"]["superior"])
    return (np.asarray(pedicle["center"], dtype=np.float64) + (half_width - inset_mm) * pedicle_across(lower, side)
            + (pedicle_half_height_mm + above_mm) * superior)


def s1_foramen(posterior_opening_mm: np.ndarray, channel_centre_mm: np.ndarray, depth_mm: float) -> np.ndarray:
    """S1 target: ``depth_mm`` into the posterior S1 foramen along its channel, just below the S1 pedicle."""
    opening = np.asarray(posterior_opening_mm, dtype=np.float64)
    return opening + depth_mm * _unit(np.asarray(channel_centre_mm, dtype=np.float64) - opening)


def mbb(branch: np.ndarray, superior: np.ndarray, below_mm: float) -> np.ndarray:
    """Medial branch target: on the lateral SAP surface, ``below_mm`` under the TP's superior margin.

    ``branch`` is the medial-branch polyline on the vertebra whose TP the nerve crosses (L5 for the L4 medial
    branch; S1 for the L5 dorsal ramus, where the "TP" is the ala). The nerve crosses the TP's upper border and
    turns down the SAP's lateral neck just behind the TP; the target is that turn, ``below_mm`` lower, on the
    SAP's surface in the corner between SAP and TP (not inside the TP root). "Lower" is followed along the nerve
    (which lies on the SAP's slanted lateral face), not straight down, so the target stays on the surface.
    """
    upper, lower = nerve_neck_segment(branch)
    drop = float((upper - lower) @ _unit(superior))
    if drop <= 0:
        raise NeedleplanError("the medial branch polyline does not run down the SAP; cannot place the MBB target")
    return upper + min(below_mm / drop, 1.0) * (lower - upper)


def mbb_drop_mm(nerve: str, below_tp_margin_mm: float) -> float:
    """How far below the nerve's turn the MBB target lies: the TP rule for L1-L4; 0 for the L5 dorsal ramus,
    whose target is the groove itself (the ala's top at the base of the S1 SAP)."""
    return 0.0 if nerve == "L5" else below_tp_margin_mm


def nerve_neck_segment(branch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper, lower) ends of the part of a medial-branch polyline that runs down the SAP's lateral neck.

    The polyline starts at the SAP-TP junction; its last vertex is the mamillo-accessory notch. The neck is the
    stretch from the vertex where the nerve turns down (the second vertex of a three-point polyline) to the notch.
    """
    points = np.asarray(branch, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise NeedleplanError("a medial branch polyline needs at least two points")
    upper = points[1] if len(points) >= 3 else points[0]
    return upper, points[-1]


def rfa_lesion_centre(branch: np.ndarray) -> np.ndarray:
    """RF target: the middle of the nerve's course down the SAP neck, where the lesion is centred (Lau & Bogduk:
    the active tip opposite the middle two quarters of the SAP). The electrode's tip lies half a lesion length
    beyond it along the electrode, so that an electrode not quite parallel to the nerve still crosses it at the
    lesion's widest part."""
    upper, lower = nerve_neck_segment(branch)
    return 0.5 * (upper + lower)


def si_joint(posterior_line: np.ndarray, above_lower_end_mm: float) -> np.ndarray:
    """SI target: on the posterior joint line, ``above_lower_end_mm`` (arc length) above its lower end.

    The polyline runs superior to inferior."""
    line = np.asarray(posterior_line, dtype=np.float64)[::-1]
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    if along[-1] <= 0:
        raise NeedleplanError("the posterior SI joint line has no length")
    at = min(above_lower_end_mm, along[-1])
    return np.array([np.interp(at, along, line[:, k]) for k in range(3)])


def inferior_third(line: np.ndarray, n_points: int = 12) -> np.ndarray:
    """Points (n, 3) evenly along the inferior third (by arc length) of a superior-to-inferior polyline."""
    points = np.asarray(line, dtype=np.float64)
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    at = np.linspace(2.0 * along[-1] / 3.0, along[-1], n_points)
    return np.stack([np.interp(at, along, points[:, k]) for k in range(3)], axis=1)
