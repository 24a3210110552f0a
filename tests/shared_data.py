"""Where the real scans and label maps shared between projects live (``../shared/data``, see its README).

``NEEDLEPLAN_SHARED_DATA`` points elsewhere. Tests that need a file ask :func:`shared`, which skips them with the
path when the data is absent (it never is in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("NEEDLEPLAN_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def shared(*parts: str) -> Path:
    """The path of a shared file or folder; the calling test is skipped, naming the path, when it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared real data not found at {path} (set NEEDLEPLAN_SHARED_DATA to its folder)")
    return path
