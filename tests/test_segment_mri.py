"""MRI segmentation: spine curve, discs, vertebral bodies and canal on T2, and the landmarks MR cannot give.

Real data: the Spinal Cord Toolbox T2 cervical crop (``../shared/data/sct_cervical_mri_t2``), PSR storage. Its
references: a hand-drawn cord mask labelled by vertebral level, and two single-voxel labels (values 3 and 5) in
``t2_disc_labels.nii.gz``. In SCT's disc convention value n marks the disc between C(n-1) and Cn (3 = C2/C3), but
these two points sit on the cord at mid-height of a vertebral body, not on a disc (checked below and on the
image); they are SCT's own ``t2/labels.nii.gz``, used by SCT as mid-vertebral labels. The disc reference used here
is therefore the one SCT's developers wrote for this very image in their test suite (spinalcordtoolbox,
``testing/cli/test_cli_sct_compute_ascor.py``, fixture ``t2_disc_labels``): posterior disc tips at voxels
(22, 52, 26), (22, 33, 24), (23, 16, 24), (24, 1, 24). The lowest lies 1 mm from the edge of the field of view.

Real lumbar data: the Spinal Cord Toolbox sagittal T2 (``../shared/data/sct_lumbar_mri_t2``), 38 mm left-right,
T9 to L3, no sacrum. Its only published reference is the T9-T10 disc at voxel (27, 76, 187), on the disc's
posterior edge 5 mm right of the midline; the other disc centres and the canal below were read by hand off
pictures of the scan (see the constants).

Synthetic data: the phantom's CT mapped to T2-like intensities (CSF and disc nucleus bright, marrow medium,
annulus, muscle and cortical bone dark), also on an oblique and a permuted grid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

import needleplan as npl
from needleplan.errors import NeedleplanError
from needleplan.segment.mri import segment_mri
from needleplan.volume import Volume, affine_from_geometry
from shared_data import SHARED_DATA

DATA = SHARED_DATA / "sct_cervical_mri_t2"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data folder {DATA} is absent")
LUMBAR = DATA.parent / "sct_lumbar_mri_t2" / "t2_lumbar.nii.gz"
needs_lumbar = pytest.mark.skipif(not LUMBAR.is_file(), reason=f"shared real data file {LUMBAR} is absent")

#: SCT developers' posterior disc tips on t2.nii.gz (voxel i, j, k), cranial to caudal; see the module docstring.
SCT_DISC_TIPS_IJK = ((22, 52, 26), (22, 33, 24), (23, 16, 24), (24, 1, 24))
#: The landmarks every MR vertebra must have.
MR_LANDMARKS = ("body_centroid", "axes", "superior_endplate", "inferior_endplate", "canal_center", "canal_outline")
#: T2-like intensity of each phantom material, by its noise-free HU.
T2_BY_HU = {-1000: 0, -900: 0, -100: 750, 10: 1000, 40: 350, 50: 200, 80: 800, 180: 450, 1200: 50}
#: T1-like intensities (fluid dark, fat and marrow bright).
T1_BY_HU = {-1000: 0, -900: 0, -100: 900, 10: 150, 40: 400, 50: 350, 80: 300, 180: 650, 1200: 50}
PHANTOM_LEVELS = ("L2", "L3", "L4", "L5")
#: Disc centres on t2_lumbar.nii.gz (voxel i, j, k), cranial to caudal, read by hand: k and j on sagittal slices
#: drawn at 10 pixels per mm with 1 mm ticks (i = 22, 23, 25, 26, 27, 28), as the middle of the bright nucleus
#: between the dark endplate lines (about +-1 mm); i on axial and coronal slices as the middle of the disc or,
#: where the 38 mm slab cuts the disc, of the canal (about +-3 mm).
LUMBAR_DISCS_IJK = {"T9-T10": (22, 89, 187.5), "T10-T11": (21, 90, 162), "T11-T12": (21, 97, 133.3),
                    "T12-L1": (26, 100, 102.7), "L1-L2": (27, 107.5, 70), "L2-L3": (28, 115, 37)}
#: Canal centres on t2_lumbar.nii.gz (voxel i, j, k), read by hand on axial slices at 10 pixels per mm: the middle
#: of the cord's ring of fluid at T9-T10, of the thecal sac at T12-L1 and L2-L3.
LUMBAR_CANAL_IJK = ((23, 67.5, 187), (25.5, 78.5, 103), (28, 89, 37))
#: The toolbox's own T9-T10 reference: voxel (27, 76, 187), in LPS mm.
SCT_T9_T10_LPS = (-14.8, 74.9, -325.3)


# ---- helpers ---------------------------------------------------------------------------------------------------
def distance_to_polyline(point: np.ndarray, line: np.ndarray) -> float:
    """Shortest distance (mm) from a point to a polyline (N, 3)."""
    start, end = line[:-1], line[1:]
    along = end - start
    t = np.clip(np.einsum("ij,ij->i", point - start, along) / np.einsum("ij,ij->i", along, along), 0.0, 1.0)
    return float(np.min(np.linalg.norm(start + t[:, None] * along - point, axis=1)))


def mr_phantom(direction: np.ndarray | None = None, intensities: dict[int, int] = T2_BY_HU,
               seed: int = 0) -> tuple[npl.PhantomCase, Volume]:
    """The phantom at 2 mm as an MR: each material mapped to an intensity, Gaussian noise added.

    On T2 the disc's outer 4 mm (the annulus, measured from soft tissue and fluid, not from the endplates) is dark,
    as on real T2 where the annulus and the posterior longitudinal ligament separate the nucleus from the canal.
    """
    case = npl.phantom(seed, spacing_mm=2.0, direction=direction)
    hu = case.ct.voxels
    image = np.zeros(hu.shape, dtype=np.float32)
    for value, intensity in intensities.items():
        image[hu == value] = intensity
    if intensities is T2_BY_HU:
        disc = (case.structures.voxels >= 41) & (case.structures.voxels <= 45)
        depth = ndimage.distance_transform_edt(disc | (hu >= 180), sampling=case.ct.spacing_mm[::-1])
        image[disc & (depth < 4.0)] = 150
    image += np.random.default_rng(seed).normal(0.0, 30.0, image.shape).astype(np.float32)
    return case, Volume(np.abs(image).astype(np.int16), case.ct.index_to_world, "MR")


def nearest_vertebra(spine: npl.Spine, point: np.ndarray) -> npl.Vertebra:
    return min(spine, key=lambda v: float(np.linalg.norm(v["body_centroid"] - point)))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def assert_matches_phantom(case: npl.PhantomCase, spine: npl.Spine, tolerance_mm: float) -> None:
    """Each of L2-L5 (the levels with a disc above and below in view) is found once, its landmarks near the truth."""
    assert len(spine.vertebrae) == len(PHANTOM_LEVELS)
    matched = set()
    for level in PHANTOM_LEVELS:
        truth = case.landmarks[level]
        found = nearest_vertebra(spine, np.asarray(truth["body_centroid"]))
        matched.add(found.name)
        assert np.linalg.norm(found["body_centroid"] - truth["body_centroid"]) <= tolerance_mm, level
        # the canal centre's height is a convention (the phantom's pedicle level, ours a fixed share of the body
        # height, the pedicle being invisible on MR); across the canal it must be close
        superior = np.asarray(truth["axes"]["superior"])
        miss = found["canal_center"] - truth["canal_center"]
        assert np.linalg.norm(miss - np.dot(miss, superior) * superior) <= 1.5, level
        assert abs(np.dot(miss, superior)) <= 4.0, level
        for key in ("superior_endplate", "inferior_endplate"):
            assert np.linalg.norm(found[key]["center"] - truth[key]["center"]) <= tolerance_mm, (level, key)
        # the phantom's endplate normals both point superiorly; the contract's point out of the body
        assert angle_deg(found["superior_endplate"]["normal"], truth["superior_endplate"]["normal"]) < 8.0
        assert angle_deg(-found["inferior_endplate"]["normal"], truth["inferior_endplate"]["normal"]) < 8.0
    assert len(matched) == len(PHANTOM_LEVELS)


# ---- real cervical T2 -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cervical() -> tuple[Volume, npl.Spine]:
    if not DATA.is_dir():
        pytest.skip(f"shared real data folder {DATA} is absent")
    volume = npl.load(DATA / "t2.nii.gz")
    return volume, npl.segment(volume)


@needs_data
def test_segment_dispatches_mr_and_returns_bodies(cervical):
    volume, spine = cervical
    assert volume.orientation == "PSR"
    assert spine.modality == "MR" and spine.engine == "classical"
    assert spine.levels == ["V1", "V2"]
    json.dumps(spine.to_dict())  # JSON-ready


@pytest.mark.realdata
@needs_data
def test_curve_follows_the_hand_drawn_cord(cervical):
    """Measured over the 52 slices: median 0.85 mm, 90th percentile 1.5 mm, largest 2.9 mm (the canal's centre
    sits up to 3 mm in front of the cord at the bottom of the crop, where the CSF in front of the cord is wider)."""
    volume, spine = cervical
    cord = npl.load(DATA / "t2_cord_seg_labeled_by_vertebral_level.nii.gz")
    curve = spine.curve_mm
    assert curve[0, 2] > curve[-1, 2]  # cranial to caudal
    distances = []
    for j in range(cord.size_xyz[1]):  # j runs superior: one axial slice per j
        k, i = np.nonzero(cord.voxels[:, j, :] > 0)
        if len(k):
            centroid = cord.index_to_world_points(np.column_stack([i, np.full(len(i), j), k])).mean(axis=0)
            distances.append(distance_to_polyline(centroid, curve))
    assert len(distances) >= 50
    assert np.median(distances) <= 1.5
    assert max(distances) <= 4.0


@needs_data
def test_discs_at_the_sct_disc_tips(cervical):
    """Each SCT disc tip more than 1 mm inside the field of view has a disc of the structure map level with it
    and in front of it (the tip is the disc's posterior edge). Measured on the discs themselves: the tips lie
    1.0-1.3 mm from the found disc mid-planes, 6-7 mm behind the found disc centres (the nucleus)."""
    volume, spine = cervical
    tips = volume.index_to_world_points(np.array(SCT_DISC_TIPS_IJK, dtype=float))
    discs, count = ndimage.label(spine.structures.voxels == npl.anatomy.STRUCTURE_IDS["disc"])
    assert count == 3
    centres = [volume.index_to_world_points(np.argwhere(discs == n)[:, ::-1].astype(float)).mean(axis=0)
               for n in range(1, count + 1)]
    for tip in tips[:3]:
        axes = nearest_vertebra(spine, tip)["axes"]
        centre = min(centres, key=lambda c: abs(float(np.dot(c - tip, axes["superior"]))))
        assert abs(np.dot(centre - tip, axes["superior"])) <= 2.5
        assert 3.0 <= np.dot(tip - centre, axes["posterior"]) <= 15.0


@needs_data
def test_bodies_lie_between_consecutive_disc_tips(cervical):
    volume, spine = cervical
    tips_z = volume.index_to_world_points(np.array(SCT_DISC_TIPS_IJK, dtype=float))[:, 2]
    for vertebra, upper, lower in zip(spine, tips_z[:2], tips_z[1:3], strict=True):
        assert lower < vertebra["body_centroid"][2] < upper
        assert vertebra["superior_endplate"]["center"][2] - vertebra["inferior_endplate"]["center"][2] > 10.0


@pytest.mark.realdata
@needs_data
def test_shipped_reference_labels_are_mid_vertebral_not_discs(cervical):
    """The points in t2_disc_labels.nii.gz lie 8.5 and 9.5 mm from every disc plane found, inside vertebral bodies
    (value 3 in V1; value 5 in the vertebra below V2, cut by the field of view and not reported)."""
    volume, spine = cervical
    labels = npl.load(DATA / "t2_disc_labels.nii.gz")
    k, j, i = np.nonzero(labels.voxels)
    points = labels.index_to_world_points(np.column_stack([i, j, k]).astype(float))
    values = labels.voxels[k, j, i]
    for point in points:
        for vertebra in spine:
            for key in ("superior_endplate", "inferior_endplate"):
                plane = vertebra[key]
                assert abs(np.dot(point - plane["center"], plane["normal"])) > 5.0
    label_3 = points[values == 3][0]
    v1 = spine["V1"]
    assert v1["inferior_endplate"]["center"][2] < label_3[2] < v1["superior_endplate"]["center"][2]


@pytest.mark.realdata
@needs_data
def test_no_level_names_claimed_and_one_cord_level_per_body(cervical):
    """Nothing in this crop anchors the count, so no level is named; but the bodies agree with the hand-drawn cord
    levels one to one: each body's height holds one dominant cord level, consecutive bodies consecutive levels."""
    volume, spine = cervical
    assert spine.numbering.anchor == "none" and spine.numbering.confidence == 0.0
    assert any("unnumbered" in note for note in spine.numbering.notes)
    assert any("cervical" in note for note in spine.numbering.notes)
    assert all(v.name.startswith("V") and v.label > 100 for v in spine)
    cord = npl.load(DATA / "t2_cord_seg_labeled_by_vertebral_level.nii.gz")
    k, j, i = np.nonzero(cord.voxels > 0)
    points = cord.index_to_world_points(np.column_stack([i, j, k]).astype(float))
    levels = cord.voxels[k, j, i].astype(int)
    dominant = []
    for vertebra in spine:
        top, bottom = vertebra["superior_endplate"]["center"][2], vertebra["inferior_endplate"]["center"][2]
        inside = levels[(points[:, 2] < top - 2.0) & (points[:, 2] > bottom + 2.0)]
        counts = np.bincount(inside)
        dominant.append(int(np.argmax(counts)))
        assert counts.max() >= 0.9 * len(inside)
    assert np.all(np.diff(dominant) == 1)


@pytest.mark.realdata
@needs_data
def test_label_maps_on_the_scan_grid(cervical):
    volume, spine = cervical
    for labels in (spine.labels, spine.structures):
        assert labels.modality == "LABEL" and labels.shape == volume.shape
        np.testing.assert_allclose(labels.index_to_world, volume.index_to_world)
    assert set(np.unique(spine.labels.voxels)) == {0, 101, 102}
    ids = npl.anatomy.STRUCTURE_IDS
    assert {ids["canal"], ids["disc"], ids["bone"], ids["body"]} <= set(np.unique(spine.structures.voxels))
    cord = npl.load(DATA / "t2_cord_seg_labeled_by_vertebral_level.nii.gz").voxels > 0
    assert np.mean(spine.structures.voxels[cord] == ids["canal"]) > 0.95  # the cord lies inside the canal


@needs_data
def test_landmarks_mr_can_give(cervical):
    volume, spine = cervical
    for vertebra in spine:
        assert set(vertebra.landmarks) == set(MR_LANDMARKS)
        axes = np.column_stack([vertebra["axes"][k] for k in ("left", "posterior", "superior")])
        np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-9)
        assert np.linalg.det(axes) > 0
        assert np.dot(vertebra["superior_endplate"]["normal"], axes[:, 2]) > 0.9
        assert np.dot(vertebra["inferior_endplate"]["normal"], axes[:, 2]) < -0.9
        canal = vertebra["canal_center"]
        assert np.dot(canal - vertebra["body_centroid"], axes[:, 1]) > 8.0  # the canal is behind the body
        outline = vertebra["canal_outline"]
        assert outline.shape[1] == 3 and np.allclose(outline[0], outline[-1])
        assert np.linalg.norm(outline - canal, axis=1).max() < 15.0


@needs_data
def test_unavailable_says_what_mr_cannot_give(cervical):
    volume, spine = cervical
    sided = ("pedicle", "sap_tip", "iap_tip", "tp_tip", "sap_tp_junction", "foramen", "exiting_root", "medial_branch")
    expected = {f"{name}_{side}" for name in sided for side in ("left", "right")}
    assert expected | {"spinous_tip", "pelvis"} <= set(spine.unavailable)
    assert "1 x 1 x 1 mm" in spine.unavailable["pedicle_left"]
    assert all(len(reason) > 30 for reason in spine.unavailable.values())
    for vertebra in spine:
        assert not set(vertebra.landmarks) & set(spine.unavailable)


# ---- real lumbar T2 ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lumbar() -> tuple[Volume, npl.Spine, np.ndarray]:
    """The scan, its spine, and the hand-read disc centres in LPS mm (cranial to caudal)."""
    if not LUMBAR.is_file():
        pytest.skip(f"shared real data file {LUMBAR} is absent")
    volume = npl.load(LUMBAR)
    discs = volume.index_to_world_points(np.array(list(LUMBAR_DISCS_IJK.values()), dtype=float))
    return volume, npl.segment(volume), discs


@needs_lumbar
def test_lumbar_curve_runs_in_the_canal(lumbar):
    """Not in the band of bright subcutaneous fat 25-45 mm behind it. Measured: 0.7, 4.8, 4.2 mm from the hand-read
    centres (the curve runs in the front half of the lumbar sac, which is 15-20 mm deep)."""
    volume, spine, _ = lumbar
    for point in volume.index_to_world_points(np.array(LUMBAR_CANAL_IJK, dtype=float)):
        assert distance_to_polyline(point, spine.curve_mm) <= 6.0


@needs_lumbar
def test_lumbar_discs_where_the_mr_shows_them(lumbar):
    """Six discs, each disc of the structure map level with a hand-read disc centre. Measured: 0.0-0.5 mm along
    the spine, 1.9-4.6 mm in all (the map's disc is centred on the body's outline, the hand reading on the
    nucleus, which lies behind the disc's middle)."""
    volume, spine, truth = lumbar
    discs, count = ndimage.label(spine.structures.voxels == npl.anatomy.STRUCTURE_IDS["disc"])
    assert count == len(truth)
    centres = [volume.index_to_world_points(np.argwhere(discs == n)[:, ::-1].astype(float)).mean(axis=0)
               for n in range(1, count + 1)]
    for name, disc in zip(LUMBAR_DISCS_IJK, truth, strict=True):
        found = min(centres, key=lambda c: float(np.linalg.norm(c - disc)))
        superior = nearest_vertebra(spine, disc)["axes"]["superior"]
        assert abs(np.dot(found - disc, superior)) <= 2.0, name
        assert np.linalg.norm(found - disc) <= 5.0, name


@needs_lumbar
def test_lumbar_bodies_and_endplates_between_the_discs(lumbar):
    """One body between each two consecutive discs: the body's label holds the line between the two disc centres
    except near the discs, and neither disc centre; its endplates lie on the discs' faces. Measured: endplate centres
    1.5-3.3 mm from the disc centres along the body axis (half the nucleus), 0.6-4.7 mm across."""
    volume, spine, truth = lumbar
    assert spine.levels == ["V1", "V2", "V3", "V4", "V5"]
    for vertebra, above, below in zip(spine, truth[:-1], truth[1:], strict=True):
        line = above + np.linspace(0.0, 1.0, 21)[:, None] * (below - above)
        i, j, k = np.rint(volume.world_to_index_points(line)).astype(int).T
        on_line = spine.labels.voxels[k, j, i]
        assert np.all(on_line[3:-3] == vertebra.label) and on_line[0] == on_line[-1] == 0, vertebra.name
        superior = vertebra["axes"]["superior"]
        for key, disc, side in (("superior_endplate", above, -1), ("inferior_endplate", below, 1)):
            offset = vertebra[key]["center"] - disc
            along = float(np.dot(offset, superior))
            assert 0.5 <= side * along <= 5.0, (vertebra.name, key)
            assert np.linalg.norm(offset - along * superior) <= 6.0, (vertebra.name, key)


@needs_lumbar
def test_lumbar_named_from_the_toolbox_disc(lumbar):
    """Unnumbered without an anchor (none in view); the toolbox's T9-T10 point, on the disc's posterior edge and off
    the mid-sagittal plane, names the bodies between the found discs T10 to L2."""
    volume, spine, _ = lumbar
    assert spine.numbering.anchor == "none"
    named = npl.segment(volume, anchors={"T9-T10": SCT_T9_T10_LPS})
    assert named.levels == ["T10", "T11", "T12", "L1", "L2"]
    assert set(np.unique(named.labels.voxels)) == {0, *(npl.anatomy.VERSE_IDS[n] for n in named.levels)}
    assert named.numbering.confirmed_by == "user"


# ---- synthetic T2 ---------------------------------------------------------------------------------------------
def test_phantom_bodies_endplates_and_canal():
    """Measured: body centroids within 0.8 mm, endplate centres 1.9 mm, canal centres 0.4 mm across the canal
    (2.7 mm in height, a convention), endplate normals 5.3 degrees of the truth; body masks overlap the phantom's
    vertebral bodies with Dice 0.90-0.93. Oblique and PSR grids: within 1.1, 1.6, 0.6 mm and 4.6 degrees."""
    case, volume = mr_phantom()
    spine = segment_mri(volume)
    assert_matches_phantom(case, spine, tolerance_mm=3.0)
    body = case.structures.voxels == npl.phantoms.STRUCTURE_IDS["vertebral_body"]
    for level in PHANTOM_LEVELS:
        truth = body & (case.labels.voxels == npl.phantoms.VERTEBRA_LABELS[level])
        found = spine.labels.voxels == nearest_vertebra(spine, np.asarray(case.landmarks[level]["body_centroid"])).label
        assert 2 * np.sum(truth & found) / (truth.sum() + found.sum()) > 0.8
    assert any("lumbar" in note for note in spine.numbering.notes)


@pytest.mark.parametrize("direction", [
    np.array([[1.0, 0.0, 0.0], [0.0, np.cos(0.2), np.sin(0.2)], [0.0, -np.sin(0.2), np.cos(0.2)]]),  # oblique
    np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),  # PSR, like the real scan
], ids=["oblique", "PSR"])
def test_phantom_on_other_grids(direction):
    case, volume = mr_phantom(direction)
    spine = segment_mri(volume)
    assert_matches_phantom(case, spine, tolerance_mm=3.0)
    assert spine.labels.shape == volume.shape
    np.testing.assert_allclose(spine.labels.index_to_world, volume.index_to_world)


# ---- bad input ------------------------------------------------------------------------------------------------
def grid(shape_zyx: tuple[int, int, int], values: np.ndarray | float, modality: str = "MR") -> Volume:
    voxels = np.broadcast_to(np.asarray(values, dtype=np.float32), shape_zyx).copy()
    return Volume(voxels, affine_from_geometry(np.ones(3), np.zeros(3)), modality)


@pytest.mark.parametrize("volume, words", [
    (grid((60, 60, 60), 0.0, "CT"), "needs an MR volume"),
    (grid((10, 10, 10), np.random.default_rng(0).random((10, 10, 10))), "covers 10 x 10 x 10 mm"),
    (grid((80, 60, 60), 100.0), "no contrast"),
    (grid((80, 60, 60), np.where(np.arange(60) == 3, np.nan, 1.0)), "non-finite"),
    (grid((80, 60, 60), np.random.default_rng(0).random((80, 60, 60))), "no fluid-filled spinal canal"),
], ids=["ct", "tiny", "constant", "nan", "noise"])
def test_bad_input_gets_a_clear_error(volume, words):
    with pytest.raises(NeedleplanError, match=words):
        segment_mri(volume)


def test_not_a_volume():
    with pytest.raises(NeedleplanError, match="needs a needleplan Volume"):
        segment_mri(np.zeros((60, 60, 60)))


def test_a_canal_without_discs():
    """A bright tube in a uniform body: the canal is found, but there is no disc to delimit a body."""
    z, y, x = np.mgrid[0:80, 0:60, 0:60]
    tube = np.hypot(y - 30, x - 30) < 6
    volume = grid((80, 60, 60), np.where(tube, 1000.0, 300.0) + np.random.default_rng(0).normal(0, 20, tube.shape))
    with pytest.raises(NeedleplanError, match=r"found the spinal canal but [01] intervertebral disc"):
        segment_mri(volume)


def test_t1_is_recognised_and_refused():
    case, volume = mr_phantom(intensities=T1_BY_HU)
    with pytest.raises(NeedleplanError, match="looks T1-weighted"):
        segment_mri(volume)
