"""The `needleplan` command: output on good input, one-line errors and exit codes on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import needleplan as npl
from needleplan.cli import main
from needleplan.io import write_ct_series
from needleplan.volume import affine_from_geometry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def small_series(folder: Path, slices: int = 6, series_number: int = 1) -> None:
    voxels = np.arange(slices * 8 * 9, dtype=np.int16).reshape(slices, 8, 9) - 1000
    write_ct_series(npl.Volume(voxels, affine_from_geometry([0.5, 0.5, 1.25], [0, 0, 0])), folder,
                    series_number=series_number)


def test_info_lists_series_and_marks_the_one_used(tmp_path, capsys):
    small_series(tmp_path / "study" / "a", slices=6, series_number=4)
    small_series(tmp_path / "study" / "b", slices=3, series_number=5)
    (tmp_path / "study" / "notes.txt").write_text("not an image")
    assert main(["info", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "2 image series" in lines[0]
    marked = [line for line in lines if line.startswith("* ")]
    assert len(marked) == 1 and "#4" in marked[0]
    assert "size 9 x 8 x 6 voxels, spacing 0.5 x 0.5 x 1.25 mm, orientation LPS" in out
    assert "values -1000 .. -569 HU" in out
    assert "1 file(s) that are not DICOM were ignored" in out


def test_info_reports_a_broken_series_without_failing(tmp_path, capsys):
    small_series(tmp_path / "study" / "good", slices=5, series_number=1)
    small_series(tmp_path / "study" / "gappy", slices=9, series_number=2)
    (tmp_path / "study" / "gappy" / "slice_0004.dcm").unlink()
    assert main(["info", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "cannot load:" in out and "missing" in out
    assert any(line.startswith("* ") and "#1" in line for line in out.splitlines())
    assert main(["info", "--resample", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "cannot load:" not in out and "size 9 x 8 x 9 voxels" in out


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data folder {DATA} is absent")
def test_info_on_the_shared_compressed_series(capsys):
    assert main(["info", str(DATA / "totalseg_example_ct_dicom" / "dicom")]) == 0
    out = capsys.readouterr().out
    assert "size 512 x 512 x 20 voxels, spacing 0.9766 x 0.9766 x 2 mm, orientation LPS" in out


@pytest.mark.parametrize("make", ["missing", "empty", "text"])
def test_bad_input_gives_one_line_and_exit_1(tmp_path, capsys, make):
    target = tmp_path / "input"
    if make == "empty":
        target.mkdir()
    elif make == "text":
        target.mkdir()
        (target / "readme.txt").write_text("hello")
    assert main(["info", str(target)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("needleplan: error: ")
    assert str(target) in err[0]
    assert "Traceback" not in captured.err


def test_console_script_runs_without_traceback(tmp_path):
    script = shutil.which("needleplan", path=str(Path(sys.executable).parent))
    assert script, "the console script `needleplan` must be installed next to the interpreter"
    done = subprocess.run([script, "info", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("needleplan: error: ") and "Traceback" not in done.stderr
    usage = subprocess.run([script, "info"], capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2


def test_phantom_command_writes_a_loadable_case(tmp_path, capsys):
    out = tmp_path / "case"
    assert main(["phantom", str(out), "--format", "nifti", "--spacing", "3", "--seed", "2"]) == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["seed"] == 2
    ct = npl.load(out / "ct.nii.gz")
    assert ct.modality == "CT"
    np.testing.assert_allclose(ct.spacing_mm, [3, 3, 3])
    np.testing.assert_allclose(ct.index_to_world, truth["grid"]["index_to_world"], atol=1e-4)
    assert main(["phantom", str(tmp_path / "bad"), "--spacing", "-1"]) == 1
    assert "--spacing must be positive" in capsys.readouterr().err


def test_phantom_command_never_overwrites(tmp_path, capsys):
    out = tmp_path / "case"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["phantom", str(out), "--spacing", "4"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder may be left behind"
