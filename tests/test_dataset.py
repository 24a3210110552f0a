"""Training datasets: labels that match the pixels, reproducibility across workers and Dask, resume, anonymity."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import needleplan as npl
from needleplan.dataset import config_from_dict, decode_rle, encode_rle, make_dataset, read_config
from needleplan.errors import LevelsUnconfirmedError, NeedleplanError
from needleplan.fluoro.writers import display_pixels

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 10
BASE = {
    "seed": 11,
    "images_per_case": IMAGES,
    "cases": [{"phantom": 0, "spacing_mm": 2.0}],
    "poses": {"mode": "planned", "procedures": ["tfesi", "mbb"], "oblique_sd_deg": 4.0, "tilt_sd_deg": 4.0,
              "isocenter_sd_mm": 5.0},
    "needles": {"mode": "perturbed", "tip_sd_mm": 2.0, "angle_sd_deg": 3.0},
    "imaging": {"size": 256},
    "output": {"bits": 16},
}


def _config(**changes) -> npl.dataset.DatasetConfig:
    data = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return config_from_dict(data)


def _digests(folder: Path) -> dict[str, str]:
    """Every file (but the run lock) -> its SHA-256."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def _labels(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "labels").rglob("*.json"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A small dataset made by one worker in this process: the reference the other runs must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    summary = make_dataset(_config(), out, workers=1, progress=False)
    assert summary.made == IMAGES and summary.total == IMAGES
    return out


@pytest.fixture(scope="module")
def case():
    return npl.phantom(0, spacing_mm=2.0)


# ---- labels match the pixels ----------------------------------------------------------------------------------
def _carm(labels: dict) -> npl.CArm:
    carm = labels["carm"]
    return npl.CArm(oblique=carm["oblique_deg"], tilt=carm["tilt_deg"], isocenter=carm["isocenter_mm"],
                    source_to_detector_mm=carm["source_to_detector_mm"],
                    source_to_isocenter_mm=carm["source_to_isocenter_mm"],
                    detector_size_mm=tuple(carm["detector_size_mm"]), detector_pixels=tuple(carm["detector_pixels"]))


def _needle(entry: dict) -> npl.Needle:
    return npl.Needle(entry["tip_mm"], entry["hub_mm"], entry["gauge"], entry["name"])


def test_labels_describe_the_image_exactly(reference, case):
    """The camera and needle in the labels re-render the written image pixel for pixel (no noise asked)."""
    for labels in _labels(reference)[:4]:
        shot = npl.render(case.ct, _carm(labels), needles=[_needle(n) for n in labels["needles"]],
                          energy_kev=labels["imaging"]["energy_kev"])
        written = np.asarray(Image.open(reference / labels["image"]))
        assert np.array_equal(written, display_pixels(shot.display, 16))
        assert np.allclose(np.asarray(labels["projection_matrix"]), shot.projection_matrix, atol=1e-9)


def test_needle_tip_keypoint_lies_on_the_rendered_tip(reference, case):
    """The projected tip is within 1 px of the end of the needle's shadow in the rendered image."""
    checked = 0
    for labels in _labels(reference):
        needle = labels["needles"][0]
        tip, hub = needle["tip"], needle["hub"]
        axis = np.array([tip["col"] - hub["col"], tip["row"] - hub["row"]])
        if not tip["visible"] or np.linalg.norm(axis) < 10:  # seen end-on, the tip has no end to find
            continue
        carm = _carm(labels)
        with_needle = npl.render(case.ct, carm, needles=[_needle(needle)]).line_integral
        without = npl.render(case.ct, carm).line_integral
        rows, cols = np.nonzero((with_needle - without) > 0.02)  # > about 0.1 mm of steel on the ray
        axis /= np.linalg.norm(axis)
        along = (cols - tip["col"]) * axis[0] + (rows - tip["row"]) * axis[1]
        across = np.abs((cols - tip["col"]) * axis[1] - (rows - tip["row"]) * axis[0])
        near_axis = across < 1.5
        assert abs(along[near_axis].max()) <= 1.0, labels["id"]
        checked += 1
    assert checked >= 3


def test_vertebra_mask_centroid_matches_the_projected_centroid(reference):
    """Within 2 px at 256 x 256 for every lumbar vertebra wholly in the image; masks and boxes agree."""
    checked = 0
    for labels in _labels(reference):
        for vertebra in labels["vertebrae"]:
            mask = np.asarray(Image.open(reference / vertebra["mask"]))
            assert mask.dtype == bool and mask.sum() == vertebra["area_px"]
            rows, cols = np.nonzero(mask)
            x, y, w, h = vertebra["bbox"]
            assert (x, y, x + w, y + h) == (cols.min() - 0.5, rows.min() - 0.5, cols.max() + 0.5, rows.max() + 0.5)
            inside = x > 0 and y > 0 and x + w < 255 and y + h < 255
            if vertebra["name"].startswith("L") and inside:
                error = np.hypot(*np.subtract(vertebra["mask_centroid_px"], vertebra["centroid_px"]))
                assert error <= 2.0, (labels["id"], vertebra["name"], error)
                checked += 1
    assert checked >= 10


def test_keypoints_are_the_projections_and_invisible_ones_are_outside(tmp_path, case):
    """Uniform poses far from the spine: each keypoint is P @ X of its landmark; invisible means off the image."""
    config = _config(poses={"mode": "uniform", "oblique_deg": [-60, 60], "tilt_deg": [-30, 30],
                            "isocenter_range_mm": [80, 80, 120]},
                     needles={"mode": "none", "tip_sd_mm": 0.0, "angle_sd_deg": 0.0}, images_per_case=6)
    make_dataset(config, tmp_path / "out", progress=False)
    document = json.loads((tmp_path / "out" / "cases" / "phantom-0-2mm" / "case.json").read_text())
    hidden = shown = 0
    for labels in _labels(tmp_path / "out"):
        projection = np.asarray(labels["projection_matrix"])
        for name, point in labels["keypoints"].items():
            world = np.append(document["points_mm"][name], 1.0)
            col, row, depth = projection @ world
            assert np.allclose([col / depth, row / depth], [point["col"], point["row"]], atol=2e-3)
            on_image = -0.5 <= point["col"] <= 255.5 and -0.5 <= point["row"] <= 255.5 and point["depth_mm"] > 0
            assert point["visible"] == on_image
            hidden += not point["visible"]
            shown += point["visible"]
    assert hidden > 20 and shown > 20


def test_rle_masks_round_trip_and_coco_export(tmp_path):
    mask = np.zeros((5, 7), dtype=bool)
    mask[0, 0] = mask[1:4, 2:5] = mask[4, 6] = True
    rle = encode_rle(mask)
    assert rle["counts"][0] == 0 and sum(rle["counts"]) == mask.size
    assert np.array_equal(decode_rle(rle), mask)
    config = _config(output={"masks": "rle", "bits": 8}, images_per_case=3)
    make_dataset(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "masks").exists()
    coco = json.loads((tmp_path / "out" / "coco_keypoints.json").read_text())
    assert len(coco["images"]) == 3
    names = {c["id"]: c for c in coco["categories"]}
    assert names[1]["keypoints"] == ["tip", "hub"]
    for annotation in coco["annotations"]:
        category = names[annotation["category_id"]]
        triples = np.asarray(annotation["keypoints"]).reshape(-1, 3)
        assert len(triples) == len(category["keypoints"])
        assert annotation["num_keypoints"] == int((triples[:, 2] == 2).sum())
        if category["name"] != "needle":
            assert decode_rle(annotation["segmentation"]).sum() == annotation["area"]
    manifest = (tmp_path / "out" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 4 and manifest[0].startswith("id,case,index,image")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "3 labelled simulated fluoroscopy images" in card


def test_several_needles_come_from_different_plans(tmp_path):
    config = _config(needles={"mode": "several", "count": 3}, images_per_case=2)
    make_dataset(config, tmp_path / "out", progress=False)
    for labels in _labels(tmp_path / "out"):
        needles = labels["needles"]
        assert [n["name"] for n in needles] == ["needle-1", "needle-2", "needle-3"]
        assert len({n["plan"] for n in needles}) == 3 and needles[0]["plan"] == labels["plan"]
        for needle in needles:
            assert needle["tip_error_mm"] == pytest.approx(np.linalg.norm(needle["tip_offset_mm"]), abs=2e-3)
            assert needle["tip"]["col"] is not None


# ---- reproducible, resumable ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_make_identical_files(reference, tmp_path):
    make_dataset(_config(), tmp_path / "out", workers=2, progress=False)
    assert _digests(tmp_path / "out") == _digests(reference)


@pytest.mark.slow
def test_dask_cluster_makes_identical_files(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        make_dataset(_config(), tmp_path / "out", scheduler=cluster.scheduler_address, progress=False)
    assert _digests(tmp_path / "out") == _digests(reference)


def _finished_labels(out: Path) -> int:
    """Label files written whole (a write in progress is a hidden ``.part-*`` file that also ends in .json)."""
    return sum(1 for path in (out / "labels").rglob("*.json") if not path.name.startswith(".part-"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_files(reference, tmp_path):
    """A run killed (SIGKILL) midway, then rerun, ends with exactly the reference's files."""
    config_file = tmp_path / "dataset.toml"
    config_file.write_text(_toml(BASE))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "needleplan.cli", "dataset", str(config_file), "-o", str(out),
               "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _finished_labels(out) >= 3:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = _finished_labels(out)
    assert 3 <= done < IMAGES, "the run should have been killed midway"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} were already there" in rerun.stdout
    assert _digests(out) == _digests(reference)


def test_rerun_of_a_finished_dataset_makes_nothing(reference):
    before = _digests(reference)
    summary = make_dataset(_config(), reference, progress=False)
    assert summary.made == 0 and summary.already_done == IMAGES
    assert _digests(reference) == before


def test_bad_scheduler_address_and_workers_are_refused(tmp_path):
    with pytest.raises(NeedleplanError, match="tcp://HOST:PORT"):
        make_dataset(_config(), tmp_path / "out", scheduler="localhost", progress=False)
    with pytest.raises(NeedleplanError, match="workers"):
        make_dataset(_config(), tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_config_that_made_no_image_can_be_corrected_in_place(tmp_path):
    with pytest.raises(NeedleplanError, match="no feasible plan"):
        make_dataset(_config(poses={"levels": ["L9"]}), tmp_path / "out", progress=False)
    summary = make_dataset(_config(images_per_case=2), tmp_path / "out", progress=False)
    assert summary.made == 2


def test_dry_run_writes_nothing(tmp_path):
    summary = make_dataset(_config(), tmp_path / "out", dry_run=True, progress=False)
    assert not (tmp_path / "out").exists()
    assert summary.total == IMAGES and "would write 10 images" in summary.lines()[0]


def test_output_folder_of_another_kind_is_refused(reference, tmp_path):
    with pytest.raises(NeedleplanError, match="another config"):
        make_dataset(_config(seed=12), reference, progress=False)
    (tmp_path / "stuff.txt").write_text("mine")
    with pytest.raises(NeedleplanError, match="not empty"):
        make_dataset(_config(), tmp_path, progress=False)
    assert (tmp_path / "stuff.txt").read_text() == "mine"


# ---- levels ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lumbar_crop(tmp_path_factory) -> tuple[Path, list[float]]:
    """The phantom's CT cut to L2-L4 (neither sacrum nor ribs in view: numbered from nothing), as NIfTI, and its
    L3 body centroid; its exact labels (VerSe ids) beside it as ``labels.nii.gz``."""
    case = npl.phantom(0, spacing_mm=2.0)
    spine = case.spine()
    lumbar = np.isin(spine.labels.voxels, [int(spine[n].label) for n in ("L2", "L3", "L4")])
    slices = np.flatnonzero(lumbar.any(axis=(1, 2)))
    slab = np.zeros(lumbar.shape, dtype=bool)
    slab[slices[0]:slices[-1] + 1] = True  # whole axial slices: air and soft tissue keep it a CT
    path = tmp_path_factory.mktemp("crop") / "l2-l4.nii.gz"
    npl.io.save_volume(case.ct.cropped_to(slab), path)
    npl.io.save_volume(spine.labels.cropped_to(slab), path.parent / "labels.nii.gz")
    return path, [float(v) for v in case.landmarks["L3"]["body_centroid"]]


def _crop_config(path: Path, **keys) -> npl.dataset.DatasetConfig:
    """Two images of the cropped scan: uniform poses around its levels, no needle (no plan needed)."""
    return _config(cases=[{"path": str(path), "name": "crop", **keys}], images_per_case=2,
                   poses={"mode": "uniform"}, needles={"mode": "none"})


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_scan_whose_levels_are_unconfirmed_is_refused(lumbar_crop, tmp_path, dry_run):
    with pytest.raises(LevelsUnconfirmedError) as refused:
        make_dataset(_crop_config(lumbar_crop[0]), tmp_path / "out", dry_run=dry_run, progress=False)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("case crop:") and "levels numbered from none" in message
    assert all(key in message for key in ("level_at", "labels", "levels_confirmed"))
    assert not (tmp_path / "out" / "images").exists() and not (tmp_path / "out" / "labels").exists()


@pytest.mark.parametrize("key, names, row", [
    ("level_at", {"L2", "L3", "L4"}, "| crop | user | 1.0 | user |"),
    ("labels", {"L1", "L2", "L3", "L4", "L5"}, "| crop | labels | 1.0 | labels |"),
    ("levels_confirmed", {"L3", "L4", "L5"}, "| crop | none | 0.2 | user |"),
])
def test_levels_named_at_a_point_by_labels_or_confirmed_are_accepted_and_recorded(lumbar_crop, tmp_path, key, names,
                                                                                    row):
    """Named at L3's body centroid, the levels are counted from it; from the labels, theirs; confirmed, the
    automatic names stay (and the card says how unsure they were)."""
    path, l3 = lumbar_crop
    given = {"level_at": {"L3": l3}, "labels": str(path.parent / "labels.nii.gz"), "levels_confirmed": True}
    config = _crop_config(path, **{key: given[key]})
    assert make_dataset(config, tmp_path / "dry", dry_run=True, progress=False).cases == {"crop": 2}
    assert not (tmp_path / "dry").exists()
    make_dataset(config, tmp_path / "out", progress=False)
    seen = {v["name"] for doc in _labels(tmp_path / "out") for v in doc["vertebrae"]}
    assert seen and seen <= names
    assert row in (tmp_path / "out" / "README.md").read_text()


def test_the_card_and_case_record_the_numbering(reference):
    case = json.loads((reference / "cases" / "phantom-0-2mm" / "case.json").read_text())
    assert case["numbering"]["anchor"] == "phantom ground truth" and case["numbering"]["confirmed_by"]
    assert "| phantom-0-2mm | phantom ground truth | 1.0 | phantom recipe |" in (reference / "README.md").read_text()


def test_level_keys_change_the_config_digest_and_labels_paths_stay_private():
    plain = _crop_config(Path("/scans/Doe_Jane/ct.nii.gz"))
    named = _crop_config(Path("/scans/Doe_Jane/ct.nii.gz"), level_at={"L3": [1, 2, 3]})
    moved = _crop_config(Path("/scans/Doe_Jane/ct.nii.gz"), level_at={"L3": [1, 2, 4]})
    labelled = _crop_config(Path("/scans/Doe_Jane/ct.nii.gz"), labels="/scans/Doe_Jane/seg.nii.gz")
    assert len({c.digest() for c in (plain, named, moved, labelled)}) == 4
    assert "Doe_Jane" not in json.dumps(labelled.public_dict(["crop"]))


# ---- no patient identity ----------------------------------------------------------------------------------------
def test_dicom_identity_leaves_no_trace(tmp_path):
    """A DICOM series with a patient's name, id, dates and UIDs: none of them reaches any output file."""
    pydicom = pytest.importorskip("pydicom")
    from needleplan.io.dicom_write import write_ct_series

    folder = tmp_path / "Doe_Jane_NP7731"
    write_ct_series(npl.phantom(1, spacing_mm=2.5).ct, folder)
    secrets = ["Doe^Jane", "Doe", "Jane", "NP7731", "19610412", "20240102"]
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "NP7731", "19610412"
        ds.StudyDate = ds.SeriesDate = "20240102"
        ds.save_as(path)
    secrets += [str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)]
    config = _config(cases=[{"path": str(folder)}], images_per_case=3,
                     poses={"procedures": ["tfesi"], "levels": ["L3", "L4"]})
    out = tmp_path / "out"
    make_dataset(config, out, progress=False)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 10
    for path in [*files, *out.rglob("*")]:
        assert not any(secret in path.name for secret in secrets), path
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        for secret in secrets:
            assert secret.encode() not in data, (path, secret)
    assert str(folder).encode() not in (out / "README.md").read_bytes()


# ---- config ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, words", [
    ({"cases": []}, "at least one"),
    ({"cases": [{"phantom": 0, "path": "x"}]}, "exactly one"),
    ({"cases": [{"phantom": -1}]}, "cases\\[0\\].phantom"),
    ({"poses": {"mode": "random"}}, "poses.mode"),
    ({"poses": {"oblique_deg": [30, 10]}}, "poses.oblique_deg"),
    ({"poses": {"procedures": ["tfesi", "vertebroplasty"]}}, "poses.procedures"),
    ({"needles": {"mode": "perturbed", "tip_sd_mm": "big"}}, "needles.tip_sd_mm"),
    ({"needles": {"count": 3}}, "several"),
    ({"imaging": {"size": 8}}, "imaging.size"),
    ({"output": {"masks": "polygons"}}, "output.masks"),
    ({"colour": "blue"}, "unknown key"),
    ({"cases": [{"phantom": 0, "name": "../escape"}]}, "cases\\[0\\].name"),
    ({"cases": [{"phantom": 0, "levels_confirmed": True}]}, "cases\\[0\\].levels_confirmed is for scans"),
    ({"cases": [{"path": "ct.nii", "levels_confirmed": "yes"}]}, "cases\\[0\\].levels_confirmed must be true"),
    ({"cases": [{"path": "ct.nii", "level_at": {"L9": [0, 0, 0]}}]}, "unknown level\\(s\\) L9"),
    ({"cases": [{"path": "ct.nii", "level_at": {"L3": [0, 0, float("nan")]}}]}, "level_at.L3 must be a world point"),
    ({"cases": [{"path": "ct.nii", "level_at": {"L3": [0, 0]}}]}, "level_at.L3 must be a world point"),
    ({"cases": [{"path": "ct.nii", "level_at": [0, 0, 0]}]}, "cases\\[0\\].level_at must be a table"),
    ({"cases": [{"path": "ct.nii", "labels": 3}]}, "cases\\[0\\].labels must be a file"),
    ({"cases": [{"path": "ct.nii", "labels_convention": "verse"}]}, "labels_convention is for labels"),
    ({"cases": [{"path": "ct.nii", "labels": "seg.nii", "labels_convention": "nnunet"}]},
     "labels_convention must be one of"),
])
def test_bad_config_is_refused_with_the_key_named(change, words):
    with pytest.raises(NeedleplanError, match=words):
        _config(**change)


def test_example_config_is_valid_and_the_cli_reports_errors(tmp_path):
    config = read_config(ROOT / "examples" / "dataset.toml")
    assert config.cases and config.images_per_case > 0
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [\n")
    result = subprocess.run([sys.executable, "-m", "needleplan.cli", "dataset", str(bad), "-o", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "not valid TOML" in result.stderr and "Traceback" not in result.stderr


def _toml(data: dict) -> str:
    """A small TOML writer for the test configs (tables of scalars and lists, one array of case tables)."""
    def value(v):
        return json.dumps(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, (dict, list))]
    for case in data["cases"]:
        lines += ["[[cases]]"] + [f"{k} = {value(v)}" for k, v in case.items()]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += [f"[{key}]"] + [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
