"""Rendering speed and agreement: needleplan against plastimatch, RTK and DiffDRR, side by side in one run.

Usage::

    .venv/bin/pip install -r benchmarks/requirements-peers.txt   # once: the peers
    .venv/bin/python benchmarks/bench_render.py [--repeats 5] [--threads 2] [--quick]

Same attenuation volume (float32 mu in 1/mm, identity direction, so every peer can read it), same geometry
(512x512 detector, 400 mm panel, source-to-isocentre 850 mm, source-to-detector 1020 mm; AP, lateral and a
30-degree oblique, isocentre at the volume centre), the same thread count everywhere. Volumes: the phantom
sampled on a 512x512x300 grid, and the shared lumbar CT resampled to 0.7 mm in-plane when ../shared/data is
there. Every tool renders each view once to warm up, then ``--repeats`` times interleaved (DiffDRR, two orders of
magnitude slower on a CPU, only ``--diffdrr-repeats`` times); medians reported.
Prints a Markdown table and writes benchmarks/out/render_results.json; the figures go into RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SHARED_CT = HERE.parent.parent / "shared" / "data" / "totalseg_example_abdomen_ct" / "example_ct.nii.gz"

VIEWS = {"AP": 0.0, "lateral": 90.0, "oblique 30": 30.0}
GEOMETRY = dict(source_to_isocenter_mm=850.0, source_to_detector_mm=1020.0, detector_size_mm=400.0)

_JIT_PROBE = r"""
import time, numpy as np
start = time.perf_counter()
import needleplan as npl
from needleplan.volume import affine_from_geometry
imported = time.perf_counter()
volume = npl.Volume(np.zeros((32, 32, 32), np.int16), affine_from_geometry((1, 1, 1), (0, 0, 0), np.eye(3)))
npl.render(volume, size=64)
print(imported - start, time.perf_counter() - imported)
"""


def phantom_volume():
    """The phantom sampled on a 512x512x300 grid covering its usual field (noise-free HU)."""
    import needleplan as npl
    from needleplan.volume import affine_from_geometry

    case = npl.phantom(seed=0)
    extent = np.array(case.ct.size_xyz) * case.ct.spacing_mm
    shape_xyz = np.array([512, 512, 300])
    spacing = extent / shape_xyz
    affine = affine_from_geometry(spacing, case.ct.origin_mm - case.ct.spacing_mm / 2 + spacing / 2, np.eye(3))
    ct, _, _ = case.voxelize(affine, tuple(shape_xyz[::-1]))
    return ct


def shared_ct_volume():
    """The shared lumbar CT, reoriented to LPS and resampled to 0.7 mm in-plane (3 mm slices kept)."""
    import needleplan as npl
    from needleplan.volume import affine_from_geometry

    ct = npl.load(SHARED_CT)
    corners = ct.corners_mm()
    low, high = corners.min(axis=0), corners.max(axis=0)
    spacing = np.array([0.7, 0.7, 3.0])
    shape_xyz = np.floor((high - low) / spacing).astype(int) + 1
    return ct.resample(affine_from_geometry(spacing, low, np.eye(3)), tuple(shape_xyz[::-1]))


def carm_for(view: str, volume, pixels: int):
    import needleplan as npl

    return npl.CArm(oblique=VIEWS[view], isocenter=volume.center_mm, detector_pixels=pixels, **GEOMETRY)


def cone_geometry(carm):
    from peers import ConeGeometry

    u, v, _ = carm.rotation
    return ConeGeometry(carm.source_mm, carm.detector_center_mm, u, v, carm.pixel_mm[0], *carm.detector_pixels)


def samples_per_image(volume, carm) -> float:
    """Joseph samples: slices of the dominant index axis each ray crosses inside the volume."""
    ends = carm.pixel_centers_mm().reshape(-1, 3)
    source = volume.world_to_index_points(carm.source_mm)
    direction = volume.world_to_index_points(ends) - source
    nz, ny, nx = volume.shape
    low, high = np.full(3, -0.5), np.array([nx, ny, nz]) - 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (low - source) / direction, (high - source) / direction
    t0 = np.clip(np.nanmax(np.minimum(ta, tb), axis=1), 0, 1)
    t1 = np.clip(np.nanmin(np.maximum(ta, tb), axis=1), 0, 1)
    return float((np.maximum(t1 - t0, 0) * np.abs(direction).max(axis=1)).sum())


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def jit_startup() -> dict[str, float]:
    """Import and first-render times in fresh processes: cold (empty JIT cache) and warm (cache on disk)."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for label in ("cold", "warm"):
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            result = subprocess.run([sys.executable, "-c", _JIT_PROBE], env=env, capture_output=True, text=True,
                                    check=True)
            imported, first = (float(x) for x in result.stdout.split())
            out["import_s"] = imported
            out[f"first_render_{label}_s"] = first
    return out


def time_call(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def bench_volume(name: str, ct, args) -> list[dict]:
    import numba

    import needleplan as npl
    import peers
    from needleplan.attenuation import fluoroscopy_coefficients
    from needleplan.fluoro.backends import get_backend
    from needleplan.fluoro.rays import DetectorRays

    numba.set_num_threads(args.threads)
    mu_water, bone_scale, _ = fluoroscopy_coefficients()
    mu = np.ascontiguousarray(ct.attenuation(mu_water, bone_scale))
    available = peers.available()
    tools = {}
    for label, cls, key in (("plastimatch exact", peers.PlastimatchDrr, "plastimatch"),
                            ("RTK Joseph", peers.RtkJoseph, "rtk"), ("DiffDRR (CPU)", peers.DiffDrrSiddon, "diffdrr")):
        if available.get(key, "") != "ok" or (args.quick and label.startswith("DiffDRR")):
            print(f"  skipping {label}: {available.get(key, 'not run with --quick')}", flush=True)
            continue
        tools[label] = cls(mu, ct.index_to_world, threads=args.threads)
    backend = get_backend("cpu")
    rows = []
    for view in VIEWS:
        carm = carm_for(view, ct, 512)
        rays = DetectorRays.from_carm(carm, ct.world_to_index)
        geometry = cone_geometry(carm)
        images, times = {}, {label: [] for label in ["needleplan Joseph", "needleplan exact (Siddon)", *tools]}
        calls = {
            "needleplan Joseph": lambda rays=rays: backend.line_integrals(mu, rays, "joseph", 1.0),
            "needleplan exact (Siddon)": lambda rays=rays: backend.line_integrals(mu, rays, "siddon", 1.0),
            **{label: (lambda tool=tool, geometry=geometry: tool.render(geometry)) for label, tool in tools.items()},
        }
        for label, call in calls.items():  # warm-up, and the images for agreement
            images[label] = call()
        for repeat in range(args.repeats):
            for label, call in calls.items():
                if label.startswith("DiffDRR") and repeat >= args.diffdrr_repeats:
                    continue
                elapsed = time_call(call)
                if label == "plastimatch exact":  # its own trace time, without process start and file reading
                    elapsed = tools[label].last_timing["internal_trace_s"]
                times[label].append(elapsed)
        samples = samples_per_image(ct, carm)
        ours = statistics.median(times["needleplan Joseph"])
        for label, values in times.items():
            median = statistics.median(values)
            row = {"volume": name, "view": view, "tool": label, "median_s": median, "best_s": min(values),
                   "ratio_to_needleplan": median / ours, "rays_per_s": 512 * 512 / median,
                   "ncc_vs_needleplan": ncc(images[label], images["needleplan Joseph"])}
            if label.startswith("needleplan Joseph"):
                row["samples_per_s"] = samples / median
            if label == "plastimatch exact":
                row["wall_s_incl_process_and_io"] = tools[label].last_timing["render_s"]
            rows.append(row)
            print(f"  {name:8s} {view:10s} {label:26s} {median * 1000:8.1f} ms  x{median / ours:5.2f}  "
                  f"NCC {row['ncc_vs_needleplan']:.4f}", flush=True)
    # throughput at 256x256 through the public API (attenuation cached, display and keypoints included)
    for view in VIEWS:
        carm = carm_for(view, ct, 256)
        npl.render(ct, carm)
        values = [time_call(lambda carm=carm: npl.render(ct, carm)) for _ in range(max(args.repeats, 10))]
        rows.append({"volume": name, "view": view, "tool": "needleplan render() 256x256",
                     "median_s": statistics.median(values), "images_per_s": 1 / statistics.median(values)})
        print(f"  {name:8s} {view:10s} render() 256x256: {1 / statistics.median(values):6.1f} images/s", flush=True)
    for tool in tools.values():
        tool.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--diffdrr-repeats", type=int, default=2,
                        help="timed DiffDRR runs per view (default 2: it takes tens of seconds per 512x512 image)")
    parser.add_argument("--quick", action="store_true", help="phantom only, no DiffDRR")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    machine = {"platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "threads": args.threads}
    print("machine:", machine, flush=True)
    startup = jit_startup()
    print("JIT start-up:", startup, flush=True)
    rows = bench_volume("phantom 512x512x300", phantom_volume(), args)
    if SHARED_CT.exists() and not args.quick:
        ct = shared_ct_volume()
        rows += bench_volume(f"shared CT {'x'.join(map(str, ct.size_xyz))}", ct, args)
    out = HERE / "out" / "render_results.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "jit_startup": startup, "rows": rows}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
