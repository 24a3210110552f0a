"""The segmentation/planning contract: VerSe <-> TotalSegmentator ids, Spine JSON round trip, unknown levels."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import needleplan as npl
from needleplan.anatomy import (
    ILIUM_IDS,
    TOTALSEG_HIP_IDS,
    TOTALSEG_IDS,
    TOTALSEG_SACRUM,
    VERSE_IDS,
    VERSE_NAMES,
    Numbering,
    Spine,
    Vertebra,
    from_totalseg,
    landmarks_from_dict,
    read_landmarks,
    to_totalseg,
)
from needleplan.errors import NeedleplanError
from shared_data import SHARED_DATA

DATA = SHARED_DATA
SPINE_REPORT = DATA / "totalseg_example_abdomen_ct" / "spine_report"
needs_data = pytest.mark.skipif(not SPINE_REPORT.is_dir(), reason=f"shared real data folder {SPINE_REPORT} is absent")

#: VerSe levels that TotalSegmentator v2 has no label for.
NO_TOTALSEG = {"L6", "T13"}


# ---- id converters --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VERSE_IDS))
def test_every_verse_id_survives_the_trip_through_totalseg(name):
    verse = np.array([0, VERSE_IDS[name]], dtype=np.uint8)
    back = from_totalseg(to_totalseg(verse))
    assert back[0] == 0
    assert back[1] == (0 if name in NO_TOTALSEG else VERSE_IDS[name])


@pytest.mark.parametrize("side", sorted(ILIUM_IDS))
def test_ilia_survive_the_trip_through_totalseg_hips(side):
    ilium = np.array([ILIUM_IDS[side]], dtype=np.uint8)
    assert to_totalseg(ilium)[0] == TOTALSEG_HIP_IDS[side]
    assert from_totalseg(to_totalseg(ilium))[0] == ILIUM_IDS[side]


@pytest.mark.parametrize("name", sorted(TOTALSEG_IDS))
def test_totalseg_ids_name_the_same_level_in_verse(name):
    assert VERSE_NAMES[int(from_totalseg(np.array([TOTALSEG_IDS[name]]))[0])] == name


def test_both_totalseg_sacrum_ids_become_the_verse_sacrum():
    ids = np.array([TOTALSEG_SACRUM, TOTALSEG_IDS["S1"]])
    assert set(from_totalseg(ids).tolist()) == {VERSE_IDS["S1"]}


def test_other_totalseg_structures_and_large_ids_become_background():
    known = set(TOTALSEG_IDS.values()) | set(TOTALSEG_HIP_IDS.values()) | {TOTALSEG_SACRUM}
    others = np.array([i for i in range(1, 118) if i not in known] + [300], dtype=np.int64)
    assert not from_totalseg(others).any()


def test_converters_keep_the_array_shape():
    labels = np.zeros((3, 4, 5), dtype=np.uint8)
    labels[1, 2, 3] = VERSE_IDS["L4"]
    assert to_totalseg(labels).shape == labels.shape
    assert from_totalseg(to_totalseg(labels))[1, 2, 3] == VERSE_IDS["L4"]


@needs_data
def test_totalseg_labels_map_to_the_same_levels_as_the_verse_version_of_the_same_case():
    ts = npl.load(SPINE_REPORT / "totalseg_vertebrae.nii.gz", modality="LABEL")
    refined = npl.load(SPINE_REPORT / "totalseg_vertebrae_pp_refined.nii.gz", modality="LABEL")
    assert ts.shape == refined.shape and np.allclose(ts.index_to_world, refined.index_to_world)
    converted = from_totalseg(ts.voxels)
    reference = np.asarray(refined.voxels)
    levels = [int(v) for v in np.unique(reference) if v]
    assert levels, "the refined label map holds no vertebra"
    for level in levels:
        under = converted[reference == level]
        ids, counts = np.unique(under, return_counts=True)
        majority = int(ids[np.argmax(counts)])
        assert majority == level, (
            f"{VERSE_NAMES[level]}: the TotalSegmentator labels under it map mostly to "
            f"{VERSE_NAMES.get(majority, majority)}"
        )
        assert counts.max() / under.size > 0.5


# ---- Spine <-> JSON --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def spine() -> Spine:
    case = npl.phantom(0, spacing_mm=4.0)
    names = [name for name in case.landmarks if name in VERSE_IDS]
    vertebrae = {
        name: Vertebra(name, VERSE_IDS[name], 0.9, case.landmarks[name], [f"{name} looked ordinary"])
        for name in names
    }
    return Spine(labels=case.labels, vertebrae=vertebrae, pelvis=case.landmarks["pelvis"],
                 numbering=Numbering("sacrum", 0.8, ["five lumbar vertebrae"]))


def assert_same_landmarks(got: Any, want: Any, where: str = "") -> None:
    """Equal up to the 0.001 mm rounding of the JSON writer; numeric lists compare as arrays."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for key in want:
            assert_same_landmarks(got[key], want[key], f"{where}/{key}")
    elif isinstance(want, str):
        assert got == want, where
    else:
        np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(want, dtype=float), atol=1e-3,
                                   err_msg=where)


def test_spine_to_json_and_back(spine, tmp_path):
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(spine.to_dict()))
    for vertebrae, pelvis, numbering in (landmarks_from_dict(json.loads(path.read_text())), read_landmarks(path)):
        assert list(vertebrae) == spine.levels
        for name, vertebra in vertebrae.items():
            original = spine[name]
            assert (vertebra.name, vertebra.label, vertebra.notes) == (original.name, original.label, original.notes)
            assert vertebra.confidence == pytest.approx(original.confidence)
            assert_same_landmarks(vertebra.landmarks, original.landmarks, name)
        assert_same_landmarks(pelvis, spine.pelvis, "pelvis")
        assert (numbering.anchor, numbering.notes) == (spine.numbering.anchor, spine.numbering.notes)
        assert numbering.confidence == pytest.approx(spine.numbering.confidence)


def test_read_landmarks_gives_arrays(spine, tmp_path):
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(spine.to_dict()))
    vertebrae, _, _ = read_landmarks(path)
    first = next(iter(vertebrae.values()))
    assert isinstance(first["body_centroid"], np.ndarray) and first["body_centroid"].shape == (3,)


@pytest.mark.parametrize("document", [{}, {"vertebrae": [{"name": "L1"}]}, {"vertebrae": [], "numbering": 3}])
def test_a_document_that_is_not_landmarks_is_refused(document):
    with pytest.raises(NeedleplanError, match="not a needleplan landmarks document"):
        landmarks_from_dict(document)


def test_unreadable_landmarks_files_are_refused(tmp_path):
    with pytest.raises(NeedleplanError, match="cannot read landmarks"):
        read_landmarks(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NeedleplanError, match="cannot read landmarks"):
        read_landmarks(tmp_path / "bad.json")


# ---- unknown levels and landmarks --------------------------------------------------------------------------------
def test_an_unknown_level_names_the_levels_found(spine):
    assert "T4" not in spine
    with pytest.raises(NeedleplanError, match="level 'T4' is not in this scan") as error:
        spine["T4"]
    assert all(name in str(error.value) for name in spine.levels)


def test_a_missing_landmark_names_the_ones_present(spine):
    vertebra = spine[spine.levels[0]]
    assert "no_such_landmark" not in vertebra
    with pytest.raises(NeedleplanError, match="has no landmark 'no_such_landmark'") as error:
        vertebra["no_such_landmark"]
    assert "body_centroid" in str(error.value)


def test_an_empty_spine_says_none_were_found(spine):
    empty = Spine(labels=spine.labels, vertebrae={})
    with pytest.raises(NeedleplanError, match=r"found: none"):
        empty["L1"]


def test_a_saved_spine_reads_back_the_same(tmp_path):
    from needleplan.anatomy import load_spine, save_spine
    case = npl.phantom(0, spacing_mm=3.0)
    spine = case.spine()
    save_spine(spine, tmp_path / "spine", source="digest-1")
    back, source = load_spine(tmp_path / "spine")
    assert source == "digest-1" and back.levels == spine.levels
    assert np.array_equal(back.labels.voxels, spine.labels.voxels)
    assert np.allclose(back.labels.index_to_world, spine.labels.index_to_world)
    assert np.array_equal(back.structures.voxels, spine.structures.voxels)
    for name in spine.levels:
        for key in ("body_centroid", "sap_tp_junction_left"):
            assert np.allclose(back[name][key], spine[name][key], atol=1e-3)
        assert np.allclose(back[name]["medial_branch_left"], spine[name]["medial_branch_left"], atol=1e-3)
    assert np.allclose(back.pelvis["si_joint_posterior_line_right"], spine.pelvis["si_joint_posterior_line_right"],
                       atol=1e-3)
    assert not any(p.name.startswith(".part-") for p in (tmp_path / "spine").iterdir())
    with pytest.raises(NeedleplanError, match="no saved spine"):
        load_spine(tmp_path / "nowhere")
