"""The `needleplan` command.

Every sub-command exits 0 on success. Bad input prints one line, ``needleplan: error: ...``, and exits 1
(no traceback); wrong usage exits 2; Ctrl+C prints ``needleplan: interrupted`` and exits 130. Outputs are checked
before any work; no folder tree is created for them. Warnings print as ``needleplan: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import NeedleplanError, describe_path

if TYPE_CHECKING:
    from .anatomy import Spine
    from .volume import Volume


#: What a Ctrl+C adds to "needleplan: interrupted" (a command with something to say sets it, e.g. dataset).
_interrupt_note: Callable[[], str] | None = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Ctrl+C (SIGINT) at any moment ends the process with one line, ``needleplan: interrupted``, and status 130.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _on_interrupt) if in_main_thread else None
    try:
        args = _parser().parse_args(argv)
        warnings.showwarning = _show_warning
        return int(args.run(args) or 0)
    except NeedleplanError as exc:
        print(f"needleplan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # raised by code, not by the signal
        print("needleplan: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)


def _on_interrupt(signum: int, frame: object) -> None:
    """SIGINT: remove the unfinished temporary files, say so in one line and exit 130 at once.

    Exiting here, rather than raising KeyboardInterrupt wherever the program happens to be (inside numba's
    dispatcher, in a finalizer, in a library's callback, each with its own traceback), keeps it to one line.
    Local dataset workers end with this process (they keep SIGINT blocked).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C while stopping changes nothing
    atomic = sys.modules.get(f"{__package__}.io.atomic")  # not imported here: the signal may come mid-import
    if atomic is not None:
        atomic.remove_unfinished()
    note = _interrupt_note() if _interrupt_note is not None else ""
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    with contextlib.suppress(OSError, ValueError):
        print(f"needleplan: interrupted{note}", file=sys.stderr, flush=True)
    os._exit(130)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"needleplan: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    from .attenuation import FLUORO_EFFECTIVE_KEV
    from .fluoro.carm import CArm
    from .segment import ENGINES

    carm_defaults = {field.name: field.default for field in dataclasses.fields(CArm)}

    parser = argparse.ArgumentParser(
        prog="needleplan", description="Planning and simulated fluoroscopy for spine pain procedures."
    )
    parser.add_argument("--version", action="version", version=f"needleplan {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="list the image series in a DICOM folder or image file",
                               description="List every image series found (modality, size, spacing, "
                               "orientation, value range) and mark with * the one `load` would use.")
    info.add_argument("path", type=Path, help="DICOM folder, DICOMDIR, DICOM file, or NIfTI/MHA/NRRD file")
    info.add_argument("--resample", action="store_true",
                      help="interpolate DICOM series with missing slices or uneven spacing instead of refusing them")
    info.set_defaults(run=_info)

    phantom = commands.add_parser("phantom", help="write the synthetic lumbar spine phantom",
                                  description="Write the synthetic lumbar spine phantom (CT, label maps and "
                                  "ground_truth.json with the exact landmarks) to a new folder.")
    phantom.add_argument("out", type=Path, help="output folder (created, one level: its parent must exist; must "
                         "not exist or be empty)")
    phantom.add_argument("--format", choices=("dicom", "nifti"), default="dicom", help="CT format (default dicom)")
    phantom.add_argument("--seed", type=int, default=0, help="anatomical variation and noise seed (default 0)")
    phantom.add_argument("--spacing", type=float, default=None, metavar="MM", help="isotropic voxel spacing in mm")
    phantom.add_argument("--noise", type=float, default=0.0, metavar="HU", help="Gaussian noise in HU (default 0)")
    phantom.set_defaults(run=_phantom)

    segment = commands.add_parser(
        "segment", help="find, number and measure the vertebrae of a spine CT or MRI",
        description="Segment the vertebrae, sacrum and ilia, name the levels and measure their landmarks. Writes "
        "the label map (VerSe ids by default), and optionally the landmarks as JSON (LPS mm) and a PNG picture of "
        "the labelled spine seen from behind. Prints the levels found, their confidence and how they were "
        "numbered.")
    segment.add_argument("path", type=Path, help="CT or MRI: DICOM folder, DICOMDIR, DICOM file, or "
                         "NIfTI/MHA/NRRD file")
    segment.add_argument("-o", "--out", type=Path, required=True, metavar="LABELS",
                         help="label map file: .nii.gz, .nii, .mha, .mhd, .nrrd or .nhdr, in an existing folder")
    segment.add_argument("--landmarks", type=Path, default=None, metavar="FILE.json",
                         help="also write the numbering, vertebrae and landmarks (LPS mm) as JSON")
    segment.add_argument("--convention", choices=("verse", "totalseg"), default="verse",
                         help="label ids written: verse (default; 20-24 L1-L5, 26 sacrum) or totalseg "
                         "(TotalSegmentator v2 total ids)")
    segment.add_argument("--engine", choices=ENGINES, default="classical",
                         help="what makes the masks (default classical; totalsegmentator needs that package "
                         "and its weights)")
    _add_labels_arguments(segment)
    _add_level_arguments(segment, confirm=False)
    segment.add_argument("--picture", type=Path, default=None, metavar="FILE.png",
                         help="also draw the labelled spine with its landmarks, seen from behind, as PNG")
    segment.add_argument("--series", default=None, metavar="UID",
                         help="DICOM SeriesInstanceUID or SeriesNumber when the input holds several series")
    segment.add_argument("--resample", action="store_true",
                         help="interpolate DICOM series with missing slices or uneven spacing instead of refusing them")
    segment.set_defaults(run=_segment)

    render = commands.add_parser(
        "render", help="render simulated fluoroscopy of a CT",
        description="Render a simulated fluoroscopy image of a CT at a C-arm pose and write it as PNG, TIFF, "
        "NumPy or DICOM (chosen by the suffix of OUT). The geometry (C-arm, projection matrix, keypoints) is "
        "written next to it as OUT.json, e.g. shot.png.json. The patient lies prone; the reference view is AP "
        "with the detector over the back.")
    render.add_argument("path", type=Path, help="CT: DICOM folder, DICOMDIR, DICOM file, or NIfTI/MHA/NRRD file")
    render.add_argument("-o", "--out", type=Path, required=True, metavar="OUT",
                        help="image file: .png, .tif/.tiff, .npy or .dcm, in an existing folder; OUT.json gets "
                        "the geometry")
    pose = render.add_argument_group("C-arm")
    pose.add_argument("--oblique", type=float, default=0.0, metavar="DEG",
                      help="-180..180; > 0 turns the detector toward the patient's left (default 0, AP)")
    pose.add_argument("--tilt", type=float, default=0.0, metavar="DEG",
                      help="-90..90; > 0 is caudal tilt, detector toward the feet (default 0)")
    pose.add_argument("--isocenter", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                      help="LPS mm point the central ray passes through (default: the volume's centre)")
    pose.add_argument("--size", type=int, default=512, metavar="N", help="detector pixels per side, 16-4096 "
                      "(default 512)")
    pose.add_argument("--sid", type=float, default=carm_defaults["source_to_detector_mm"], metavar="MM",
                      help="source to detector (default %(default)g)")
    pose.add_argument("--sod", type=float, default=carm_defaults["source_to_isocenter_mm"], metavar="MM",
                      help="source to isocentre, below --sid (default %(default)g)")
    pose.add_argument("--detector-mm", type=float, default=carm_defaults["detector_size_mm"], metavar="MM",
                      help="side of the square detector (default %(default)g)")
    pose.add_argument("--collimator-mm", type=float, default=None, metavar="MM",
                      help="diameter of a circular field on the detector (default: none, the whole detector)")
    image = render.add_argument_group("image")
    image.add_argument("--method", choices=("joseph", "trilinear", "siddon"), default="joseph",
                       help="ray walk (default joseph); siddon is exact and slower")
    image.add_argument("--energy-kev", type=float, default=FLUORO_EFFECTIVE_KEV, metavar="KEV",
                       help=f"effective beam energy, 40-100 keV (default {FLUORO_EFFECTIVE_KEV:g})")
    image.add_argument("--invert", action="store_true", help="bone and metal bright instead of dark")
    image.add_argument("--window", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                       help="attenuation shown white..black (default: 0.5th-99.5th percentile)")
    image.add_argument("--gamma", type=float, default=1.0, metavar="G", help="display gamma (default 1)")
    image.add_argument("--bits", type=int, choices=(8, 16), default=8,
                       help="PNG/TIFF display depth (default 8; DICOM is always 16-bit)")
    image.add_argument("--quantity", choices=("display", "line_integral", "intensity"), default=None,
                       help="array to write: display (default; .npy: line_integral); .tif and .npy also take "
                       "line_integral and intensity as float32")
    render.add_argument("--needle-from", type=Path, default=None, metavar="FILE.json",
                        help='needles to add: {"needle": {...}} (a plan.json), {"needles": [...]} or a list, '
                        "each {name, tip_mm, hub_mm, gauge}")
    render.add_argument("--series", default=None, metavar="UID",
                        help="DICOM SeriesInstanceUID or SeriesNumber when the input holds several series")
    render.add_argument("--resample", action="store_true",
                        help="interpolate DICOM series with missing slices or uneven spacing instead of refusing them")
    render.set_defaults(run=_render)

    plan = commands.add_parser(
        "plan", help="plan a needle path: target, entry, angles, C-arm views, safety; write a report",
        description="Segment a spine CT, plan one procedure (or every procedure with --all, or the two medial "
        "branches of a facet joint with --joint) and write into OUTDIR: plan.json (LPS mm, degrees; see "
        "docs/plan-json.md), the simulated fluoroscopy of every proposed C-arm view with the plan drawn over it "
        "and a 3D picture (images/), and report.html, one self-contained page for the physician. PATH 'phantom' "
        "or 'phantom:SEED' plans on the built-in phantom's CT, segmented like any CT.")
    plan.add_argument("path", help="CT: DICOM folder, DICOMDIR, DICOM file, NIfTI/MHA/NRRD file, or phantom[:SEED]")
    plan.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR",
                      help="output folder (created, one level: its parent must exist)")
    what = plan.add_mutually_exclusive_group()
    what.add_argument("--level", default=None, help="TFESI: vertebra above the foramen (L1-L5, S1); MBB/RFA: the "
                      "nerve (L1-L4 medial branch, L5 dorsal ramus); SI: not needed (S1)")
    what.add_argument("--joint", default=None, metavar="LEVEL-LEVEL",
                      help="a facet joint, e.g. L4-L5: plans its two medial branches (MBB by default, or RFA)")
    what.add_argument("--all", action="store_true", help="plan every procedure (or --procedure), level and side")
    plan.add_argument("--procedure", default=None, metavar="NAME",
                      help="tfesi (default), mbb, rfa or si; with --joint mbb (default) or rfa")
    plan.add_argument("--side", default=None, help="left or right (needed with --level and --joint)")
    plan.add_argument("--approach", default=None,
                      help="TFESI: supraneural or infraneural (default: infraneural at L1-L3, supraneural below)")
    plan.add_argument("--size", type=int, default=512, metavar="N",
                      help="simulated fluoroscopy pixels per side, 64-4096 (default 512)")
    _add_level_arguments(plan)
    plan.add_argument("--engine", choices=ENGINES, default="classical", help="segmentation engine (default classical)")
    _add_labels_arguments(plan)
    plan.add_argument("--series", default=None, metavar="UID",
                      help="DICOM SeriesInstanceUID or SeriesNumber when the input holds several series")
    plan.add_argument("--resample", action="store_true",
                      help="interpolate DICOM series with missing slices or uneven spacing instead of refusing them")
    plan.set_defaults(run=_plan)

    dataset = commands.add_parser(
        "dataset", help="make a labelled simulated fluoroscopy training set from a config",
        description="Render labelled simulated fluoroscopy images from the cases, poses and needles of CONFIG "
        "(TOML; see docs/dataset.md and examples/dataset.toml) into OUTDIR: images, per-image labels (camera, "
        "projection matrix, keypoints with visibility, needles, vertebra masks and boxes), manifest.csv, "
        "coco_keypoints.json and a dataset card. Same config, same files, whatever the workers; a rerun finishes "
        "an interrupted run.")
    dataset.add_argument("config", type=Path, help="dataset config (TOML)")
    dataset.add_argument("-o", "--out", type=Path, required=True, metavar="OUTDIR",
                         help="output folder: new (created, one level: its parent must exist), empty, or one this "
                         "config wrote before (resumes)")
    dataset.add_argument("--workers", type=int, default=None, metavar="N",
                         help="local worker processes (default: one per core)")
    dataset.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                         help="run on an existing Dask distributed cluster (workers must see OUTDIR and the cases)")
    dataset.add_argument("--dry-run", action="store_true", help="show what would be made; write nothing")
    dataset.add_argument("--no-progress", action="store_true", help="no progress bar")
    dataset.set_defaults(run=_dataset)

    practice = commands.add_parser(
        "practice", help="the practice simulator: steer a needle under simulated fluoroscopy in a browser",
        description="Start a local web app in which a fellow takes fluoroscopy shots, steers a needle to the "
        "task's target and is scored against the plan (docs/practice.md). Prints the address to open; Ctrl+C stops "
        "it. Every session is logged in --log-dir and can be gone through again with --review.")
    practice.add_argument("case", type=Path, nargs="?", default=None,
                          help="CT: DICOM folder or file, NIfTI, MHA or NRRD (default: the built-in phantom)")
    practice.add_argument("--procedure", default="tfesi", metavar="NAME",
                          help="tfesi, mbb, rfa or si (default tfesi)")
    practice.add_argument("--level", default=None, help="vertebra level (default L4; S1 for si)")
    practice.add_argument("--side", choices=("left", "right"), default="left", help="default left")
    practice.add_argument("--seed", type=int, default=0, help="phantom seed when no CASE is given (default 0)")
    _add_labels_arguments(practice)
    _add_level_arguments(practice)
    practice.add_argument("--host", default="127.0.0.1",
                          help="address to listen on (default 127.0.0.1: this computer only)")
    practice.add_argument("--port", type=int, default=0, help="port (default 0: a free one, printed)")
    practice.add_argument("--log-dir", type=Path, default=Path("practice-logs"),
                          help="where session logs go (default ./practice-logs)")
    practice.add_argument("--max-sessions", type=int, default=8, metavar="N", help="sessions held at once (default 8)")
    practice.add_argument("--open", action="store_true", help="open the page in the default browser")
    practice.add_argument("--review", type=Path, default=None, metavar="LOG",
                          help="replay a saved session log (give CASE too if it was made on a scan)")
    practice.set_defaults(run=_practice)
    return parser


def _add_labels_arguments(parser: argparse.ArgumentParser) -> None:
    from .segment.label_conventions import CONVENTIONS

    parser.add_argument("--labels", action="append", default=None, metavar="PATH|LEVEL=MASK",
                        help="your own vertebra labels instead of segmenting: a label file (NIfTI/MHA/NRRD), a "
                        "TotalSegmentator output folder, or LEVEL=MASK for a binary mask (e.g. "
                        "T12=vertebrae_T12.nii.gz; repeat for several); their names are taken as the levels")
    parser.add_argument("--labels-convention", choices=CONVENTIONS, default="auto",
                        help="ids of a --labels file: totalseg (TotalSegmentator v2 total), verse, or auto "
                        "(default: decided from the ids present)")


def _anonymous_source(volume: "Volume") -> str:
    """How a written report names its input: the scan's grid and content digest, never its path (a DICOM folder is
    often named after the patient)."""
    from .dataset.cases import content_digest

    size = "x".join(str(n) for n in volume.size_xyz)
    spacing = "x".join(f"{s:g}" for s in volume.spacing_mm)
    return f"{volume.modality} of {size} voxels at {spacing} mm, content {content_digest(volume)[:12]}"


def _user_labels(args: argparse.Namespace) -> Path | dict[str, Path] | None:
    """``--labels``: None, one label file or folder, or level name -> binary mask file."""
    if not args.labels:
        return None
    named = [value for value in args.labels if "=" in value and not Path(value).exists()]
    if not named:
        if len(args.labels) > 1:
            raise NeedleplanError("give --labels once with a label file or folder, or as LEVEL=MASK for each mask")
        return Path(args.labels[0])
    if len(named) < len(args.labels):
        raise NeedleplanError("--labels takes either one label file or folder, or LEVEL=MASK for each mask, "
                              "not both")
    masks: dict[str, Path] = {}
    for value in named:
        name, _, path = value.partition("=")
        if name in masks:
            raise NeedleplanError(f"--labels names {name} twice")
        masks[name] = Path(path)
    return masks


def _labels_paths(labels: Path | dict[str, Path] | None) -> list[Path]:
    return [] if labels is None else [labels] if isinstance(labels, Path) else list(labels.values())


def _practice(args: argparse.Namespace) -> int:
    from .plan.procedures import get_procedure
    from .practice.app import run_practice

    get_procedure(args.procedure)  # an unknown procedure is refused before the case is loaded

    return run_practice(args.case, procedure=args.procedure, level=args.level, side=args.side, seed=args.seed,
                        host=args.host, port=args.port, log_dir=args.log_dir, max_sessions=args.max_sessions,
                        open_browser=args.open, review=args.review, labels=_user_labels(args),
                        labels_convention=args.labels_convention, anchors=_level_anchors(args),
                        levels_confirmed=args.levels_confirmed)


def _info(args: argparse.Namespace) -> int:
    from .io.inventory import inventory

    summaries, remarks = inventory(args.path, resample=args.resample)
    print(f"{args.path}: {len(summaries)} image series (* = the one needleplan would load)")
    for summary in summaries:
        print("\n".join(summary.lines()))
    for remark in remarks:
        print(f"  other: {remark}")
    return 0 if any(s.chosen for s in summaries) else 1


def _phantom(args: argparse.Namespace) -> int:
    from .phantoms import phantom

    from .phantoms import SPACING_RANGE_MM

    check_output_folder(args.out, "OUT", empty=True)
    if not (math.isfinite(args.noise) and args.noise >= 0):
        raise NeedleplanError(f"--noise must be 0 or more HU, got {args.noise:g}")
    options = {"noise_hu": args.noise}
    if args.spacing is not None:
        low, high = SPACING_RANGE_MM
        if not low <= args.spacing <= high:
            raise NeedleplanError(f"--spacing must be positive, within {low:g}-{high:g} mm; got {args.spacing:g}")
        options["spacing_mm"] = args.spacing
    case = phantom(seed=args.seed, **options)
    written = case.write(args.out, format=args.format)
    print(f"phantom seed {args.seed}: {case.ct}")
    for what, path in written.items():
        print(f"  {what}: {path}")
    return 0


def _segment(args: argparse.Namespace) -> int:
    from .anatomy import to_totalseg
    from .io import load, save_volume
    from .io.files import IMAGE_FILE_SUFFIXES, is_image_file_name
    from .segment import segment
    from .segment.picture import spine_picture
    from .volume import Volume

    if not is_image_file_name(args.out):
        raise NeedleplanError(f"cannot tell the format of the label map {describe_path(args.out)}: use one of "
                              f"{', '.join(IMAGE_FILE_SUFFIXES)}")
    for flag, path, suffix in (("--landmarks", args.landmarks, ".json"), ("--picture", args.picture, ".png")):
        if path is not None and path.suffix.lower() != suffix:
            raise NeedleplanError(f"{flag} {describe_path(path)} must be a {suffix} file")
    for flag, path in (("-o", args.out), ("--landmarks", args.landmarks), ("--picture", args.picture)):
        if path is not None:
            check_output_file(path, flag)
    labels = _user_labels(args)
    for source in [args.path, *_labels_paths(labels)]:
        _refuse_writing_into(source, [args.out, args.landmarks, args.picture])
    volume = load(args.path, series=args.series, resample=args.resample)
    spine = segment(volume, engine=args.engine, labels=labels, convention=args.labels_convention,
                    anchors=_level_anchors(args))
    if not spine.vertebrae:
        raise NeedleplanError(f"found no vertebrae in {describe_path(args.path)}; nothing was written")
    label_map = spine.labels
    if args.convention == "totalseg":
        label_map = Volume(to_totalseg(label_map.voxels), label_map.index_to_world, "LABEL", label_map.metadata)
    written = {f"labels ({args.convention} ids)": save_volume(label_map, args.out)}
    if args.landmarks is not None:
        written["landmarks"] = _write_json(spine.to_dict(), args.landmarks)
    if args.picture is not None:
        written["picture"] = spine_picture(spine, args.picture)
    print("\n".join(_segment_summary(args.path, spine, written)))
    return 0


def _segment_summary(source: Path, spine: Spine, written: dict[str, Path]) -> list[str]:
    """The lines `needleplan segment` prints: levels and confidence, numbering anchor, notes, files written."""
    numbering = spine.numbering
    lines = [f"{source}: {len(spine.vertebrae)} levels, {spine.levels[0]}-{spine.levels[-1]} "
             f"({spine.modality}, {spine.engine} masks)",
             f"  {numbering.describe()}"]
    lines += [f"  anchor {name}: {said}" for name, said in numbering.anchors.items()]
    lines += [f"  note: {note}" for note in numbering.notes]
    for vertebra in spine:
        notes = f"; {'; '.join(vertebra.notes)}" if vertebra.notes else ""
        lines.append(f"  {vertebra.name:<4} confidence {vertebra.confidence:.2f}{notes}")
    lines += [f"  unavailable: {what}: {why}" for what, why in spine.unavailable.items()]
    lines += [f"  {what}: {path}" for what, path in written.items()]
    return lines


def _add_level_arguments(parser: argparse.ArgumentParser, confirm: bool = True) -> None:
    """``--level-at`` (and ``--levels-confirmed``): how a user names or confirms the levels."""
    parser.add_argument("--level-at", nargs=4, action="append", default=None, metavar=("X", "Y", "Z", "LEVEL"),
                        help="a level you are sure of: a world point (LPS mm, e.g. read from your viewer) inside "
                        "that vertebra, or on a disc named like L4-L5; the levels are counted from it (repeatable)")
    if confirm:
        parser.add_argument("--levels-confirmed", action="store_true",
                            help="you checked the automatic level numbering yourself: plan even when it is unsure")


def _level_anchors(args: argparse.Namespace) -> dict[str, tuple[float, float, float]] | None:
    """``--level-at X Y Z LEVEL`` options as segment()'s anchors (level name -> world point)."""
    if not args.level_at:
        return None
    anchors: dict[str, tuple[float, float, float]] = {}
    for *numbers, level in args.level_at:
        try:
            point = tuple(float(n) for n in numbers)
        except ValueError:
            raise NeedleplanError(f"--level-at takes X Y Z (mm) then a level, as in --level-at 10 42.5 -210 L3; got "
                                  f"{' '.join([*numbers, level])!r}") from None
        if not all(math.isfinite(v) for v in point):
            raise NeedleplanError(f"--level-at needs finite coordinates, got {' '.join(numbers)}")
        anchors[level.upper()] = point  # type: ignore[assignment]
    return anchors


def _write_json(document: dict, path: Path) -> Path:
    from .io.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(document, indent=1) + "\n")
    return path


def check_output_file(path: Path, flag: str) -> None:
    """Refuse, before any work, a file output that cannot be written.

    Parameters
    ----------
    path : Path
        The file to write (replaced when it exists).
    flag : str
        The option that gave it, for the message.

    Raises
    ------
    NeedleplanError
        ``path`` is a folder, or its folder is missing (it is never created), not a folder or not writable.
    """
    if path.is_dir():
        raise NeedleplanError(f"{flag} {describe_path(path)} is a folder; give a file name")
    _check_writable_folder(path.parent, f"{flag} {describe_path(path)}")


def check_output_folder(path: Path, flag: str, empty: bool = False) -> None:
    """Refuse, before any work, an output folder that cannot be used.

    The folder itself is created when missing, but not its parent: a mistyped path does not grow a folder tree.

    Parameters
    ----------
    path : Path
        The output folder.
    flag : str
        The option that gave it, for the message.
    empty : bool
        The folder must also be missing or empty.

    Raises
    ------
    NeedleplanError
        ``path`` is a file, is not empty when it must be, or its parent is missing, not a folder or not writable.
    """
    if path.exists() and not path.is_dir():
        raise NeedleplanError(f"{flag} {describe_path(path)} is a file; give a folder")
    if empty and path.is_dir() and any(path.iterdir()):
        raise NeedleplanError(f"{flag} {describe_path(path)} is not empty; choose a new or empty folder")
    if path.is_dir():
        _check_writable_folder(path, f"{flag} {describe_path(path)}")
    else:
        _check_writable_folder(path.parent, f"{flag} {describe_path(path)}")


def _check_writable_folder(folder: Path, what: str) -> None:
    where = describe_path(folder)
    if not folder.exists():
        raise NeedleplanError(f"{what}: the folder {where} does not exist; create it first (needleplan does not "
                              "create folder trees)")
    if not folder.is_dir():
        raise NeedleplanError(f"{what}: {where} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NeedleplanError(f"{what}: cannot write into the folder {where} (permission denied)")


def _refuse_writing_into(source: Path, outputs: Sequence[Path | None]) -> None:
    """Refuse an output that is the input or lies inside the input folder: the input is never modified."""
    source = source.resolve()
    for out in outputs:
        if out is not None and (out.resolve() == source or source in out.resolve().parents):
            raise NeedleplanError(f"will not write {describe_path(out)} inside the input {describe_path(source)}; "
                                  "choose an output outside it")


def _render(args: argparse.Namespace) -> int:
    from .fluoro import CArm, Display, render
    from .fluoro.writers import (
        image_format,
        sidecar_path,
        write_geometry_json,
        write_image,
    )
    from .io import load
    from .needle import read_needles

    image_format(args.out, bits=args.bits, quantity=args.quantity)  # a bad OUT fails before any work
    check_output_file(args.out, "-o")
    _check_render_args(args)
    try:
        carm = CArm(oblique=args.oblique, tilt=args.tilt, isocenter=args.isocenter, source_to_detector_mm=args.sid,
                    source_to_isocenter_mm=args.sod, detector_size_mm=args.detector_mm,
                    collimator_diameter_mm=args.collimator_mm)
        display = Display(window=tuple(args.window) if args.window else None, gamma=args.gamma, invert=args.invert)
    except ValueError as exc:
        raise NeedleplanError(str(exc)) from None
    needles = read_needles(args.needle_from) if args.needle_from is not None else []
    volume = load(args.path, series=args.series, resample=args.resample)
    if args.isocenter is not None:
        _check_isocenter(args.isocenter, volume)
    fluoro = render(volume, carm, size=args.size, needles=needles, method=args.method, energy_kev=args.energy_kev,
                    display=display)
    written = write_image(fluoro, args.out, bits=args.bits, quantity=args.quantity)
    sidecar = write_geometry_json(fluoro, sidecar_path(args.out))
    rows, cols = fluoro.carm.detector_rows_cols
    print(f"wrote {written} ({cols} x {rows} pixels, {fluoro.carm.describe()}) and its geometry {sidecar.name}")
    return 0


#: How far outside the volume's box ``--isocenter`` may lie: farther, the volume leaves the image (mm).
ISOCENTER_MARGIN_MM = 100.0


def _check_isocenter(point: Sequence[float], volume: "Volume") -> None:
    """Refuse an isocentre more than :data:`ISOCENTER_MARGIN_MM` outside the volume: its image would show nothing."""
    import numpy as np

    corners = volume.corners_mm()
    low, high = corners.min(axis=0), corners.max(axis=0)
    outside = float(np.linalg.norm(np.maximum(np.maximum(low - point, np.asarray(point) - high), 0.0)))
    if outside > ISOCENTER_MARGIN_MM:
        box = ", ".join(f"{axis} {a:.0f}..{b:.0f}" for axis, a, b in zip("XYZ", low, high, strict=True))
        raise NeedleplanError(f"--isocenter {' '.join(f'{v:g}' for v in point)} lies {outside:.4g} mm outside the "
                              f"volume ({box} mm, LPS); give a point within {ISOCENTER_MARGIN_MM:g} mm of it")


def _check_render_args(args: argparse.Namespace) -> None:
    numbers = {"--oblique": args.oblique, "--tilt": args.tilt, "--sid": args.sid, "--sod": args.sod,
               "--detector-mm": args.detector_mm, "--energy-kev": args.energy_kev, "--gamma": args.gamma,
               "--collimator-mm": args.collimator_mm}
    numbers.update({f"--isocenter {axis}": v for axis, v in zip("XYZ", args.isocenter or (), strict=False)})
    numbers.update({f"--window {end}": v for end, v in zip(("LOW", "HIGH"), args.window or (), strict=False)})
    for flag, value in numbers.items():
        if value is not None and not math.isfinite(value):
            raise NeedleplanError(f"{flag} must be a finite number, got {value}")
    if not -180 <= args.oblique <= 180:
        raise NeedleplanError(f"--oblique must be within -180..180 degrees, got {args.oblique:g}")
    if not -90 <= args.tilt <= 90:
        raise NeedleplanError(f"--tilt must be within -90..90 degrees, got {args.tilt:g}")
    if not 16 <= args.size <= 4096:
        raise NeedleplanError(f"--size must be within 16-4096 pixels, got {args.size}")
    for flag in ("--sid", "--sod", "--detector-mm", "--collimator-mm", "--gamma"):
        value = numbers[flag]
        if value is not None and value <= 0:
            raise NeedleplanError(f"{flag} must be positive, got {value:g}")
    if args.sod >= args.sid:
        raise NeedleplanError(f"--sod ({args.sod:g} mm) must be smaller than --sid ({args.sid:g} mm)")
    if not 40 <= args.energy_kev <= 100:
        raise NeedleplanError(f"--energy-kev must be within 40-100 keV, got {args.energy_kev:g}")
    if args.window and args.window[1] <= args.window[0]:
        raise NeedleplanError(f"--window needs LOW < HIGH, got {args.window[0]:g} {args.window[1]:g}")
    source, out = args.path.resolve(), args.out.resolve()
    if out == source or source in out.parents:
        raise NeedleplanError(f"will not write {describe_path(args.out)} inside the input "
                              f"{describe_path(args.path)}; choose an output outside it")


def _plan(args: argparse.Namespace) -> int:
    from .plan.outputs import write_plan_outputs

    request = _plan_request(args)
    check_output_folder(args.out, "-o")
    labels = _user_labels(args)
    for labels_path in _labels_paths(labels):
        _refuse_writing_into(labels_path, [args.out])
    volume, source = _plan_input(args)
    from .segment import segment

    spine = segment(volume, engine=args.engine, labels=labels, convention=args.labels_convention,
                    anchors=_level_anchors(args))
    if not spine.vertebrae:
        raise NeedleplanError(f"found no vertebrae in {source}; nothing was planned")
    if args.levels_confirmed:
        spine = spine.confirm_levels()
    print(f"{source}: {spine.numbering.describe()}")
    plans, skipped = request(spine)
    written = write_plan_outputs(volume, spine, plans, args.out, skipped=skipped, single=not (args.all or args.joint),
                                 size=args.size, source=_anonymous_source(volume))
    print(f"{source}: levels {', '.join(spine.levels)}")
    for plan in plans:
        print(f"  {plan.summary()}")
    for name, why in skipped.items():
        print(f"  {name}: not planned: {why}")
    images = sum(len(paths) for paths in written["views"].values()) + len(written["pictures"])
    print(f"wrote {written['plan_json']}, {written['report']} and {images} images in "
          f"{Path(args.out) / 'images'}")
    return 0


def _dataset(args: argparse.Namespace) -> int:
    global _interrupt_note
    from .dataset import make_dataset, read_config

    check_output_folder(args.out, "-o")
    config = read_config(args.config)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise NeedleplanError(f"--workers must be 1 or more, got {workers}")

    def finished() -> str:
        count = sum(1 for p in (Path(args.out) / "labels").rglob("*.json") if not p.name.startswith(".part-"))
        return f"; {count} images are finished in {args.out}; run the same command again to make the rest"

    _interrupt_note = None if args.dry_run else finished
    try:
        summary = make_dataset(config, args.out, workers=workers, scheduler=args.scheduler, dry_run=args.dry_run,
                               progress=not args.no_progress)
    except KeyboardInterrupt:  # raised while the local workers render: they were stopped first
        print(f"needleplan: interrupted{finished()}", file=sys.stderr)
        return 130
    finally:
        _interrupt_note = None
    for line in summary.lines():
        print(line)
    return 0


def _plan_request(args: argparse.Namespace):  # noqa: ANN202
    """Check the plan arguments before any work; returns spine -> (plans, skipped)."""
    from .anatomy import LEVEL_ORDER, SIDES
    from .plan import plan, plan_all, plan_joint
    from .plan.procedures import FACET_JOINT_PROCEDURES, PROCEDURES, get_procedure

    if not 64 <= args.size <= 4096:
        raise NeedleplanError(f"--size must be within 64-4096 pixels, got {args.size}")
    procedure = args.procedure.lower() if args.procedure else None
    kind = get_procedure(procedure) if procedure is not None else None
    side = args.side.lower() if args.side else None
    if args.all:
        if side is not None or args.approach is not None:
            raise NeedleplanError("--all plans both sides with the default approaches; leave out --side and "
                                  "--approach")
        chosen = (procedure,) if procedure else PROCEDURES

        def every(spine: Spine) -> tuple[list, dict[str, str]]:
            case = plan_all(spine, chosen)
            return case.plans, case.skipped
        return every
    if args.joint is None and args.level is None and (kind is None or kind.needs_level):
        raise NeedleplanError("say what to plan: --level (with --procedure tfesi, mbb or rfa), --joint or --all")
    if side not in SIDES:
        raise NeedleplanError(f"--side must be 'left' or 'right', got {args.side!r}" if args.side else
                              "--side is needed: left or right")
    if args.joint is not None:
        procedure = procedure or FACET_JOINT_PROCEDURES[0]
        if procedure not in FACET_JOINT_PROCEDURES:
            raise NeedleplanError(f"--joint is for {' or '.join(FACET_JOINT_PROCEDURES)}, not {procedure!r}")
        if args.approach is not None:
            raise NeedleplanError("--approach is for TFESI plans, not --joint")
        return lambda spine: (plan_joint(spine, args.joint, side, procedure), {})
    level = (args.level or "S1").upper()
    if level not in LEVEL_ORDER:
        raise NeedleplanError(f"unknown level {args.level!r}; levels are named like L4 or S1")
    return lambda spine: ([plan(spine, procedure or "tfesi", level, side, approach=args.approach)], {})


def _plan_input(args: argparse.Namespace):  # noqa: ANN202
    """The CT to plan on and its name: a file or folder, or the built-in phantom ("phantom" or "phantom:SEED")."""
    from .io import load

    spec = str(args.path)
    if spec == "phantom" or spec.startswith("phantom:"):
        from .phantoms import phantom

        seed_text = spec.partition(":")[2] or "0"
        try:
            seed = int(seed_text)
        except ValueError:
            raise NeedleplanError(f"the phantom's seed must be a whole number, as in phantom:3; got {spec!r}") from None
        if seed < 0:
            raise NeedleplanError(f"the phantom's seed must be 0 or more, got {seed}")
        return phantom(seed=seed).ct, f"phantom seed {seed}"
    path = Path(spec)
    _refuse_writing_into(path, [args.out])
    return load(path, series=args.series, resample=args.resample), path.name


if __name__ == "__main__":
    sys.exit(main())
