"""The quick-start demo: runs on the phantom, finds what it should, and a rerun resumes instead of redoing."""

from __future__ import annotations

import json

import pytest

from needleplan.demo import run

pytestmark = pytest.mark.slow


def test_demo_round_trip_and_rerun_reuses_the_written_phantom(tmp_path, capsys):
    first = run(tmp_path / "out")
    assert first["ok"], first
    assert first["round_trip"]["voxels_identical"]
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "phantom").rglob("*") if p.is_file()}
    assert len(written) > 100  # one DICOM file per slice plus label maps and ground truth
    second = run(tmp_path / "out")
    printed = capsys.readouterr().out
    assert "reusing the phantom written earlier" in printed
    assert "segmentation of an earlier run read back" in printed  # the rerun does not segment again
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in written} == written, "a rerun must not rewrite the phantom"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["seed"] == 0
    for name in ("sagittal", "axial_L4", "coronal"):
        assert (tmp_path / "out" / f"preview_{name}.png").stat().st_size > 1000
    shots = first["fluoro"]
    assert set(shots) == {"AP", "coaxial", "lateral"}
    assert shots["coaxial"]["needle_is_a_dot"] and not shots["AP"]["needle_is_a_dot"]
    for name in shots:
        assert shots[name]["needle_tip_visible"]
        assert (tmp_path / "out" / f"fluoro_{name}.png").stat().st_size > 1000
        geometry = json.loads((tmp_path / "out" / f"fluoro_{name}.png.json").read_text())
        assert len(geometry["projection_matrix"]) == 3
    planning = first["plan"]
    assert {"L1", "L2", "L3", "L4", "L5"} <= set(planning["levels"])
    assert set(planning["plans"]) == {"tfesi-L4-left", "mbb-L4-left"}
    page = (tmp_path / "out" / planning["report"]).read_text(encoding="utf-8")
    assert "L4 foramen, left" in page and "data:image/png;base64," in page
    for name, facts in planning["plans"].items():
        for view in facts["views"]:
            assert (tmp_path / "out" / "plan" / "images" / view).stat().st_size > 1000
        assert facts["feasible"] == bool(facts["views"]), name
    document = json.loads((tmp_path / "out" / "plan" / "plan.json").read_text())
    assert [p["procedure"] for p in document["plans"]] == ["tfesi", "mbb"]
