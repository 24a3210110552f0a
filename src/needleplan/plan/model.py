"""The Plan and its parts: target region, needle choice, C-arm views, safety report and RF lesion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..anatomy import jsonable
from ..fluoro import CArm
from ..needle import Needle
from .options import PlanOptions


def _round(value: Any) -> Any:
    return jsonable(value, finite=True)


@dataclass
class TargetRegion:
    """A capsule: points within ``radius_mm`` of the segment start-end (a sphere when they coincide)."""

    start_mm: np.ndarray
    end_mm: np.ndarray
    radius_mm: float
    description: str

    def distance_mm(self, points_mm: np.ndarray) -> np.ndarray:
        """Distance (mm) from points (..., 3) to the region; 0 inside."""
        points = np.asarray(points_mm, dtype=np.float64)
        axis = self.end_mm - self.start_mm
        length2 = float(axis @ axis)
        t = np.zeros(points.shape[:-1]) if length2 == 0 else np.clip((points - self.start_mm) @ axis / length2, 0, 1)
        nearest = self.start_mm + t[..., None] * axis
        return np.maximum(np.linalg.norm(points - nearest, axis=-1) - self.radius_mm, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return _round({"shape": "capsule", "start_mm": self.start_mm, "end_mm": self.end_mm,
                       "radius_mm": self.radius_mm, "description": self.description})


@dataclass
class NeedleChoice:
    """Which needle to take: kind, gauge and length, and whether a standard one reaches."""

    kind: str
    gauge: int
    length_mm: float
    needed_mm: float
    standard: bool
    note: str

    @property
    def reaches(self) -> bool:
        """Whether the chosen length reaches the tip with the hub margin outside the skin."""
        return self.length_mm >= self.needed_mm

    def to_dict(self) -> dict[str, Any]:
        return _round({**self.__dict__, "reaches": self.reaches})


@dataclass
class View:
    """One C-arm view of the sequence and what the user should see in it."""

    name: str
    carm: CArm
    expect: str
    tilt_from_endplate_deg: float | None
    words: str

    def to_dict(self) -> dict[str, Any]:
        return _round({"name": self.name, "oblique_deg": self.carm.oblique, "tilt_deg": self.carm.tilt,
                       "tilt_from_squared_endplate_deg": self.tilt_from_endplate_deg, "in_words": self.words,
                       "expect": self.expect, "isocenter_mm": self.carm.isocenter})


@dataclass
class SafetyItem:
    """Minimum clearance of the needle to one no-go structure, and the verdict of its rule."""

    structure: str
    clearance_mm: float
    """Smallest distance over the whole needle path (tip included); negative when the path enters it."""
    tip_clearance_mm: float
    rule: str
    status: str
    """"ok", "warning" or "violation"."""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _round(dict(self.__dict__))


@dataclass
class Safety:
    """The safety report of a plan."""

    items: list[SafetyItem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        """Messages of the items whose rule is broken."""
        return [item.message for item in self.items if item.status == "violation"]

    @property
    def safe(self) -> bool:
        """True when the path was checked and no rule is broken (an infeasible plan has no path, so no report)."""
        return bool(self.items) and not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {"safe": self.safe, "violations": self.violations,
                "warnings": list(self.warnings) + [i.message for i in self.items if i.status == "warning"],
                "clearances": [item.to_dict() for item in self.items]}


@dataclass
class Lesion:
    """RF lesion: a prolate spheroid along the active tip that ends at the tip (nothing beyond it)."""

    center_mm: np.ndarray
    axis: np.ndarray
    length_mm: float
    radius_mm: float
    active_tip_mm: float
    nerve_captured_mm: float
    electrode_to_nerve_deg: float

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """Boolean (...,): points inside the spheroid."""
        rel = np.asarray(points_mm, dtype=np.float64) - self.center_mm
        along = rel @ self.axis
        across2 = np.sum(rel * rel, axis=-1) - along ** 2
        return (along / (0.5 * self.length_mm)) ** 2 + across2 / self.radius_mm ** 2 <= 1.0

    def to_dict(self) -> dict[str, Any]:
        return _round(dict(self.__dict__))


@dataclass
class Plan:
    """A needle plan for one procedure, level and side.

    Attributes
    ----------
    procedure : str
        "tfesi", "mbb", "si" or "rfa".
    level : str
        The level named by the user: the foramen's upper vertebra (TFESI), the nerve (MBB, RFA), "S1" for SI.
    side : str
    approach : str
        E.g. "supraneural", "infraneural", "medial branch", "dorsal ramus", "intra-articular".
    feasible : bool
        False when no safe straight path exists; ``reason`` says why and the geometry fields may be None.
    target_mm, entry_mm, direction : ndarray (3,)
        Tip position (RFA: the lesion's centre on the nerve; the tip is ``needle.tip_mm``, half a lesion length
        beyond), skin entry point, unit vector from entry to target (LPS).
    depth_mm : float
        Distance from the skin entry to the needle's tip.
    oblique_deg, tilt_deg : float
        The coaxial (trajectory) view in table angles; ``squared_tilt_deg`` is the tilt that squares the
        reference endplate at that oblique.
    """

    procedure: str
    level: str
    side: str
    approach: str
    feasible: bool
    reason: str
    target_mm: np.ndarray
    target_region: TargetRegion
    reference_endplate: str
    squared_tilt_deg: float
    entry_mm: np.ndarray | None = None
    direction: np.ndarray | None = None
    depth_mm: float | None = None
    oblique_deg: float | None = None
    tilt_deg: float | None = None
    needle_choice: NeedleChoice | None = None
    needle: Needle | None = None
    views: list[View] = field(default_factory=list)
    safety: Safety = field(default_factory=Safety)
    lesion: Lesion | None = None
    nerve: np.ndarray | None = None
    entry_offsets: dict[str, float] = field(default_factory=dict)
    entry_in_words: str = ""
    search: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    options: PlanOptions = field(default_factory=PlanOptions)
    numbering: dict[str, Any] = field(default_factory=dict)
    """How the spine's levels were named (:meth:`needleplan.anatomy.Numbering.to_dict`): anchor, confidence,
    anchors, who confirmed them."""

    @property
    def name(self) -> str:
        """E.g. "tfesi-L4-left"."""
        return f"{self.procedure}-{self.level}-{self.side}"

    @property
    def tilt_from_endplate_deg(self) -> float | None:
        """Trajectory tilt relative to the squared endplate (caudal positive); None for the SI joint."""
        from .procedures import get_procedure  # the procedures build Plans: imported when first asked

        if self.tilt_deg is None or not get_procedure(self.procedure).endplate_relative:
            return None
        return self.tilt_deg - self.squared_tilt_deg

    def summary(self) -> str:
        """One line for a terminal."""
        if not self.feasible:
            return f"{self.name}: not feasible: {self.reason}"
        needle = self.needle_choice
        assert needle is not None and self.depth_mm is not None  # a feasible plan has its path and needle
        trajectory = next((view.words for view in self.views if view.name == "Trajectory"), "")
        warnings = self.safety.to_dict()["warnings"]
        verdict = "safe" if self.safety.safe else "UNSAFE"
        if warnings:
            verdict += f", {len(warnings)} warning{'s' if len(warnings) > 1 else ''}: " + "; ".join(warnings)
        return (f"{self.name} ({self.approach}): {trajectory}; depth "
                f"{self.depth_mm:.0f} mm, {needle.gauge}G {needle.length_mm:.0f} mm; {verdict}")

    def to_dict(self) -> dict[str, Any]:
        """The plan.json document (units in the key names; LPS mm)."""
        return _round({
            "schema": "needleplan.plan/1",
            "frame": "LPS", "units": {"length": "mm", "angle": "degrees"},
            "numbering": self.numbering,
            "procedure": self.procedure, "level": self.level, "side": self.side, "approach": self.approach,
            "feasible": self.feasible, "reason": self.reason,
            "target_mm": self.target_mm, "target_region": self.target_region.to_dict(),
            "entry_mm": self.entry_mm, "direction": self.direction, "depth_mm": self.depth_mm,
            "entry_offsets_mm": self.entry_offsets, "entry_in_words": self.entry_in_words,
            "trajectory": {"oblique_deg": self.oblique_deg, "tilt_deg": self.tilt_deg,
                           "squared_tilt_deg": self.squared_tilt_deg,
                           "tilt_from_squared_endplate_deg": self.tilt_from_endplate_deg,
                           "reference_endplate": self.reference_endplate},
            "needle_choice": None if self.needle_choice is None else self.needle_choice.to_dict(),
            "needle": None if self.needle is None else self.needle.to_dict(),
            "views": [view.to_dict() for view in self.views],
            "safety": self.safety.to_dict(),
            "lesion": None if self.lesion is None else self.lesion.to_dict(),
            "nerve_mm": self.nerve,
            "search": self.search,
            "notes": list(self.notes),
            "options": self.options.to_dict(),
        })
