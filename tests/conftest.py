"""Shared fixtures (``small_ct``) and the test lanes: the markers ``slow``, ``realdata`` and ``browser`` (registered
in pyproject.toml).

Whole modules carry their marks (``pytestmark``); in mixed modules, a test that uses one of
:data:`REALDATA_FIXTURES` is marked ``realdata`` here. The fast lane for day-to-day work leaves all three out:
``pytest -m "not slow and not realdata and not browser"``; CI runs everything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import needleplan as npl
from needleplan.volume import affine_from_geometry

#: Fixtures that load the shared real scans (``../shared/data``).
REALDATA_FIXTURES = frozenset({"real_ct", "real_ct_checks", "compressed_pair", "cervical"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REALDATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session")
def small_ct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 mm CT (air, water block, bone bar) as NIfTI, for command-line tests that need any CT."""
    voxels = np.full((24, 28, 32), -1000, dtype=np.int16)
    voxels[3:21, 4:24, 4:28] = 0
    voxels[8:16, 10:18, 12:20] = 1200
    path = tmp_path_factory.mktemp("ct") / "ct.nii.gz"
    npl.save_volume(npl.Volume(voxels, affine_from_geometry([2.0, 2.0, 2.0], [0.0, 0.0, 0.0])), path)
    return path

