"""Landmarks measured against truth that is not our own code: the phantom's recipe geometry, and real vertebra
shapes (VerSe's hand-corrected masks) judged by the reference finders of :mod:`reference_landmarks`.

The VerSe masks come without their CT; each gets a simple CT built from its labels (cortex, cancellous bone, soft
tissue). The landmark code is judged on exactly VerSe's masks, given to ``npl.segment`` as the user's own labels
(case "verse010"); the whole pipeline, whose watershed split makes its own masks, is judged apart (case "verse010
split"), so that a split error is not read as a landmark error. Thresholds are what a physician tolerates: a needle
target within 3 mm (CLINICAL.md section 7, TFESI and MBB tolerance) at the median, and within 5 mm for 9 in 10 (an
error the first fluoroscopy shot corrects, well under an expert's free-hand 7.6 mm). A landmark that misses them is
marked ``xfail`` with its measured figures, never given a looser threshold.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import needleplan as npl
from needleplan.segment.metrics import landmark_errors_mm

from reference_landmarks import ct_from_labels, spine_reference
from shared_data import SHARED_DATA

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

DATA = SHARED_DATA
VERSE = {
    "verse010": DATA / "verse_sub-verse010_labels_only" / "sub-verse010_seg-vert_msk.nii.gz",
    "verse004": DATA / "verse_sub-verse004_labels_only" / "sub-verse004_seg-vert_msk.nii.gz",
}
LUMBAR = ("L1", "L2", "L3", "L4", "L5")
#: (median, 90th percentile) an error may reach, mm.
TARGET_MM = (3.0, 5.0)
LANDMARKS = ("body_centroid", "canal_center", "pedicle_<side>.center", "sap_tip_<side>", "iap_tip_<side>",
             "tp_tip_<side>", "sap_tp_junction_<side>", "spinous_tip")
#: Landmarks measured to miss :data:`TARGET_MM` (median, p90, max mm), by case.
MISSES: dict[tuple[str, str], str] = {
    ("verse010", "sap_tip_<side>"): "1.9 / 8.4 / 9.8 mm: both L5 SAP tips 8-10 mm off",
    ("verse010", "sap_tp_junction_<side>"): "7.6 / 14.3 / 16.2 mm: ours 2-10 mm medial of the SAP's lateral face "
                                            "(the face is fitted over the whole SAP, which narrows upward)",
    ("verse004", "sap_tp_junction_<side>"): "5.3 / 8.7 / 15.3 mm: as verse010",
    ("verse010", "spinous_tip"): "2.1 / 6.0 / 7.2 mm",
    ("verse010 split", "sap_tip_<side>"): "3.8 / 14.0 / 40.7 mm: L4 right took another piece's top",
    ("verse004 split", "sap_tip_<side>"): "3.8 / 6.4 / 7.6 mm",
    ("verse010 split", "iap_tip_<side>"): "9.9 / 11.9 / 12.1 mm: the split gives the IAPs to the level below",
    ("verse004 split", "iap_tip_<side>"): "7.6 / 13.1 / 13.8 mm: as verse010",
    ("verse010 split", "sap_tp_junction_<side>"): "7.0 / 16.6 / 18.7 mm",
    ("verse004 split", "sap_tp_junction_<side>"): "4.1 / 6.4 / 12.6 mm",
    ("verse010 split", "spinous_tip"): "3.6 / 10.8 / 12.3 mm",
    ("verse004 split", "spinous_tip"): "8.5 / 19.6 / 20.8 mm",
}
#: Every case: the phantom, each VerSe shape on its own masks, and each through our split.
CASES = ("phantom", *VERSE, *(f"{name} split" for name in VERSE))


def per_landmark(errors: dict[str, float]) -> dict[str, np.ndarray]:
    """Errors grouped by landmark kind over levels and sides ("L3.sap_tip_left" -> "sap_tip_<side>")."""
    out: dict[str, list[float]] = {}
    for key, error in errors.items():
        out.setdefault(re.sub(r"_(left|right)", "_<side>", key.split(".", 1)[1]), []).append(error)
    return {kind: np.asarray(values) for kind, values in out.items()}


def matched(spine: npl.Spine, reference: dict[str, dict]) -> dict[str, dict]:
    """Our landmarks of the vertebra nearest (canal centre) to each reference one: names play no part here."""
    out = {}
    for name, marks in reference.items():
        nearest = min(spine, key=lambda v: np.linalg.norm(np.asarray(v.landmarks.get("canal_center", np.inf))
                                                          - marks["canal_center"]))
        out[name] = nearest.landmarks
    return out


def verse_errors(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per-landmark errors (mm) of one VerSe shape on its own masks ("labels") and through our split ("split")."""
    if not path.exists():
        pytest.skip(f"shared real data not found at {path}")
    labels = npl.load(path, modality="LABEL")
    reference = {name: marks for name, marks in spine_reference(labels).items() if name in LUMBAR}
    ct = ct_from_labels(labels)
    spines = {"labels": npl.segment(ct, labels=labels, convention="verse"), "split": npl.segment(ct)}
    return {how: per_landmark(landmark_errors_mm(matched(spine, reference), reference))
            for how, spine in spines.items()}


@pytest.fixture(scope="module")
def errors() -> dict[str, dict[str, np.ndarray]]:
    """Per-landmark errors (mm) of each case in :data:`CASES`."""
    case = npl.phantom(seed=0)
    phantom = landmark_errors_mm(npl.segment(case.ct).landmarks(), {k: case.landmarks[k] for k in LUMBAR})
    out = {"phantom": per_landmark(phantom)}
    for name, path in VERSE.items():
        found = verse_errors(path)
        out[name], out[f"{name} split"] = found["labels"], found["split"]
    return out


def cases() -> list:
    """Every (case, landmark), those in :data:`MISSES` marked as expected to fail (strictly: a fix shows up)."""
    return [pytest.param(case, landmark, marks=[pytest.mark.xfail(
                reason=f"measured median / p90 / max {MISSES[case, landmark]}", strict=True)]
                if (case, landmark) in MISSES else [])
            for case in CASES for landmark in LANDMARKS]


@pytest.mark.parametrize(("case", "landmark"), cases())
def test_landmark_within_what_a_physician_tolerates(errors, case, landmark):
    values = errors[case][landmark]
    median, p90 = float(np.median(values)), float(np.percentile(values, 90))
    assert median <= TARGET_MM[0] and p90 <= TARGET_MM[1], (
        f"{case} {landmark}: median {median:.1f}, p90 {p90:.1f}, max {values.max():.1f} mm over {len(values)}")


def test_reference_finders_see_every_lumbar_landmark():
    """The reference finders find every landmark they define on both real shapes (none silently missing)."""
    for name, path in VERSE.items():
        if not path.exists():
            pytest.skip(f"shared real data not found at {path}")
        reference = spine_reference(npl.load(path, modality="LABEL"))
        for level in LUMBAR:
            assert len(reference[level]) == 13, (name, level, sorted(reference[level]))
