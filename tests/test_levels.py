"""Level names the user confirms or corrects, and the refusal to plan on unsure ones (never green on doubt).

Truth comes from the phantom's recipe: its vertebrae's body centroids and its label map, not from the code that
names levels.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import VERSE_IDS, Numbering
from needleplan.cli import main
from needleplan.errors import LevelsUnconfirmedError, NeedleplanError
from needleplan.practice.case import prepare_case


@pytest.fixture(scope="module")
def phantom():
    return npl.phantom(0, spacing_mm=2.0)


@pytest.fixture(scope="module")
def truth(phantom):
    """The phantom's exact spine (recipe labels and landmarks), named L1-L5 and S1."""
    return phantom.spine()


def body(phantom, level):
    return np.asarray(phantom.landmarks[level]["body_centroid"], dtype=float)


@pytest.fixture(scope="module")
def lumbar_slab(phantom, tmp_path_factory):
    """The phantom's CT cut to L2-L4 (no sacrum, no ribs: nothing to number from) and written as NIfTI."""
    ct = phantom.ct
    z = ct.index_to_world_points(np.argwhere(np.ones(ct.shape, dtype=bool))[:, ::-1].astype(float))[:, 2]
    top = body(phantom, "L2")[2] + 20.0
    bottom = body(phantom, "L4")[2] - 20.0
    inside = ((z <= top) & (z >= bottom)).reshape(ct.shape)
    slab = ct.cropped_to(inside)
    return npl.save_volume(slab, tmp_path_factory.mktemp("slab") / "slab.nii.gz")


@pytest.fixture(scope="module")
def slab_spine(lumbar_slab):
    return npl.segment(npl.load(lumbar_slab))


def unsure(spine, confidence=0.5, anchor="sacrum"):
    return dataclasses.replace(spine, numbering=Numbering(anchor, confidence, ["a test's doubt"]))


# ---- renumbering from the user's anchors ---------------------------------------------------------------------
def test_an_anchor_one_level_off_shifts_every_name(phantom, truth):
    # the user says the vertebra holding the recipe's L3 body centre is L2: everything moves up by one
    moved = truth.renumber({"L2": body(phantom, "L3")})
    assert moved.levels == ["T12", "L1", "L2", "L3", "L4", "S1"]
    assert moved.numbering.anchor == "user" and moved.numbering.confirmed_by == "user"
    assert any("L5->L4" in note for note in moved.numbering.notes)
    # the label map follows: the recipe's L3 voxels now carry L2's VerSe id
    l3_voxels = phantom.labels.voxels == VERSE_IDS["L3"]
    assert np.all(moved.labels.voxels[l3_voxels] == VERSE_IDS["L2"])
    # the last mobile vertebra above the sacrum is L4 by this anchor: a sacralised L5 or a miscount, said in words
    assert any("sacralised" in note for note in moved.numbering.notes)


def test_an_anchor_that_agrees_keeps_the_names_and_says_so(phantom, truth):
    same = truth.renumber({"L4": body(phantom, "L4"), "L1": body(phantom, "L1")})
    assert same.levels == truth.levels
    assert any("agrees" in note for note in same.numbering.notes)


def test_a_disc_anchor_names_the_vertebra_below(phantom, truth):
    disc = 0.5 * (truth["L2"]["inferior_endplate"]["center"] + truth["L3"]["superior_endplate"]["center"])
    assert truth.renumber({"L1-L2": disc}).levels == ["T12", "L1", "L2", "L3", "L4", "S1"]
    assert truth.renumber({"L2-L3": disc}).levels == truth.levels


def test_an_extra_lumbar_vertebra_is_named_l6(phantom, truth):
    six = truth.renumber({"L2": body(phantom, "L1")})
    assert six.levels == ["L2", "L3", "L4", "L5", "L6", "S1"]
    assert any("L6" in note for note in six.numbering.notes)


@pytest.mark.parametrize("anchors, message", [
    ({"L3": (500.0, 0.0, 0.0)}, "not inside a vertebra"),
    ({"L9": (0.0, 0.0, 0.0)}, "names a level"),
    ({"L3": "here"}, "world point"),
    ({"L3": (np.nan, 0.0, 0.0)}, "world point"),
    ({"L4-L6": (0.0, 0.0, 0.0)}, "two adjacent levels"),
    ({"S1": None}, "world point"),
])
def test_bad_anchors_are_refused_in_words(truth, anchors, message):
    with pytest.raises(NeedleplanError, match=message):
        truth.renumber(anchors)


def test_disagreeing_anchors_are_refused(phantom, truth):
    with pytest.raises(NeedleplanError, match="disagree"):
        truth.renumber({"L3": body(phantom, "L3"), "L2": body(phantom, "L4")})


def test_the_sacrum_is_always_s1(phantom, truth):
    with pytest.raises(NeedleplanError, match="sacrum is always S1"):
        truth.renumber({"L5": truth["S1"]["body_centroid"]})


# ---- never green on doubt --------------------------------------------------------------------------------------
def test_plan_refuses_unsure_levels_and_says_how_to_confirm(truth):
    with pytest.raises(LevelsUnconfirmedError, match=r"--level-at X Y Z L3.*--levels-confirmed"):
        npl.plan(unsure(truth), "tfesi", "L4", "left")
    with pytest.raises(LevelsUnconfirmedError):
        npl.plan_all(unsure(truth))
    with pytest.raises(LevelsUnconfirmedError):  # no anchor at all: refused whatever the confidence
        npl.plan(unsure(truth, confidence=0.99, anchor="none"), "si", side="left")


def test_a_confirmed_or_anchored_spine_is_planned_and_the_plan_says_how(phantom, truth):
    confirmed = unsure(truth).confirm_levels()
    plan = npl.plan(confirmed, "tfesi", "L4", "left")
    assert plan.numbering["confirmed_by"] == "user" and plan.to_dict()["numbering"]["anchor"] == "sacrum"
    anchored = unsure(truth).renumber({"L4": body(phantom, "L4")})
    assert npl.plan(anchored, "tfesi", "L4", "left").numbering["anchor"] == "user"
    # the threshold is an option
    assert npl.plan(unsure(truth, 0.5), "tfesi", "L4", "left", min_numbering_confidence=0.4).feasible


def test_a_slab_without_anchors_is_unconfirmed(slab_spine):
    assert not slab_spine.numbering.confirmed()
    assert slab_spine.numbering.anchor == "none"


def test_cli_refuses_then_plans_with_a_level_named_at_a_point(phantom, lumbar_slab, slab_spine, tmp_path, capsys):
    out = tmp_path / "refused"
    code = main(["plan", str(lumbar_slab), "--level", "L3", "--side", "left", "-o", str(out), "--size", "64"])
    captured = capsys.readouterr()
    assert code != 0 and "not confirmed" in captured.err and "Traceback" not in captured.err
    assert not (out / "plan.json").exists()
    x, y, z = body(phantom, "L3")
    out = tmp_path / "anchored"
    code = main(["plan", str(lumbar_slab), "--level", "L3", "--side", "left", "-o", str(out), "--size", "64",
                 "--level-at", str(x), str(y), str(z), "L3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads((out / "plan.json").read_text())
    plans = document["plans"] if "plans" in document else [document]
    assert all(p["numbering"]["confirmed_by"] == "user" for p in plans)
    assert "Levels numbered from user" in (out / "report.html").read_text()
    # the names counted from the anchor match the recipe's: the vertebra around the recipe's L2 centre is L2
    spine = npl.segment(npl.load(lumbar_slab), anchors={"L3": (x, y, z)})
    point = spine.labels.world_to_index_points(body(phantom, "L2")[None])[0]
    i, j, k = np.rint(point).astype(int)
    assert spine.labels.voxels[k, j, i] == VERSE_IDS["L2"]


def test_cli_levels_confirmed_is_explicit(lumbar_slab, tmp_path, capsys):
    code = main(["plan", str(lumbar_slab), "--level", "L4", "--side", "left", "-o", str(tmp_path / "p"),
                 "--size", "64", "--levels-confirmed"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "confirmed by user" in captured.out


def test_practice_refuses_unsure_levels(lumbar_slab):
    with pytest.raises(LevelsUnconfirmedError):
        prepare_case(lumbar_slab, "tfesi", "L3", "left")


def test_a_leg_ct_is_not_a_spine():
    """Two femurs in soft tissue: the marrow canals are long dark tubes in bone, but nothing stands in front of
    them like a vertebral body."""
    z, y, x = np.mgrid[0:120, 0:100, 0:160]
    leg = np.full(z.shape, -1000.0)
    for centre in (45, 115):
        radius = np.hypot(y - 50, x - centre)
        leg[radius < 38] = 40.0
        leg[radius < 14] = 1200.0
        leg[radius < 8] = -80.0
    leg += np.random.default_rng(0).normal(0.0, 15.0, leg.shape)
    volume = npl.Volume(leg.astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0]), "CT")
    with pytest.raises(NeedleplanError, match="does not seem to show a spine"):
        npl.segment(volume)
