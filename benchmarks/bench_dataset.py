"""Training-set throughput: labelled 256x256 images per second from the shared lumbar CT, and Dask scaling.

Issue 6's bars: at least 20 labelled 256x256 images/s on 2 cores from a lumbar CT with one needle and per-vertebra
masks; and a local 2-worker Dask cluster at least 80% of linear against 1 worker.

Each job is the same config (the shared CT, poses around the TFESI/MBB/RFA plans' views, one perturbed needle,
16-bit PNG images, 1-bit PNG masks per vertebra, JSON labels with every landmark). The case is prepared
(segmented and planned) once; each timed run deletes the images and remakes all of them, so a run measures the
image phase only: worker start, case load, render, masks, labels, files. Runs are interleaved and repeated; the
median is reported.

Side by side, in the same run: DiffDRR (CPU, Siddon) rendering the bare 256x256 image (no needle, no masks, no
files) on the same volume and pose, the inner step of a DiffDRR-based generator loop.

Run: ``.venv/bin/python benchmarks/bench_dataset.py [--images 240] [--repeats 3] [--write]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_CT = ROOT.parent / "shared" / "data" / "totalseg_example_abdomen_ct" / "example_ct.nii.gz"
sys.path.insert(0, str(Path(__file__).parent))


def job_config(images: int) -> dict:
    return {
        "seed": 1,
        "images_per_case": images,
        "cases": [{"path": str(SHARED_CT), "name": "lumbar-ct"}],
        "poses": {"mode": "planned", "procedures": ["tfesi", "mbb", "rfa"], "oblique_sd_deg": 5.0,
                  "tilt_sd_deg": 5.0, "isocenter_sd_mm": 10.0},
        "needles": {"mode": "perturbed", "tip_sd_mm": 3.0, "angle_sd_deg": 4.0},
        "imaging": {"size": 256, "photons_per_pixel": 20000.0},
        "output": {"bits": 16, "masks": "png"},
    }


def clear_images(out: Path) -> None:
    for folder in ("images", "masks", "labels"):
        shutil.rmtree(out / folder, ignore_errors=True)


def timed_run(config, out: Path, **how) -> float:
    from needleplan.dataset import make_dataset

    clear_images(out)
    summary = make_dataset(config, out, progress=False, **how)
    assert summary.made == config.images_per_case
    return summary.made / summary.render_seconds


def diffdrr_rate(out: Path, repeats: int) -> tuple[float, float]:
    """(DiffDRR images/s, needleplan bare-render images/s) for the pose of the dataset's first image."""
    import needleplan as npl
    import peers
    from bench_render import cone_geometry
    from needleplan.attenuation import FLUORO_EFFECTIVE_KEV, fluoroscopy_coefficients
    from needleplan.volume import affine_from_geometry

    ct = npl.load(SHARED_CT)
    corners = ct.corners_mm()
    low = corners.min(axis=0)
    # the same voxels in LPS storage (a flip of axes, no interpolation): DiffDRR's adapter needs a diagonal affine
    lps = ct.resample(affine_from_geometry(ct.spacing_mm, low + 0.0, np.eye(3)), ct.shape)
    labels = json.loads(next((out / "labels").rglob("*.json")).read_text())
    carm = npl.CArm(oblique=labels["carm"]["oblique_deg"], tilt=labels["carm"]["tilt_deg"],
                    isocenter=labels["carm"]["isocenter_mm"], detector_pixels=256)
    mu = lps.attenuation(*fluoroscopy_coefficients(FLUORO_EFFECTIVE_KEV)[:2])
    diffdrr = peers.DiffDrrSiddon(np.asarray(mu, dtype=np.float32), lps.index_to_world, threads=os.cpu_count() or 2)
    geometry = cone_geometry(carm)
    ours = npl.render(lps, carm).line_integral
    theirs = diffdrr.render(geometry)
    agreement = float(np.corrcoef(np.nan_to_num(ours).ravel(), theirs.ravel())[0, 1])
    print(f"DiffDRR vs needleplan image correlation {agreement:.4f}")
    diffdrr_times, our_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        diffdrr.render(geometry)
        diffdrr_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        npl.render(lps, carm)
        our_times.append(time.perf_counter() - start)
    return 1 / statistics.median(diffdrr_times), 1 / statistics.median(our_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update the 'Training sets' section of RESULTS.md")
    args = parser.parse_args()
    if not SHARED_CT.exists():
        sys.exit(f"the shared CT is missing: {SHARED_CT}")
    from distributed import LocalCluster

    from needleplan.dataset import config_from_dict, make_dataset

    config = config_from_dict(job_config(args.images))
    work = Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    out = work / "out"
    start = time.perf_counter()
    make_dataset(config, out, progress=False)  # prepares the case (segment + plan) and warms the JIT cache
    print(f"first run (segment, plan, {args.images} images): {time.perf_counter() - start:.1f} s")
    rates: dict[str, list[float]] = {k: [] for k in ("local 1 process", "local 2 processes", "dask 1 worker",
                                                      "dask 2 workers")}
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as one, \
            LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as two:
        for repeat in range(args.repeats):
            rates["local 1 process"].append(timed_run(config, out, workers=1))
            rates["local 2 processes"].append(timed_run(config, out, workers=2))
            rates["dask 1 worker"].append(timed_run(config, out, scheduler=one.scheduler_address))
            rates["dask 2 workers"].append(timed_run(config, out, scheduler=two.scheduler_address))
            print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f}/s" for k, v in rates.items()))
    peer, bare = diffdrr_rate(out, max(3, args.repeats))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    efficiency = medians["dask 2 workers"] / (2 * medians["dask 1 worker"])
    best = max(medians["local 1 process"], medians["local 2 processes"])
    lines = [
        "## Training sets (`benchmarks/bench_dataset.py`)",
        "",
        "Issue 6's bars: >= 20 labelled 256x256 images/s on 2 cores from a lumbar CT with one needle and masks; a "
        "local 2-worker Dask cluster >= 80% of linear against 1 worker.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_dataset.py --images {args.images} --repeats {args.repeats} "
        "--write`",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} "
        f"({time.strftime('%Y-%m-%d')}).",
        f"Job: the shared lumbar CT (3 mm, 122x101x112), {args.images} images per run, poses around the TFESI, "
        "MBB and RFA plans' views (5 deg, 5 deg, 10 mm normal errors), one perturbed needle, quantum noise, 16-bit "
        "PNG image, one 1-bit PNG mask per vertebra, a JSON label file with about 120 keypoints. Rates are images "
        "made / time of the image phase (worker start-up and case loading included); median of "
        f"{args.repeats} interleaved runs.",
        "",
        "| runner | labelled images/s (median) | runs |",
        "|---|---|---|",
    ]
    lines += [f"| {k} | {medians[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |" for k, v in rates.items()]
    lines += [
        "",
        f"- **Throughput: {best:.1f} labelled images/s** on 2 cores (bar 20: "
        f"{'met' if best >= 20 else 'not met'}).",
        f"- **Dask scaling: {efficiency:.0%} of linear** (2 workers {medians['dask 2 workers']:.1f}/s vs 1 worker "
        f"{medians['dask 1 worker']:.1f}/s; bar 80%: {'met' if efficiency >= 0.8 else 'not met'}).",
        f"- Side by side on the same volume and pose: DiffDRR 0.6.1 on the CPU renders the bare 256x256 image "
        f"(no needle, labels or files) at {peer:.1f} images/s; needleplan's bare render at {bare:.1f} images/s "
        f"({bare / peer:.0f}x). needleplan's whole labelled image is {best / peer:.0f}x DiffDRR's bare image.",
        "- Local runs start their worker processes each run (import, case load, JIT cache load: about 2 s of a "
        "240-image run); the Dask workers stay up between runs and keep the case loaded, as they would on a "
        "cluster serving many jobs. The Dask figures therefore show the steady rate.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    shutil.rmtree(work, ignore_errors=True)
    if args.write:
        from results_file import write_section

        write_section("## Training sets", text)


if __name__ == "__main__":
    main()
