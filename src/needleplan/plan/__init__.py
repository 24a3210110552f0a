"""Needle trajectory planning: targets, searched straight paths, C-arm views, safety and RF lesions.

``plan(spine, procedure, level, side)`` returns a :class:`Plan`; ``plan_all(spine)`` plans a whole case. The
planner reads only :mod:`needleplan.anatomy` objects (a :class:`~needleplan.anatomy.Spine`).
"""

from .model import Lesion, NeedleChoice, Plan, Safety, SafetyItem, TargetRegion, View
from .options import PlanOptions
from .planner import PROCEDURES, CasePlans, plan, plan_all, plan_joint

__all__ = ["PROCEDURES", "CasePlans", "Lesion", "NeedleChoice", "Plan", "PlanOptions", "Safety", "SafetyItem",
           "TargetRegion", "View", "plan", "plan_all", "plan_joint"]
