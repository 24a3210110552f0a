"""`needleplan plan`: segment, plan, write plan.json, the annotated views, the 3D picture and report.html."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

import needleplan as npl
import needleplan.phantoms
from needleplan.cli import main
from needleplan.needle import read_needles


@pytest.fixture(scope="module")
def small_phantom():
    return npl.phantom(0, spacing_mm=2.0)


@pytest.fixture(scope="module")
def ct_file(small_phantom, tmp_path_factory):
    return npl.save_volume(small_phantom.ct, tmp_path_factory.mktemp("ct") / "ct.nii.gz")


def run(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_plan_on_the_phantom(small_phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(needleplan.phantoms, "phantom", lambda seed=0: npl.phantom(seed, spacing_mm=2.0))
    out = tmp_path / "plan"
    code, stdout, stderr = run(["plan", "phantom:0", "--level", "l4", "--side", "left", "-o", out, "--size", 128],
                               capsys)
    assert code == 0, stderr
    assert "phantom seed 0: levels L1, L2, L3, L4, L5, S1" in stdout and "tfesi-L4-left" in stdout
    document = json.loads((out / "plan.json").read_text())
    assert document["schema"] == "needleplan.plan/1" and document["level"] == "L4" and document["side"] == "left"
    assert document["feasible"], document["reason"]
    needles = read_needles(out / "plan.json")
    assert len(needles) == 1
    np.testing.assert_allclose(needles[0].tip_mm, document["target_mm"], atol=1e-3)
    np.testing.assert_allclose(needles[0].direction, document["direction"], atol=1e-3)
    images = sorted(p.name for p in (out / "images").iterdir())
    assert len(images) == len(document["views"]) + 1 and "tfesi-L4-left-3d.png" in images
    with Image.open(out / "images" / "tfesi-L4-left-03-trajectory.png") as png:
        assert png.size == (128, 128)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(images)
    assert not any(p.name.startswith(".part-") for p in out.rglob("*"))


def test_an_si_plan_needs_no_level(ct_file, tmp_path, capsys):
    out = tmp_path / "si"
    code, stdout, stderr = run(["plan", ct_file, "--procedure", "si", "--side", "right", "-o", out, "--size", 96],
                               capsys)
    assert code == 0, stderr
    document = json.loads((out / "plan.json").read_text())
    assert (document["procedure"], document["level"], document["side"]) == ("si", "S1", "right")
    assert document["approach"] == "intra-articular" and "si-S1-right" in stdout


def test_joint_writes_both_plans_and_their_needles(ct_file, tmp_path, capsys):
    out = tmp_path / "joint"
    code, stdout, stderr = run(["plan", ct_file, "--joint", "L4-L5", "--side", "left", "--procedure", "mbb", "-o",
                                out, "--size", 96], capsys)
    assert code == 0, stderr
    document = json.loads((out / "plan.json").read_text())
    assert [(p["procedure"], p["level"], p["feasible"]) for p in document["plans"]] == [("mbb", "L3", True),
                                                                                         ("mbb", "L4", True)]
    assert document["skipped"] == {}
    assert len(read_needles(out / "plan.json")) == 2 == len(document["needles"])
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="summary"' in page and "mbb-L3-left" in page and "mbb-L4-left" in page


def test_rfa_without_a_parallel_path_is_not_feasible_and_says_how_close_it_came(ct_file, tmp_path, capsys):
    # the phantom's box SAP puts its medial branch 13-22 degrees from the vertical, steeper than the 25-50 degree
    # caudal window can parallel: the CLI line must say so rather than call an oblique electrode safe
    code, stdout, stderr = run(["plan", ct_file, "--joint", "L4-L5", "--side", "left", "--procedure", "rfa", "-o",
                                tmp_path / "rfa", "--size", 96], capsys)
    assert code == 0, stderr
    document = json.loads((tmp_path / "rfa" / "plan.json").read_text())
    for plan in document["plans"]:
        assert plan["procedure"] == "rfa" and not plan["feasible"]
        best = re.search(r"the most parallel straight path that passes every other rule is (\d+) degrees",
                         plan["reason"])
        assert best and int(best.group(1)) > 20, plan["reason"]
        assert f"{plan['procedure']}-{plan['level']}-left: not feasible: {plan['reason']}" in stdout
    assert "safe" not in stdout.replace("not feasible", "")


@pytest.mark.parametrize("argv, message", [
    (["--level", "L9", "--side", "left"], "unknown level 'L9'"),
    (["--level", "L4", "--side", "up"], "--side must be 'left' or 'right', got 'up'"),
    (["--level", "L4"], "--side is needed"),
    (["--level", "L4", "--side", "left", "--procedure", "acupuncture"], "unknown procedure 'acupuncture'"),
    (["--all", "--side", "left"], "leave out --side"),
    (["--joint", "L4-L5", "--side", "left", "--procedure", "tfesi"], "--joint is for mbb or rfa"),
    (["--level", "L4", "--side", "left", "--size", "20"], "--size must be within 64-4096"),
    (["--side", "left"], "say what to plan: --level"),
])
def test_bad_requests_fail_before_any_work(ct_file, tmp_path, capsys, argv, message):
    code, stdout, stderr = run(["plan", ct_file, "-o", tmp_path / "out", *argv], capsys)
    assert code == 1
    assert stderr.startswith("needleplan: error: ") and stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source, message", [
    ("missing.nii.gz", "missing.nii.gz"),
    ("phantom:x", "the phantom's seed must be a whole number"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, source, message):
    path = str(tmp_path / source) if source.endswith(".gz") else source
    code, _, stderr = run(["plan", path, "--level", "L4", "--side", "left", "-o", tmp_path / "out"], capsys)
    assert code == 1 and stderr.startswith("needleplan: error: ") and stderr.count("\n") == 1
    assert message in stderr


def test_a_level_the_scan_does_not_hold_is_named(ct_file, tmp_path, capsys):
    code, _, stderr = run(["plan", ct_file, "--level", "L6", "--side", "left", "-o", tmp_path / "out"], capsys)
    assert code == 1 and stderr.count("\n") == 1
    assert "level L6 is not in this scan (found: L1, L2, L3, L4, L5, S1)" in stderr


def test_output_inside_the_input_folder_is_refused(small_phantom, tmp_path, capsys):
    folder = tmp_path / "case"
    npl.save_volume(small_phantom.ct, folder / "ct.nii.gz")
    code, _, stderr = run(["plan", folder, "--level", "L4", "--side", "left", "-o", folder / "plan"], capsys)
    assert code == 1 and "inside the input" in stderr
    assert sorted(p.name for p in folder.iterdir()) == ["ct.nii.gz"]


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "phantom", "-o", "x", "--level", "L4", "--all"])  # --level and --all exclude each other
    assert exit_info.value.code == 2
    capsys.readouterr()


@pytest.mark.slow
def test_written_outputs_do_not_name_the_input(small_phantom, tmp_path, capsys):
    # a DICOM folder or file is often named after the patient: nothing written may carry that name
    folder = tmp_path / "DOE_JANE_19700101"
    folder.mkdir()
    ct = npl.save_volume(small_phantom.ct, folder / "DOE_JANE_19700101.nii.gz")
    out = tmp_path / "out"
    code, _, stderr = run(["plan", ct, "--level", "L4", "--side", "left", "-o", out, "--size", 64], capsys)
    assert code == 0, stderr
    written = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "report.html" for path in written)
    for path in written:
        assert b"DOE_JANE" not in path.read_bytes(), path
    assert "content " in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_plan_views_are_written_as_anonymous_dicom_secondary_captures(ct_file, tmp_path, capsys):
    import pydicom
    from PIL import Image

    out = tmp_path / "sc"
    code, _, stderr = run(["plan", ct_file, "--level", "L4", "--side", "left", "-o", out, "--size", 64], capsys)
    assert code == 0, stderr
    pngs = sorted((out / "images").glob("tfesi-L4-left-*.png"))
    pngs = [p for p in pngs if not p.name.endswith("-3d.png")]
    files = sorted((out / "dicom").glob("tfesi-L4-left-*.dcm"))
    assert len(pngs) == len(files) >= 4 and {p.name for p in (out / "dicom").glob("*.dcm")} - {f.name for f in files} \
        == {"report.dcm"}
    series = set()
    for png, dcm in zip(pngs, files, strict=True):
        assert png.stem == dcm.stem
        ds = pydicom.dcmread(dcm)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == "Anonymous" and ds.BurnedInAnnotation == "YES"
        np.testing.assert_array_equal(ds.pixel_array, np.asarray(Image.open(png).convert("RGB")))
        series.add(ds.SeriesInstanceUID)
    assert len(series) == 1


@pytest.mark.slow
def test_the_report_is_written_as_a_pdf_and_a_dicom_encapsulated_pdf(ct_file, tmp_path, capsys):
    import re

    import pydicom

    out = tmp_path / "pdf"
    code, _, stderr = run(["plan", ct_file, "--joint", "L4-L5", "--side", "left", "-o", out, "--size", 64], capsys)
    assert code == 0, stderr
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 2  # one A4 page per plan (L3 and L4 medial branches)
    document = pydicom.dcmread(out / "dicom" / "report.dcm")
    assert document.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF Storage
    assert document.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert document.EncapsulatedDocument[:document.EncapsulatedDocumentLength] == pdf
    assert document.PatientIdentityRemoved == "YES" and document.PatientName == "Anonymous"
    views = [pydicom.dcmread(path) for path in sorted((out / "dicom").glob("mbb-*.dcm"))]
    assert views and {v.StudyInstanceUID for v in views} == {document.StudyInstanceUID}
    assert document.SeriesInstanceUID not in {v.SeriesInstanceUID for v in views}



def test_practice_refuses_an_unknown_procedure_before_loading_anything(tmp_path, capsys):
    code, _, stderr = run(["practice", str(tmp_path / "missing.nii.gz"), "--procedure", "cervical"], capsys)
    assert code == 1 and "unknown procedure 'cervical'; choose one of tfesi, mbb, si, rfa" in stderr, stderr
