"""``plan``, ``plan_joint`` and ``plan_all``: complete needle plans for procedures, levels and sides (CLINICAL.md 2-6).

Each procedure is one module of :mod:`.procedures`; the shared steps (search, needle, views, safety) are in
:mod:`.assemble`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..anatomy import LEVEL_ORDER, SIDES, Spine, level_below
from ..errors import LevelsUnconfirmedError, NeedleplanError
from .model import Plan
from .options import PlanOptions, make_options
from .procedures import FACET_JOINT_PROCEDURES, PROCEDURES, get_procedure
from .scene import scene_for
from .setups import vertebra_below


def plan(spine: Spine, procedure: str, level: str | None = None, side: str | None = None, *,
         approach: str | None = None, options: PlanOptions | None = None, **overrides: Any) -> Plan:
    """Plan one needle for a procedure, level and side.

    Parameters
    ----------
    spine : Spine
        A segmented CT (:func:`needleplan.segment`) or the phantom's :meth:`~needleplan.PhantomCase.spine`.
    procedure : str
        "tfesi" (transforaminal epidural), "mbb" (medial branch block), "si" (sacroiliac joint) or "rfa"
        (radiofrequency ablation of the medial branch).
    level : str
        TFESI: the vertebra above the foramen, L1-L5, or "S1". MBB and RFA: the nerve, L1-L4 medial branch or
        "L5" (dorsal ramus); the target lies on the vertebra below. SI: ignored (or "S1").
    side : str
        "left" or "right".
    approach : str, optional
        TFESI: "supraneural" or "infraneural". By default infraneural at L1-L3, supraneural at L4-L5, and the
        other approach when the default one has no safe straight path (the plan's notes say so).
    options : PlanOptions, optional
        Planner parameters; keyword arguments override single fields (``below_pedicle_mm=3``).

    Returns
    -------
    Plan
        Feasible or not (``plan.reason`` says why).

    Raises
    ------
    LevelsUnconfirmedError
        The spine's level names are less sure than ``min_numbering_confidence`` and nobody confirmed them.
    NeedleplanError
        Unknown procedure, side or option; a level the procedure does not support or the scan does not hold; a
        landmark the plan needs is missing.
    """
    opts = make_options(options, **overrides)
    kind = get_procedure(procedure)
    if side not in SIDES:
        raise NeedleplanError(f"side must be 'left' or 'right', got {side!r}")
    require_confirmed_levels(spine, opts.min_numbering_confidence)
    result = kind.plan(scene_for(spine), kind.check_level(spine, level), side, approach, opts)
    result.numbering = spine.numbering.to_dict()
    return result


def plan_joint(spine: Spine, joint: str, side: str, procedure: str = "mbb", **overrides: Any) -> list[Plan]:
    """The two medial-branch plans (MBB or RFA) for a facet joint, e.g. joint "L4-L5" -> nerves L3 and L4.

    The facet joint Ln/Ln+1 is supplied by the medial branches of L(n-1) and Ln (the L5/S1 joint by the L4 medial
    branch and the L5 dorsal ramus).
    """
    if procedure not in FACET_JOINT_PROCEDURES:
        raise NeedleplanError(f"a facet joint is treated with {' or '.join(map(repr, FACET_JOINT_PROCEDURES))}, "
                              f"not {procedure!r}")
    names = str(joint).upper().replace("/", "-").split("-")
    following = level_below(names[0]) if names[0] in LEVEL_ORDER else None
    while following in ("L6", "T13") and len(names) == 2 and names[1] != following:
        following = level_below(following)
    if len(names) != 2 or following != names[1]:
        raise NeedleplanError(f"a facet joint is named by two adjacent levels such as 'L4-L5', got {joint!r}")
    upper = LEVEL_ORDER[LEVEL_ORDER.index(names[0]) - 1]
    return [plan(spine, procedure, nerve, side, **overrides) for nerve in (upper, names[0])]


@dataclass
class CasePlans:
    """Every plan of a case: ``plans`` (feasible or not) and ``skipped`` (name -> why no plan could be made)."""

    plans: list[Plan]
    skipped: dict[str, str]

    @property
    def feasible(self) -> list[Plan]:
        """The plans with a safe straight path."""
        return [p for p in self.plans if p.feasible]


def plan_all(spine: Spine, procedures: tuple[str, ...] = PROCEDURES, **overrides: Any) -> CasePlans:
    """Plan every procedure, level and side the scan holds.

    TFESI at every lumbar foramen and S1, MBB and RFA for every lumbar medial branch and the L5 dorsal ramus, and
    both SI joints. Levels the scan lacks are not tried; plans that cannot be made (a landmark missing) are listed
    in ``skipped`` with the reason.
    """
    kinds = [get_procedure(procedure) for procedure in procedures]
    require_confirmed_levels(spine, make_options(**overrides).min_numbering_confidence)
    scene_for(spine)
    jobs = [(kind.key, level, side) for kind in kinds for level in kind.levels_in(spine) for side in SIDES]
    plans, skipped = [], {}
    for procedure, level, side in jobs:
        try:
            plans.append(plan(spine, procedure, level, side, **overrides))
        except NeedleplanError as error:
            skipped[f"{procedure}-{level}-{side}"] = str(error)
    return CasePlans(plans, skipped)


# ---- levels -------------------------------------------------------------------------------------------------------
def require_confirmed_levels(spine: Spine, min_confidence: float) -> None:
    """Refuse a spine whose level names are unsure and unconfirmed, saying how to confirm or correct them."""
    numbering = spine.numbering
    if numbering.confirmed(min_confidence):
        return
    why = "; ".join(numbering.notes[:2]) or "no reason recorded"
    raise LevelsUnconfirmedError(
        f"the vertebra levels of this scan are not confirmed, so nothing is planned: they were numbered from "
        f"{numbering.anchor} with confidence {numbering.confidence:.2f} (planning needs {min_confidence:.2f}): "
        f"{why}. Name one level you are sure of at a point inside it, read from your viewer (command line: "
        f"--level-at X Y Z L3; Python: npl.segment(volume, anchors={{'L3': (x, y, z)}}) or spine.renumber(...)), "
        f"or, after checking the count yourself, --levels-confirmed (spine.confirm_levels())")


__all__ = ["PROCEDURES", "CasePlans", "plan", "plan_all", "plan_joint", "require_confirmed_levels", "vertebra_below"]
