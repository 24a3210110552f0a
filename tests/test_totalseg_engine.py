"""The optional TotalSegmentator engine: clear errors without the package or its weights; ids and grid of its answer.

TotalSegmentator itself is not installed for the tests: a stand-in module plays its part where one is needed.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import ILIUM_IDS, TOTALSEG_HIP_IDS, TOTALSEG_IDS, VERSE_IDS
from needleplan.errors import NeedleplanError
from needleplan.segment.totalseg_engine import totalseg_masks
from needleplan.volume import affine_from_geometry


@pytest.fixture
def ct() -> npl.Volume:
    voxels = np.full((12, 10, 8), -1000, dtype=np.int16)
    voxels[3:9, 2:8, 2:6] = 700
    direction = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # stored like real RAS/PIR data
    return npl.Volume(voxels, affine_from_geometry([1.5, 2.0, 2.5], [12.0, -8.0, 40.0], direction))


def install_stand_in(monkeypatch, weights_dir, answer=None) -> list[dict]:
    """Put a fake ``totalsegmentator`` package in sys.modules; returns the list its calls are recorded in."""
    calls: list[dict] = []

    def run(source, output, **options):
        calls.append(dict(options, source=source, output=output))
        image = npl.load(source)
        npl.save_volume(answer(image), output)

    package = types.ModuleType("totalsegmentator")
    api = types.ModuleType("totalsegmentator.python_api")
    api.totalsegmentator = run
    config = types.ModuleType("totalsegmentator.config")
    config.get_weights_dir = lambda: weights_dir
    for name, module in (("totalsegmentator", package), ("totalsegmentator.python_api", api),
                         ("totalsegmentator.config", config)):
        monkeypatch.setitem(sys.modules, name, module)
    return calls


def test_without_the_package_the_error_says_how_to_install(monkeypatch, ct):
    for name in ("totalsegmentator", "totalsegmentator.python_api", "totalsegmentator.config"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(NeedleplanError) as error:
        totalseg_masks(ct)
    message = str(error.value)
    assert "pip install TotalSegmentator" in message and "network" in message and "\n" not in message


def test_without_the_weights_the_error_says_where_and_how_to_get_them(monkeypatch, ct, tmp_path):
    install_stand_in(monkeypatch, tmp_path)
    with pytest.raises(NeedleplanError) as error:
        totalseg_masks(ct, fast=True)
    message = str(error.value)
    assert str(tmp_path) in message and "downloaded on first run" in message and "total_fast" in message


def test_a_mr_volume_is_refused(ct):
    mr = npl.Volume(ct.voxels.astype(np.float32) + 1500, ct.index_to_world, "MR")
    with pytest.raises(NeedleplanError, match="needs a CT volume"):
        totalseg_masks(mr)


@pytest.mark.parametrize("reoriented", [False, True])
def test_the_answer_comes_back_in_verse_ids_on_the_ct_grid(monkeypatch, ct, tmp_path, reoriented):
    (tmp_path / "Dataset297_TotalSegmentator_total_3mm_1559subj").mkdir()
    bone = np.asarray(ct.voxels) > 300

    def answer(image: npl.Volume) -> npl.Volume:
        ids = np.zeros(image.shape, dtype=np.uint8)
        ids[np.asarray(image.voxels) > 300] = TOTALSEG_IDS["L4"]
        ids[0, 0, 0] = TOTALSEG_HIP_IDS["left"]
        ids[0, 0, 1] = 5  # an organ: dropped
        labels = npl.Volume(ids, image.index_to_world, "LABEL")
        if not reoriented:
            return labels
        flipped = image.index_to_world @ np.array([[-1, 0, 0, image.shape[2] - 1], [0, 1, 0, 0], [0, 0, 1, 0],
                                                   [0, 0, 0, 1]], dtype=float)
        return npl.Volume(ids[:, :, ::-1].copy(), flipped, "LABEL")  # same anatomy, x axis stored reversed

    calls = install_stand_in(monkeypatch, tmp_path, answer)
    labels = totalseg_masks(ct, fast=True, device="cpu")
    assert calls and calls[0]["ml"] is True and calls[0]["fast"] is True and calls[0]["device"] == "cpu"
    assert labels.modality == "LABEL" and labels.shape == ct.shape
    np.testing.assert_allclose(labels.index_to_world, ct.index_to_world, atol=1e-4)
    expected = np.where(bone, VERSE_IDS["L4"], 0)
    expected[0, 0, 0] = ILIUM_IDS["left"]
    np.testing.assert_array_equal(labels.voxels, expected)
