"""Straight needle paths: trace them from the target back to the skin, check them, and search the C-arm grid.

A candidate direction is feasible when, walking from the target back along it to the skin, the path crosses no
bone (except the intended contact at the tip), never enters the canal (nor a disc, when the rule asks), keeps the
anterior margin from the vertebral bodies' front and from bowel gas, and reaches the skin inside the scan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import march
from .angles import direction_from_angles
from .scene import Scene

_BATCH = 128
#: Step (mm) of the samples along a path that survived the voxel walk (continuous bone field, bowel gas).
_SHAFT_STEP_MM = 0.5


@dataclass(frozen=True)
class PathRules:
    """What makes a straight path infeasible."""

    bone_contact_mm: float
    """Bone within this distance of the target is allowed (intended contact, or voxel size)."""
    disc_forbidden: bool
    """TFESI: crossing or ending in a disc fails."""
    anterior_margin_mm: float
    max_depth_mm: float = 250.0


@dataclass
class PathCheck:
    """Result of :func:`check_paths` for B directions."""

    feasible: np.ndarray
    """(B,) bool."""
    depth_mm: np.ndarray
    """(B,) distance from the target back to the skin (nan when the skin was not reached)."""
    reasons: list[str]
    """(B,) why each infeasible path fails ("" when feasible)."""


@dataclass
class SearchResult:
    """The chosen pose of the coaxial view (None when no straight window exists) and how it was found."""

    oblique_deg: float | None
    tilt_deg: float | None
    depth_mm: float | None
    checked: int
    preferred: tuple[float, float]
    preferred_reason: str
    """Why the preferred direction itself fails ("" when it is feasible)."""
    window: dict[str, tuple[float, float]]
    reason: str
    """Why no direction was found ("" when one was)."""


def check_paths(scene: Scene, target_mm: np.ndarray, directions: np.ndarray, rules: PathRules) -> PathCheck:
    """Check the straight paths that reach ``target_mm`` advancing along each of ``directions`` (B, 3).

    The walk visits every voxel on the way (:func:`march.march`); the continuous bone field
    (:meth:`Scene.bone_on_shaft`) and bowel gas are checked afterwards, every 0.5 mm, on the paths that pass it.
    """
    u = np.ascontiguousarray(np.atleast_2d(np.asarray(directions, dtype=np.float64)))
    target = np.asarray(target_mm, dtype=np.float64)
    planes = scene.anterior_planes
    event, at_mm, label = march.march(
        target, u, rules.max_depth_mm, np.ascontiguousarray(scene.world_to_index[:3]), scene.body, scene.shaft_bone,
        scene.bone_rim, scene.canal, scene.disc, rules.disc_forbidden, rules.bone_contact_mm, scene.rim_extra_mm,
        np.array([p.point for p in planes]).reshape(-1, 3), np.array([p.posterior for p in planes]).reshape(-1, 3),
        np.array([p.superior for p in planes]).reshape(-1, 3), rules.anterior_margin_mm)
    feasible = event == march.SKIN
    depth = np.where(feasible, at_mm, np.nan)
    survivors = np.nonzero(feasible)[0]
    if len(survivors):  # the continuous bone field, all surviving paths at once
        ts = np.arange(0.0, float(np.max(depth[survivors])), _SHAFT_STEP_MM)
        points = target - ts[None, :, None] * u[survivors, None, :]
        crossing = scene.bone_on_shaft(points, np.broadcast_to(ts, points.shape[:2]), rules.bone_contact_mm)
        crossing &= ts[None, :] < depth[survivors, None]
        for row in np.nonzero(crossing.any(axis=1))[0]:
            b, first = survivors[row], int(np.argmax(crossing[row]))
            event[b], at_mm[b], label[b] = march.BONE, ts[first], scene.bone_near(points[row, first])
            feasible[b] = False
    for b in np.nonzero(feasible)[0]:
        ts = np.arange(0.0, depth[b], 2.0 * _SHAFT_STEP_MM)
        if scene.near_mm("bowel_gas", target - ts[:, None] * u[b], rules.anterior_margin_mm).any():
            feasible[b] = False
    depth = np.where(feasible, depth, np.nan)
    reasons = [_reason(int(e), ok, float(t), int(v), scene, rules)
               for e, ok, t, v in zip(event, feasible, at_mm, label, strict=True)]
    return PathCheck(feasible, depth, reasons)


def _reason(event: int, feasible: bool, distance_mm: float, bone_label: int, scene: Scene, rules: PathRules) -> str:
    if feasible:
        return ""
    if event == march.SKIN:
        return f"the path passes within {rules.anterior_margin_mm:g} mm of bowel gas"
    if event == march.BONE:
        return f"bone in the way: {scene.bone_name(bone_label)}, {distance_mm:.0f} mm from the target"
    return {
        march.CANAL: "the path enters the vertebral canal",
        march.DISC: "the path enters a disc",
        march.FRONT: f"the path comes within {rules.anterior_margin_mm:g} mm of the zone in front of the vertebral "
                     "bodies",
        march.NOT_REACHED: f"the skin is not reached within {rules.max_depth_mm:g} mm inside the scan",
    }[event]


def search_direction(scene: Scene, target_mm: np.ndarray, preferred: tuple[float, float],
                     oblique_range: tuple[float, float], tilt_range: tuple[float, float],
                     cost: Callable[[np.ndarray, np.ndarray], np.ndarray], rules: PathRules,
                     step_deg: float, verify: Callable[[float, float, float], str] | None = None) -> SearchResult:
    """The lowest-cost feasible pose on a grid of oblique x tilt (degrees), checked in order of cost.

    Parameters
    ----------
    preferred : (oblique, tilt)
        The pose the procedure's rule asks for; it is checked first and reported on.
    oblique_range, tilt_range : (low, high)
        The anatomical window (table angles, degrees).
    cost : callable
        cost(oblique grid, tilt grid) -> array; lower is better; poses with an infinite cost are not tried.
    verify : callable, optional
        verify(oblique, tilt, depth_mm) -> "" or why the path is unsafe after all: the full safety report of a
        path the fast check passed (it samples more finely); a failed candidate is skipped.
    """
    verify = verify or (lambda oblique, tilt, depth: "")
    window = {"oblique_deg": (float(oblique_range[0]), float(oblique_range[1])),
              "tilt_deg": (float(tilt_range[0]), float(tilt_range[1]))}
    first = check_paths(scene, target_mm, direction_from_angles(*preferred)[None], rules)
    first_reason = first.reasons[0] or verify(preferred[0], preferred[1], float(first.depth_mm[0]))
    if not first_reason:
        return SearchResult(preferred[0], preferred[1], float(first.depth_mm[0]), 1, preferred, "", window, "")
    obliques = np.arange(oblique_range[0], oblique_range[1] + 0.5 * step_deg, step_deg)
    tilts = np.arange(tilt_range[0], tilt_range[1] + 0.5 * step_deg, step_deg)
    grid_a, grid_b = (g.ravel() for g in np.meshgrid(obliques, tilts, indexing="ij"))
    costs = cost(grid_a, grid_b)
    order = np.argsort(costs, kind="stable")
    order = order[np.isfinite(costs[order])]
    checked = 1
    reasons: dict[str, int] = {}
    for start in range(0, len(order), _BATCH):
        chosen = order[start:start + _BATCH]
        result = check_paths(scene, target_mm, direction_from_angles(grid_a[chosen], grid_b[chosen]), rules)
        checked += len(chosen)
        for k in np.nonzero(result.feasible)[0]:
            oblique, tilt, depth = float(grid_a[chosen[k]]), float(grid_b[chosen[k]]), float(result.depth_mm[k])
            result.reasons[k] = verify(oblique, tilt, depth)
            if not result.reasons[k]:
                return SearchResult(oblique, tilt, depth, checked, preferred, first_reason, window, "")
        for reason in result.reasons:
            # one count per kind of blocker: "bone in the way: L5" keeps its bone, measured numbers are dropped
            key = re.sub(r"\d+(\.\d+)? (mm|degrees)", "N \\2", reason.split(",")[0])
            reasons[key] = reasons.get(key, 0) + 1
    blockers = sorted(reasons.items(), key=lambda item: -item[1])[:3]
    listed = "; ".join(f"{why} ({count})" for why, count in blockers) or first_reason
    reason = (f"no straight window: none of {checked} directions (oblique {window['oblique_deg'][0]:.0f} to "
              f"{window['oblique_deg'][1]:.0f}, tilt {window['tilt_deg'][0]:.0f} to {window['tilt_deg'][1]:.0f} "
              f"degrees, {step_deg:g}-degree grid) is clear; blocked by {listed}")
    return SearchResult(None, None, None, checked, preferred, first_reason, window, reason)
