"""The safety report: minimum clearance of a planned needle to every no-go structure (CLINICAL.md section 6).

Measured on the needle itself, sampled every 0.25 mm from the skin entry to the tip, independently of how the
path was found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .model import Safety, SafetyItem
from .options import PlanOptions
from .scene import Scene

if TYPE_CHECKING:
    from .procedures import Procedure


def polyline_distance_mm(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (mm) from points (N, 3) to a polyline (K, 3)."""
    points = np.atleast_2d(points)
    line = np.asarray(line, dtype=np.float64)
    best = np.full(len(points), np.inf)
    for a, b in zip(line[:-1], line[1:], strict=True):
        axis = b - a
        t = np.clip((points - a) @ axis / max(float(axis @ axis), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(points - (a + t[:, None] * axis), axis=1))
    return best


def needle_samples(entry_mm: np.ndarray, target_mm: np.ndarray, step_mm: float = 0.25) -> np.ndarray:
    """Points (N, 3) from the entry to the target inclusive, the last one being the tip."""
    length = float(np.linalg.norm(target_mm - entry_mm))
    n = max(2, int(np.ceil(length / step_mm)) + 1)
    return entry_mm + np.linspace(0.0, 1.0, n)[:, None] * (target_mm - entry_mm)


def assess(scene: Scene, procedure: Procedure, approach: str, level: str, side: str, entry_mm: np.ndarray,
           target_mm: np.ndarray, options: PlanOptions, bone_contact_mm: float) -> Safety:
    """Measure every clearance of the straight needle entry -> target and apply the rules (the procedure's own
    included: disc, tip and warnings)."""
    points = needle_samples(entry_mm, target_mm)
    from_tip = np.linalg.norm(points - target_mm, axis=1)
    items: list[SafetyItem] = []
    warnings: list[str] = []
    disc_rule = procedure.disc_rule

    inside_canal = scene.lookup(scene.canal, points)
    canal = np.where(inside_canal, -1.0, scene.clearance_mm("canal", points))
    status, message = "ok", ""
    if inside_canal.any():
        status, message = "violation", "the needle enters the vertebral canal (thecal sac)"
    elif canal[-1] < options.canal_warning_mm:
        status, message = "warning", f"the tip is {canal[-1]:.1f} mm from the canal wall"
    items.append(SafetyItem("vertebral canal", float(canal.min()), float(canal[-1]),
                            f"inside: fail; tip within {options.canal_warning_mm:g} mm: warning", status, message))

    root = _nearest_root(scene, points)
    if root is not None:
        name, distance = root
        clearance = distance - options.root_radius_mm
        status, message = "ok", ""
        if approach == "supraneural" and clearance[-1] < options.root_clearance_mm:
            status, message = "violation", (f"the tip is {clearance[-1]:.1f} mm from the {name} tube "
                                            f"(needs {options.root_clearance_mm:g} mm)")
        elif clearance.min() < 0:
            status, message = "warning", f"the needle passes through the modelled {name} tube"
        rule = (f"tip at least {options.root_clearance_mm:g} mm outside the {options.root_radius_mm:g} mm tube"
                if approach == "supraneural" else f"the needle through the {options.root_radius_mm:g} mm tube: "
                                                  "warning")
        items.append(SafetyItem(f"exiting root ({name})", float(clearance.min()), float(clearance[-1]), rule, status,
                                message))

    inside_disc = scene.lookup(scene.disc, points)
    disc = np.where(inside_disc, -1.0, scene.clearance_mm("disc", points))
    status, message = "ok", ""
    if disc_rule and inside_disc.any():
        status, message = "violation", ("the tip is inside a disc (intradiscal)" if inside_disc[-1]
                                        else "the needle crosses a disc")
    items.append(SafetyItem("disc", float(disc.min()), float(disc[-1]),
                            "tip or path inside: fail" if disc_rule else "for information (no rule for this procedure)",
                            status, message))

    front = scene.anterior_clearance_mm(points)
    gas = scene.clearance_mm("bowel_gas", points)
    for structure, values in (("zone in front of the vertebral bodies", front), ("bowel gas", gas)):
        closest = float(values.min())
        bad = closest < options.anterior_margin_mm
        items.append(SafetyItem(structure, closest, float(values[-1]),
                                f"path within {options.anterior_margin_mm:g} mm: fail", "violation" if bad else "ok",
                                f"the needle comes within {closest:.1f} mm of the {structure}" if bad else ""))

    crossing = scene.bone_on_shaft(points, from_tip, bone_contact_mm)
    hit = "" if not crossing.any() else scene.bone_name(scene.bone_near(points[np.argmax(crossing)]))
    items.append(SafetyItem("bone on the way", float("nan"), float("nan"),
                            "the shaft crosses no bone before the intended tip contact",
                            "violation" if crossing.any() else "ok", f"the shaft crosses the {hit}" if hit else ""))

    items += procedure.tip_items(scene, level, side, points[-1])
    warnings += procedure.warnings(scene, level, side, target_mm)
    return Safety(items, [w for w in warnings if w])


def tip_problem(scene: Scene, procedure: Procedure, approach: str, target_mm: np.ndarray, options: PlanOptions) -> str:
    """Why a tip at ``target_mm`` breaks a rule whatever the path ("" when it does not)."""
    tip = np.asarray(target_mm, dtype=np.float64)[None]
    if scene.lookup(scene.canal, tip)[0]:
        return "the target lies in the vertebral canal"
    if procedure.disc_rule and scene.lookup(scene.disc, tip)[0]:
        return "the target lies in a disc"
    if scene.anterior_clearance_mm(tip)[0] < options.anterior_margin_mm:
        return f"the target is within {options.anterior_margin_mm:g} mm of the zone in front of the vertebral bodies"
    if approach == "supraneural":
        root = _nearest_root(scene, tip)
        if root is not None and root[1][0] - options.root_radius_mm < options.root_clearance_mm:
            return (f"the target is {root[1][0] - options.root_radius_mm:.1f} mm from the {root[0]} tube "
                    f"(needs {options.root_clearance_mm:g} mm)")
    return ""


def _nearest_root(scene: Scene, points: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The modelled exiting root closest to the needle, and the needle's distance to its centre line."""
    best: tuple[str, np.ndarray] | None = None
    for vertebra in scene.spine:
        for key in ("left", "right"):
            line = vertebra.landmarks.get(f"exiting_root_{key}")
            if line is None:
                continue
            distance = polyline_distance_mm(points, line)
            if best is None or distance.min() < best[1].min():
                best = (f"{vertebra.name} {key} exiting root", distance)
    return best
