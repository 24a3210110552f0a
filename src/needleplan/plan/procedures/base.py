"""What every procedure tells the common planning steps: its words, levels, target set-up, views, needle stock and
the rules of its own (CLINICAL.md sections 2-6).

A procedure is one object registered in :mod:`needleplan.plan.procedures`; the planner, safety report, report page,
practice simulator and command line ask it instead of testing its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ...anatomy import Spine
from ...errors import NeedleplanError
from ..assemble import complete
from ..model import Lesion, Plan, SafetyItem, View
from ..options import PlanOptions
from ..scene import Scene
from ..setups import Setup, contact_mm


@dataclass(frozen=True)
class NeedleStock:
    """The needles (or RF cannulas) stocked for a procedure."""

    kind: str
    gauge: int
    lengths_mm: tuple[float, ...]
    standard_max_mm: float
    """The longest length still called standard."""


class Procedure(ABC):
    """One procedure: subclasses set the class attributes and implement :meth:`setup` and :meth:`views`."""

    key: str
    """Short name used in plan names, plan.json and on the command line ("tfesi")."""
    title: str
    """The procedure in words ("transforaminal epidural injection")."""
    default_level: str
    """The level a practice task uses when none is given."""
    needs_level: bool = True
    """False when the procedure has one place per side (the SI joint)."""
    endplate_relative: bool = True
    """Whether its angles are said relative to the squared endplate (False: to the table only)."""
    disc_rule: bool = False
    """A needle in a disc, or a tip in one, breaks a rule (TFESI); otherwise the disc is reported for information."""
    bone_contact: bool = False
    """The tip is meant to rest on bone (practice: a needle short of bone loses points)."""
    facet_joint: bool = False
    """A facet joint is treated by two plans of this procedure, one per medial branch (``plan_joint``)."""
    joint_space: bool = False
    """The practice score says whether the tip lies in the joint space."""
    expert_shots: int
    """Fluoroscopy shots an expert takes [eng; an expert MBB takes about 5 (lit)]: the practice score gives full
    radiation points up to twice this."""

    # ---- levels ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def levels_in(self, spine: Spine) -> list[str]:
        """The levels of this scan that :func:`~needleplan.plan_all` plans."""

    @abstractmethod
    def check_level(self, spine: Spine, level: str | None) -> str:
        """The level to plan (validated), or a :class:`NeedleplanError` that says what is allowed."""

    def level_words(self, level: str, approach: str) -> str:
        """Where the plan goes, in words ("L4 foramen")."""
        return level

    # ---- planning -------------------------------------------------------------------------------------------------
    @abstractmethod
    def setup(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Setup:
        """Target, region, first-choice pose, search window and path rules of one plan."""

    def plan(self, scene: Scene, level: str, side: str, approach: str | None, opts: PlanOptions) -> Plan:
        """Set up, search and assemble one plan."""
        return complete(scene, self, level, side, self.setup(scene, level, side, approach, opts), opts)

    @abstractmethod
    def views(self, setup: Setup, level: str, side: str, target: np.ndarray, oblique: float, tilt: float,
              endplate_center: np.ndarray) -> list[View]:
        """The C-arm views to take, in order, for the coaxial trajectory view (oblique, tilt)."""

    def entry_level(self, level: str, setup: Setup) -> str:
        """The vertebra whose spinous process the entry point is measured from."""
        return setup.endplate_of

    # ---- needle and rules -----------------------------------------------------------------------------------------
    def stock(self, opts: PlanOptions) -> NeedleStock:
        """The needles stocked for this procedure."""
        return NeedleStock("spinal needle", opts.needle_gauge, opts.spinal_needle_lengths_mm,
                           opts.standard_needle_max_mm)

    def lesion(self, setup: Setup, tip: np.ndarray, direction: np.ndarray, opts: PlanOptions) -> Lesion | None:
        """The RF lesion of a needle at ``tip`` (None: the procedure makes none)."""
        return None

    def rule_items(self, setup: Setup, tip: np.ndarray, direction: np.ndarray, opts: PlanOptions,
                   angle_rule: bool = True) -> list[SafetyItem]:
        """This procedure's own rules besides the clearances and the needle's length (none by default)."""
        return []

    def tip_items(self, scene: Scene, level: str, side: str, tip: np.ndarray) -> list[SafetyItem]:
        """Rules on where the tip ends (none by default)."""
        return []

    def warnings(self, scene: Scene, level: str, side: str, target: np.ndarray) -> list[str]:
        """Warnings that do not make a plan unsafe (none by default)."""
        return []

    def contact_mm(self, scene: Scene, opts: PlanOptions) -> float:
        """Bone this close to the tip is the intended contact (practice counts it as the planner does)."""
        return contact_mm(scene, opts)


def window_error(what: str, words: str, level: str | None) -> NeedleplanError:
    """The error for a level a procedure is not planned at."""
    return NeedleplanError(f"{what} is planned at {words}; got level {level!r}")


def require_in_scan(spine: Spine, level: str) -> str:
    """``level`` when the scan holds it, else a :class:`NeedleplanError` that lists what it holds."""
    if level not in spine:
        raise NeedleplanError(f"level {level} is not in this scan (found: {', '.join(spine.levels) or 'none'})")
    return level
