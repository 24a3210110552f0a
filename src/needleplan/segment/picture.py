"""A picture of a labelled spine: one coloured surface per level, its name, and the landmarks, as a PNG.

Rendered off-screen with PyVista/VTK (:mod:`needleplan.offscreen` chooses the OpenGL back end).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import ILIUM_IDS, LEVEL_ORDER, VERSE_NAMES, Spine
from ..errors import NeedleplanError, describe_path
from ..offscreen import add_key, offscreen_backend, write_png
from ..volume import Volume

__all__ = ["VIEWS", "landmark_geometry", "level_colours", "level_surfaces", "spine_picture"]

#: Camera directions: (degrees from straight posterior toward the patient's left, degrees toward the head).
VIEWS: dict[str, tuple[float, float]] = {
    "posterior": (0.0, 0.0),
    "posterior_oblique": (25.0, 10.0),
    "left": (90.0, 0.0),
    "right": (-90.0, 0.0),
}
_VIEW_WORDS = {
    "posterior": "seen from behind",
    "posterior_oblique": "seen from behind, 25 degrees toward the patient's left",
    "left": "seen from the patient's left",
    "right": "seen from the patient's right",
}
#: Sampling of the label map for the surfaces, mm: finer costs time and shows nothing more at picture size.
SURFACE_STEP_MM = 1.5
#: Distinct colours for the levels in cranio-caudal order (Tableau hues without the landmarks' yellow, orange,
#: red, cyan and magenta).
_PALETTE = (
    "#4e79a7", "#59a14f", "#b07aa1", "#9c755f", "#76b7b2", "#a0cbe8", "#8cd17d",
    "#d4a6c8", "#499894", "#bab0ac", "#6a8caf", "#d7b5a6", "#79706e", "#86bcb6",
)
_ILIUM_COLOUR = "#c8c0b0"
_LINE_STYLES = {  # landmark key prefix -> (legend text, colour, tube radius mm)
    "exiting_root_": ("exiting nerve root", "#ffd700", 1.5),
    "medial_branch_": ("medial branch", "#f2f2f2", 1.0),
    "canal_outline": ("vertebral canal", "#00e5ff", 0.7),
    "si_joint_": ("SI joint line", "#ff3cc7", 1.0),
}
_POINT_COLOUR = "#e6194b"
_BACKGROUND = "#1b1f27"
_PELVIS_ID_NAMES = {value: f"ilium {side}" for side, value in ILIUM_IDS.items()}


def spine_picture(
    spine: Spine,
    path: str | os.PathLike[str],
    *,
    size: tuple[int, int] = (1000, 800),
    landmarks: bool = True,
    view: str = "posterior_oblique",
) -> Path:
    """Write a PNG of the labelled spine: coloured level surfaces, level names and landmarks.

    Parameters
    ----------
    spine : Spine
        A segmented spine; its label map (``spine.labels``) gives the surfaces, its landmarks the points and lines.
    path : path
        The PNG to write (atomically: it appears complete or not at all). Parent folders are created.
    size : (width, height)
        Picture size in pixels, 64-8192 each.
    landmarks : bool
        Draw the landmark points and the polylines (nerve roots, medial branches, canal, SI joints).
    view : {"posterior_oblique", "posterior", "left", "right"}
        Camera direction; the head is always up.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    NeedleplanError
        The label map holds no labels, a bad ``size``, ``view`` or file name, or no off-screen OpenGL.
    """
    path = Path(path)
    width, height = _check_request(path, size, view)
    meshes = level_surfaces(spine.labels)
    if not meshes:
        raise NeedleplanError("the spine's label map holds no labels (every voxel is 0): there is nothing to draw")
    with offscreen_backend():
        image = _render(spine, meshes, (width, height), landmarks, view)
    write_png(image, path)
    return path


def _check_request(path: Path, size: tuple[int, int], view: str) -> tuple[int, int]:
    if path.suffix.lower() != ".png":
        raise NeedleplanError(f"the spine picture {describe_path(path)} must be a .png file")
    if view not in VIEWS:
        raise NeedleplanError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise NeedleplanError(f"size must be (width, height) in pixels, got {size!r}") from None
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise NeedleplanError(f"picture size must be 64-8192 pixels per side, got {width} x {height}")
    return width, height


# ---- surfaces ---------------------------------------------------------------------------------------------------
def level_surfaces(labels: Volume, step_mm: float = SURFACE_STEP_MM) -> dict[int, Any]:
    """One smoothed surface per label id, in world (LPS) mm.

    The label map is cropped to its labelled box and sampled every ``step_mm`` (nearest voxel) before the
    surfaces are extracted (VTK surface nets), so a 512 x 512 x 300 map takes well under a second.

    Parameters
    ----------
    labels : Volume
        Integer label map, voxels (nz, ny, nx).
    step_mm : float
        Approximate sampling distance.

    Returns
    -------
    dict of int to pyvista.PolyData
        Empty when the map holds no labels.
    """
    import pyvista as pv

    voxels = np.asarray(labels.voxels)
    box = _labelled_box(voxels)
    if box is None:
        return {}
    steps = np.maximum(1, np.floor(step_mm / labels.spacing_mm).astype(int))  # (i, j, k)
    (k0, k1), (j0, j1), (i0, i1) = box
    sampled = voxels[k0:k1:steps[2], j0:j1:steps[1], i0:i1:steps[0]]
    sampled = np.ascontiguousarray(sampled, dtype=np.int32 if sampled.dtype.kind in "iu" else np.float32)
    grid = pv.ImageData(dimensions=sampled.shape[::-1], spacing=tuple(float(s) for s in steps), origin=(i0, j0, k0))
    grid.point_data["labels"] = sampled.ravel()
    surface = grid.contour_labels(boundary_style="external", output_mesh_type="triangles", smoothing=True)
    if surface.n_cells == 0:
        return {}
    affine = labels.index_to_world
    surface.points = surface.points @ affine[:3, :3].T + affine[:3, 3]
    ids = np.asarray(surface.cell_data["boundary_labels"]).reshape(surface.n_cells, -1)[:, 0]
    faces = surface.regular_faces
    return {int(label): pv.PolyData.from_regular_faces(surface.points, faces[ids == label]).clean()
            for label in np.unique(ids)}


def _labelled_box(voxels: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """Index ranges (k, j, i), end exclusive, of the non-zero voxels; None when there are none."""
    mask = voxels != 0
    box = []
    for axis in range(3):
        present = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        if present.size == 0:
            return None
        box.append((int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def _level_name(label: int) -> str:
    return VERSE_NAMES.get(label) or _PELVIS_ID_NAMES.get(label) or f"label {label}"


def level_colours(ids: list[int]) -> dict[int, str]:
    """Picture colour ("#rrggbb") of each label id: distinct per vertebra (cranio-caudal order), bone tint for ilia."""
    rank = {name: n for n, name in enumerate(LEVEL_ORDER)}
    vertebrae = sorted((i for i in ids if i not in _PELVIS_ID_NAMES),
                       key=lambda i: (rank.get(VERSE_NAMES.get(i, ""), len(rank)), i))
    colours = {label: _PALETTE[n % len(_PALETTE)] for n, label in enumerate(vertebrae)}
    colours.update({label: _ILIUM_COLOUR for label in ids if label in _PELVIS_ID_NAMES})
    return colours


# ---- landmarks --------------------------------------------------------------------------------------------------
def _point(value: Any) -> np.ndarray | None:
    """A finite (3,) point from a landmark value (array, list, or {"center": ...}/{"point": ...}), else None."""
    if isinstance(value, dict):
        value = value.get("center", value.get("point"))
    try:
        point = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return point if point.shape == (3,) and np.all(np.isfinite(point)) else None


def _polyline(value: Any) -> np.ndarray | None:
    """A finite (K, 3) polyline with K >= 2, else None."""
    try:
        line = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    ok = line.ndim == 2 and line.shape[0] >= 2 and line.shape[1] == 3 and np.all(np.isfinite(line))
    return line if ok else None


def _line_style(key: str) -> str | None:
    return next((prefix for prefix in _LINE_STYLES if key.startswith(prefix)), None)


def landmark_geometry(spine: Spine) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The spine's landmark points and polylines, ready to draw.

    Returns
    -------
    points : ndarray, shape (N, 3)
        Every point landmark of the vertebrae and the pelvis (direction vectors such as ``axes`` excluded).
    lines : dict of str to list of ndarray
        Polylines (K, 3) grouped by kind, in the order of ``_LINE_STYLES``'s keys (roots, medial branches, canal,
        SI joints).
    """
    groups = [vertebra.landmarks for vertebra in spine] + [spine.pelvis]
    points: list[np.ndarray] = []
    lines: dict[str, list[np.ndarray]] = {}
    for landmarks in groups:
        for key, value in landmarks.items():
            if key == "axes":
                continue
            style = _line_style(key)
            if style is not None:
                line = _polyline(value)
                if line is not None:
                    lines.setdefault(style, []).append(line)
                continue
            point = _point(value)
            if point is not None:
                points.append(point)
    return np.array(points).reshape(-1, 3), {style: lines[style] for style in _LINE_STYLES if style in lines}


# ---- rendering --------------------------------------------------------------------------------------------------
def _render(spine: Spine, meshes: dict[int, Any], size: tuple[int, int], landmarks: bool, view: str) -> np.ndarray:
    import pyvista as pv

    points, lines = landmark_geometry(spine) if landmarks else (np.zeros((0, 3)), {})
    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    try:
        plotter.set_background(_BACKGROUND)  # type: ignore[arg-type]  # pyvista wraps it: mypy sees it unbound
        opacity = 0.75 if len(points) or lines else 1.0  # see the landmarks inside the bone
        colours = level_colours(list(meshes))
        for label, mesh in meshes.items():
            plotter.add_mesh(mesh, color=colours[label], smooth_shading=True, specular=0.2,
                             opacity=0.45 if label in _PELVIS_ID_NAMES else opacity)
        _add_landmarks(plotter, points, lines, size)
        anchors = _add_level_names(plotter, spine, meshes, colours, size)
        polylines = [line for group in lines.values() for line in group]
        shown = np.vstack([*(mesh.points for mesh in meshes.values()), points, anchors, *polylines])
        _place_camera(plotter, view, size[0] / size[1], shown)
        _add_captions(plotter, spine, view, size)
        return np.asarray(plotter.screenshot(None, return_img=True))
    finally:
        plotter.close()


def _add_landmarks(plotter: Any, points: np.ndarray, lines: dict[str, list[np.ndarray]], size: tuple[int, int]) -> None:
    """Draw landmark points (N, 3) and polylines (from :func:`landmark_geometry`) with a colour key."""
    import pyvista as pv

    key = []
    for style, polylines in lines.items():
        text, colour, radius = _LINE_STYLES[style]
        tubes = pv.merge([pv.lines_from_points(line).tube(radius=radius, n_sides=10) for line in polylines])
        plotter.add_mesh(tubes, color=colour, smooth_shading=True)
        key.append((text, colour))
    if len(points):
        plotter.add_points(points, color=_POINT_COLOUR, point_size=max(5, round(min(size) / 90)),
                           render_points_as_spheres=True)
        key.append(("landmark points", _POINT_COLOUR))
    add_key(plotter, key, size)


def _label_anchor(spine: Spine, label: int, mesh: Any) -> np.ndarray:
    """Where a level's name goes: at the height of its body centroid, just past its surface on the patient's right."""
    name = VERSE_NAMES.get(label)
    centroid = _point(spine.vertebrae[name].landmarks.get("body_centroid")) if name in spine.vertebrae else None
    if centroid is None:
        centroid = np.asarray(mesh.center, dtype=np.float64)
    right_edge = float(mesh.bounds[0])  # LPS: -x is the patient's right
    return np.array([right_edge - 8.0, centroid[1], centroid[2]])


def _add_level_names(plotter: Any, spine: Spine, meshes: dict[int, Any], colours: dict[int, str],
                     size: tuple[int, int]) -> np.ndarray:
    """Put each vertebra's name, on its colour, beside it; returns the anchor points, shape (N, 3)."""
    labels = [label for label in meshes if label not in _PELVIS_ID_NAMES]
    anchors = np.array([_label_anchor(spine, label, meshes[label]) for label in labels]).reshape(-1, 3)
    font = max(12, round(min(size) / 32))
    for anchor, label in zip(anchors, labels, strict=True):
        plotter.add_point_labels(anchor[None], [_level_name(label)], font_size=font, bold=True,
                                 text_color="black", shape_color=colours[label], shape_opacity=0.9,
                                 always_visible=True, show_points=False, margin=4)
    return anchors


def _place_camera(plotter: Any, view: str, aspect: float, points: np.ndarray) -> None:
    """Look along ``VIEWS[view]`` with the head (LPS +z) up, framing ``points`` (N, 3) with a margin."""
    toward_left, toward_head = (math.radians(a) for a in VIEWS[view])
    backward = np.array([
        math.sin(toward_left) * math.cos(toward_head),  # +x: patient's left
        math.cos(toward_left) * math.cos(toward_head),  # +y: posterior
        math.sin(toward_head),  # +z: superior
    ])
    right = np.cross([0.0, 0.0, 1.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    frame = np.column_stack([right, up, backward])  # world -> camera axes
    local = points @ frame
    low, high = local.min(axis=0), local.max(axis=0)
    focus = frame @ ((low + high) / 2)
    half_width, half_height, half_depth = (high - low) / 2
    half_height = max(half_height, (half_width + 0.06 * (high - low)[0]) / aspect) * 1.08
    distance = half_height / math.tan(math.radians(plotter.camera.view_angle) / 2) + half_depth
    plotter.camera_position = [tuple(focus + distance * backward), tuple(focus), tuple(up)]
    plotter.reset_camera_clipping_range()


def _add_captions(plotter: Any, spine: Spine, view: str, size: tuple[int, int]) -> None:
    levels = [v.name for v in spine]
    found = f"{levels[0]}-{levels[-1]}" if len(levels) > 1 else (levels[0] if levels else "no named levels")
    font = max(9, round(min(size) / 60))
    plotter.add_text(f"{found}  |  {spine.modality}, {spine.engine} segmentation", position="upper_left",
                     font_size=font, color="white")
    plotter.add_text(f"{_VIEW_WORDS[view]}; head up", position="lower_left", font_size=font, color="#b0b8c8")
    plotter.add_axes(xlabel="L", ylabel="P", zlabel="S", line_width=3, viewport=(0.0, 0.05, 0.2, 0.3))
