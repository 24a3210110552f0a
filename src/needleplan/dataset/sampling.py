"""Drawing each image's C-arm pose and needles from the config, reproducibly.

Image ``index`` of case ``name`` draws from its own random generator, seeded by (config seed, case name,
index): an image is the same whichever worker makes it, in whatever order, and adding a case does not change
the images of the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..needle import Needle
from ..fluoro import CArm
from .cases import Case, PlannedNeedle
from .config import DatasetConfig

#: Largest tilt drawn around a planned view; a C-arm cannot tilt through 90 degrees.
_MAX_TILT_DEG = 89.0


@dataclass(frozen=True)
class PlacedNeedle:
    """A needle in an image and where its plan put it."""

    needle: Needle
    plan: PlannedNeedle
    advance_mm: float

    @property
    def tip_offset_mm(self) -> np.ndarray:
        """Tip minus the planned tip (LPS mm): the placement error."""
        return self.needle.tip_mm - self.plan.tip_mm

    @property
    def angle_error_deg(self) -> float:
        """Angle between this needle and the planned one."""
        planned = self.plan.tip_mm - self.plan.hub_mm
        planned = planned / np.linalg.norm(planned)
        return float(np.degrees(np.arccos(np.clip(self.needle.direction @ planned, -1.0, 1.0))))


@dataclass(frozen=True)
class Shot:
    """What one image shows: the pose, the plan and view it was drawn around, the needles, the noise seed."""

    carm: CArm
    plan: PlannedNeedle | None
    view: str | None
    needles: tuple[PlacedNeedle, ...]
    noise_seed: int


def image_rng(seed: int, case_name: str, index: int) -> np.random.Generator:
    """The random generator of one image."""
    case_key = int.from_bytes(hashlib.sha256(case_name.encode()).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(case_key, index)))


def draw_shot(config: DatasetConfig, case: Case, index: int) -> Shot:
    """The pose and needles of image ``index`` of ``case``."""
    rng = image_rng(config.seed, case.name, index)
    imaging = config.imaging
    chain = {"detector_size_mm": imaging.detector_mm, "detector_pixels": imaging.size,
             "collimator_diameter_mm": imaging.collimator_mm}
    plan = case.plans[rng.integers(len(case.plans))] if case.plans else None
    if config.poses.mode == "planned":
        assert plan is not None  # preparing a case for planned poses made sure it has plans
        view = sorted(plan.views)[rng.integers(len(plan.views))]
        carm = _around_view(plan.views[view], config, rng).replace(**chain)
    else:
        view = None
        carm = _uniform_pose(case, config, rng).replace(**chain)
    needles = _needles(config, case, plan, rng)
    return Shot(carm, plan, view, needles, int(rng.integers(2**32)))


def _around_view(carm: CArm, config: DatasetConfig, rng: np.random.Generator) -> CArm:
    poses = config.poses
    oblique = carm.oblique + rng.normal(0.0, poses.oblique_sd_deg)
    tilt = float(np.clip(carm.tilt + rng.normal(0.0, poses.tilt_sd_deg), -_MAX_TILT_DEG, _MAX_TILT_DEG))
    assert carm.isocenter is not None  # a plan's views are centred on its target
    isocenter = carm.isocenter + rng.normal(0.0, poses.isocenter_sd_mm, 3)
    return carm.replace(oblique=oblique, tilt=tilt, isocenter=isocenter)


def _uniform_pose(case: Case, config: DatasetConfig, rng: np.random.Generator) -> CArm:
    poses = config.poses
    levels = [name for name in case.centroids_mm if not poses.levels or name in poses.levels]
    if not levels:
        levels = list(case.centroids_mm)
    centre = case.points_mm.get(f"{levels[rng.integers(len(levels))]}.body_centroid")
    if centre is None:
        centre = case.centroids_mm[levels[0]]
    reach = np.asarray(poses.isocenter_range_mm)
    return CArm(
        oblique=rng.uniform(*poses.oblique_deg),
        tilt=rng.uniform(*poses.tilt_deg),
        isocenter=centre + rng.uniform(-reach, reach),
        source_to_isocenter_mm=rng.uniform(*poses.source_to_isocenter_mm),
        source_to_detector_mm=rng.uniform(*poses.source_to_detector_mm),
    )


def _needles(config: DatasetConfig, case: Case, plan: PlannedNeedle | None,
             rng: np.random.Generator) -> tuple[PlacedNeedle, ...]:
    spec = config.needles
    if spec.mode == "none" or plan is None:
        return ()
    chosen = [plan]
    if spec.mode == "several" and spec.count > 1:
        others = [p for p in case.plans if p.id != plan.id]
        picks = rng.permutation(len(others))[:spec.count - 1]
        chosen += [others[i] for i in sorted(picks)]
    placed = []
    for number, source in enumerate(chosen, start=1):
        placed.append(_place(source, f"needle-{number}" if len(chosen) > 1 else "needle", config, rng))
    return tuple(placed)


def _place(plan: PlannedNeedle, name: str, config: DatasetConfig, rng: np.random.Generator) -> PlacedNeedle:
    spec = config.needles
    axis = plan.tip_mm - plan.hub_mm
    length = float(np.linalg.norm(axis))
    direction = axis / length
    tip = plan.tip_mm.copy()
    if spec.mode in ("perturbed", "several"):
        tip = tip + rng.normal(0.0, spec.tip_sd_mm, 3)
        direction = _turned(direction, abs(rng.normal(0.0, spec.angle_sd_deg)), rng.uniform(0, 2 * np.pi))
    advance = float(rng.uniform(*spec.advance_mm))
    tip = tip + advance * direction
    gauge = spec.gauge if spec.gauge is not None else plan.gauge
    return PlacedNeedle(Needle.from_direction(tip, direction, length, gauge=gauge, name=name), plan, advance)


def _turned(direction: np.ndarray, angle_deg: float, azimuth: float) -> np.ndarray:
    """``direction`` turned by ``angle_deg`` toward the perpendicular at ``azimuth`` (radians)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(direction, helper)
    first /= np.linalg.norm(first)
    second = np.cross(direction, first)
    sideways = np.cos(azimuth) * first + np.sin(azimuth) * second
    angle = np.radians(angle_deg)
    return np.cos(angle) * direction + np.sin(angle) * sideways
