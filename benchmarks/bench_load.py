"""Loading speed and memory: needleplan.load against SimpleITK's DICOM series reader, side by side.

Usage: ``.venv/bin/python benchmarks/bench_load.py [--repeats 5] [--slices 300]``

Writes a 512 x 512 x N CT series (uncompressed, files named in shuffled order) under benchmarks/out/, then in
one run times, on the same files:
- needleplan: ``needleplan.load(folder)`` (discovery, sorting, checks, pixels, rescale);
- SimpleITK: ``GetGDCMSeriesFileNames(folder)`` + ``ImageSeriesReader.Execute()`` (discovery + read);
and the same for the shared JPEG 2000 series when ../shared/data is present. Peak memory is measured in fresh
subprocesses as the growth of the maximum resident set size during the load. Results are appended to
benchmarks/RESULTS.md by hand from the table this prints (the machine is noted in it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED_J2K = HERE.parent.parent / "shared" / "data" / "totalseg_example_ct_dicom" / "dicom"

_MEMORY_PROBE = r"""
import gc, json, sys
import numpy as np
import SimpleITK as sitk
import needleplan
tool, folder = sys.argv[1], sys.argv[2]
def high_water_bytes():  # VmHWM resets at exec, unlike ru_maxrss which a child inherits from its parent
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) * 1024
gc.collect()
before = high_water_bytes()
if tool == "needleplan":
    array = needleplan.load(folder).voxels
else:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    array = sitk.GetArrayViewFromImage(reader.Execute())
after = high_water_bytes()
print(json.dumps({"peak_growth_bytes": after - before, "volume_bytes": int(array.nbytes)}))
"""


def make_series(folder: Path, slices: int) -> Path:
    """A 512 x 512 x slices CT series with shuffled file names (reused when already there)."""
    import needleplan
    from needleplan.volume import affine_from_geometry

    if folder.exists() and len(list(folder.glob("IMG*"))) == slices:
        return folder
    rng = np.random.default_rng(0)
    voxels = rng.integers(-1024, 2000, size=(slices, 512, 512), dtype=np.int16)
    affine = affine_from_geometry([0.7, 0.7, 1.0], [-179.0, -200.0, -150.0])
    volume = needleplan.Volume(voxels, affine, "CT")
    staging = folder.with_name(folder.name + "-staging")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    files = needleplan.io.write_ct_series(volume, staging)
    order = rng.permutation(len(files))
    for new_index, path in zip(order, files, strict=True):
        path.rename(staging / f"IMG{new_index:05d}")  # names no longer follow slice order
    staging.rename(folder)
    return folder


def time_tool(tool: str, folder: Path) -> float:
    import SimpleITK as sitk

    import needleplan

    start = time.perf_counter()
    if tool == "needleplan":
        needleplan.load(folder)
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        sitk.GetArrayViewFromImage(reader.Execute())
    return time.perf_counter() - start


def peak_memory(tool: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, tool, str(folder)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(name: str, folder: Path, repeats: int) -> list[str]:
    for tool in ("needleplan", "sitk"):  # warm the page cache and the imports
        time_tool(tool, folder)
    times: dict[str, list[float]] = {"needleplan": [], "sitk": []}
    for _ in range(repeats):  # interleaved so that machine noise hits both alike
        for tool in times:
            times[tool].append(time_tool(tool, folder))
    med = {tool: statistics.median(v) for tool, v in times.items()}
    mem = {tool: peak_memory(tool, folder) for tool in times}
    ratio = med["needleplan"] / med["sitk"]
    rows = []
    for tool, label in (("needleplan", "needleplan.load"), ("sitk", "SimpleITK ImageSeriesReader")):
        m = mem[tool]
        rows.append(
            f"| {name} | {label} | {med[tool]:.3f} | {min(times[tool]):.3f} | "
            f"{m['peak_growth_bytes'] / m['volume_bytes']:.2f} |"
        )
    rows.append(f"| {name} | **time ratio needleplan / SimpleITK** | **{ratio:.2f}x** | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    folder = make_series(HERE / "out" / f"ct_512x512x{args.slices}", args.slices)
    rows = compare(f"512x512x{args.slices} uncompressed, shuffled names", folder, args.repeats)
    if SHARED_J2K.is_dir():
        rows += compare("shared 512x512x20 JPEG 2000 lossless", SHARED_J2K, args.repeats)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; median and best of {args.repeats} runs after one warm-up, seconds")
    print("| series | reader | median s | best s | peak memory / volume size |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
