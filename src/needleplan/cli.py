"""The `needleplan` command.

Every sub-command exits 0 on success. Bad input prints one line, ``needleplan: error: ...``, and exits 1
(no traceback); wrong usage exits 2. Warnings print as ``needleplan: warning: ...``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import NeedleplanError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return int(args.run(args) or 0)
    except NeedleplanError as exc:
        print(f"needleplan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("needleplan: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    print(f"needleplan: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
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
    phantom.add_argument("out", type=Path, help="output folder (created; must not exist or be empty)")
    phantom.add_argument("--format", choices=("dicom", "nifti"), default="dicom", help="CT format (default dicom)")
    phantom.add_argument("--seed", type=int, default=0, help="anatomical variation and noise seed (default 0)")
    phantom.add_argument("--spacing", type=float, default=None, metavar="MM", help="isotropic voxel spacing in mm")
    phantom.add_argument("--noise", type=float, default=0.0, metavar="HU", help="Gaussian noise in HU (default 0)")
    phantom.set_defaults(run=_phantom)
    return parser


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

    options = {"noise_hu": args.noise}
    if args.spacing is not None:
        if args.spacing <= 0:
            raise NeedleplanError(f"--spacing must be positive, got {args.spacing}")
        options["spacing_mm"] = args.spacing
    case = phantom(seed=args.seed, **options)
    written = case.write(args.out, format=args.format)
    print(f"phantom seed {args.seed}: {case.ct}")
    for what, path in written.items():
        print(f"  {what}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
