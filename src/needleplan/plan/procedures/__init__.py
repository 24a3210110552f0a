"""The procedures needleplan plans, one module each, registered here in one place.

A procedure (:class:`~.base.Procedure`) holds its levels, target set-up, search window, views, needle stock, own
rules and words; the planner, safety report, report page, practice simulator and command line ask it. To add one,
write a module with a :class:`~.base.Procedure` subclass and add an instance to :data:`REGISTRY`.
"""

from __future__ import annotations

from ...errors import NeedleplanError
from .base import NeedleStock, Procedure
from .medial_branch import MedialBranchBlock, RadiofrequencyAblation
from .si import SacroiliacJoint
from .tfesi import TransforaminalEpidural

#: Every procedure by its key, in the order ``plan_all`` plans them.
REGISTRY: dict[str, Procedure] = {p.key: p for p in (TransforaminalEpidural(), MedialBranchBlock(),
                                                      SacroiliacJoint(), RadiofrequencyAblation())}
#: The procedures' keys.
PROCEDURES: tuple[str, ...] = tuple(REGISTRY)
#: The procedures that treat a facet joint through its two medial branches.
FACET_JOINT_PROCEDURES: tuple[str, ...] = tuple(key for key, p in REGISTRY.items() if p.facet_joint)


def get_procedure(key: str | Procedure) -> Procedure:
    """The registered procedure of a key ("tfesi", "mbb", "si", "rfa"); a Procedure is returned as it is.

    Raises
    ------
    NeedleplanError
        The key names no procedure.
    """
    if isinstance(key, Procedure):
        return key
    found = REGISTRY.get(key) if isinstance(key, str) else None
    if found is None:
        raise NeedleplanError(f"unknown procedure {key!r}; choose one of {', '.join(PROCEDURES)}")
    return found


__all__ = ["FACET_JOINT_PROCEDURES", "PROCEDURES", "REGISTRY", "NeedleStock", "Procedure", "get_procedure"]
