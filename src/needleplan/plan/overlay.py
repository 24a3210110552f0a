"""Simulated fluoroscopy of a plan's views with the plan drawn over it.

Each proposed C-arm view is rendered from the CT with the planned needle in it, then overlaid in colour: the
target and its region (a ring around the tip, the tip itself left visible), the vertebral canal's projected
outline (from the canal mask), the modelled exiting roots on the plan's side, the medial branch or dorsal ramus
(MBB, RFA), the RF lesion (RFA) and the skin entry point. A title gives the view and its angles in words, a legend
the colours, and a small glyph the patient's head, left and anterior directions on the image.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..anatomy import STRUCTURE_IDS, Spine
from ..fluoro import CArm, Fluoro, render
from ..io.atomic import atomic_file
from ..needle import Needle
from ..volume import Volume
from . import drawing
from .model import Lesion, Plan, TargetRegion, View

__all__ = ["COLOURS", "ViewImage", "render_plan_views", "render_view", "write_view_images"]

#: Overlay colours ("#rrggbb"); none of them is a gray, so they never mix up with the fluoroscopy.
COLOURS: dict[str, str] = {
    "target": "#39ff14",
    "canal": "#00e5ff",
    "root": "#ffd700",
    "nerve": "#ff8c00",
    "lesion": "#ff3cc7",
    "entry": "#ff4d4d",
    "plan needle": "#c080ff",
}
_WHITE = (255, 255, 255)
_PALE = (205, 212, 224)
_CANAL = STRUCTURE_IDS["canal"]
#: Smallest drawn radius of the target ring, pixels: the tip and a little of the shaft stay visible inside it.
MIN_MARKER_RADIUS_PX = 7.0


@dataclass(eq=False)
class ViewImage:
    """One view of a plan: the rendered fluoroscopy and the annotated colour picture.

    Attributes
    ----------
    number : int
        1-based place of the view in the plan's sequence.
    view : View
    fluoro : Fluoro
        The plain simulated fluoroscopy (needle included), with its posed C-arm.
    rgb : ndarray (rows, cols, 3) uint8
        The annotated picture.
    target_px : (float, float)
        Projected target (col, row).
    marker_radius_px : float
        Radius of the target ring.
    """

    number: int
    view: View
    fluoro: Fluoro
    rgb: np.ndarray
    target_px: tuple[float, float]
    marker_radius_px: float

    @property
    def file_name(self) -> str:
        """E.g. "03-trajectory.png"."""
        return f"{self.number:02d}-{_slug(self.view.name)}.png"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "view"


def render_plan_views(volume: Volume, spine: Spine, plan: Plan, *, size: int = 512) -> list[ViewImage]:
    """Render and annotate every view of a plan (none for a plan without a needle).

    Parameters
    ----------
    volume : Volume
        The CT the plan was made on (HU).
    spine : Spine
        Its segmentation: the canal mask (``spine.structures``) and the modelled roots come from it.
    plan : Plan
    size : int
        Pixels per side of the square detector.

    Returns
    -------
    list of ViewImage
    """
    if plan.needle is None:
        return []
    return [render_view(volume, spine, plan, view, number, len(plan.views), size=size)
            for number, view in enumerate(plan.views, start=1)]


def render_view(volume: Volume, spine: Spine, plan: Plan, view: View, number: int = 1, count: int = 1, *,
                size: int = 512, needles: Sequence[Needle] | None = None) -> ViewImage:
    """Render one view of a plan with the needle and draw the plan over it (see the module's description).

    ``needles`` are the steel needles rendered (default: the plan's). When the plan's needle is not among them
    (a trainee's attempt), it is drawn as a coloured line over the image instead.
    """
    structures = spine.structures
    has_canal = structures is not None and bool(np.any(np.asarray(structures.voxels) == _CANAL))
    drawn_plan_needle = needles is not None and plan.needle is not None and plan.needle not in needles
    needles = list(needles) if needles is not None else ([plan.needle] if plan.needle is not None else [])
    fluoro = render(volume, view.carm, size=size, needles=needles, labels=structures if has_canal else None,
                    label_ids=[_CANAL] if has_canal else None)
    carm = fluoro.carm
    plain = drawing.gray_to_rgb(fluoro.display)
    rgb = plain.copy()
    shape = rgb.shape[:2]
    legend: list[tuple[str, str]] = []
    if has_canal:
        canal = fluoro.label_masks().get(_CANAL)
        if canal is not None and canal.any():
            drawing.paint(rgb, drawing.outline(canal, 2), drawing.hex_to_rgb(COLOURS["canal"]))
            legend.append(("vertebral canal", COLOURS["canal"]))
    if _draw_roots(rgb, carm, spine, plan):
        legend.append((f"exiting roots ({plan.side})", COLOURS["root"]))
    if plan.nerve is not None and _draw_line(rgb, carm, np.asarray(plan.nerve), COLOURS["nerve"], 1.3):
        legend.append(("dorsal ramus" if plan.approach == "dorsal ramus" else "medial branch", COLOURS["nerve"]))
    if plan.lesion is not None and _draw_lesion(rgb, carm, plan.lesion):
        legend.append(("RF lesion", COLOURS["lesion"]))
    target_px, radius_px = _draw_target(rgb, carm, plan.target_mm, plan.target_region)
    legend.insert(0, ("target", COLOURS["target"]))
    if plan.entry_mm is not None and _draw_entry(rgb, carm, plan.entry_mm, target_px, radius_px):
        legend.append(("skin entry", COLOURS["entry"]))
    if drawn_plan_needle and plan.needle is not None and _draw_line(
            rgb, carm, np.vstack([plan.needle.hub_mm, plan.needle.tip_mm]), COLOURS["plan needle"], 1.0):
        legend.append(("planned needle", COLOURS["plan needle"]))
    for needle in needles:  # steel stays on top of every outline, as on a real overlay
        on_needle = _needle_mask(shape, carm, needle.tip_mm, needle.hub_mm, needle.diameter_mm)
        rgb[on_needle] = plain[on_needle]
    rgb = _annotate(rgb, plan, view, number, count, legend, carm)
    return ViewImage(number, view, fluoro, rgb, target_px, radius_px)


def write_view_images(images: list[ViewImage], folder: str | os.PathLike[str], prefix: str = "") -> list[Path]:
    """Write each annotated view as an RGB PNG (atomically) into ``folder``; returns the paths in order."""
    folder = Path(folder)
    paths = []
    for image in images:
        path = folder / f"{prefix}{image.file_name}"
        with atomic_file(path) as tmp:
            Image.fromarray(image.rgb).save(tmp, format="PNG")
        paths.append(path)
    return paths


# ---- geometry on the image ---------------------------------------------------------------------------------------
def _px_per_mm(carm: CArm, depth_mm: float | np.ndarray) -> np.ndarray:
    """Pixels per mm of an object at ``depth_mm`` from the source (perspective scale)."""
    return carm.intrinsics[0, 0] / np.maximum(np.asarray(depth_mm, dtype=np.float64), 1e-6)


def _unit_sphere(count: int = 240) -> np.ndarray:
    """Evenly spread points on the unit sphere (Fibonacci lattice), shape (count, 3)."""
    index = np.arange(count) + 0.5
    z = 1.0 - 2.0 * index / count
    angle = np.pi * (3.0 - np.sqrt(5.0)) * index
    ring = np.sqrt(1.0 - z ** 2)
    return np.column_stack([ring * np.cos(angle), ring * np.sin(angle), z])


def _frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to ``axis`` and to each other."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    first = np.cross(axis, helper)
    first /= np.linalg.norm(first)
    return first, np.cross(axis, first)


def _projected_mask(carm: CArm, shape: tuple[int, int], points_mm: np.ndarray) -> np.ndarray:
    projection = carm.project(points_mm)
    keep = projection.depth_mm > 0
    return drawing.hull_mask(shape, projection.col[keep], projection.row[keep])


# ---- layers ------------------------------------------------------------------------------------------------------
def _draw_roots(rgb: np.ndarray, carm: CArm, spine: Spine, plan: Plan) -> bool:
    """The modelled exiting root tubes on the plan's side: a light fill and their outline."""
    colour = drawing.hex_to_rgb(COLOURS["root"])
    drawn = False
    for vertebra in spine:
        line = vertebra.landmarks.get(f"exiting_root_{plan.side}")
        if line is None:
            continue
        line = np.asarray(line, dtype=np.float64)
        projection = carm.project(line)
        if np.any(projection.depth_mm <= 0):
            continue
        radius = float(plan.options.root_radius_mm * np.mean(_px_per_mm(carm, projection.depth_mm)))
        band = drawing.band_mask(rgb.shape[:2], projection.col, projection.row, radius)
        if band.any():
            drawing.blend(rgb, band, colour, 0.22)
            drawing.paint(rgb, drawing.outline(band, 2), colour)
            drawn = True
    return drawn


def _draw_line(rgb: np.ndarray, carm: CArm, line_mm: np.ndarray, colour: str, radius_px: float) -> bool:
    projection = carm.project(line_mm)
    if np.any(projection.depth_mm <= 0):
        return False
    band = drawing.band_mask(rgb.shape[:2], projection.col, projection.row, radius_px)
    drawing.paint(rgb, band, drawing.hex_to_rgb(colour))
    return bool(band.any())


def _draw_lesion(rgb: np.ndarray, carm: CArm, lesion: Lesion) -> bool:
    """The prolate spheroid's projected silhouette: light fill and outline."""
    axis = np.asarray(lesion.axis, dtype=np.float64)
    first, second = _frame(axis)
    sphere = _unit_sphere()
    surface = (np.asarray(lesion.center_mm) + 0.5 * lesion.length_mm * sphere[:, 2:3] * axis
               + lesion.radius_mm * (sphere[:, 0:1] * first + sphere[:, 1:2] * second))
    mask = _projected_mask(carm, rgb.shape[:2], surface)
    colour = drawing.hex_to_rgb(COLOURS["lesion"])
    drawing.blend(rgb, mask, colour, 0.3)
    drawing.paint(rgb, drawing.outline(mask, 2), colour)
    return bool(mask.any())


def _draw_target(rgb: np.ndarray, carm: CArm, target_mm: np.ndarray, region: TargetRegion
                 ) -> tuple[tuple[float, float], float]:
    """A ring (the target region's silhouette, at least ``MIN_MARKER_RADIUS_PX``) and four ticks outside it."""
    projection = carm.project(np.asarray(target_mm, dtype=np.float64))
    col, row, depth = float(projection.col[0]), float(projection.row[0]), float(projection.depth_mm[0])
    colour = drawing.hex_to_rgb(COLOURS["target"])
    shape = rgb.shape[:2]
    sphere = region.radius_mm * _unit_sphere()
    region_mask = _projected_mask(carm, shape, np.vstack([region.start_mm + sphere, region.end_mm + sphere]))
    radius = max(MIN_MARKER_RADIUS_PX, float(region.radius_mm * _px_per_mm(carm, depth)))
    ring = drawing.outline(region_mask, 2) if region_mask.sum() > np.pi * MIN_MARKER_RADIUS_PX ** 2 else None
    if ring is None:  # a small region: a ring of the minimum size
        grid_r, grid_c = np.mgrid[0:shape[0], 0:shape[1]]
        distance = np.hypot(grid_c - col, grid_r - row)
        ring = (distance <= radius + 1.0) & (distance >= radius - 1.0)
    drawing.paint(rgb, ring, colour)
    for d_col, d_row in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        start = (col + d_col * (radius + 3), row + d_row * (radius + 3))
        end = (col + d_col * (radius + 11), row + d_row * (radius + 11))
        drawing.paint(rgb, drawing.band_mask(shape, np.array([start[0], end[0]]), np.array([start[1], end[1]]), 1.0),
                      colour)
    return (col, row), radius


def _draw_entry(rgb: np.ndarray, carm: CArm, entry_mm: np.ndarray, target_px: tuple[float, float],
                radius_px: float) -> bool:
    """An x at the skin entry, unless it falls on the target marker (the trajectory view)."""
    projection = carm.project(np.asarray(entry_mm, dtype=np.float64))
    col, row = float(projection.col[0]), float(projection.row[0])
    if not carm.on_detector(projection)[0] or np.hypot(col - target_px[0], row - target_px[1]) < radius_px + 12:
        return False
    colour = drawing.hex_to_rgb(COLOURS["entry"])
    arm = 6.0
    for sign in (1.0, -1.0):
        cross = drawing.band_mask(rgb.shape[:2], np.array([col - arm, col + arm]),
                                  np.array([row - sign * arm, row + sign * arm]), 1.0)
        drawing.paint(rgb, cross, colour)
    return True


def _needle_mask(shape: tuple[int, int], carm: CArm, tip_mm: np.ndarray, hub_mm: np.ndarray, diameter_mm: float
                 ) -> np.ndarray:
    projection = carm.project(np.vstack([tip_mm, hub_mm]))
    if np.any(projection.depth_mm <= 0):
        return np.zeros(shape, dtype=bool)
    radius = max(0.75, 0.5 * diameter_mm * float(np.max(_px_per_mm(carm, projection.depth_mm))))
    return drawing.band_mask(shape, projection.col, projection.row, radius)


# ---- words and inset ---------------------------------------------------------------------------------------------
#: The inset magnifies a square of this fraction of the image width around the target ...
INSET_FIELD = 0.11
#: ... this many times.
INSET_ZOOM = 3


def _annotate(rgb: np.ndarray, plan: Plan, view: View, number: int, count: int, legend: list[tuple[str, str]],
              carm: CArm) -> np.ndarray:
    """Add the magnified inset, the title (plan, view, angles in words), the legend and the orientation glyph.

    The inset goes in the top corner away from the needle's hub, the title in the other top corner, the colour
    legend bottom left and the glyph bottom right.
    """
    rows, cols = rgb.shape[:2]
    target = carm.project(np.asarray(plan.target_mm, dtype=np.float64))
    centre = (float(target.col[0]), float(target.row[0]))
    hub_col = centre[0]
    if plan.needle is not None:
        hub_col = float(carm.project(plan.needle.hub_mm).col[0])
    inset_left = hub_col > centre[0] + 0.5
    inset = _inset(rgb, centre)
    text_px = max(9, round(min(rows, cols) / 38))
    face = drawing.font(text_px)
    title = f"{plan.level} {plan.side} {plan.procedure.upper()} - view {number}/{count}: {view.name}"
    room = cols - inset.shape[1] - 6 * max(2, text_px // 3)
    words = drawing.wrap_to_width(view.words, face, room)
    lines = [(title, _WHITE)] + [(line, _PALE) for line in words]
    rgb = drawing.text_panel(rgb, lines, "top-right" if inset_left else "top-left", text_px)
    small = max(8, round(text_px * 0.85))
    rgb = drawing.text_panel(rgb, [(text, _PALE) for text, _ in legend], "bottom-left", small,
                             swatches=[drawing.hex_to_rgb(colour) for _, colour in legend])
    pad = max(2, text_px // 3)
    top, left = pad, pad if inset_left else cols - inset.shape[1] - pad
    if inset.shape[0] + pad <= rows and inset.shape[1] + pad <= cols:
        rgb[top:top + inset.shape[0], left:left + inset.shape[1]] = inset
    return _orientation_glyph(rgb, carm, text_px)


def _inset(rgb: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """A ``INSET_ZOOM`` times magnified square around ``centre`` (col, row) with a white frame and its zoom."""
    rows, cols = rgb.shape[:2]
    half = max(4, round(INSET_FIELD * cols / 2))
    col, row = round(centre[0]), round(centre[1])
    crop = np.zeros((2 * half + 1, 2 * half + 1, 3), dtype=np.uint8)
    r0, r1, c0, c1 = max(row - half, 0), min(row + half + 1, rows), max(col - half, 0), min(col + half + 1, cols)
    if r0 < r1 and c0 < c1:
        crop[r0 - (row - half):r1 - (row - half), c0 - (col - half):c1 - (col - half)] = rgb[r0:r1, c0:c1]
    zoomed = np.repeat(np.repeat(crop, INSET_ZOOM, axis=0), INSET_ZOOM, axis=1)
    zoomed[:2], zoomed[-2:], zoomed[:, :2], zoomed[:, -2:] = 255, 255, 255, 255
    text_px = max(8, round(cols / 45))
    return drawing.text_panel(zoomed, [(f"x{INSET_ZOOM} around the target", _WHITE)], "bottom-right", text_px)


def _orientation_glyph(rgb: np.ndarray, carm: CArm, text_px: int) -> np.ndarray:
    """Arrows for the patient's head (H), left (L) and anterior (A) as they run on this image.

    An axis nearly along the beam, or running within 30 degrees of an arrow already drawn, is left out.
    """
    rows, cols = rgb.shape[:2]
    length = 2.2 * text_px
    centre = np.array([cols - 1.6 * length - 4, rows - 1.6 * length - 4])
    iso = np.asarray(carm.isocenter, dtype=np.float64)
    axes = {"H": np.array([0.0, 0.0, 1.0]), "L": np.array([1.0, 0.0, 0.0]), "A": np.array([0.0, -1.0, 0.0])}
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    face = drawing.font(text_px)
    drawn: list[np.ndarray] = []
    for letter, axis in axes.items():
        projection = carm.project(np.vstack([iso, iso + 10.0 * axis]))
        step = np.array([projection.col[1] - projection.col[0], projection.row[1] - projection.row[0]])
        full = 10.0 * float(_px_per_mm(carm, projection.depth_mm[0]))
        norm = float(np.linalg.norm(step))
        if norm < 0.4 * full or any(step @ other / norm > np.cos(np.radians(30.0)) for other in drawn):
            continue
        drawn.append(step / norm)
        end = centre + length * step / full
        draw.line([tuple(centre), tuple(end)], fill=_PALE, width=2)
        left, top, right, bottom = face.getbbox(letter)
        label = centre + (length + 0.7 * text_px) * step / full - [(left + right) / 2, (top + bottom) / 2]
        draw.text(tuple(label), letter, fill=_WHITE, font=face)
    return np.array(canvas)
