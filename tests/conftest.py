"""Test lanes: the markers ``slow``, ``realdata`` and ``browser`` (registered in pyproject.toml).

Whole modules carry their marks (``pytestmark``); in mixed modules, a test that uses one of
:data:`REALDATA_FIXTURES` is marked ``realdata`` here. The fast lane for day-to-day work leaves all three out:
``pytest -m "not slow and not realdata and not browser"``; CI runs everything.
"""

from __future__ import annotations

import pytest

#: Fixtures that load the shared real scans (``../shared/data``).
REALDATA_FIXTURES = frozenset({"real_ct", "real_ct_checks", "compressed_pair", "cervical"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REALDATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)
