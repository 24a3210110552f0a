"""The quick-start job on the built-in phantom: build it, write it as DICOM, load it back, check what was found,
take simulated fluoroscopy shots of a needle aimed at the left L4 foramen, then run the real pipeline on the
reloaded CT: segment it, plan (an L4 left transforaminal injection and an L4 left radiofrequency ablation) and
write the physician's report with its simulated views to ``OUT/plan/report.html``.

Run as ``python -m needleplan.demo [OUT]`` (``scripts/demo.sh`` does). Everything goes to ``OUT`` (default
``demo-out``). A rerun reuses the phantom written by an earlier run when its ground truth matches.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from . import load
from .anatomy import load_spine, save_spine
from .errors import NeedleplanError
from .fluoro import CArm, render, write_geometry_json, write_image
from .fluoro.writers import sidecar_path
from .io.atomic import atomic_file
from .needle import Needle
from .phantoms import VERTEBRA_LABELS, PhantomCase, phantom
from .plan import plan
from .plan.outputs import write_plan_outputs
from .segment import segment
from .volume import Volume

LEVELS = ("L1", "L2", "L3", "L4", "L5")
#: The plans the demo makes: (procedure, level, side).
PLANS = (("tfesi", "L4", "left"), ("mbb", "L4", "left"))


def run(out_dir: str | Path = "demo-out", seed: int = 0) -> dict:
    """Run the demo and return its summary (also written to ``OUT/summary.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    case = phantom(seed=seed)
    print(f"phantom seed {seed}: {case.ct} built in {time.perf_counter() - start:.1f} s")

    written = out / "phantom"
    _write_once(case, written)
    start = time.perf_counter()
    ct = load(written / "ct")
    labels = load(written / "labels.nii.gz", modality="LABEL")
    print(f"loaded back {ct} in {time.perf_counter() - start:.1f} s")

    same_voxels = bool(np.array_equal(ct.voxels, case.ct.voxels))
    geometry_error_mm = float(np.abs(ct.index_to_world - case.ct.index_to_world).max())
    print(f"  voxels identical to the phantom: {same_voxels}; largest affine difference {geometry_error_mm:.2e}")
    checks = _landmark_checks(case, labels)
    for level, found in checks.items():
        print(f"  {level}: " + ", ".join(f"{name} {'ok' if ok else 'WRONG'}" for name, ok in found.items()))
    previews = _previews(ct, case, out)
    print(f"  previews: {', '.join(str(p) for p in previews)}")
    start = time.perf_counter()
    shots = _fluoro_shots(ct, case, out)
    print(f"  simulated fluoroscopy in {time.perf_counter() - start:.1f} s: "
          + ", ".join(f"{name} ({shot['pose']})" for name, shot in shots.items()))
    planning = _plans(ct, out / "plan")

    summary = {
        "seed": seed,
        "ct": {"size_xyz": list(ct.size_xyz), "spacing_mm": ct.spacing_mm.tolist(), "orientation": ct.orientation,
               "hu_range": [int(ct.voxels.min()), int(ct.voxels.max())]},
        "round_trip": {"voxels_identical": same_voxels, "max_affine_difference": geometry_error_mm},
        "landmarks_on_expected_labels": checks,
        "fluoro": shots,
        "plan": planning,
    }
    with atomic_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    ok = (same_voxels and geometry_error_mm < 1e-4 and all(all(c.values()) for c in checks.values())
          and all(shot["needle_tip_visible"] for shot in shots.values()) and shots["coaxial"]["needle_is_a_dot"]
          and set(LEVELS) <= set(planning["levels"]) and any(p["feasible"] for p in planning["plans"].values()))
    print(f"demo {'passed' if ok else 'FOUND PROBLEMS'}: results in {out}/")
    print("practise the L4 left TFESI in a browser: .venv/bin/needleplan practice")
    summary["ok"] = ok
    return summary


def _write_once(case: PhantomCase, folder: Path) -> None:
    """Write the phantom unless an earlier run left the same one there; the folder appears whole or not at all."""
    truth = folder / "ground_truth.json"
    if truth.is_file():
        earlier = json.loads(truth.read_text())
        if earlier.get("seed") == case.seed and earlier.get("grid") == case.ground_truth()["grid"]:
            print(f"  reusing the phantom written earlier in {folder}")
            return
        raise NeedleplanError(f"{folder} holds a different phantom; remove it or choose another output folder")
    case.write(folder, format="dicom")  # atomic; refuses a non-empty folder rather than overwrite it
    print(f"  wrote DICOM CT, label maps and ground truth to {folder}")


def _landmark_checks(case: PhantomCase, labels: Volume) -> dict[str, dict[str, bool]]:
    """For each level: do the exact landmarks fall on that vertebra's label in the reloaded label map?

    Interior points (body centroid, pedicle centres) must lie on a voxel of the label; a tip lies on the bone's
    surface, so the label must be within one voxel of it.
    """
    checks: dict[str, dict[str, bool]] = {}
    for level in LEVELS:
        marks = case.landmarks[level]
        label = VERTEBRA_LABELS[level]
        interior = {"body centroid": marks["body_centroid"], "left pedicle": marks["pedicle_left"]["center"],
                    "right pedicle": marks["pedicle_right"]["center"]}
        found = {name: _label_near(labels, point, 0) == {label} for name, point in interior.items()}
        found["spinous tip"] = label in _label_near(labels, marks["spinous_tip"], 1)
        checks[level] = found
    return checks


def _label_near(labels: Volume, point_mm: list[float], reach_voxels: int) -> set[int]:
    """Labels on the voxels within ``reach_voxels`` (per axis) of the voxel nearest a world point."""
    i, j, k = np.rint(labels.world_to_index_points(np.asarray(point_mm))).astype(int)
    r = reach_voxels
    block = labels.voxels[max(k - r, 0):k + r + 1, max(j - r, 0):j + r + 1, max(i - r, 0):i + r + 1]
    return {int(v) for v in np.unique(block)}


def _previews(ct: Volume, case: PhantomCase, out: Path) -> list[Path]:
    """Mid-sagittal, L4 axial and coronal slices as PNG (bone bright, window -400..1200 HU)."""
    l4 = np.rint(ct.world_to_index_points(np.asarray(case.landmarks["L4"]["pedicle_left"]["center"]))).astype(int)
    l3 = np.rint(ct.world_to_index_points(np.asarray(case.landmarks["L3"]["body_centroid"]))).astype(int)
    hu = ct.voxels  # radiological display: superior up, anterior up (axial), patient's right on the left
    views = {"sagittal": hu[::-1, :, l3[0]], "axial_L4": hu[l4[2], :, :], "coronal": hu[::-1, l3[1], :]}
    paths = []
    for name, image in views.items():
        scaled = np.clip((image.astype(np.float32) + 400.0) / 1600.0 * 255.0, 0, 255).astype(np.uint8)
        path = out / f"preview_{name}.png"
        with atomic_file(path) as tmp:
            sitk.WriteImage(sitk.GetImageFromArray(np.ascontiguousarray(scaled)), str(tmp))
        paths.append(path)
    return paths


def _fluoro_shots(ct: Volume, case: PhantomCase, out: Path) -> dict[str, dict]:
    """AP, needle's-eye (coaxial) and lateral shots of a 22 G needle aimed at the left L4 foramen.

    The needle here is a fixed demonstration (80 mm, from posterolateral), not a plan. Each shot is written as
    a PNG with its geometry sidecar; the checks are that the needle tip projects inside every image and that
    in the coaxial view tip and hub land on the same spot (the needle is seen as a dot).
    """
    target = np.asarray(case.landmarks["L4"]["foramen_left"])
    needle = Needle.from_direction(target, [-0.45, -0.88, -0.15], 80.0, gauge=22, name="demo needle")
    center = case.landmarks["L4"]["body_centroid"]
    views = {"AP": CArm.ap(isocenter=center), "coaxial": CArm.coaxial(needle.direction, isocenter=target),
             "lateral": CArm.lateral("left", isocenter=center)}
    shots = {}
    for name, carm in views.items():
        fluoro = render(ct, carm, needles=[needle])
        path = write_image(fluoro, out / f"fluoro_{name}.png")
        write_geometry_json(fluoro, sidecar_path(path))
        tip, hub = fluoro.keypoints["demo needle.tip"], fluoro.keypoints["demo needle.hub"]
        shots[name] = {"file": path.name, "pose": fluoro.carm.describe(), "needle_tip_visible": tip.visible,
                       "tip_px": [round(tip.col, 2), round(tip.row, 2)],
                       "needle_is_a_dot": bool(np.hypot(tip.col - hub.col, tip.row - hub.row) < 1.0)}
    return shots


def _plans(ct: Volume, out: Path) -> dict:
    """Segment the reloaded CT like any scan, plan ``PLANS`` on it and write the report and images to ``out``.

    The segmentation is saved in ``out/spine``; a rerun on the same CT reads it back instead of segmenting again.
    """
    digest = hashlib.sha256(np.ascontiguousarray(ct.voxels).tobytes() + ct.index_to_world.tobytes()).hexdigest()
    start = time.perf_counter()
    try:
        spine, source = load_spine(out / "spine")
    except NeedleplanError:
        source = ""
    if source == digest:
        print(f"  segmentation of an earlier run read back from {out / 'spine'}: {', '.join(spine.levels)}")
    else:
        spine = segment(ct)
        save_spine(spine, out / "spine", source=digest)
        print(f"  segmented in {time.perf_counter() - start:.1f} s: {', '.join(spine.levels)}")
    start = time.perf_counter()
    plans = [plan(spine, procedure, level, side) for procedure, level, side in PLANS]
    written = write_plan_outputs(ct, spine, plans, out, single=False, source="the demo phantom (reloaded DICOM)")
    for item in plans:
        print(f"  {item.summary()}")
    print(f"  report with {sum(len(v) for v in written['views'].values())} simulated views in "
          f"{time.perf_counter() - start:.1f} s: {written['report']}")
    return {"levels": spine.levels, "report": str(written["report"].relative_to(out.parent)),
            "plans": {item.name: {"feasible": item.feasible, "summary": item.summary(),
                                  "views": [p.name for p in written["views"].get(item.name, [])]}
                      for item in plans}}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m needleplan.demo [OUT]``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        summary = run(args[0] if args else "demo-out")
    except NeedleplanError as exc:
        print(f"needleplan demo: error: {exc}", file=sys.stderr)
        return 1
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
