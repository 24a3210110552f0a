"""The spine picture: surfaces in world mm, an off-screen PNG of the requested size, head up, patient's left left."""

from __future__ import annotations

import colorsys
import sys

import numpy as np
import pytest
from PIL import Image

import needleplan as npl
from needleplan.anatomy import VERSE_IDS, Spine, Vertebra
from needleplan.errors import NeedleplanError
from needleplan import offscreen
from needleplan.segment.picture import landmark_geometry, level_colours, level_surfaces, spine_picture
from needleplan.volume import affine_from_geometry


@pytest.fixture(scope="module")
def phantom_spine() -> Spine:
    case = npl.phantom(0, spacing_mm=2.0)
    names = [name for name in case.landmarks if name in VERSE_IDS]
    vertebrae = {name: Vertebra(name, VERSE_IDS[name], 1.0, case.landmarks[name]) for name in names}
    return Spine(labels=case.labels, vertebrae=vertebrae, pelvis=case.landmarks["pelvis"])


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_picture_of_the_phantom_spine(phantom_spine, tmp_path):
    path = tmp_path / "out" / "spine.png"
    assert spine_picture(phantom_spine, path, size=(640, 480)) == path
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 480)
    rgb = pixels(path)
    colours = np.unique((rgb // 16).reshape(-1, 3), axis=0)
    assert len(colours) > 20, "the picture has almost no colours: is it blank?"
    background = np.all(rgb == rgb[0, 0], axis=-1)
    assert 0.05 < 1.0 - background.mean() < 0.9
    assert [p.name for p in path.parent.iterdir()] == ["spine.png"], "no temporary file may be left behind"


def test_picture_without_landmarks_and_other_views(phantom_spine, tmp_path):
    for view in ("posterior", "left", "right"):
        path = spine_picture(phantom_spine, tmp_path / f"{view}.png", size=(200, 300), landmarks=False, view=view)
        with Image.open(path) as image:
            assert image.size == (200, 300)


def test_picture_replaces_an_existing_file(phantom_spine, tmp_path):
    path = tmp_path / "spine.png"
    path.write_bytes(b"old")
    spine_picture(phantom_spine, path, size=(128, 128), landmarks=False)
    assert pixels(path).shape == (128, 128, 3)


def hue_centre(rgb: np.ndarray, colour: str) -> np.ndarray | None:
    """Mean (row, col) of the saturated pixels whose hue is that of ``colour`` (shading changes only brightness)."""
    target = colorsys.rgb_to_hsv(*(int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)))[0]
    flat = rgb.reshape(-1, 3) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in flat]).reshape(rgb.shape)
    distance = np.abs((hsv[..., 0] - target + 0.5) % 1.0 - 0.5)
    mask = (distance < 0.03) & (hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.25)
    if mask.sum() < 20:
        return None
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("stored", ["LPS", "RAS"])
def test_head_is_up_and_the_patients_left_is_on_the_left_seen_from_behind(tmp_path, stored):
    """L1 block high on the patient's left, sacrum block low on the right; any storage orientation."""
    lps = np.zeros((40, 30, 30), dtype=np.uint8)  # (z, y, x) in LPS index order
    lps[28:36, 10:20, 20:27] = VERSE_IDS["L1"]  # superior, patient's left (+x)
    lps[4:12, 10:20, 3:10] = VERSE_IDS["S1"]  # inferior, patient's right
    affine = affine_from_geometry([2.0, 2.0, 2.0], [-30.0, -30.0, -40.0])
    if stored == "RAS":  # same anatomy, stored with the x and y axes reversed
        lps = lps[:, ::-1, ::-1].copy()
        affine = affine_from_geometry([2.0, 2.0, 2.0], [28.0, 28.0, -40.0], np.diag([-1.0, -1.0, 1.0]))
    labels = npl.Volume(lps, affine, "LABEL")
    spine = Spine(labels=labels, vertebrae={})
    path = spine_picture(spine, tmp_path / "blocks.png", size=(400, 400), landmarks=False, view="posterior")
    rgb = pixels(path)
    colours = level_colours([VERSE_IDS["L1"], VERSE_IDS["S1"]])
    top = hue_centre(rgb, colours[VERSE_IDS["L1"]])
    bottom = hue_centre(rgb, colours[VERSE_IDS["S1"]])
    assert top is not None and bottom is not None
    assert top[0] < bottom[0], "the superior block must be higher in the picture"
    assert top[1] < bottom[1], "seen from behind, the patient's left must be on the picture's left"


def test_surfaces_are_in_world_millimetres():
    voxels = np.zeros((20, 24, 28), dtype=np.uint8)
    voxels[5:15, 6:18, 4:20] = VERSE_IDS["L3"]
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # oblique storage: x <- -j
    labels = npl.Volume(voxels, affine_from_geometry([0.8, 0.8, 2.5], [10.0, -20.0, 30.0], rotation), "LABEL")
    surfaces = level_surfaces(labels)
    assert list(surfaces) == [VERSE_IDS["L3"]]
    mesh_points = np.asarray(surfaces[VERSE_IDS["L3"]].points)
    kji = np.argwhere(voxels)
    world = labels.index_to_world_points(kji[:, ::-1].astype(float))
    tolerance = 2 * labels.spacing_mm.max()
    np.testing.assert_allclose(mesh_points.min(axis=0), world.min(axis=0), atol=tolerance)
    np.testing.assert_allclose(mesh_points.max(axis=0), world.max(axis=0), atol=tolerance)


def test_landmark_geometry_skips_missing_and_malformed_values(phantom_spine):
    points, lines = landmark_geometry(phantom_spine)
    assert points.ndim == 2 and points.shape[1] == 3 and len(points) > 0
    assert {"exiting_root_", "medial_branch_", "canal_outline", "si_joint_"} <= set(lines)
    odd = Spine(labels=phantom_spine.labels, vertebrae={"L1": Vertebra("L1", 20, 1.0, {
        "body_centroid": [1.0, 2.0, float("nan")], "spinous_tip": "somewhere", "exiting_root_left": [[0, 0, 0]],
        "canal_outline": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "axes": {"left": [1, 0, 0]}})})
    points, lines = landmark_geometry(odd)
    assert points.shape == (0, 3)
    assert list(lines) == ["canal_outline"]


def test_a_spine_without_labels_is_refused(phantom_spine, tmp_path):
    empty = npl.Volume(np.zeros((4, 5, 6), dtype=np.uint8), np.eye(4), "LABEL")
    with pytest.raises(NeedleplanError, match="holds no labels"):
        spine_picture(Spine(labels=empty, vertebrae={}), tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("spine.jpg", {}, "must be a .png file"),
        ("spine.png", {"view": "anterior"}, "unknown view 'anterior'"),
        ("spine.png", {"size": (10, 10)}, "64-8192 pixels"),
        ("spine.png", {"size": "big"}, "size must be (width, height)"),
    ],
)
def test_bad_requests_are_refused(phantom_spine, tmp_path, name, options, message):
    with pytest.raises(NeedleplanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spine_picture(phantom_spine, tmp_path / name, **options)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the OpenGL back end is chosen on Linux only")
def test_no_display_and_no_offscreen_library_is_a_clear_error(phantom_spine, tmp_path, monkeypatch):
    monkeypatch.delenv("VTK_DEFAULT_OPENGL_WINDOW", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(offscreen, "_loadable", lambda *names: False)
    with pytest.raises(NeedleplanError, match="no off-screen OpenGL library"):
        spine_picture(phantom_spine, tmp_path / "spine.png")
    assert not list(tmp_path.iterdir())
