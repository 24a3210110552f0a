"""Segmentation accuracy, speed and memory: ``npl.segment`` on real CTs and phantoms, scored the VerSe way.

Usage::

    .venv/bin/python benchmarks/bench_segment.py [--quick] [--write] [--repeats 3] [--threads 2]

Cases:
- **shared CT** (``totalseg_example_abdomen_ct``, 3 mm, RAS) against TotalSegmentator's vertebra labels: Dice,
  VerSe identification and centroid distance per level L1-L5 and S1 (that reference labels only
  ``vertebrae_S1``, not the whole sacrum: S1 is reported but kept out of the L1-L5 means), whole-vertebra and
  body-to-body centroids (body of a level = the reference body mask within that level's label).
- **phantoms** over seeds, spacings (1-3 mm, one with 3 mm slices), lordosis, scoliosis and noise, against their
  exact labels (L1-L5, sacrum) and landmarks (:func:`needleplan.segment.metrics.landmark_errors_mm`).
- **real DICOM** (``totalseg_example_ct_dicom``, 20 slices): which vertebrae are found and whether their names
  agree, by overlap, with the reference labels (T11, T12).
- **chest CT** (``totalseg_example_chest_ct``, 1.5 mm, contrast): the levels found and how they were numbered,
  T12 against its reference mask (Dice), and the share of vertebra/sacrum/ilium voxels outside the spine's
  corridor (further than 60 mm across from the vertical line through the reference T12's centroid: the heart,
  aorta, liver, spleen and kidneys lie there).
- **lumbar MRI** (``sct_lumbar_mri_t2``, T2, 1 mm), with the toolbox's T9-T10 disc as anchor: names, and the
  disc centres between consecutive bodies against disc centres read by hand off the images.
- **scale**: the phantom sampled on a 512x512x300 grid (0.71 x 0.52 x 1.06 mm, noise-free), for time and memory.

Each case runs in a fresh subprocess pinned to ``--threads`` CPUs: ``import needleplan``, ``npl.load`` of the
input file (timed apart) and ``--repeats`` calls of ``npl.segment`` (first and median reported). Peak memory is
the child's high-water resident set (VmHWM, which starts afresh at exec); the child's ``ru_maxrss`` is recorded
too, but Linux carries the parent's peak over into it, so it is not the figure used. Phantom inputs are written
as NIfTI first, so loading is timed like any file. ``--quick``: one run per case, two phantoms, no 512x512x300.
Prints Markdown tables, writes benchmarks/out/segment_results.json, and with ``--write`` replaces the
"## Segmentation" section of benchmarks/RESULTS.md (refused when a case failed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SHARED_CT_DIR = DATA / "totalseg_example_abdomen_ct"
SHARED_DICOM_DIR = DATA / "totalseg_example_ct_dicom"
CHEST_DIR = DATA / "totalseg_example_chest_ct"
LUMBAR_MRI = DATA / "sct_lumbar_mri_t2" / "t2_lumbar.nii.gz"
#: The Spinal Cord Toolbox's T9-T10 disc on the lumbar MRI (its tutorial), LPS mm: the anchor the user gives.
LUMBAR_MRI_ANCHOR = {"T9-T10": (-14.8, 74.9, -325.3)}
#: Disc centres on the lumbar MRI (voxel i, j, k), read by hand off sagittal and axial slices (tests/
#: test_segment_mri.py holds the same figures).
LUMBAR_MRI_DISCS_IJK = {"T9-T10": (22, 89, 187.5), "T10-T11": (21, 90, 162), "T11-T12": (21, 97, 133.3),
                        "T12-L1": (26, 100, 102.7), "L1-L2": (27, 107.5, 70), "L2-L3": (28, 115, 37)}
#: Vertebra/sacrum/ilium voxels further than this across from the chest's spine line are on organs or ribs.
CORRIDOR_MM = 60.0
RESULTS = HERE / "RESULTS.md"
SECTION = "## Segmentation"

LUMBAR = {"L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24}
SACRUM = 26
TARGETS = {"shared_mean_dice": 0.90, "shared_mean_distance_mm": 3.0, "phantom_mean_dice": 0.95,
           "phantom_landmark_median_mm": 1.5, "scale_s": 10.0, "scale_peak_gb": 2.0}

#: Phantom cases: seed and ``npl.phantom`` options. Quick mode keeps the ones marked True.
PHANTOMS: list[tuple[bool, dict[str, Any]]] = [
    (False, dict(seed=0, spacing_mm=1.0, lordosis_deg=45.0, scoliosis_deg=0.0, noise_hu=0.0)),
    (False, dict(seed=1, spacing_mm=1.5, lordosis_deg=30.0, scoliosis_deg=10.0, noise_hu=20.0)),
    (True, dict(seed=2, spacing_mm=2.0, lordosis_deg=55.0, scoliosis_deg=-10.0, noise_hu=40.0)),
    (True, dict(seed=3, spacing_mm=3.0, lordosis_deg=45.0, scoliosis_deg=0.0, noise_hu=20.0)),
    (False, dict(seed=4, spacing_mm=(0.8, 0.8, 3.0), lordosis_deg=55.0, scoliosis_deg=10.0, noise_hu=40.0)),
    (False, dict(seed=5, spacing_mm=1.0, lordosis_deg=30.0, scoliosis_deg=-10.0, noise_hu=40.0)),
]

_CHILD = r"""
import json, os, resource, statistics, sys, time, traceback
from pathlib import Path

source, out, repeats, modality = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] or None
anchors = json.loads(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[5] else None

def high_water_bytes():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024

result = {"stage": "import"}
try:
    start = time.perf_counter()
    import numpy as np
    import needleplan as npl
    result["import_s"] = time.perf_counter() - start
    result["stage"] = "load"
    start = time.perf_counter()
    volume = npl.load(source, modality=modality) if modality else npl.load(source)
    result["load_s"] = time.perf_counter() - start
    result["volume"] = repr(volume)
    result["size_xyz"] = list(volume.size_xyz)
    result["peak_after_load_bytes"] = high_water_bytes()
    result["stage"] = "segment"
    result["segment_s"] = []
    spine = None
    for _ in range(repeats):
        spine = None
        start = time.perf_counter()
        spine = npl.segment(volume, anchors=anchors)
        result["segment_s"].append(time.perf_counter() - start)
    result["peak_bytes"] = high_water_bytes()
    result["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result["stage"] = "save"
    np.save(out / "labels.npy", np.asarray(spine.labels.voxels))
    np.save(out / "affine.npy", np.asarray(spine.labels.index_to_world))
    (out / "spine.json").write_text(json.dumps(spine.to_dict()))
    result["levels"] = spine.levels
    result["stage"] = "done"
except BaseException as error:
    result["error"] = f"{type(error).__name__}: {error}"
    result["traceback"] = traceback.format_exc()
(out / "result.json").write_text(json.dumps(result))
sys.exit(0 if result["stage"] == "done" else 1)
"""


# ---- running segment in a fresh process -------------------------------------------------------------------------
@dataclass
class Run:
    """What one child process did: timings, memory, and the Spine it returned (labels and landmarks)."""

    case: str
    result: dict[str, Any]
    labels: Any = None  # Volume
    landmarks: dict[str, Any] = field(default_factory=dict)
    numbering: Any = None  # Numbering

    @property
    def ok(self) -> bool:
        return self.result.get("stage") == "done"

    @property
    def failure(self) -> str:
        return f"{self.result.get('error', 'unknown error')} (while: {self.result.get('stage')})"


def child_env(threads: int) -> dict[str, str]:
    """Environment capping every thread pool at ``threads``."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        env[name] = str(threads)
    return env


def pin(threads: int):
    """A preexec function that pins the child to the first ``threads`` CPUs it may use."""
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    return lambda: os.sched_setaffinity(0, cpus)


def run_segment(case: str, source: Path, work: Path, args: argparse.Namespace, modality: str = "CT",
                anchors: dict[str, Any] | None = None) -> Run:
    """Load ``source`` and segment it ``args.repeats`` times in a fresh process; read back what it returned."""
    from needleplan.anatomy import landmarks_from_dict
    from needleplan.volume import Volume

    out = work / f"out_{case.replace(' ', '_')}"
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-c", _CHILD, str(source), str(out), str(args.repeats), modality or "",
               json.dumps(anchors) if anchors else ""]
    try:
        process = subprocess.run(command, env=child_env(args.threads), preexec_fn=pin(args.threads),
                                 capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return Run(case, {"stage": "segment", "error": f"timed out after {args.timeout:.0f} s"})
    result_file = out / "result.json"
    if not result_file.exists():
        tail = (process.stderr or "").strip().splitlines()[-3:]
        return Run(case, {"stage": "start", "error": f"child exited {process.returncode}: {' | '.join(tail)}"})
    run = Run(case, json.loads(result_file.read_text()))
    if run.ok:
        run.labels = Volume(np.load(out / "labels.npy"), np.load(out / "affine.npy"), "LABEL")
        vertebrae, pelvis, run.numbering = landmarks_from_dict(json.loads((out / "spine.json").read_text()))
        run.landmarks = {name: v.landmarks for name, v in vertebrae.items()}
        if pelvis:
            run.landmarks["pelvis"] = pelvis
    return run


def report_run(run: Run) -> None:
    """One progress line per run; on failure the error and the end of the child's traceback."""
    if run.ok:
        r = run.result
        print(f"  {run.case}: {r['volume']}; load {r['load_s']:.2f} s, segment first {r['segment_s'][0]:.2f} s, "
              f"median {statistics.median(r['segment_s']):.2f} s, peak {r['peak_bytes'] / 2**30:.2f} GB; "
              f"levels {', '.join(r['levels']) or 'none'}", flush=True)
        return
    print(f"  {run.case}: SEGMENTATION FAILED: {run.failure}", flush=True)
    trace = run.result.get("traceback", "").strip().splitlines()
    if trace:
        print(textwrap.indent("\n".join(trace[-6:]), "      "), flush=True)


def timing_row(run: Run) -> dict[str, Any]:
    """Timing and memory figures of a successful run."""
    r = run.result
    return {"case": run.case, "size_xyz": r["size_xyz"], "import_s": r["import_s"], "load_s": r["load_s"],
            "segment_first_s": r["segment_s"][0], "segment_median_s": statistics.median(r["segment_s"]),
            "runs": len(r["segment_s"]), "peak_gb": r["peak_bytes"] / 2**30,
            "peak_after_load_gb": r["peak_after_load_bytes"] / 2**30, "ru_maxrss_gb": r["ru_maxrss_bytes"] / 2**30,
            "levels": r["levels"]}


# ---- scoring ------------------------------------------------------------------------------------------------------
def label_volume(array: np.ndarray, like) -> Any:
    from needleplan.volume import Volume

    return Volume(array, like.index_to_world, "LABEL")


def body_centroids(labels, body_mask: np.ndarray, wanted: list[int]) -> dict[int, np.ndarray]:
    """Centroid of (body mask & level label) per level, on the body mask's grid."""
    from needleplan.segment.metrics import label_centroids_mm

    return label_centroids_mm(label_volume(np.where(body_mask, labels.voxels, 0).astype(np.uint8), labels), wanted)


def score_shared_ct(run: Run) -> dict[str, Any]:
    """Case a: the shared lumbar CT against TotalSegmentator's vertebra and body labels."""
    import needleplan as npl
    from needleplan.anatomy import VERSE_NAMES, VERSE_IDS, from_totalseg
    from needleplan.segment.metrics import centroid_distances_mm, identification, on_grid_of, score_labels

    ts = npl.load(SHARED_CT_DIR / "spine_report" / "totalseg_vertebrae.nii.gz", modality="LABEL")
    reference = label_volume(from_totalseg(ts.voxels), ts)
    body = npl.load(SHARED_CT_DIR / "spine_report" / "totalseg_vertebrae_body.nii.gz", modality="LABEL").voxels == 1
    predicted = on_grid_of(run.labels, reference)
    wanted = [*LUMBAR.values(), SACRUM]
    score = score_labels(predicted, reference, wanted)
    present = set(np.unique(predicted.voxels).tolist()) | set(np.unique(reference.voxels).tolist())
    all_ids = [k for k in VERSE_NAMES if k in present]
    pred_body, ref_body = body_centroids(predicted, body, all_ids), body_centroids(reference, body, wanted)
    body_distance = centroid_distances_mm(pred_body, ref_body)
    body_found = identification(pred_body, ref_body)
    rows = []
    for label in score.labels:
        name = VERSE_NAMES[label]
        landmark = run.landmarks.get(name, {}).get("body_centroid")
        rows.append({
            "level": name, "dice": score.dice[label], "identified": score.identified[label],
            "distance_mm": score.distance_mm[label], "body_distance_mm": body_distance.get(label, math.nan),
            "body_identified": body_found.get(label, False),
            "landmark_body_distance_mm": (float(np.linalg.norm(np.asarray(landmark) - ref_body[label]))
                                          if landmark is not None and label in ref_body else math.nan),
        })
    lumbar = score.subset(LUMBAR.values())
    lumbar_body = [body_distance.get(k, math.nan) for k in LUMBAR.values()]
    return {
        "rows": rows, "mean_dice_L1_L5": lumbar.mean_dice, "mean_distance_mm_L1_L5": lumbar.mean_distance_mm,
        "mean_body_distance_mm_L1_L5": float(np.nanmean(lumbar_body)) if not all(map(math.isnan, lumbar_body))
        else math.nan,
        "identified_L1_L5": all(lumbar.identified.values()) and len(lumbar.labels) == 5,
        "identified_S1_whole": score.identified.get(SACRUM, False),
        "identified_S1_body": body_found.get(SACRUM, False),
        "found": [VERSE_NAMES[k] for k in sorted(set(np.unique(predicted.voxels)) & set(VERSE_NAMES))],
        "reference_levels": [VERSE_NAMES[k] for k in sorted(VERSE_IDS.values()) if k in np.unique(reference.voxels)],
    }


def landmark_summary(errors: dict[str, float]) -> dict[str, float]:
    values = np.array(list(errors.values()))
    if values.size == 0:
        return {"count": 0, "median_mm": math.nan, "p90_mm": math.nan, "max_mm": math.nan}
    return {"count": int(values.size), "median_mm": float(np.median(values)),
            "p90_mm": float(np.percentile(values, 90)), "max_mm": float(values.max())}


def score_phantom(run: Run, reference, truth: dict[str, Any], expected: int) -> dict[str, Any]:
    """Case b: one phantom against its exact labels and landmarks."""
    from needleplan.segment.metrics import landmark_errors_mm, score_labels

    score = score_labels(run.labels, reference, [*LUMBAR.values(), SACRUM])
    errors = landmark_errors_mm(run.landmarks, truth)
    return {"score": score.to_dict(), "min_dice": min(score.dice.values()), "mean_dice": score.mean_dice,
            "identification_rate": score.identification_rate, "mean_distance_mm": score.mean_distance_mm,
            "landmarks": landmark_summary(errors), "landmark_errors_mm": errors, "expected_landmarks": expected}


def overlap_names(predicted, reference) -> list[dict[str, Any]]:
    """For each predicted vertebra: the reference label it overlaps most, and the fraction of its voxels in it."""
    from needleplan.anatomy import VERSE_NAMES

    rows = []
    for label in sorted(set(np.unique(predicted.voxels).tolist()) & set(VERSE_NAMES)):
        under = reference.voxels[predicted.voxels == label]
        counts = np.bincount(under, minlength=256)
        counts[0] = 0
        best = int(np.argmax(counts))
        rows.append({"predicted": VERSE_NAMES[label], "voxels": int(under.size),
                     "overlaps": VERSE_NAMES.get(best) if counts[best] else None,
                     "fraction": float(counts[best] / under.size), "agrees": bool(counts[best]) and best == label})
    return rows


def score_dicom(run: Run) -> dict[str, Any]:
    """Case c: the real DICOM series against TotalSegmentator's labels (another grid: resampled onto it)."""
    import needleplan as npl
    from needleplan.anatomy import VERSE_NAMES, from_totalseg
    from needleplan.segment.metrics import on_grid_of, score_labels

    ts = npl.load(SHARED_DICOM_DIR / "example_seg_dicom.nii.gz", modality="LABEL")
    reference = label_volume(from_totalseg(ts.voxels), ts)
    predicted = on_grid_of(run.labels, reference)
    vertebrae = [k for k in np.unique(reference.voxels).tolist() if k in VERSE_NAMES]
    score = score_labels(predicted, reference, vertebrae)
    return {"reference_levels": [VERSE_NAMES[k] for k in vertebrae], "overlaps": overlap_names(predicted, reference),
            "score": score.to_dict(), "numbering": run.numbering.to_dict() if run.numbering is not None else {}}


def score_chest(run: Run) -> dict[str, Any]:
    """The chest CT: numbering, T12 against its reference mask, and labels off the spine's corridor."""
    import needleplan as npl
    from needleplan.anatomy import ILIUM_IDS, VERSE_IDS, VERSE_NAMES

    mask = npl.load(CHEST_DIR / "vertebrae_T12.nii.gz", modality="LABEL")
    reference = mask.resample(run.labels.index_to_world, run.labels.shape, order=0).voxels > 0
    ours = run.labels.voxels
    t12 = ours == VERSE_IDS["T12"]
    dice = 2.0 * float((t12 & reference).sum()) / max(int(t12.sum() + reference.sum()), 1)
    under = ours[reference]
    counts = np.bincount(under[under > 0], minlength=256)
    named = VERSE_NAMES.get(int(np.argmax(counts)), "nothing") if counts.any() else "nothing"
    centre = run.labels.index_to_world_points(np.argwhere(reference)[:, ::-1].astype(float)).mean(axis=0)
    bone_ids = [*VERSE_NAMES, *ILIUM_IDS.values()]
    labelled = np.isin(ours, bone_ids)
    points = run.labels.index_to_world_points(np.argwhere(labelled)[:, ::-1].astype(float))
    across = np.hypot(points[:, 0] - centre[0], points[:, 1] - centre[1])
    numbering = run.numbering
    return {"levels": run.result["levels"], "t12_dice": dice, "reference_t12_labelled_as": named,
            "outside_corridor": int((across > CORRIDOR_MM).sum()), "labelled": int(labelled.sum()),
            "has_pelvis": bool(np.isin(ours, [VERSE_IDS["S1"], *ILIUM_IDS.values()]).any()),
            "numbering": numbering.to_dict() if numbering is not None else {}}


def score_lumbar_mri(run: Run) -> dict[str, Any]:
    """The lumbar MRI: names from the anchor, and each disc between two found bodies against the hand-read one."""
    import needleplan as npl

    volume = npl.load(LUMBAR_MRI)
    truth = dict(zip(LUMBAR_MRI_DISCS_IJK, volume.index_to_world_points(
        np.array(list(LUMBAR_MRI_DISCS_IJK.values()), dtype=float)), strict=True))
    levels = run.result["levels"]
    rows = []
    for upper, lower in zip(levels[:-1], levels[1:], strict=True):
        name = f"{upper}-{lower}"
        found = 0.5 * (np.asarray(run.landmarks[upper]["inferior_endplate"]["center"])
                       + np.asarray(run.landmarks[lower]["superior_endplate"]["center"]))
        rows.append({"disc": name, "distance_mm": float(np.linalg.norm(found - truth[name]))
                     if name in truth else math.nan})
    return {"levels": levels, "discs": rows,
            "numbering": run.numbering.to_dict() if run.numbering is not None else {}}


# ---- cases --------------------------------------------------------------------------------------------------------
def phantom_name(options: dict[str, Any]) -> str:
    spacing = options["spacing_mm"]
    spacing = "x".join(f"{s:g}" for s in spacing) if isinstance(spacing, tuple) else f"{spacing:g}"
    return (f"phantom s{options['seed']} {spacing} mm lord {options['lordosis_deg']:g} "
            f"scol {options['scoliosis_deg']:+g} noise {options['noise_hu']:g}")


def write_ct(volume, path: Path) -> Path:
    from needleplan.io import save_volume

    return save_volume(volume, path)


def scale_case():
    """The phantom (seed 0) sampled noise-free on a 512x512x300 grid over its usual field, and its truth."""
    import needleplan as npl
    from needleplan.volume import affine_from_geometry

    case = npl.phantom(seed=0)
    extent = np.array(case.ct.size_xyz) * case.ct.spacing_mm
    shape_xyz = np.array([512, 512, 300])
    spacing = extent / shape_xyz
    affine = affine_from_geometry(spacing, case.ct.origin_mm - case.ct.spacing_mm / 2 + spacing / 2, np.eye(3))
    ct, labels, _ = case.voxelize(affine, tuple(int(n) for n in shape_xyz[::-1]))
    return ct, labels, case.landmarks


def run_real(case: str, source: Path, key: str, score, work: Path, args: argparse.Namespace,
             out: dict[str, Any], **options: Any) -> list[Run]:
    """Segment one real scan (skipped when the shared data is absent) and keep ``score(run)`` as ``out[key]``."""
    if not source.exists():
        print(f"  skipping the {case}: {source} is absent", flush=True)
        return []
    run = run_segment(case, source, work, args, **options)
    report_run(run)
    if run.ok:
        out[key] = score(run)
    return [run]


def run_shared(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    return run_real("shared CT", SHARED_CT_DIR / "example_ct.nii.gz", "shared_ct", score_shared_ct, work, args, out)


def run_phantoms(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    import needleplan as npl

    runs = []
    out["phantoms"] = []
    for quick, options in PHANTOMS:
        if args.quick and not quick:
            continue
        name = phantom_name(options)
        case = npl.phantom(**options)
        source = write_ct(case.ct, work / f"phantom_{options['seed']}.nii")
        run = run_segment(name, source, work, args)
        report_run(run)
        runs.append(run)
        if run.ok:
            expected = len(_truth_points(case.landmarks))
            out["phantoms"].append({"case": name, "options": {k: v for k, v in options.items()},
                                    **score_phantom(run, case.labels, case.landmarks, expected)})
        source.unlink()
    return runs


def _truth_points(truth: dict[str, Any]) -> dict[str, float]:
    """Every point landmark of the truth (scored against itself)."""
    from needleplan.segment.metrics import landmark_errors_mm

    return landmark_errors_mm({k: v for k, v in truth.items() if k != "skin"}, truth)


def run_dicom(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    return run_real("real DICOM", SHARED_DICOM_DIR / "dicom", "dicom", score_dicom, work, args, out, modality="")


def run_chest(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    return run_real("chest CT", CHEST_DIR / "example_chest_ct.nii.gz", "chest", score_chest, work, args, out)


def run_lumbar_mri(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    return run_real("lumbar MRI (T9-T10 anchor)", LUMBAR_MRI, "lumbar_mri", score_lumbar_mri, work, args, out,
                    modality="", anchors=LUMBAR_MRI_ANCHOR)


def run_scale(work: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Run]:
    ct, labels, truth = scale_case()
    source = write_ct(ct, work / "phantom_512x512x300.nii")
    del ct
    run = run_segment("phantom 512x512x300", source, work, args)
    report_run(run)
    if run.ok:
        out["scale"] = score_phantom(run, labels, truth, len(_truth_points(truth)))
    source.unlink()
    return [run]


# ---- tables -------------------------------------------------------------------------------------------------------
def fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(fmt(v) for v in row) + " |" for row in rows)]


def timing_table(timings: list[dict[str, Any]]) -> list[str]:
    return table(
        ["case", "voxels (x y z)", "load s", "segment s (first)", "segment s (median)", "runs", "peak GB",
         "levels found"],
        [[t["case"], "x".join(map(str, t["size_xyz"])), t["load_s"], t["segment_first_s"], t["segment_median_s"],
          t["runs"], t["peak_gb"], ", ".join(t["levels"]) or "none"] for t in timings])


def shared_table(shared: dict[str, Any]) -> list[str]:
    rows = [[r["level"], r["dice"], r["identified"], r["distance_mm"], r["body_identified"], r["body_distance_mm"],
             r["landmark_body_distance_mm"]] for r in shared["rows"]]
    rows.append(["**mean L1-L5**", shared["mean_dice_L1_L5"], shared["identified_L1_L5"],
                 shared["mean_distance_mm_L1_L5"], "", shared["mean_body_distance_mm_L1_L5"], ""])
    return table(["level", "Dice", "identified", "centroid distance mm", "identified (body centroids)",
                  "body-to-body mm", "Spine body_centroid to reference body mm"], rows)


def phantom_table(phantoms: list[dict[str, Any]]) -> list[str]:
    rows = []
    for p in phantoms:
        lm = p["landmarks"]
        rows.append([p["case"], p["mean_dice"], p["min_dice"], f"{p['identification_rate'] * 100:.0f}%",
                     p["mean_distance_mm"], f"{lm['count']}/{p['expected_landmarks']}", lm["median_mm"],
                     lm["p90_mm"], lm["max_mm"]])
    return table(["case", "mean Dice L1-S", "min Dice", "identified", "mean centroid mm", "landmarks found",
                  "landmark median mm", "p90 mm", "max mm"], rows)


def landmark_kind(key: str) -> str:
    """"L4.pedicle_left.center" -> "pedicle_<side>.center"; pelvis keys keep their group."""
    group, rest = key.split(".", 1)
    rest = rest.replace("_left", "_<side>").replace("_right", "_<side>")
    return f"pelvis.{rest}" if group == "pelvis" else rest


def landmark_kind_table(phantoms: list[dict[str, Any]]) -> list[str]:
    kinds: dict[str, list[float]] = {}
    for p in phantoms:
        for key, error in p["landmark_errors_mm"].items():
            kinds.setdefault(landmark_kind(key), []).append(error)
    rows = [[kind, len(v), float(np.median(v)), float(np.percentile(v, 90)), float(np.max(v))]
            for kind, v in kinds.items()]
    return table(["landmark (all phantoms, all levels)", "n", "median mm", "p90 mm", "max mm"], rows)


def dicom_table(dicom: dict[str, Any]) -> list[str]:
    rows = [[o["predicted"], o["voxels"], o["overlaps"] or "nothing", f"{o['fraction'] * 100:.0f}%", o["agrees"]]
            for o in dicom["overlaps"]]
    lines = table(["predicted level", "voxels", "overlaps reference level", "of its voxels", "names agree"], rows)
    levels = dicom["score"]["levels"]
    lines += ["", *table(["reference level", "Dice", "identified", "centroid distance mm"],
                         [[name, r["dice"], r["identified"], r["distance_mm"]] for name, r in levels.items()])]
    return lines


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def verdicts(out: dict[str, Any], timings: list[dict[str, Any]]) -> list[str]:
    """One line per case group: the figures against the targets, each marked met or not."""
    lines = []
    if "shared_ct" in out:
        s = out["shared_ct"]
        dice_ok = s["mean_dice_L1_L5"] >= TARGETS["shared_mean_dice"]
        distance_ok = s["mean_distance_mm_L1_L5"] <= TARGETS["shared_mean_distance_mm"]
        lines.append(f"- Shared CT: L1-L5 identified {fmt(s['identified_L1_L5'])}, S1 identified "
                     f"{fmt(s['identified_S1_whole'])} (whole-vertebra centroid) / {fmt(s['identified_S1_body'])} "
                     f"(body centroid): {met(s['identified_L1_L5'] and s['identified_S1_body'])}; mean Dice L1-L5 "
                     f"{fmt(s['mean_dice_L1_L5'], 3)} (target >= {TARGETS['shared_mean_dice']}: {met(dice_ok)}); "
                     f"mean centroid distance {fmt(s['mean_distance_mm_L1_L5'])} mm (target <= "
                     f"{TARGETS['shared_mean_distance_mm']:g}: {met(distance_ok)}).")
    if out.get("phantoms"):
        p = out["phantoms"]
        dice = float(np.mean([c["mean_dice"] for c in p]))
        rate = float(np.mean([c["identification_rate"] for c in p]))
        errors = [e for c in p for e in c["landmark_errors_mm"].values()]
        median = float(np.median(errors)) if errors else math.nan
        lines.append(f"- Phantoms ({len(p)}): mean Dice {dice:.3f} (target >= {TARGETS['phantom_mean_dice']}: "
                     f"{met(dice >= TARGETS['phantom_mean_dice'])}); identification {rate * 100:.0f}% (target 100%: "
                     f"{met(rate == 1.0)}); landmark error median {fmt(median)} mm over {len(errors)} points (target "
                     f"<= {TARGETS['phantom_landmark_median_mm']}: "
                     f"{met(median <= TARGETS['phantom_landmark_median_mm'])}).")
    if "dicom" in out:
        d = out["dicom"]
        agree = [o["agrees"] for o in d["overlaps"]]
        n = d.get("numbering", {})
        lines.append(f"- Real DICOM: found {', '.join(o['predicted'] for o in d['overlaps']) or 'no vertebra'}; "
                     f"names agree with the reference by overlap for {sum(agree)} of {len(agree)} "
                     f"(reference: {', '.join(d['reference_levels'])}); numbered from {n.get('anchor')} "
                     f"(confidence {n.get('confidence', math.nan):.2f}: "
                     f"{'plans allowed' if n.get('confidence', 0) >= 0.7 else 'plans refused until confirmed'}).")
    if "chest" in out:
        c = out["chest"]
        n = c["numbering"]
        lines.append(f"- Chest CT: levels {', '.join(c['levels']) or 'none'}, numbered from {n.get('anchor')} "
                     f"(confidence {n.get('confidence', math.nan):.2f}: "
                     f"{'plans allowed' if n.get('confidence', 0) >= 0.7 else 'plans refused until confirmed'}); "
                     f"T12 Dice {c['t12_dice']:.2f} (target >= 0.85: {met(c['t12_dice'] >= 0.85)}); reference T12 "
                     f"labelled {c['reference_t12_labelled_as']}; pelvis labels "
                     f"{'**present**' if c['has_pelvis'] else 'none (right: no pelvis in view)'}; "
                     f"{c['outside_corridor']} of {c['labelled']} labelled voxels outside the spine's corridor "
                     f"({100.0 * c['outside_corridor'] / max(c['labelled'], 1):.1f}%).")
    if "lumbar_mri" in out:
        m = out["lumbar_mri"]
        distances = [r["distance_mm"] for r in m["discs"] if not math.isnan(r["distance_mm"])]
        lines.append(f"- Lumbar MRI with the T9-T10 anchor: {', '.join(m['levels'])}; discs between found bodies "
                     f"within {max(distances):.1f} mm of the hand-read centres (median "
                     f"{float(np.median(distances)):.1f} mm, {len(distances)} discs)." if distances else
                     f"- Lumbar MRI: {', '.join(m['levels'])}; no disc between two found bodies.")
    scale = [t for t in timings if t["case"].startswith("phantom 512")]
    if scale:
        t = scale[0]
        lines.append(f"- 512x512x300: segment {t['segment_median_s']:.1f} s median (target <= {TARGETS['scale_s']:g} "
                     f"s on {t.get('threads', 2)} cores: {met(t['segment_median_s'] <= TARGETS['scale_s'])}); peak "
                     f"memory {t['peak_gb']:.2f} GB (target <= {TARGETS['scale_peak_gb']:g} GB: "
                     f"{met(t['peak_gb'] <= TARGETS['scale_peak_gb'])}).")
    return lines


# ---- machine and RESULTS.md ---------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = math.nan
    try:
        kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        memory_gb = kb / 2**20
    except (OSError, StopIteration):
        pass
    import scipy

    return {"cpu_model": model, "cpus": os.cpu_count(), "memory_gb": round(memory_gb, 1),
            "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "date": datetime.date.today().isoformat()}


def section(out: dict[str, Any], timings: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    m = out["machine"]
    lines = [f"{SECTION} (`benchmarks/bench_segment.py`)", "",
             f"Command: `.venv/bin/python benchmarks/bench_segment.py{' --quick' if args.quick else ''} --write`",
             f"Machine: {m['cpu_model']}, {m['cpus']} CPUs ({args.threads} used, pinned), {m['memory_gb']} GB, "
             f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']} ({m['date']}).",
             "Each case runs in a fresh process: `npl.load` timed apart, then "
             f"{args.repeats} call(s) of `npl.segment` (first and median). Peak memory is the process's high-water "
             "resident set (VmHWM) over import, load and segmentation.", "",
             "Verdict against the targets:", *verdicts(out, timings), "", "### Time and memory", "",
             *timing_table(timings)]
    if "shared_ct" in out:
        lines += ["", "### Shared lumbar CT against TotalSegmentator's labels", "",
                  "Reference: `spine_report/totalseg_vertebrae.nii.gz` (TS ids converted to VerSe). Its S1 is "
                  "`vertebrae_S1` only while ours is the whole sacrum, so S1 stays out of the means and its "
                  "whole-vertebra centroids are not like for like; body centroids are (body mask "
                  "`totalseg_vertebrae_body.nii.gz` == 1 within each level's label).", "",
                  *shared_table(out["shared_ct"])]
    if out.get("phantoms"):
        lines += ["", "### Phantoms against their exact labels and landmarks", "",
                  "Dice, identification and centroids over L1-L5 and the sacrum; landmark errors over every point "
                  "landmark found (points and `center`s; directions, widths and polylines are not scored).", "",
                  *phantom_table(out["phantoms"]), "", *landmark_kind_table(out["phantoms"])]
    if "dicom" in out:
        lines += ["", "### Real DICOM series (20 slices) against TotalSegmentator's labels", "",
                  *dicom_table(out["dicom"])]
    if "chest" in out:
        c = out["chest"]
        lines += ["", "### Chest CT (contrast, 1.5 mm): numbering from the ribs, organs not bone", "",
                  *table(["anchor looked for", "what it said"], [[k, v] for k, v in c["numbering"].get(
                      "anchors", {}).items()]), "",
                  "Notes: " + "; ".join(c["numbering"].get("notes", []))]
    if "lumbar_mri" in out:
        m = out["lumbar_mri"]
        lines += ["", "### Lumbar T2 MRI, numbered from the toolbox's T9-T10 disc", "",
                  *table(["disc", "found (midway between the endplates) to hand-read centre, mm"],
                         [[r["disc"], r["distance_mm"]] for r in m["discs"]])]
    if "scale" in out:
        s = out["scale"]
        lines += ["", f"512x512x300 phantom (seed 0, noise-free, 0.71 x 0.52 x 1.06 mm): mean Dice "
                      f"{fmt(s['mean_dice'], 3)}, identification {s['identification_rate'] * 100:.0f}%, landmark "
                      f"median {fmt(s['landmarks']['median_mm'])} mm."]
    return lines


def write_section(lines: list[str]) -> None:
    """Replace (or append) the "## Segmentation" section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            skipping = line.startswith(SECTION)
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    RESULTS.write_text("\n".join([*kept, "", *lines]) + "\n")


# ---- main ---------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per case, two phantoms, no 512x512x300")
    parser.add_argument("--write", action="store_true", help="replace the Segmentation section of RESULTS.md")
    parser.add_argument("--repeats", type=int, default=None, help="segment() calls per case (default 3; 1 quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per case")
    parser.add_argument("--only", default="shared,phantoms,dicom,chest,mri,scale",
                        help="comma-separated subset of: shared, phantoms, dicom, chest, mri, scale")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    wanted = set(args.only.split(","))
    steps = {"shared": run_shared, "phantoms": run_phantoms, "dicom": run_dicom, "chest": run_chest,
             "mri": run_lumbar_mri, "scale": run_scale}
    if args.quick:
        steps.pop("scale")
    out: dict[str, Any] = {"machine": machine(), "threads": args.threads, "repeats": args.repeats}
    print("machine:", out["machine"], flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench_segment_") as work:
        for name, step in steps.items():
            if name in wanted:
                print(f"{name}:", flush=True)
                runs += step(Path(work), args, out)
    timings = [{**timing_row(run), "threads": args.threads} for run in runs if run.ok]
    out["timings"] = timings
    out["failures"] = {run.case: run.failure for run in runs if not run.ok}
    lines = section(out, timings, args)
    if timings:
        print("\n" + "\n".join(lines))
    target = HERE / "out" / "segment_results.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(out, indent=1, default=float))
    print(f"\nwritten {target}")
    if out["failures"]:
        print(f"\nsegmentation FAILED on {len(out['failures'])} of {len(runs)} case(s):", file=sys.stderr)
        for case, failure in out["failures"].items():
            print(f"  {case}: {failure}", file=sys.stderr)
        if args.write:
            print(f"not writing {RESULTS.name}: the benchmark is incomplete", file=sys.stderr)
        return 1
    if args.write:
        write_section(lines)
        print(f"updated the '{SECTION}' section of {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
