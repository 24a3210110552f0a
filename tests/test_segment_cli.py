"""`needleplan segment`: label map, landmarks JSON, picture and summary; one-line errors on bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import needleplan as npl
from needleplan.anatomy import VERSE_IDS, Numbering, Spine, Vertebra, read_landmarks, to_totalseg
from needleplan.cli import main

from cli_errors import one_error_line


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory) -> Path:
    """The phantom CT written by `needleplan phantom` as NIfTI (3 mm, to keep the test quick)."""
    folder = tmp_path_factory.mktemp("phantom") / "case"
    assert main(["phantom", str(folder), "--format", "nifti", "--spacing", "3"]) == 0
    return folder / "ct.nii.gz"


# ---- end to end, with the real segmentation ---------------------------------------------------------------------
def test_segment_the_phantom(phantom_ct, tmp_path, capsys):
    capsys.readouterr()
    out, landmarks, picture = tmp_path / "labels.nii.gz", tmp_path / "landmarks.json", tmp_path / "spine.png"
    assert main(["segment", str(phantom_ct), "-o", str(out), "--landmarks", str(landmarks),
                 "--picture", str(picture)]) == 0
    printed = capsys.readouterr().out
    vertebrae, _, numbering = read_landmarks(landmarks)
    assert vertebrae, "the landmarks file lists no vertebra"
    labels = npl.load(out, modality="LABEL")
    assert labels.shape == npl.load(phantom_ct).shape
    found_ids = {int(v) for v in np.unique(labels.voxels) if v}
    assert {v.label for v in vertebrae.values()} <= found_ids
    for name, vertebra in vertebrae.items():
        assert VERSE_IDS[name] == vertebra.label
        assert any(line.split()[:1] == [name] and "confidence" in line for line in printed.splitlines())
    assert f"numbered from {numbering.anchor}" in printed
    with Image.open(picture) as image:
        assert image.size == (1000, 800)


# ---- the command's own work, with a stand-in segmentation -------------------------------------------------------
@pytest.fixture
def truth_segmentation(monkeypatch):
    """Make npl.segment return the phantom's ground truth as a Spine (what a perfect segmentation would)."""
    case = npl.phantom(0, spacing_mm=3.0)
    names = [name for name in case.landmarks if name in VERSE_IDS]
    spine = Spine(labels=case.labels,
                  vertebrae={n: Vertebra(n, VERSE_IDS[n], 0.75, case.landmarks[n], [f"{n} checked"]) for n in names},
                  pelvis=case.landmarks["pelvis"], numbering=Numbering("sacrum", 0.5, ["no ribs in view"]),
                  engine="stand-in")
    engines = []

    def stand_in(volume, *, engine="classical", **options):
        engines.append(engine)
        return spine

    monkeypatch.setattr(sys.modules["needleplan.segment"], "segment", stand_in)
    return spine, engines


def test_segment_writes_totalseg_ids_landmarks_and_picture(phantom_ct, truth_segmentation, tmp_path, capsys):
    spine, engines = truth_segmentation
    out = tmp_path / "result" / "labels.nii.gz"
    out.parent.mkdir()  # a file output's folder must exist: segment creates no folders
    argv = ["segment", str(phantom_ct), "-o", str(out), "--convention", "totalseg", "--engine", "totalsegmentator",
            "--landmarks", str(tmp_path / "result" / "landmarks.json"), "--picture", str(tmp_path / "result" / "s.png")]
    assert main(argv) == 0
    assert engines == ["totalsegmentator"]
    labels = npl.load(out, modality="LABEL")
    np.testing.assert_array_equal(labels.voxels, to_totalseg(spine.labels.voxels))
    np.testing.assert_allclose(labels.index_to_world, spine.labels.index_to_world, atol=1e-4)
    document = json.loads((tmp_path / "result" / "landmarks.json").read_text())
    assert document == json.loads(json.dumps(spine.to_dict()))
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.nii.gz", "landmarks.json", "s.png"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{phantom_ct}: {len(spine.levels)} levels, {spine.levels[0]}-{spine.levels[-1]}")
    assert "numbered from sacrum (confidence 0.50, NOT CONFIRMED)" in lines[1] and "note: no ribs in view" in lines[2]
    for name in spine.levels:
        assert f"  {name:<4} confidence 0.75; {name} checked" in lines
    assert any(line.endswith(str(out)) and "totalseg ids" in line for line in lines)


def test_segment_writes_verse_ids_by_default(phantom_ct, truth_segmentation, tmp_path, capsys):
    spine, engines = truth_segmentation
    out = tmp_path / "labels.mha"
    assert main(["segment", str(phantom_ct), "-o", str(out)]) == 0
    assert engines == ["classical"]
    np.testing.assert_array_equal(npl.load(out, modality="LABEL").voxels, spine.labels.voxels)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.mha"]


def test_a_spine_without_vertebrae_writes_nothing(phantom_ct, monkeypatch, tmp_path, capsys):
    empty = Spine(labels=npl.Volume(np.zeros((4, 4, 4), dtype=np.uint8), np.eye(4), "LABEL"), vertebrae={})
    monkeypatch.setattr(sys.modules["needleplan.segment"], "segment", lambda volume, **options: empty)
    assert main(["segment", str(phantom_ct), "-o", str(tmp_path / "labels.nii.gz")]) == 1
    assert "found no vertebrae" in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


# ---- errors ---------------------------------------------------------------------------------------------------------
def test_missing_input_gives_one_line_and_exit_1(tmp_path, capsys):
    missing = tmp_path / "nothing_here"
    assert main(["segment", str(missing), "-o", str(tmp_path / "labels.nii.gz")]) == 1
    assert str(missing) in one_error_line(capsys)
    assert not (tmp_path / "labels.nii.gz").exists()


@pytest.mark.parametrize(
    "labels, extra, message",
    [
        ("labels.png", [], "cannot tell the format of the label map"),
        ("labels.nii.gz", ["--landmarks", "landmarks.txt"], "--landmarks"),
        ("labels.nii.gz", ["--picture", "spine.jpg"], "must be a .png file"),
    ],
)
def test_bad_output_names_are_refused_before_any_work(phantom_ct, tmp_path, capsys, labels, extra, message):
    flag, name = extra or (None, None)
    options = [flag, str(tmp_path / name)] if flag else []
    assert main(["segment", str(phantom_ct), "-o", str(tmp_path / labels), *options]) == 1
    assert message in one_error_line(capsys)
    assert not list(tmp_path.iterdir())


def test_outputs_inside_the_input_folder_are_refused(phantom_ct, capsys):
    folder = phantom_ct.parent
    before = sorted(p.name for p in folder.iterdir())
    assert main(["segment", str(folder), "-o", str(folder / "labels.nii.gz")]) == 1
    assert "inside the input" in one_error_line(capsys)
    assert main(["segment", str(phantom_ct), "-o", str(phantom_ct)]) == 1
    assert "inside the input" in one_error_line(capsys)
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("args", [["--convention", "nifti"], ["--engine", "deep"], []])
def test_usage_errors_exit_2(phantom_ct, tmp_path, args):
    out = ["-o", str(tmp_path / "labels.nii.gz")] if args else []
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(phantom_ct), *args, *out])
    assert exit_info.value.code == 2
