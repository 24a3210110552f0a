"""The needleplan exception family.

Every error a user can cause with bad input is a :class:`NeedleplanError`. Messages are one line: what was
wrong, with which file or folder, and what to do. The CLI prints the message and exits non-zero.
"""

from __future__ import annotations

import os


class NeedleplanError(Exception):
    """Base class of every error caused by input that needleplan cannot use."""


class NeedleplanWarning(UserWarning):
    """Something in the input was unusual and needleplan handled it; the message says how."""


class InputNotFoundError(NeedleplanError, FileNotFoundError):
    """The path given does not exist."""


class EmptyInputError(NeedleplanError):
    """A folder holds no files at all, or a file has zero bytes."""


class NoDicomError(NeedleplanError):
    """A folder holds files, but none is DICOM or a supported image file."""


class NotAnImageError(NeedleplanError):
    """A file is not an image needleplan can read (unknown format, or DICOM without pixels: SR, SEG, RTSTRUCT)."""


class CorruptFileError(NeedleplanError):
    """A file claims a format but cannot be parsed: truncated, damaged header, pixel data too short."""


class UnsupportedTransferSyntaxError(NeedleplanError):
    """Compressed pixel data for which no decoder is installed."""


class SingleSliceError(NeedleplanError):
    """Only one slice where a volume is needed."""


class InconsistentSeriesError(NeedleplanError):
    """The slices of one series disagree: sizes, orientations, spacing, gaps, duplicated positions."""


class SeriesNotFoundError(NeedleplanError):
    """The series the user asked for is not in the input."""


class GeometryError(NeedleplanError):
    """A geometry that cannot be right: a singular affine, zero spacing, non-finite coordinates."""


def describe_path(path: str | os.PathLike[str]) -> str:
    """Return a path as it should appear in a message: as given, quoted."""
    return f"'{os.fspath(path)}'"


class LevelsUnconfirmedError(NeedleplanError):
    """The vertebra levels of a spine are not sure enough to plan on and nobody confirmed them."""
