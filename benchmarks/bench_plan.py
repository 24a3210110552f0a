"""Planning speed and accuracy: ``npl.plan_all`` on a whole lumbar case, and target errors on the phantom.

Usage::

    .venv/bin/python benchmarks/bench_plan.py [--write] [--repeats 5] [--threads 2]

Cases (each segmented once with ``npl.segment``; segmentation is not part of the planning time):
- **shared CT** (``totalseg_example_abdomen_ct``, 3 mm): every procedure, level and side it holds;
- **phantom** (seed 0, 1 mm): the 5 lumbar levels x 2 sides x 4 procedures of the issue (plus S1 TFESI).

Time: ``plan_all`` on a fresh copy of the label map each run, so that the planner's per-spine scene (masks, k-d
trees, planes) is rebuilt and counted; the first call (numba compile or cache load) is reported apart, then the
median of ``--repeats`` runs. Accuracy: each phantom plan's target against the analytic target (the procedure's
definition on the recipe geometry, :func:`needleplan.phantoms.targets.analytic_target`, which does not import the
planner), planned on the phantom's exact Spine and on its segmentation. There is no open planner for these
procedures to run side by side (CLINICAL.md section 8), so the time is compared with the issue's budget (5 s on 2
cores).
Prints Markdown; with ``--write`` replaces the "## Planning" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED_DIR = HERE.parent.parent / "shared" / "data" / "totalseg_example_abdomen_ct"
SHARED_CT = SHARED_DIR / "example_ct.nii.gz"
#: TotalSegmentator's (fast) labels of the shared CT: sacrum 25, hips 77 (left) and 78 (right).
SHARED_REFERENCE = SHARED_DIR / "example_seg_fast_force_split.nii.gz"
SECTION = "## Planning"
BUDGET_S = 5.0


def _fresh(spine):
    """The same spine with a new label-map object, so the planner's cached scene is rebuilt."""
    import copy

    import needleplan as npl
    clone = copy.copy(spine)
    clone.labels = npl.Volume(spine.labels.voxels, spine.labels.index_to_world, "LABEL")
    return clone


def time_plan_all(spine, repeats: int) -> dict:
    import needleplan as npl
    start = time.perf_counter()
    first = npl.plan_all(_fresh(spine))
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = npl.plan_all(_fresh(spine))
        times.append(time.perf_counter() - start)
    return {"first_s": first_s, "median_s": statistics.median(times), "runs": times, "plans": len(result.plans),
            "feasible": len(result.feasible), "skipped": len(result.skipped), "result": result, "first": first}


def target_errors(case, plans) -> dict[str, float]:
    from needleplan.phantoms.targets import analytic_target
    errors = {}
    for plan in plans.plans:
        approach = plan.approach if plan.procedure == "tfesi" and plan.level != "S1" else None
        errors[plan.name] = float(np.linalg.norm(plan.target_mm - analytic_target(case, plan.procedure, plan.level,
                                                                                   plan.side, approach)))
    return errors


def si_reference_distances(plans) -> list[str]:
    """For the shared CT's SI plans: the target's distance to TotalSegmentator's sacrum and hip of its side."""
    import needleplan as npl
    from scipy.spatial import cKDTree
    reference = npl.load(SHARED_REFERENCE, modality="LABEL")

    def tree(label: int):
        kji = np.argwhere(reference.voxels == label)
        return cKDTree(reference.index_to_world_points(kji[:, ::-1].astype(float)))
    sacrum = tree(25)
    lines = []
    for plan in (p for p in plans.plans if p.procedure == "si"):
        hip = tree(77 if plan.side == "left" else 78)
        lines.append(f"- {plan.name}: target {sacrum.query(plan.target_mm)[0]:.1f} mm from the reference sacrum, "
                     f"{hip.query(plan.target_mm)[0]:.1f} mm from the reference {plan.side} hip")
    return lines


def procedure_table(plans) -> list[str]:
    """Per procedure: plans made, feasible (every rule passed), not planned; depth, oblique and tilt from the squared
    endplate (ranges over the feasible plans); for RFA the electrode-to-nerve angle and nerve captured."""
    rows = ["| procedure | made | feasible | not planned | depth mm | ipsilateral oblique deg (SI: negative, "
            "contralateral) | tilt deg, caudal of the squared endplate (SI: of the table) | RFA angle deg (max) / "
            "capture mm (min) |", "|---|---|---|---|---|---|---|---|"]
    kinds = sorted({p.procedure for p in plans.plans} | {key.split("-")[0] for key in plans.skipped})
    for kind in kinds:
        made = [p for p in plans.plans if p.procedure == kind]
        good = [p for p in made if p.feasible]
        skipped = sum(key.startswith(kind + "-") for key in plans.skipped)

        def span(values: list[float]) -> str:
            return f"{min(values):.0f} to {max(values):.0f}" if values else "-"
        oblique = [p.oblique_deg if p.side == "left" else -p.oblique_deg for p in good]
        rfa = "-"
        if kind == "rfa" and good:
            rfa = (f"{max(p.lesion.electrode_to_nerve_deg for p in good):.0f} / "
                   f"{min(p.lesion.nerve_captured_mm for p in good):.1f}")
        rows.append(f"| {kind} | {len(made)} | {len(good)} | {skipped} | {span([p.depth_mm for p in good])} | "
                    f"{span(oblique)} | "
                    f"{span([p.tilt_deg if kind == 'si' else p.tilt_from_endplate_deg for p in good])} | {rfa} |")
    return rows


def _by_procedure(errors: dict[str, float]) -> dict[str, tuple[float, float]]:
    groups: dict[str, list[float]] = {}
    for name, error in errors.items():
        procedure = name.split("-")[0] + (" S1" if "-S1-" in name and name.startswith("tfesi") else "")
        groups.setdefault(procedure, []).append(error)
    return {key: (float(np.median(v)), float(np.max(v))) for key, v in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numba

    import needleplan as npl
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))

    rows, accuracy, lines = [], {}, []
    cases = []
    if SHARED_CT.exists():
        cases.append(("shared CT (3 mm, T12-S1)", npl.segment(npl.load(SHARED_CT)), None))
    case = npl.phantom(0)
    cases.append(("phantom seed 0 (1 mm, L1-S1), segmented", npl.segment(case.ct), case))
    cases.append(("phantom seed 0, exact Spine", case.spine(), case))
    for name, spine, phantom_case in cases:
        timing = time_plan_all(spine, args.repeats)
        rows.append((name, timing))
        if phantom_case is not None:
            accuracy[name] = target_errors(phantom_case, timing["result"])
        for plan in timing["result"].plans:
            if not plan.feasible:
                lines.append(f"- {name}: {plan.name}: {plan.reason}")
        for key, reason in timing["result"].skipped.items():
            lines.append(f"- {name}: {key} not planned: {reason}")

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads"
    out = [SECTION + " (`benchmarks/bench_plan.py`)", "",
           f"Measured {datetime.date.today().isoformat()} on {machine}; Python {platform.python_version()}. "
           f"`plan_all` time includes building the planner's scene (masks, k-d trees, planes) from the label map; "
           f"median of {args.repeats} runs, the first call (numba compile or cache load) apart. Budget: "
           f"{BUDGET_S:g} s for a whole lumbar case. No open planner exists to compare with (CLINICAL.md section 8).",
           "", "### Time of `plan_all`", "",
           "| case | plans | feasible | not planned | first call s | median s | within budget |",
           "|---|---|---|---|---|---|---|"]
    for name, t in rows:
        out.append(f"| {name} | {t['plans']} | {t['feasible']} | {t['skipped']} | {t['first_s']:.2f} | "
                   f"{t['median_s']:.2f} | {'yes' if t['median_s'] <= BUDGET_S else 'no'} |")
    out += ["", "### Target error against the analytic target (phantom), mm: median / max", "",
            "| procedure | " + " | ".join(accuracy) + " |", "|---|" + "---|" * len(accuracy)]
    grouped = {name: _by_procedure(errors) for name, errors in accuracy.items()}
    for procedure in sorted({p for g in grouped.values() for p in g}):
        cells = [f"{grouped[n][procedure][0]:.2f} / {grouped[n][procedure][1]:.2f}" if procedure in grouped[n] else "-"
                 for n in accuracy]
        out.append(f"| {procedure} | " + " | ".join(cells) + " |")
    for name, t in rows:
        out += ["", f"### Verdicts and angles by procedure: {name}", "",
                "Feasible means every rule of the procedure passed (CLINICAL.md section 6, the needle reaching, and "
                "for RFA an electrode within 20 degrees of the nerve holding at least 5 mm of it).", "",
                *procedure_table(t["result"])]
    shared = next((t["result"] for name, t in rows if name.startswith("shared")), None)
    if shared is not None and SHARED_REFERENCE.exists():
        labelled = npl.plan_all(npl.segment(npl.load(SHARED_CT), labels=SHARED_REFERENCE), procedures=("si",))
        out += ["", "### SI targets on the shared CT against TotalSegmentator's sacrum and hips", "",
                "At 3 mm the joint space is not visible (sacrum and ilium touch on most of it), so no SI plan is made "
                "on our own masks; planned on TotalSegmentator's labels (the joint where both are near):", "",
                *(si_reference_distances(labelled) or ["- none"])]
    out += ["", "### Plans without a safe straight path, and plans not made", "", *(lines or ["- none"]), ""]
    text = "\n".join(out)
    print(text)
    if args.write:
        from results_file import write_section

        write_section(SECTION, text)


if __name__ == "__main__":
    main()
