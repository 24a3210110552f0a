"""Needle directions as C-arm angles, and the tilt that squares an endplate.

A needle that advances along the view direction v of a C-arm pose (oblique a, tilt b) is seen as a dot in that
view (CLINICAL.md section 0). With the CArm convention, v = (-sin a cos b, -cos a cos b, sin b) in LPS, so every
needle direction is named by the pose (a, b) of its coaxial view: ``a > 0`` turns the detector toward the
patient's left, ``b > 0`` is caudal tilt (the needle then advances cranially, entering from below).
"""

from __future__ import annotations

import numpy as np


def direction_from_angles(oblique_deg: np.ndarray | float, tilt_deg: np.ndarray | float) -> np.ndarray:
    """Unit needle directions (..., 3) of the coaxial views with these angles."""
    a, b = np.radians(oblique_deg), np.radians(tilt_deg)
    return np.stack(np.broadcast_arrays(-np.sin(a) * np.cos(b), -np.cos(a) * np.cos(b), np.sin(b)), axis=-1)


def angles_from_direction(direction: np.ndarray) -> tuple[float, float]:
    """(oblique, tilt) in degrees of the view in which a needle advancing along ``direction`` is a dot."""
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    tilt = float(np.degrees(np.arcsin(np.clip(u[2], -1.0, 1.0))))
    oblique = float(np.degrees(np.arctan2(-u[0], -u[1]))) if np.hypot(u[0], u[1]) > 1e-12 else 0.0
    return oblique, tilt


def squared_tilt_deg(endplate_normal: np.ndarray, oblique_deg):
    """The tilt b0 that squares an endplate at a given oblique (a float, or an array of them): the beam then lies
    in the endplate's plane.

    The beam d = (sin a cos b, cos a cos b, -sin b) is perpendicular to the normal n when
    tan b = (n_x sin a + n_y cos a) / n_z.
    """
    n = np.asarray(endplate_normal, dtype=np.float64)
    a = np.radians(oblique_deg)
    tilt = np.degrees(np.arctan2(n[0] * np.sin(a) + n[1] * np.cos(a), n[2]))
    return float(tilt) if np.ndim(tilt) == 0 else tilt


def angle_between_deg(u: np.ndarray, w: np.ndarray) -> float:
    """Angle in degrees between two vectors (0-180)."""
    cosine = np.dot(u, w) / (np.linalg.norm(u) * np.linalg.norm(w))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def describe_angles(oblique_deg: float, tilt_deg: float, side: str | None = None, squared_deg: float | None = None
                    ) -> str:
    """Words for a pose: "24 degrees left (ipsilateral) oblique, 13 degrees caudal (31 from the squared endplate)".

    ``side`` is the side of the target (to say ipsilateral / contralateral); ``squared_deg`` adds the tilt
    relative to the squared endplate.
    """
    words = []
    if round(oblique_deg) == 0:
        words.append("AP (no oblique)")
    else:
        toward = "left" if oblique_deg > 0 else "right"
        relation = "" if side is None else (" (ipsilateral)" if toward == side else " (contralateral)")
        words.append(f"{abs(oblique_deg):.0f} degrees {toward}{relation} oblique")
    if round(tilt_deg) == 0:
        words.append("no tilt")
    else:
        words.append(f"{abs(tilt_deg):.0f} degrees {'caudal' if tilt_deg > 0 else 'cephalad'} tilt")
    text = ", ".join(words)
    if squared_deg is not None:
        relative = tilt_deg - squared_deg
        if round(relative) == 0:
            text += " (the squared endplate)"
        else:
            text += f" ({abs(relative):.0f} degrees {'caudal' if relative > 0 else 'cephalad'} of the squared endplate)"
    return text
