"""A 3D picture of a plan: bone surfaces, the needle, the target, the no-go structures and the RF lesion.

Rendered off-screen with PyVista, with the surface and OpenGL helpers of :mod:`needleplan.segment.picture`. The
camera looks from behind the patient, turned toward the plan's side and a little from above, at the needle and the
vertebrae around its target, head up.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import ILIUM_IDS, STRUCTURE_IDS, VERSE_IDS, Spine
from ..errors import NeedleplanError, describe_path
from ..needle import Needle
from ..offscreen import add_key, offscreen_backend, write_png
from ..segment.picture import level_surfaces
from ..volume import Volume
from .model import Plan

__all__ = ["CAMERA_DEG", "PlanScene", "plan_picture", "plan_scene"]

#: Camera direction: degrees from straight posterior toward the plan's side, degrees toward the head.
CAMERA_DEG = (40.0, 20.0)
#: How far (mm) around the target the camera frames the bone, besides the whole needle.
FRAME_MM = 45.0
_BONE = "#e8dcc4"
_TARGET_LEVEL = "#f0c987"
_ILIUM = "#c8c0b0"
_BACKGROUND = "#1b1f27"
_STYLE = {  # what -> (legend text, colour)
    "needle": ("planned needle", "#d0d4da"),
    "target": ("target", "#39ff14"),
    "entry": ("skin entry", "#ff4d4d"),
    "canal": ("vertebral canal", "#00e5ff"),
    "root": ("exiting nerve roots", "#ffd700"),
    "nerve": ("medial branch / dorsal ramus", "#ff8c00"),
    "lesion": ("RF lesion", "#ff3cc7"),
    "trainee": ("trainee's needle", "#4da6ff"),
}
#: The needle is drawn at least this thick (mm) so that it shows at picture size.
MIN_NEEDLE_RADIUS_MM = 0.9


@dataclass(eq=False)
class PlanScene:
    """The surfaces shared by every plan of one spine (made once, drawn many times).

    Attributes
    ----------
    bones : dict of int to pyvista.PolyData
        One surface per label id of ``spine.labels`` (vertebrae, sacrum, ilia), world LPS mm.
    canal : pyvista.PolyData or None
        The vertebral canal's surface from ``spine.structures``.
    """

    spine: Spine
    bones: dict[int, Any]
    canal: Any | None


def plan_scene(spine: Spine) -> PlanScene:
    """Extract the bone and canal surfaces of a segmented spine (about a second for a 1 mm CT)."""
    bones = level_surfaces(spine.labels)
    canal = None
    if spine.structures is not None:
        voxels = np.asarray(spine.structures.voxels) == STRUCTURE_IDS["canal"]
        if voxels.any():
            mask = Volume(voxels.astype(np.uint8), spine.structures.index_to_world, "LABEL")
            canal = level_surfaces(mask).get(1)
    return PlanScene(spine, bones, canal)


def plan_picture(plan: Plan, scene: PlanScene | Spine, path: str | os.PathLike[str], *,
                 size: tuple[int, int] = (900, 700), trainee: Needle | None = None) -> Path:
    """Write a PNG of the plan in 3D, atomically.

    Parameters
    ----------
    plan : Plan
        A plan with a needle (an infeasible plan without one shows its target only).
    scene : PlanScene or Spine
        The spine's surfaces (:func:`plan_scene`), or the spine itself (surfaces made here).
    path : path
        A ``.png`` file; parent folders are created.
    size : (width, height)
        Pixels, 64-8192 each.
    trainee : Needle, optional
        A trainee's needle, drawn beside the plan's in its own colour (the practice simulator's review).

    Returns
    -------
    Path

    Raises
    ------
    NeedleplanError
        Bad file name or size, no labels to draw, or no off-screen OpenGL.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise NeedleplanError(f"the plan picture {describe_path(path)} must be a .png file")
    width, height = (int(v) for v in size)
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise NeedleplanError(f"picture size must be 64-8192 pixels per side, got {width} x {height}")
    if isinstance(scene, Spine):
        scene = plan_scene(scene)
    if not scene.bones:
        raise NeedleplanError("the spine's label map holds no labels: there is no bone to draw")
    with offscreen_backend():
        image = _render(plan, scene, (width, height), trainee)
    write_png(image, path)
    return path


# ---- drawing -----------------------------------------------------------------------------------------------------
def _render(plan: Plan, scene: PlanScene, size: tuple[int, int], trainee: Needle | None = None) -> np.ndarray:
    import pyvista as pv

    plotter = pv.Plotter(off_screen=True, window_size=list(size))
    try:
        plotter.set_background(_BACKGROUND)  # type: ignore[arg-type]  # pyvista wraps it: mypy sees it unbound
        target_label = _target_label(plan)
        for label, mesh in scene.bones.items():
            colour = _ILIUM if label in ILIUM_IDS.values() else (_TARGET_LEVEL if label == target_label else _BONE)
            plotter.add_mesh(mesh, color=colour, smooth_shading=True, specular=0.15, opacity=0.55)
        key = _add_plan_objects(plotter, plan, scene)
        if trainee is not None:
            _add_needle(plotter, trainee, _STYLE["trainee"][1])
            key.append("trainee")
        add_key(plotter, [_STYLE[what] for what in key], size, corner="upper right")
        _place_camera(plotter, plan, scene, size[0] / size[1], trainee)
        _add_caption(plotter, plan, size)
        return np.asarray(plotter.screenshot(None, return_img=True))
    finally:
        plotter.close()


def _target_label(plan: Plan) -> int | None:
    name = plan.reference_endplate.split(" ")[0] if plan.reference_endplate else plan.level
    return VERSE_IDS.get(name)


def _tube(line: np.ndarray | list[np.ndarray], radius: float) -> Any:
    import pyvista as pv

    return pv.lines_from_points(np.asarray(line, dtype=np.float64)).tube(radius=radius, n_sides=16)


def _add_plan_objects(plotter: Any, plan: Plan, scene: PlanScene) -> list[str]:
    """Add the canal, roots, nerve, lesion, target, needle and entry; returns the legend keys drawn."""
    import pyvista as pv

    drawn = []
    if scene.canal is not None:
        plotter.add_mesh(scene.canal, color=_STYLE["canal"][1], opacity=0.35, smooth_shading=True)
        drawn.append("canal")
    roots = [np.asarray(v.landmarks[f"exiting_root_{side}"]) for v in scene.spine for side in ("left", "right")
             if f"exiting_root_{side}" in v.landmarks]
    if roots:
        radius = float(plan.options.root_radius_mm)
        plotter.add_mesh(pv.merge([_tube(line, radius) for line in roots]), color=_STYLE["root"][1], opacity=0.6,
                         smooth_shading=True)
        drawn.append("root")
    if plan.nerve is not None:
        plotter.add_mesh(_tube(plan.nerve, 1.0), color=_STYLE["nerve"][1], smooth_shading=True)
        drawn.append("nerve")
    if plan.lesion is not None:
        lesion = plan.lesion
        half = 0.5 * lesion.length_mm
        ellipsoid = pv.ParametricEllipsoid(half, lesion.radius_mm, lesion.radius_mm)
        ellipsoid.points = _align_x(np.asarray(ellipsoid.points), np.asarray(lesion.axis)) + lesion.center_mm
        plotter.add_mesh(ellipsoid, color=_STYLE["lesion"][1], opacity=0.5, smooth_shading=True)
        drawn.append("lesion")
    region = plan.target_region
    radius = max(float(region.radius_mm), 1.5)
    target = pv.Sphere(radius=radius, center=region.start_mm)
    if np.linalg.norm(region.end_mm - region.start_mm) > 1e-6:
        target = pv.merge([target, pv.Sphere(radius=radius, center=region.end_mm),
                           _tube([region.start_mm, region.end_mm], radius)])
    plotter.add_mesh(target, color=_STYLE["target"][1], opacity=0.7, smooth_shading=True)
    drawn.append("target")
    if plan.needle is not None:
        _add_needle(plotter, plan.needle, _STYLE["needle"][1])
        drawn.append("needle")
    if plan.entry_mm is not None:
        plotter.add_mesh(pv.Sphere(radius=2.0, center=plan.entry_mm), color=_STYLE["entry"][1])
        drawn.append("entry")
    order = list(_STYLE)
    return sorted(drawn, key=order.index)


def _add_needle(plotter: Any, needle: Needle, colour: str) -> None:
    import pyvista as pv

    radius = max(MIN_NEEDLE_RADIUS_MM, 0.5 * needle.diameter_mm)
    plotter.add_mesh(pv.Cylinder(center=0.5 * (needle.tip_mm + needle.hub_mm), direction=needle.direction,
                                 radius=radius, height=needle.length_mm, resolution=24),
                     color=colour, specular=0.8, smooth_shading=True)


def _align_x(points: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Rotate points so that the x axis goes to ``axis`` (unit)."""
    x = axis / np.linalg.norm(axis)
    helper = np.array([0.0, 0.0, 1.0]) if abs(x[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    y = np.cross(helper, x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    return points @ np.vstack([x, y, z])


def _place_camera(plotter: Any, plan: Plan, scene: PlanScene, aspect: float, trainee: Needle | None = None
                  ) -> None:
    """Look from behind, toward the plan's side and from above, framing the needle and the bone near the target."""
    sideways, upward = (math.radians(a) for a in CAMERA_DEG)
    sign = 1.0 if plan.side == "left" else -1.0
    backward = np.array([sign * math.sin(sideways) * math.cos(upward), math.cos(sideways) * math.cos(upward),
                         math.sin(upward)])
    right = np.cross([0.0, 0.0, 1.0], backward)
    right /= np.linalg.norm(right)
    up = np.cross(backward, right)
    target = np.asarray(plan.target_mm, dtype=np.float64)
    near = [mesh.points[np.linalg.norm(mesh.points - target, axis=1) < FRAME_MM] for mesh in scene.bones.values()]
    shown = [target[None] + FRAME_MM * np.array([[0, 0, 1.0], [0, 0, -1.0]]), *near]
    for needle in (plan.needle, trainee):
        if needle is not None:
            shown.append(np.vstack([needle.tip_mm, needle.hub_mm]))
    points = np.vstack(shown)
    frame = np.column_stack([right, up, backward])
    local = points @ frame
    low, high = local.min(axis=0), local.max(axis=0)
    focus = frame @ ((low + high) / 2)
    half_width, half_height, half_depth = (high - low) / 2
    half_height = max(half_height, half_width / aspect) * 1.1
    distance = half_height / math.tan(math.radians(plotter.camera.view_angle) / 2) + half_depth
    plotter.camera_position = [tuple(focus + distance * backward), tuple(focus), tuple(up)]
    plotter.reset_camera_clipping_range()


def _add_caption(plotter: Any, plan: Plan, size: tuple[int, int]) -> None:
    font = max(9, round(min(size) / 55))
    words = (f"{plan.level} {plan.side} {plan.procedure.upper()} ({plan.approach})"
             + ("" if plan.feasible else f" - NOT FEASIBLE: {plan.reason[:90]}"))
    plotter.add_text(words, position="upper_left", font_size=font, color="white")
    side = "left" if plan.side == "left" else "right"
    plotter.add_text(f"seen from behind, {CAMERA_DEG[0]:.0f} degrees toward the patient's {side} and "
                     f"{CAMERA_DEG[1]:.0f} degrees from above; head up", position="lower_left", font_size=font,
                     color="#b0b8c8")
    plotter.add_axes(xlabel="L", ylabel="P", zlabel="S", line_width=3, viewport=(0.0, 0.05, 0.2, 0.3))
