"""Reliability under fault injection: killed and interrupted runs, absurd sizes and counts, bad output paths,
non-finite voxels, an isocentre far from the volume, stale temporary files, and no identity in any DICOM written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import needleplan as npl
from needleplan.cli import main
from needleplan.dataset import config_from_dict
from needleplan.errors import CorruptFileError, NeedleplanError

from cli_errors import one_error_line

ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "needleplan.cli"]
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


# ---- a dataset run killed or interrupted -----------------------------------------------------------------------
def _dataset_config(folder: Path, images: int) -> Path:
    """A quick dataset: 64-pixel images of the 3 mm phantom, TFESI views, no needles."""
    path = folder / "dataset.toml"
    path.write_text(f'seed = 1\nimages_per_case = {images}\n[[cases]]\nphantom = 0\nspacing_mm = 3.0\n'
                    '[poses]\nprocedures = ["tfesi"]\n[needles]\nmode = "none"\n[imaging]\nsize = 64\n')
    return path


def _children(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in children.read_text().split()] if children.exists() else []


def _workers(pid: int) -> list[int]:
    """The multiprocessing worker processes of ``pid`` (not its resource tracker)."""
    found = []
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except FileNotFoundError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status is left for a parent to read


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _finished_labels(out: Path) -> int:
    return sum(1 for p in (out / "labels").rglob("*.json") if not p.name.startswith(".part-"))


@pytest.mark.slow
@linux_only
def test_killed_dataset_run_leaves_no_worker_running(tmp_path):
    """SIGKILL of `needleplan dataset` after its first image: its worker processes end within seconds."""
    out = tmp_path / "out"
    process = subprocess.Popen([*COMMAND, "dataset", str(_dataset_config(tmp_path, 400)), "-o", str(out),
                                "--workers", "2", "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: list[int] = []
    try:
        assert _wait(lambda: _finished_labels(out) >= 1 or process.poll() is not None, 120)
        workers = _workers(process.pid)
        assert process.poll() is None and len(workers) == 2, "the run should still be going with two workers"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert _wait(lambda: not any(_alive(w) for w in workers), 5), "a worker survived its parent"
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@linux_only
def test_ctrl_c_of_a_dataset_run_before_the_first_image_prints_one_line(tmp_path):
    """Ctrl+C (SIGINT to the whole process group, as a terminal sends it) while the workers start: one line,
    status 130, no traceback from the parent or a worker, and no worker left."""
    out = tmp_path / "out"
    process = subprocess.Popen([*COMMAND, "dataset", str(_dataset_config(tmp_path, 400)), "-o", str(out),
                                "--workers", "2", "--no-progress"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    workers: list[int] = []
    try:
        assert _wait(lambda: len(_workers(process.pid)) == 2 or process.poll() is not None, 120)
        workers = _workers(process.pid)
        assert _finished_labels(out) == 0, "the interrupt should come before the first image"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("needleplan: interrupted"), stderr
        assert "run the same command again" in lines[0]
        assert _wait(lambda: not any(_alive(w) for w in workers), 5), "a worker survived the interrupt"
        assert not list(out.rglob(".part-*"))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _sigint_caught(pid: int) -> bool:
    """Python has installed its SIGINT handler (SigCgt has bit 2)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    caught = re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.MULTILINE)
    return caught is not None and int(caught.group(1), 16) & (1 << (signal.SIGINT - 1)) != 0


@linux_only
def test_ctrl_c_while_a_command_starts_prints_one_line(small_ct, tmp_path):
    """Ctrl+C while the command imports its libraries (numba, scipy): one line and status 130, no traceback."""
    lightweight = subprocess.run([sys.executable, "-c", "import sys, needleplan.cli; "
                                  "print(sorted({'numba', 'scipy'} & set(sys.modules)))"],
                                 capture_output=True, text=True, check=True)
    assert lightweight.stdout.strip() == "[]", "the command must start without the heavy imports"
    process = subprocess.Popen([*COMMAND, "render", str(small_ct), "-o", str(tmp_path / "shot.png")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert _wait(lambda: _sigint_caught(process.pid) or process.poll() is not None, 30)
        time.sleep(0.15)  # past the interpreter's own start, into needleplan's imports
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130 and stderr == "needleplan: interrupted\n", stderr
    assert not (tmp_path / "shot.png").exists() and not list(tmp_path.glob(".part-*"))


# ---- outputs are checked before any work ---------------------------------------------------------------------
def _no_work(*args, **kwargs):
    raise AssertionError("work started before the output was checked")


@pytest.mark.parametrize("command", ["plan", "dataset", "render", "segment", "phantom"])
def test_an_output_that_is_a_file_or_in_a_missing_folder_is_refused_before_any_work(command, small_ct, tmp_path,
                                                                                     capsys, monkeypatch):
    import needleplan.dataset
    import needleplan.io

    for module, name in ((needleplan.io, "load"), (needleplan.dataset, "read_config"),
                         (sys.modules["needleplan.phantoms"], "phantom")):
        monkeypatch.setattr(module, name, _no_work)
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    missing = tmp_path / "no" / "such" / ("x.nii.gz" if command == "segment" else "x.png")
    cases = {
        "plan": (["plan", str(small_ct), "--level", "L4", "--side", "left"], a_file, tmp_path / "no" / "plan"),
        "dataset": (["dataset", str(tmp_path / "config.toml")], a_file, tmp_path / "no" / "set"),
        "render": (["render", str(small_ct)], tmp_path, missing),
        "segment": (["segment", str(small_ct)], tmp_path, missing),
        "phantom": (["phantom"], a_file, tmp_path / "no" / "case"),
    }
    argv, taken, nested = cases[command]
    flag = [] if command == "phantom" else ["-o"]
    assert main([*argv, *flag, str(taken)]) == 1
    assert str(taken) in one_error_line(capsys)
    assert main([*argv, *flag, str(nested)]) == 1
    assert "does not exist" in one_error_line(capsys)
    assert not (tmp_path / "no").exists(), "no folder tree may be created"
    assert a_file.read_text() == "mine"


def test_segment_side_outputs_in_a_missing_folder_are_refused(small_ct, tmp_path, capsys):
    for flag, name in (("--landmarks", "l.json"), ("--picture", "p.png")):
        assert main(["segment", str(small_ct), "-o", str(tmp_path / "l.nii.gz"), flag,
                     str(tmp_path / "no" / name)]) == 1
        assert flag in one_error_line(capsys)
    assert not (tmp_path / "no").exists()


def test_an_output_folder_is_created_one_level_deep(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "case"), "--spacing", "4"]) == 0
    assert (tmp_path / "case" / "ground_truth.json").is_file()


# ---- absurd sizes and counts -----------------------------------------------------------------------------------
def test_phantom_spacing_is_bounded(tmp_path, capsys):
    assert main(["phantom", str(tmp_path / "case"), "--spacing", "0.01"]) == 1
    line = one_error_line(capsys)
    assert "--spacing" in line and "0.5-5 mm" in line
    with pytest.raises(NeedleplanError, match=r"GiB of memory"):
        npl.phantom(0, spacing_mm=0.05)


def test_absurd_image_counts_are_refused_even_in_a_dry_run(tmp_path, capsys):
    base = {"cases": [{"phantom": 0, "spacing_mm": 3.0}]}
    with pytest.raises(NeedleplanError, match=r"images_per_case must be within 0\.\.1000000"):
        config_from_dict({**base, "images_per_case": 10**12})
    with pytest.raises(NeedleplanError, match=r"cases\[0\]\.images must be within"):
        config_from_dict({"cases": [{"phantom": 0, "images": 10**12}]})
    with pytest.raises(NeedleplanError, match=r"images in all; at most 10000000"):
        config_from_dict({"cases": [{"phantom": s, "images": 10**6} for s in range(11)]})
    config = tmp_path / "huge.toml"
    config.write_text("images_per_case = 1000000000000\n[[cases]]\nphantom = 0\n")
    started = time.monotonic()
    assert main(["dataset", str(config), "-o", str(tmp_path / "out"), "--dry-run"]) == 1
    assert "images_per_case" in one_error_line(capsys) and time.monotonic() - started < 5


# ---- suspicious input ------------------------------------------------------------------------------------------
def test_nan_and_infinite_voxels_are_refused_with_their_count(tmp_path, capsys):
    import SimpleITK as sitk

    voxels = np.zeros((6, 7, 8), dtype=np.float32)
    voxels[2, 3, 1:4] = np.nan
    voxels[4, 0, 0] = np.inf
    for name in ("ct.nii.gz", "ct.nii", "ct.mha"):
        sitk.WriteImage(sitk.GetImageFromArray(voxels), str(tmp_path / name))
        with pytest.raises(CorruptFileError, match=r"contains 4 NaN or infinite voxel values \(of 336\)"):
            npl.load(tmp_path / name)
    assert main(["render", str(tmp_path / "ct.nii.gz"), "-o", str(tmp_path / "shot.png")]) == 1
    assert "4 NaN or infinite" in one_error_line(capsys)
    assert not (tmp_path / "shot.png").exists()


def test_an_isocenter_far_outside_the_volume_is_refused(small_ct, tmp_path, capsys):
    assert main(["render", str(small_ct), "-o", str(tmp_path / "far.png"), "--isocenter", "1e9", "0", "0"]) == 1
    line = one_error_line(capsys)
    assert "--isocenter" in line and "outside the volume" in line
    assert not (tmp_path / "far.png").exists()
    assert main(["render", str(small_ct), "-o", str(tmp_path / "near.png"), "--size", "32",
                 "--isocenter", "30", "-50", "20"]) == 0  # 50 mm in front of the volume: still in view


# ---- stale temporary files -------------------------------------------------------------------------------------
def test_stale_temporary_files_are_removed_by_the_next_write_into_their_folder(tmp_path):
    from needleplan.io.atomic import STALE_PART_SECONDS, atomic_file

    stale, fresh = tmp_path / ".part-abc123-shot.png", tmp_path / ".part-def456-shot.png"
    mine = tmp_path / ".partial-notes.txt"
    for path in (stale, fresh, mine):
        path.write_bytes(b"x")
    old = time.time() - STALE_PART_SECONDS - 60
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    with atomic_file(tmp_path / "result.json") as tmp:
        tmp.write_text(json.dumps({"ok": True}))
    assert not stale.exists(), "a temporary file untouched for so long was left by a dead writer"
    assert fresh.exists(), "a recent temporary file may belong to a writer still at work"
    assert mine.exists() and (tmp_path / "result.json").exists()


# ---- no identity in any DICOM written ------------------------------------------------------------------------
def test_every_dicom_writer_marks_the_identity_removed(small_ct, tmp_path, capsys):
    pydicom = pytest.importorskip("pydicom")
    from needleplan.io.dicom_capture import CaptureSeries
    from needleplan.io.dicom_write import write_ct_series

    writers = {"io/dicom_write.py", "io/dicom_capture.py", "fluoro/writers.py"}
    source = ROOT / "src" / "needleplan"
    writing = {p.relative_to(source).as_posix() for p in source.rglob("*.py")
               if re.search(r"\.save_as\(|dcmwrite\(", p.read_text(encoding="utf-8"))}
    assert writing == writers, "a new DICOM writer must be covered here"
    write_ct_series(npl.load(small_ct), tmp_path / "series")
    CaptureSeries("views").write(np.zeros((8, 9, 3), dtype=np.uint8), tmp_path / "capture.dcm", "a view")
    assert main(["render", str(small_ct), "-o", str(tmp_path / "shot.dcm"), "--size", "32"]) == 0
    files = [*sorted((tmp_path / "series").iterdir()), tmp_path / "capture.dcm", tmp_path / "shot.dcm"]
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES", path
        assert ds.DeidentificationMethod, path
