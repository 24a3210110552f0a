"""The `needleplan` command: output on good input, one-line errors and exit codes on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

import needleplan as npl
from needleplan.cli import main
from needleplan.io import write_ct_series
from needleplan.volume import affine_from_geometry

from cli_errors import one_error_line
from shared_data import SHARED_DATA

DATA = SHARED_DATA


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


@pytest.mark.realdata
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


# ---- render ----------------------------------------------------------------------------------------------------
NEEDLE = {"name": "left", "tip_mm": [30.0, 28.0, 24.0], "hub_mm": [50.0, -10.0, 30.0], "gauge": 22}


def test_render_writes_the_image_and_its_geometry(small_ct, tmp_path, capsys):
    (tmp_path / "plan.json").write_text(json.dumps({"needle": NEEDLE, "other": "plan fields"}))
    out = tmp_path / "shots" / "l4.png"
    out.parent.mkdir()  # an image's folder must exist: render creates no folders
    argv = ["render", str(small_ct), "--oblique", "25", "--tilt", "10", "--size", "32", "--bits", "16",
            "--needle-from", str(tmp_path / "plan.json"), "--isocenter", "30", "28", "24", "-o", str(out)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "25 degrees left oblique, 10 degrees caudal" in lines[0]
    with Image.open(out) as image:
        assert image.size == (32, 32) and np.array(image).dtype == np.uint16
    geometry = json.loads((tmp_path / "shots" / "l4.png.json").read_text())
    assert geometry["carm"]["oblique"] == 25 and geometry["carm"]["isocenter"] == [30, 28, 24]
    assert geometry["keypoints"]["left.tip"]["visible"] is True
    assert geometry["keypoints"]["left.tip"]["col"] == pytest.approx(15.5)
    assert sorted(p.name for p in out.parent.iterdir()) == ["l4.png", "l4.png.json"]


@pytest.mark.parametrize("form", ["needles", "list"])
def test_render_reads_needle_lists(small_ct, tmp_path, capsys, form):
    second = {"tip_mm": [20.0, 28.0, 24.0], "hub_mm": [0.0, -10.0, 30.0]}  # no name: "needle"
    third = dict(second, tip_mm=[40.0, 28.0, 24.0])  # "needle" again
    needles = [NEEDLE, second, third]
    (tmp_path / "n.json").write_text(json.dumps({"needles": needles} if form == "needles" else needles))
    out = tmp_path / "shot.npy"
    assert main(["render", str(small_ct), "--size", "16", "--method", "siddon", "--needle-from",
                 str(tmp_path / "n.json"), "-o", str(out)]) == 0
    assert "calling the second one 'needle-2'" in capsys.readouterr().err
    assert np.load(out).dtype == np.float32  # .npy: the line integrals
    keypoints = json.loads((tmp_path / "shot.npy.json").read_text())["keypoints"]
    assert set(keypoints) == {f"{n}.{end}" for n in ("left", "needle", "needle-2") for end in ("tip", "hub")}


def test_render_writes_dicom_and_float_tiff(small_ct, tmp_path, capsys):
    assert main(["render", str(small_ct), "--size", "16", "--oblique", "-90", "-o", str(tmp_path / "a.dcm")]) == 0
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert ds.Modality == "XA" and float(ds.PositionerPrimaryAngle) == -90
    assert main(["render", str(small_ct), "--size", "16", "--quantity", "line_integral", "--invert",
                 "--window", "0", "3", "--gamma", "1.5", "-o", str(tmp_path / "b.tiff")]) == 0
    with Image.open(tmp_path / "b.tiff") as image:
        assert image.mode == "F"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--oblique", "200"], "--oblique must be within -180..180"),
        (["--tilt", "-95"], "--tilt must be within -90..90"),
        (["--oblique", "nan"], "--oblique must be a finite number"),
        (["--size", "8"], "--size must be within 16-4096"),
        (["--size", "5000"], "--size must be within 16-4096"),
        (["--sod", "1200"], "--sod (1200 mm) must be smaller than --sid (1000 mm)"),
        (["--sid", "-5"], "--sid must be positive"),
        (["--collimator-mm", "0"], "--collimator-mm must be positive"),
        (["--energy-kev", "30"], "--energy-kev must be within 40-100"),
        (["--window", "2", "1"], "--window needs LOW < HIGH"),
        (["--gamma", "0"], "--gamma must be positive"),
        (["--quantity", "intensity"], "holds the display image only"),
    ],
)
def test_render_refuses_bad_options(small_ct, tmp_path, capsys, args, message):
    out = tmp_path / "shot.png"
    assert main(["render", str(small_ct), *args, "-o", str(out)]) == 1
    assert message in one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ('{"plan": 1}', 'must hold {"needle": {...}}, {"needles": [...]} or a list'),
        ('{"needles": []}', "holds no needles"),
        ('[{"tip_mm": [0, 0, 0]}]', "needle 1: a needle needs hub_mm"),
        ('{"needle": {"tip_mm": [0, 0, 0], "hub_mm": [1, 1, 1], "gauge": 99}}', "needle 1: bad needle"),
        ('[{"tip_mm": [0, 0, 0], "hub_mm": [1, 1, 1]}, 5]', "needle 2: a needle must be a JSON object"),
        (None, "does not exist"),
    ],
)
def test_render_names_a_bad_needle_file(small_ct, tmp_path, capsys, content, message):
    needles = tmp_path / "needles.json"
    if content is not None:
        needles.write_text(content)
    assert main(["render", str(small_ct), "--needle-from", str(needles), "-o", str(tmp_path / "o.png")]) == 1
    line = one_error_line(capsys)
    assert str(needles) in line and message in line
    assert not (tmp_path / "o.png").exists()


def test_render_refuses_mr_unknown_formats_and_writing_into_the_input(small_ct, tmp_path, capsys):
    mr = tmp_path / "mr.nii.gz"
    npl.save_volume(npl.Volume(np.linspace(100.5, 900.5, 8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10),
                               affine_from_geometry([1, 1, 1], [0, 0, 0]), modality="MR"), mr)
    assert main(["render", str(mr), "-o", str(tmp_path / "mr.png")]) == 1
    assert "needs a CT volume" in one_error_line(capsys)
    assert main(["render", str(small_ct), "-o", str(tmp_path / "shot.jpg")]) == 1
    assert "cannot tell the image format" in one_error_line(capsys)
    assert main(["render", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")]) == 1
    assert str(tmp_path / "missing") in one_error_line(capsys)
    small_series(tmp_path / "dicom")
    before = sorted(p.name for p in (tmp_path / "dicom").iterdir())
    assert main(["render", str(tmp_path / "dicom"), "-o", str(tmp_path / "dicom" / "fluoro.dcm")]) == 1
    assert "inside the input" in one_error_line(capsys)
    assert sorted(p.name for p in (tmp_path / "dicom").iterdir()) == before
    assert not (tmp_path / "mr.png").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args", [[], ["--method", "exact"], ["--bits", "12"], ["--size", "big"]])
def test_render_usage_errors_exit_2(small_ct, tmp_path, args):
    out = [] if not args else ["-o", str(tmp_path / "shot.png")]
    with pytest.raises(SystemExit) as exit_info:
        main(["render", str(small_ct), *args, *out])
    assert exit_info.value.code == 2
