"""Procedures are objects registered in one place: the planner, report and command line ask them, so a new
procedure is one module. Shown with a toy procedure that no other file knows."""

from __future__ import annotations

import numpy as np
import pytest

import needleplan as npl
from needleplan.errors import NeedleplanError
from needleplan.plan.model import TargetRegion
from needleplan.plan.procedures import PROCEDURES, REGISTRY, Procedure, get_procedure
from needleplan.plan.report import report_html
from needleplan.plan.search import PathRules
from needleplan.plan.setups import Setup, angular_cost, endplate_normal
from needleplan.plan.views import opening_views, view


class SpinousTip(Procedure):
    """A toy: a needle straight down onto the tip of a spinous process (every phantom level has one)."""

    key = "toy"
    title = "needle onto the spinous process tip"
    default_level = "L3"
    expert_shots = 3

    def levels_in(self, spine):
        return [name for name in ("L1", "L2", "L3", "L4", "L5") if name in spine]

    def check_level(self, spine, level):
        if level not in self.levels_in(spine):
            raise NeedleplanError(f"the toy is planned at L1-L5 of this scan, not {level!r}")
        return level

    def setup(self, scene, level, side, approach, opts):
        marks = scene.spine[level].landmarks
        notes: list[str] = []
        normal = endplate_normal(marks, level, opts, notes)
        posterior = np.asarray(marks["axes"]["posterior"], dtype=np.float64)
        target = np.asarray(marks["spinous_tip"], dtype=np.float64) + 2.0 * posterior
        return Setup("posterior", target, TargetRegion(target, target, 2.0, "over the spinous tip"), level, normal,
                     (0.0, 0.0), (-10.0, 10.0), (-10.0, 10.0), angular_cost((0.0, 0.0)),
                     PathRules(4.0, False, opts.anterior_margin_mm), notes=notes)

    def views(self, setup, level, side, target, oblique, tilt, endplate_center):
        return [*opening_views(level, side, target, setup.normal, setup.endplate_of, endplate_center),
                view("Trajectory", oblique, tilt, target, setup.normal, side, "the needle is a dot on the tip")]


@pytest.fixture(scope="module")
def spine():
    return npl.phantom(0).spine()


def test_every_registered_procedure_is_complete():
    assert PROCEDURES == tuple(REGISTRY) and set(PROCEDURES) == {"tfesi", "mbb", "si", "rfa"}
    for key, procedure in REGISTRY.items():
        assert procedure.key == key and procedure.title and procedure.default_level and procedure.expert_shots > 0
        assert get_procedure(key) is procedure and get_procedure(procedure) is procedure


@pytest.mark.parametrize("key", ["cervical", "", None, ["tfesi"]])
def test_an_unknown_procedure_is_named_with_the_choices(key):
    with pytest.raises(NeedleplanError, match="unknown procedure .* choose one of tfesi, mbb, si, rfa"):
        get_procedure(key)


def test_a_new_procedure_is_one_registered_class(spine, monkeypatch):
    monkeypatch.setitem(REGISTRY, "toy", SpinousTip())
    plan = npl.plan(spine, "toy", "L3", "left")
    tip = np.asarray(spine["L3"]["spinous_tip"])
    assert plan.feasible and plan.safety.safe and plan.name == "toy-L3-left"
    # straight down from behind: the needle ends 2 mm behind the spinous tip, shallow, within the toy's window
    assert np.linalg.norm(plan.needle.tip_mm - tip) == pytest.approx(2.0, abs=1e-6)
    assert abs(plan.oblique_deg) <= 10.0 and abs(plan.tilt_deg) <= 10.0 and plan.depth_mm < 60.0
    assert [v.name for v in plan.views] == ["AP", "Squared endplate", "Trajectory"]
    assert plan.needle_choice.kind == "spinal needle" and plan.lesion is None
    assert plan.to_dict()["procedure"] == "toy"
    assert "needle onto the spinous process tip" in report_html([plan])
    everything = npl.plan_all(spine, ("toy",))
    assert [p.name for p in everything.plans] == [f"toy-{lv}-{s}" for lv in ("L1", "L2", "L3", "L4", "L5")
                                                   for s in ("left", "right")]
