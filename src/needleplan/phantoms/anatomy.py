"""The lumbar spine phantom's anatomy: a painter's list of convex parts and landmarks computed from it.

The builder reads a realised recipe (``lumbar.toml`` after the seed's variation) and returns the ordered part
list plus every landmark, all in world LPS millimetres with the origin at the centre of the S1 superior
endplate.

How the spine is laid out
-------------------------
- The lumbar column follows a smooth curve. Its tangent leans forward by the sacral slope at S1 and turns back
  by the lordosis angle up to L1, two thirds of it in L4-S1 as in real spines; an optional scoliosis adds a
  C-curve with its apex at L3 (S1 stays level; the L5-S1 disc takes up the lateral wedge). Each vertebra takes the tangent at
  its body centre as its superior axis, so it has its own frame (left, posterior, superior); its parts are
  built in that frame and the landmarks are the exact images of frame points. Discs fill the wedge between
  neighbouring endplate planes.
- A vertebra is a body (elliptic cylinder) with pedicles (elliptic cylinders converging forward), laminae
  (boxes whose lower border slopes up laterally), a spinous process, transverse processes and articular
  processes. The facet joint between Ln and Ln+1 is built in the frame of Ln+1: the SAP of Ln+1 and the IAP of
  Ln are parallel plates with the joint gap between them, so the gap is exact under any curvature.
- Every bone is a cortical shell around a cancellous core: all shells of a bone are painted before all its
  cores, so the inside of a union of pieces is cancellous and only its outside is cortical.
- The canal of each level is a pentagonal prism bounded by the posterior body wall, the pedicles' medial walls
  and the laminae's inner faces, from the mid-disc plane above to the one below. It is painted (CSF) after
  all bone: that carves it.
- The sacrum is the S1 segment (body, pedicles, arch, SAPs, alae) plus two tapered blocks (S2-S3, S4-S5) bent
  forward, carved by the sacral canal and the S1 foramina. The pelvis (ilia, SI joints) lives in the pelvic
  frame: the S1 frame turned back by the recipe's sacral slope, so it is the world frame for the default slope
  and follows the sacrum when the slope varies. The SI joint is a plane: sacrum on its medial side, ilium on its
  lateral side, each kept ``gap/2`` away from it, and a joint-space slab painted over the auricular area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .shapes import ConvexSolid, Part, box, elliptic_cylinder, ellipsoid

#: Materials in id order (the column order of path-length tables); HU values come from the recipe.
MATERIALS: tuple[str, ...] = (
    "air", "fat", "soft_tissue", "muscle", "csf", "joint_space", "disc", "cancellous", "cortical", "bowel_gas",
)
BONE_MATERIALS: tuple[str, ...] = ("cancellous", "cortical")
LUMBAR_LEVELS: tuple[str, ...] = ("L1", "L2", "L3", "L4", "L5")
#: VerSe vertebra ids of the label map; the ilia are not vertebrae and stay 0 there.
VERTEBRA_LABELS: dict[str, int] = {"L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24, "S1": 26}
DISC_NAMES: tuple[str, ...] = ("L1_L2", "L2_L3", "L3_L4", "L4_L5", "L5_S1")
#: Ids of the structure map (0 is air outside the body).
STRUCTURE_IDS: dict[str, int] = {
    "background": 0,
    "subcutaneous_fat": 1, "soft_tissue": 2, "paraspinal_muscle_left": 3, "paraspinal_muscle_right": 4,
    "psoas_left": 5, "psoas_right": 6, "bowel_gas": 7,
    "vertebral_body": 10, "pedicle_left": 11, "pedicle_right": 12, "lamina_left": 13, "lamina_right": 14,
    "spinous_process": 15, "transverse_process_left": 16, "transverse_process_right": 17,
    "sap_left": 18, "sap_right": 19, "iap_left": 20, "iap_right": 21,
    "canal": 30, "foramen_left": 31, "foramen_right": 32,
    **{f"disc_{name}": 41 + index for index, name in enumerate(DISC_NAMES)},
    "sacrum": 50, "sacral_ala_left": 51, "sacral_ala_right": 52, "s1_foramen_left": 53, "s1_foramen_right": 54,
    "ilium_left": 60, "ilium_right": 61, "si_joint_left": 62, "si_joint_right": 63,
}
SIDES: dict[str, int] = {"left": 1, "right": -1}


@dataclass(frozen=True)
class Frame:
    """A local frame: origin (3,) and axes (3, 3) whose columns are left, posterior, superior (world units)."""

    origin_mm: np.ndarray
    axes: np.ndarray

    def point(self, local_mm) -> np.ndarray:
        """World position (3,) of a local point."""
        return self.origin_mm + self.axes @ np.asarray(local_mm, dtype=np.float64)

    def vector(self, local) -> np.ndarray:
        """World direction (3,) of a local vector."""
        return self.axes @ np.asarray(local, dtype=np.float64)

    def rotation(self, x_local, z_local) -> np.ndarray:
        """World rotation (columns x, y, z) of a solid whose local x and z axes are given in this frame."""
        return _right_handed(self.vector(x_local), self.vector(z_local))

    def clip(self, solid: ConvexSolid, point_local, outward_local) -> ConvexSolid:
        """``solid`` cut by the half-space of this frame's points q with ``(q - point) . outward <= 0``."""
        return solid.clipped(self.point(point_local), self.vector(outward_local))


@dataclass(frozen=True)
class Anatomy:
    """The built phantom before voxelisation.

    Attributes
    ----------
    parts : tuple of Part
        The painter's list, first painted first.
    landmarks : dict
        JSON-ready landmarks (see :func:`build_anatomy`).
    region_mm : ndarray, shape (2, 3)
        World box (low, high) the voxel grid must cover: the body outline between the grid's end planes.
    """

    parts: tuple[Part, ...]
    landmarks: dict[str, Any]
    region_mm: np.ndarray


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _right_handed(x_axis, z_axis) -> np.ndarray:
    """Rotation with columns (x, z cross x, z): x made orthogonal to z."""
    z = _unit(z_axis)
    x = _unit(np.asarray(x_axis, dtype=np.float64) - np.dot(x_axis, z) * z)
    return np.column_stack([x, np.cross(z, x), z])


def _tilted_axes(forward_deg: float) -> np.ndarray:
    """Axes (left, posterior, superior) of a frame whose superior axis leans forward (anteriorly) by an angle."""
    a = np.radians(forward_deg)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])


def _listed(value) -> Any:
    """Numpy arrays and floats to plain JSON lists and floats, recursively."""
    if isinstance(value, dict):
        return {key: _listed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listed(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_listed(item) for item in value.tolist()] if value.ndim else float(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


# ---- spine curve -------------------------------------------------------------------------------------------------
def spine_frames(recipe: dict) -> dict[str, Frame]:
    """Body-centre frames of L1-L5 and S1 (origin at the body centre, axes left/posterior/superior)."""
    levels, discs, curve = recipe["levels"], recipe["discs"], recipe["curvature"]
    slope, lordosis = curve["sacral_slope_deg"], curve["lordosis_deg"]
    s1_axes = _tilted_axes(slope)
    frames = {"S1": Frame(-0.5 * levels["S1"]["body_height_mm"] * s1_axes[:, 2], s1_axes)}
    # arc length of each lumbar body centre above the S1 endplate centre, going up from L5
    stack, centres = 0.0, {}
    for name, disc in zip(LUMBAR_LEVELS[::-1], DISC_NAMES[::-1]):
        height = levels[name]["body_height_mm"]
        centres[name] = stack + discs[f"{disc}_mm"] + 0.5 * height
        stack = centres[name] + 0.5 * height
    s = np.linspace(0.0, stack, 4001)
    u = s / stack
    tilt = np.radians(slope - lordosis * (2 * u - u * u))  # forward lean; turns fastest low down
    lean = np.radians(0.5 * curve["scoliosis_deg"] * np.cos(np.pi * u))  # lean to the left, C-curve
    tangent = np.column_stack([np.sin(lean), -np.sin(tilt) * np.cos(lean), np.cos(tilt) * np.cos(lean)])
    steps = 0.5 * (tangent[1:] + tangent[:-1]) * np.diff(s)[:, None]
    path = np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])
    for name, arc in centres.items():
        centre = np.array([np.interp(arc, s, path[:, axis]) for axis in range(3)])
        up = np.array([np.interp(arc, s, tangent[:, axis]) for axis in range(3)])
        frames[name] = Frame(centre, _right_handed([1.0, 0.0, 0.0], up))
    return frames


# ---- one vertebra in its own frame ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchSide:
    """Local geometry of one side of a vertebral arch (vertebra frame, mm)."""

    side: int  # +1 left, -1 right
    pedicle_centre: np.ndarray
    pedicle_axis: np.ndarray  # anterior -> posterior
    pedicle_across: np.ndarray  # in the axial plane, perpendicular to the axis, pointing laterally
    pedicle_front_mm: float  # axis parameter of the anterior end (negative)
    medial_corner: np.ndarray  # posterior end of the pedicle's medial wall (axial plane)
    lamina_root: np.ndarray  # posterior end of the pedicle axis
    facet_normal: np.ndarray  # from the SAP towards the IAP above (medial-posterior)
    facet_along: np.ndarray  # in the facet plane, horizontal, posterolateral
    sap_centre_xy: np.ndarray


def arch_side(dims: dict, shared: dict, side: int) -> ArchSide:
    """Pedicle and facet layout of one side (``side`` +1 left, -1 right) of a vertebra."""
    width, depth = dims["body_width_mm"], dims["body_depth_mm"]
    alpha = np.radians(dims["pedicle_angle_deg"])
    axis = np.array([side * np.sin(alpha), np.cos(alpha), 0.0])
    across = np.array([side * np.cos(alpha), -np.sin(alpha), 0.0])
    half_width = 0.5 * dims["pedicle_width_mm"]
    centre = np.array([
        side * (0.5 * dims["canal_width_mm"] + half_width / np.cos(alpha)),
        0.5 * depth + shared["pedicle_offset_mm"],
        0.5 * dims["body_height_mm"] - shared["pedicle_top_gap_mm"] - 0.5 * dims["pedicle_height_mm"],
    ])
    # where the axis, going forward, enters the body's elliptic cross-section
    a2, b2 = (0.5 * width) ** 2, (0.5 * depth) ** 2
    o, v = centre[:2], -axis[:2]
    qa = v[0] ** 2 / a2 + v[1] ** 2 / b2
    qb = o[0] * v[0] / a2 + o[1] * v[1] / b2
    qc = o[0] ** 2 / a2 + o[1] ** 2 / b2 - 1.0
    enter = (-qb - np.sqrt(max(qb * qb - qa * qc, 0.0))) / qa
    root = centre + shared["pedicle_posterior_mm"] * axis
    beta = np.radians(dims["facet_angle_deg"])
    return ArchSide(
        side=side,
        pedicle_centre=centre,
        pedicle_axis=axis,
        pedicle_across=across,
        pedicle_front_mm=-(enter + shared["pedicle_body_overlap_mm"]),
        medial_corner=root - half_width * across,
        lamina_root=root,
        facet_normal=np.array([-side * np.cos(beta), np.sin(beta), 0.0]),
        facet_along=np.array([side * np.sin(beta), np.cos(beta), 0.0]),
        sap_centre_xy=root[:2] + np.array([side * shared["sap_lateral_mm"], shared["sap_posterior_mm"]]),
    )


def canal_polygon(dims: dict, left: ArchSide, right: ArchSide) -> np.ndarray:
    """Axial outline (5, 2) of the canal, counter-clockwise seen from above: posterior body wall, pedicles'
    medial walls, laminae's inner faces up to the apex on the midline."""
    front_y = 0.5 * dims["body_depth_mm"]
    apex = np.array([0.0, front_y + dims["canal_depth_mm"]])
    corners = []
    for arch in (left, right):
        tau = (front_y - arch.medial_corner[1]) / arch.pedicle_axis[1]
        corners.append((arch.medial_corner[:2] + tau * arch.pedicle_axis[:2], arch.medial_corner[:2]))
    (front_left, back_left), (front_right, back_right) = corners
    return np.array([front_right, front_left, back_left, apex, back_right])


def _polygon_centroid(points: np.ndarray) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = 0.5 * cross.sum()
    return np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6.0 * area)


class _Painter:
    """Collects parts: shells and cores of one bone are kept apart until the bone is finished."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._shells: list[Part] = []
        self._cores: list[Part] = []

    def add(self, solid: ConvexSolid, material: str, label: int, structure: str) -> None:
        self.parts.append(Part(solid, material, label, structure))

    def bone(self, solid: ConvexSolid, label: int, structure: str, shell_mm: float) -> None:
        self._shells.append(Part(solid, "cortical", label, structure))
        self._cores.append(Part(solid.shrunk(shell_mm), "cancellous", label, structure))

    def finish_bone(self) -> list[Part]:
        """Append the pending shells, then the pending cores; return the shells."""
        shells = self._shells
        self.parts.extend(shells + self._cores)
        self._shells, self._cores = [], []
        return shells


@dataclass(frozen=True)
class Level:
    """Local layout of one vertebra (L1-L5 or the S1 segment) in its own frame."""

    name: str
    frame: Frame
    dims: dict
    arches: dict[str, ArchSide]
    lamina_top_mm: float
    lamina_bottom_mid_mm: float
    lamina_bottom_lateral_mm: float
    canal: np.ndarray  # (5, 2) axial outline

    @property
    def label(self) -> int:
        return VERTEBRA_LABELS[self.name]

    @property
    def height_mm(self) -> float:
        return self.dims["body_height_mm"]

    @property
    def apex_y_mm(self) -> float:
        return 0.5 * self.dims["body_depth_mm"] + self.dims["canal_depth_mm"]

    def endplate(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """World centre and superiorly pointing unit normal of the superior or inferior endplate."""
        sign = 1.0 if which == "superior" else -1.0
        return self.frame.point([0.0, 0.0, sign * 0.5 * self.height_mm]), self.frame.axes[:, 2].copy()


def level_layout(name: str, frame: Frame, dims: dict, shared: dict) -> Level:
    """Pedicles, laminae heights and canal outline of a level."""
    arches = {key: arch_side(dims, shared, side) for key, side in SIDES.items()}
    pedicle = arches["left"].pedicle_centre[2]
    half_height = 0.5 * dims["pedicle_height_mm"]
    return Level(
        name=name, frame=frame, dims=dims, arches=arches,
        lamina_top_mm=pedicle + half_height - shared["lamina_top_drop_mm"],
        lamina_bottom_mid_mm=-0.5 * dims["body_height_mm"] - shared["lamina_below_body_mm"],
        lamina_bottom_lateral_mm=pedicle - half_height - shared["lamina_lateral_drop_mm"],
        canal=canal_polygon(dims, arches["left"], arches["right"]),
    )


def _lamina_directions(level: Level, arch: ArchSide) -> tuple[np.ndarray, np.ndarray]:
    """Unit direction along the lamina (towards the midline) and its outward normal (posterior-lateral)."""
    apex = np.array([0.0, level.apex_y_mm, 0.0])
    along = _unit(apex - np.append(arch.medial_corner[:2], 0.0))
    return along, arch.side * np.array([along[1], -along[0], 0.0])


def _paint_pedicle(painter: _Painter, level: Level, key: str, arch: ArchSide, shell: float, back: float) -> None:
    middle = arch.pedicle_centre + 0.5 * (back + arch.pedicle_front_mm) * arch.pedicle_axis
    pedicle = elliptic_cylinder(
        level.frame.point(middle),
        (0.5 * level.dims["pedicle_width_mm"], 0.5 * level.dims["pedicle_height_mm"]),
        0.5 * (back - arch.pedicle_front_mm),
        level.frame.rotation(arch.pedicle_across, arch.pedicle_axis),
    )
    painter.bone(pedicle, level.label, f"pedicle_{key}", shell)


def _tp_layout(level: Level, arch: ArchSide, shared: dict) -> dict[str, Any]:
    """Local root, direction and length of a transverse process."""
    gamma = np.radians(shared["tp_backward_deg"])
    direction = np.array([arch.side * np.cos(gamma), np.sin(gamma), 0.0])
    root = arch.lamina_root - np.array([0.0, level.dims["tp_forward_mm"], 0.0])
    root[2] = arch.pedicle_centre[2] - 1.0
    reach = (0.5 * level.dims["tp_span_mm"] - abs(root[0])) / np.cos(gamma)
    return {"root": root, "direction": direction, "reach": reach, "tip": root + reach * direction}


def _spinous_layout(level: Level, shared: dict) -> dict[str, Any]:
    droop = np.radians(shared["spinous_droop_deg"])
    axis = np.array([0.0, np.cos(droop), -np.sin(droop)])
    root = np.array([
        0.0, level.apex_y_mm + 0.5 * shared["lamina_thickness_mm"],
        0.5 * (level.lamina_top_mm + level.lamina_bottom_mid_mm),
    ])
    return {"root": root, "axis": axis, "tip": root + level.dims["spinous_length_mm"] * axis}


def _paint_lumbar(painter: _Painter, level: Level, shared: dict) -> None:
    """Body, pedicles, laminae, transverse and spinous processes of a lumbar vertebra (one bone group)."""
    frame, dims, label = level.frame, level.dims, level.label
    shell, z_up = shared["cortical_shell_mm"], np.array([0.0, 0.0, 1.0])
    for key, arch in level.arches.items():
        _paint_pedicle(painter, level, key, arch, shell, shared["pedicle_posterior_mm"])
        along, outward = _lamina_directions(level, arch)
        corner = np.append(arch.medial_corner[:2], 0.0)
        apex = np.array([0.0, level.apex_y_mm, 0.0])
        centre = 0.5 * (corner + apex) + 0.5 * shared["lamina_thickness_mm"] * outward
        centre[2] = 0.5 * (level.lamina_top_mm + level.lamina_bottom_mid_mm)
        half = (
            0.5 * np.linalg.norm(apex - corner) + 3.0, 0.5 * shared["lamina_thickness_mm"],
            0.5 * (level.lamina_top_mm - level.lamina_bottom_mid_mm),
        )
        lamina = box(frame.point(centre), half, frame.rotation(along, z_up))
        slope = (level.lamina_bottom_lateral_mm - level.lamina_bottom_mid_mm) / abs(corner[0])
        lamina = frame.clip(lamina, [0.0, 0.0, level.lamina_bottom_mid_mm], [arch.side * slope, 0.0, -1.0])
        painter.bone(lamina, label, f"lamina_{key}", shell)
        tp = _tp_layout(level, arch, shared)
        overlap = shared["tp_root_overlap_mm"]
        solid = box(
            frame.point(tp["root"] + 0.5 * (tp["reach"] - overlap) * tp["direction"]),
            (0.5 * (tp["reach"] + overlap), 0.5 * dims["tp_thickness_mm"], 0.5 * dims["tp_height_mm"]),
            frame.rotation(tp["direction"], z_up),
        )
        painter.bone(solid, label, f"transverse_process_{key}", shell)
    sp = _spinous_layout(level, shared)
    length = dims["spinous_length_mm"]
    spinous = box(
        frame.point(sp["root"] + 0.5 * (length - 6.0) * sp["axis"]),
        (0.5 * shared["spinous_thickness_mm"], 0.5 * (length + 6.0), 0.5 * dims["spinous_height_mm"]),
        frame.rotation([1.0, 0.0, 0.0], np.cross([1.0, 0.0, 0.0], sp["axis"])),
    )
    painter.bone(spinous, label, "spinous_process", shell)
    body = elliptic_cylinder(frame.origin_mm, (0.5 * dims["body_width_mm"], 0.5 * dims["body_depth_mm"]),
                             0.5 * level.height_mm, frame.axes)
    painter.bone(body, label, "vertebral_body", shell)


def facet_layout(lower: Level, upper: Level | None, shared: dict) -> dict[str, dict[str, np.ndarray]]:
    """Local boxes (lower frame) of the SAPs of ``lower`` and the IAPs of ``upper`` above it.

    Each side gets ``sap_centre``, ``sap_half`` and, with an upper level, ``iap_centre``, ``iap_half``; box axes
    are (facet_along, +-facet_normal, superior) of that side's arch. The IAP box is taller than the IAP: its top
    is cut in the upper frame, ``iap_overlap_mm`` above the upper lamina's lateral lower border, so the IAP
    joins its own lamina whatever the angle between the two vertebrae.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, arch in lower.arches.items():
        base = arch.pedicle_centre[2] - 0.5 * lower.dims["pedicle_height_mm"]
        tip = 0.5 * lower.height_mm + shared["sap_rise_mm"]
        layout = {
            "sap_centre": np.append(arch.sap_centre_xy, 0.5 * (base + tip)),
            "sap_half": np.array([0.5 * shared["sap_width_mm"], 0.5 * shared["sap_thickness_mm"], 0.5 * (tip - base)]),
        }
        if upper is not None:
            # reach well into the upper vertebra; _paint_facet_boxes cuts the top in the upper frame
            upper_in_lower = 0.5 * lower.height_mm + _disc_height(lower, upper, shared) + 0.5 * upper.height_mm
            top = upper_in_lower + upper.lamina_bottom_lateral_mm + shared["iap_overlap_mm"] + 20.0
            bottom = lower.lamina_top_mm + shared["iap_clearance_mm"]
            offset = 0.5 * shared["sap_thickness_mm"] + shared["facet_gap_mm"] + 0.5 * shared["iap_thickness_mm"]
            layout["iap_centre"] = np.append(arch.sap_centre_xy + offset * arch.facet_normal[:2], 0.5 * (bottom + top))
            layout["iap_half"] = np.array([0.5 * shared["iap_width_mm"], 0.5 * shared["iap_thickness_mm"], 0.5 * (top - bottom)])
        out[key] = layout
    return out


def _disc_height(lower: Level, upper: Level, shared: dict) -> float:
    return shared["disc_heights_mm"][f"{upper.name}_{lower.name}"]


def _paint_facet_boxes(painter: _Painter, lower: Level, facets: dict, which: str, label: int, shell: float,
                       upper: Level | None = None, overlap_mm: float = 0.0) -> None:
    """Paint the SAPs (``which="sap"``) or the IAPs (``"iap"``, cut in the ``upper`` frame) of a facet layout."""
    for key, layout in facets.items():
        rotation = lower.frame.rotation(lower.arches[key].facet_along, [0.0, 0.0, 1.0])
        solid = box(lower.frame.point(layout[f"{which}_centre"]), layout[f"{which}_half"], rotation)
        if upper is not None:
            solid = upper.frame.clip(solid, [0.0, 0.0, upper.lamina_bottom_lateral_mm + overlap_mm], [0.0, 0.0, 1.0])
        painter.bone(solid, label, f"{which}_{key}", shell)


def _canal_solid(level: Level, top: tuple[np.ndarray, np.ndarray], bottom: tuple[np.ndarray, np.ndarray]) -> ConvexSolid:
    """The level's canal prism between two world planes (point, superiorly pointing normal)."""
    outline = level.canal
    front_y, apex_y = outline[:, 1].min(), outline[:, 1].max()
    half_z = 0.5 * level.height_mm + 20.0
    solid = box(
        level.frame.point([0.0, 0.5 * (front_y + apex_y), 0.0]),
        (np.abs(outline[:, 0]).max() + 1.0, 0.5 * (apex_y - front_y) + 1.0, half_z),
        level.frame.axes,
    )
    for start, end in zip(outline, np.roll(outline, -1, axis=0)):
        edge = end - start
        solid = level.frame.clip(solid, np.append(start, 0.0), [edge[1], -edge[0], 0.0])
    solid = solid.clipped(top[0], top[1])
    return solid.clipped(bottom[0], -bottom[1])


def _mid_disc_plane(upper: Level, lower: Level) -> tuple[np.ndarray, np.ndarray]:
    """World point and superior unit normal of the plane halfway between two endplates."""
    top, n_top = upper.endplate("inferior")
    bottom, n_bottom = lower.endplate("superior")
    return 0.5 * (top + bottom), _unit(n_top + n_bottom)


def _disc_solid(upper: Level, lower: Level, bulge_mm: float, height_mm: float) -> ConvexSolid:
    top, n_top = upper.endplate("inferior")
    bottom, n_bottom = lower.endplate("superior")
    axis = _unit(n_top + n_bottom)
    left = upper.frame.axes[:, 0] + lower.frame.axes[:, 0]
    semi = (
        0.25 * (upper.dims["body_width_mm"] + lower.dims["body_width_mm"]) + bulge_mm,
        0.25 * (upper.dims["body_depth_mm"] + lower.dims["body_depth_mm"]) + bulge_mm,
    )
    disc = elliptic_cylinder(0.5 * (top + bottom), semi, 0.5 * height_mm + 8.0, _right_handed(left, axis))
    return disc.clipped(top, n_top).clipped(bottom, -n_bottom)


# ---- sacrum and pelvis ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SIJoint:
    """One sacroiliac joint: centre (world) and unit axes n (lateral normal), u (posterior), w (up the joint)."""

    centre_mm: np.ndarray
    normal: np.ndarray
    along: np.ndarray
    up: np.ndarray
    gap_mm: float
    depth_mm: float
    length_mm: float

    def sacral_side(self, solid: ConvexSolid) -> ConvexSolid:
        """``solid`` kept medial to the joint space."""
        return solid.clipped(self.centre_mm - 0.5 * self.gap_mm * self.normal, self.normal)

    def iliac_side(self, solid: ConvexSolid) -> ConvexSolid:
        """``solid`` kept lateral to the joint space."""
        return solid.clipped(self.centre_mm + 0.5 * self.gap_mm * self.normal, -self.normal)

    def line(self, which: str, n_points: int = 7) -> np.ndarray:
        """Posterior or anterior joint line (n_points, 3), superior to inferior, on the joint's mid-plane."""
        sign = 1.0 if which == "posterior" else -1.0
        steps = np.linspace(0.5, -0.5, n_points)[:, None] * self.length_mm
        return self.centre_mm + sign * 0.5 * self.depth_mm * self.along + steps * self.up


def si_joint(pelvic: Frame, recipe: dict, side: int) -> SIJoint:
    """The joint plane of one side from the recipe's ``[si_joint]`` table (pelvic frame)."""
    cx, cy, cz = recipe["centre_mm"]
    psi, tilt = np.radians(recipe["obliquity_deg"]), np.radians(recipe["tilt_deg"])
    up = pelvic.vector([0.0, -np.sin(tilt), np.cos(tilt)])
    along = pelvic.vector([-side * np.sin(psi), np.cos(psi), 0.0])
    along = _unit(along - np.dot(along, up) * up)
    normal = side * _unit(np.cross(along, up))
    return SIJoint(
        pelvic.point([side * cx, cy, cz]), normal, along, up,
        recipe["gap_mm"], recipe["depth_mm"], recipe["length_mm"],
    )


def _paint_ilium(painter: _Painter, joint: SIJoint, pelvic: Frame, recipe: dict, side: int, key: str,
                 shell: float) -> dict[str, np.ndarray]:
    """One ilium (a bone group): block beside the joint, PSIS, iliac wing. Returns its landmark points."""
    structure = f"ilium_{key}"
    n, u, w = joint.normal, joint.along, joint.up

    def lateral(solid: ConvexSolid) -> ConvexSolid:
        solid = joint.iliac_side(solid)
        return pelvic.clip(solid, [side * recipe["medial_limit_mm"], 0.0, 0.0], [-side, 0.0, 0.0])

    thick = recipe["block_thickness_mm"]
    front, back = recipe["block_front_mm"], recipe["block_back_mm"]
    top, bottom = recipe["block_top_mm"], recipe["block_bottom_mm"]
    centre = (
        joint.centre_mm + (0.5 * joint.gap_mm + 0.5 * thick) * n + 0.5 * (back - front) * u
        + 0.5 * (top - bottom) * w
    )
    half = (0.5 * thick, 0.5 * (joint.depth_mm + front + back), 0.5 * (joint.length_mm + top + bottom))
    painter.bone(lateral(box(centre, half, _right_handed(n, w))), 0, structure, shell)
    psis_semi = np.asarray(recipe["psis_semi_axes_mm"], dtype=float)
    psis_centre = (
        joint.centre_mm + (0.5 * joint.gap_mm + 0.45 * thick) * n + (0.5 * joint.depth_mm + back - 0.6 * psis_semi[1]) * u
    )
    painter.bone(lateral(ellipsoid(psis_centre, psis_semi, pelvic.axes)), 0, structure, shell)
    # iliac wing: an elliptic plate running anterolaterally and leaning out, cut below
    omega, flare = np.radians(recipe["wing_angle_deg"]), np.radians(recipe["wing_flare_deg"])
    across = pelvic.vector([side * np.sin(omega), -np.cos(omega), 0.0])
    rise = pelvic.vector([side * np.sin(flare), 0.0, np.cos(flare)])
    rise = _unit(rise - np.dot(rise, across) * across)
    plate_normal = _unit(np.cross(across, rise))
    wx, wy, wz = recipe["wing_centre_mm"]
    wing_centre = pelvic.point([side * wx, wy, wz])
    semi = recipe["wing_semi_axes_mm"]
    wing = elliptic_cylinder(wing_centre, semi, 0.5 * recipe["wing_thickness_mm"], _right_handed(across, plate_normal))
    wing = wing.clipped(wing_centre - recipe["wing_keep_below_mm"] * rise, -rise)
    painter.bone(lateral(wing), 0, structure, shell)
    return {
        "iliac_crest_top": wing_centre + semi[1] * rise,
        "psis": psis_centre + psis_semi[1] * pelvic.axes[:, 1],
    }


def _sacral_block_frames(s1: Level, recipe: dict) -> list[tuple[Frame, np.ndarray, float]]:
    """Frames (origin at block centre), half sizes and half-length of the S2-S3 and S4-S5 blocks."""
    blocks = []
    anterior_top = np.array([0.0, -0.5 * s1.dims["body_depth_mm"], -0.5 * s1.height_mm + 6.0])
    previous_up = None
    for length, kyphosis, width, depth in zip(
        recipe["segment_lengths_mm"], recipe["segment_kyphosis_deg"], recipe["segment_top_widths_mm"],
        recipe["segment_depths_mm"],
    ):
        k = np.radians(kyphosis)
        rotation = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(k), np.sin(k)], [0.0, -np.sin(k), np.cos(k)]])
        up, back = rotation[:, 2], rotation[:, 1]
        overlap = 6.0 if previous_up is None else 8.0
        if previous_up is not None:
            anterior_top = anterior_top + overlap * up
        half_length = 0.5 * (length + overlap)
        centre = anterior_top + 0.5 * depth * back - half_length * up
        frame = Frame(s1.frame.point(centre), s1.frame.axes @ rotation)
        blocks.append((frame, np.array([0.5 * width, 0.5 * depth, half_length]), half_length))
        anterior_top = anterior_top - 2.0 * half_length * up
        previous_up = up
    return blocks


def _tapered_block(frame: Frame, half: np.ndarray, bottom_width: float, bottom_depth: float) -> ConvexSolid:
    """A box narrowing linearly (width both sides, depth from behind) from its top to its bottom face."""
    solid = box(frame.origin_mm, half, frame.axes)
    hl = half[2]
    k_side = (2.0 * half[0] - bottom_width) / (4.0 * hl)
    for side in (1.0, -1.0):
        solid = frame.clip(solid, [side * 0.5 * bottom_width, 0.0, -hl], [side, 0.0, -k_side])
    k_back = (2.0 * half[1] - bottom_depth) / (2.0 * hl)
    return frame.clip(solid, [0.0, -half[1] + bottom_depth, -hl], [0.0, 1.0, -k_back])


def _paint_sacrum(painter: _Painter, s1: Level, facets: dict, joints: dict[str, SIJoint], recipe: dict,
                  shared: dict) -> dict[str, Any]:
    """The sacrum as one bone group (label 26). Returns local geometry for the carves and landmarks."""
    frame, dims, label = s1.frame, s1.dims, s1.label
    shell = shared["cortical_shell_mm"]
    width, depth, height = dims["body_width_mm"], dims["body_depth_mm"], dims["body_height_mm"]

    def medial(solid: ConvexSolid) -> ConvexSolid:
        for joint in joints.values():
            solid = joint.sacral_side(solid)
        return solid

    painter.bone(elliptic_cylinder(frame.origin_mm, (0.5 * width, 0.5 * depth), 0.5 * height, frame.axes),
                 label, "vertebral_body", shell)
    dorsal = s1.apex_y_mm + recipe["dorsal_plate_mm"]
    arch_bottom = -0.5 * height - 4.0
    arch_front = 0.5 * depth - 3.0
    arch_block = box(
        frame.point([0.0, 0.5 * (arch_front + dorsal), 0.5 * (s1.lamina_top_mm + arch_bottom)]),
        (recipe["arch_half_width_mm"], 0.5 * (dorsal - arch_front), 0.5 * (s1.lamina_top_mm - arch_bottom)),
        frame.axes,
    )
    painter.bone(medial(arch_block), label, "sacrum", shell)
    ala_inner = 0.5 * width - 10.0
    ala_front = -0.5 * depth + recipe["ala_front_mm"]
    ala_top = 0.5 * height - recipe["ala_top_drop_mm"]
    ala_bottom = -0.5 * height - recipe["ala_bottom_mm"]
    for key, side in SIDES.items():
        ala = box(
            frame.point([side * 0.5 * (ala_inner + recipe["ala_reach_mm"]), ala_front + 0.5 * recipe["ala_depth_mm"],
                         0.5 * (ala_top + ala_bottom)]),
            (0.5 * (recipe["ala_reach_mm"] - ala_inner), 0.5 * recipe["ala_depth_mm"], 0.5 * (ala_top - ala_bottom)),
            frame.axes,
        )
        painter.bone(medial(ala), label, f"sacral_ala_{key}", shell)
    blocks = _sacral_block_frames(s1, recipe)
    for (block_frame, half, _), bottom_width, bottom_depth in zip(
        blocks, recipe["segment_bottom_widths_mm"], recipe["segment_taper_depths_mm"]
    ):
        painter.bone(medial(_tapered_block(block_frame, half, bottom_width, bottom_depth)), label, "sacrum", shell)
    for key, joint in joints.items():  # the lateral mass behind each auricular surface
        mass = recipe["lateral_mass_mm"]
        centre = joint.centre_mm - (0.5 * joint.gap_mm + 0.5 * mass) * joint.normal
        half = (0.5 * mass, 0.5 * joint.depth_mm + 3.0, 0.5 * joint.length_mm + 3.0)
        painter.bone(box(centre, half, _right_handed(joint.normal, joint.up)), label, "sacrum", shell)
    for key, arch in s1.arches.items():
        _paint_pedicle(painter, s1, key, arch, shell, shared["pedicle_posterior_mm"])
    _paint_facet_boxes(painter, s1, facets, "sap", label, shell)
    return {
        "blocks": blocks, "dorsal_y": dorsal, "ala_top": ala_top,
        "ala_centre_y": ala_front + 0.5 * recipe["ala_depth_mm"], "ala_inner": ala_inner,
    }


def _sacral_carves(painter: _Painter, s1: Level, info: dict, recipe: dict) -> dict[str, Any]:
    """Lower sacral canal (fat) and the S1 foramina channels (fat). Returns the channel axes (world)."""
    block_frame, half, half_length = info["blocks"][0]
    canal_width, canal_depth = recipe["lower_canal_mm"]
    bottom_depth = recipe["segment_taper_depths_mm"][0]
    k_back = (2.0 * half[1] - bottom_depth) / (2.0 * half_length)
    back_y = -half[1] + bottom_depth - recipe["dorsal_plate_mm"]
    canal = box(block_frame.point([0.0, 0.0, 4.0]), (0.5 * canal_width, half[1], half_length + 4.0), block_frame.axes)
    canal = block_frame.clip(canal, [0.0, back_y, -half_length], [0.0, 1.0, -k_back])
    canal = block_frame.clip(canal, [0.0, back_y - canal_depth, -half_length], [0.0, -1.0, k_back])
    painter.add(canal, "fat", 0, "canal")
    channels = {}
    z = -0.5 * s1.height_mm - recipe["foramen_below_mm"]
    ax, ay = recipe["foramen_anterior_mm"]
    for key, side in SIDES.items():
        front = s1.frame.point([side * ax, -0.5 * s1.dims["body_depth_mm"] - ay, z])
        back = s1.frame.point([side * recipe["foramen_posterior_x_mm"], info["dorsal_y"] + 12.0, z])
        axis = back - front
        channel = elliptic_cylinder(
            0.5 * (front + back), (recipe["foramen_radius_mm"],) * 2, 0.5 * np.linalg.norm(axis),
            _right_handed(s1.frame.axes[:, 0], axis),
        )
        painter.add(channel, "fat", 0, f"s1_foramen_{key}")
        channels[key] = (front, back)
    return channels


# ---- soft tissue -----------------------------------------------------------------------------------------------------
def _soft_tissue(recipe: dict, z_range: tuple[float, float], levels: dict[str, Level],
                 spinous_tips: np.ndarray) -> tuple[list[Part], dict[str, Any]]:
    """Body outline (fat), soft-tissue core, paraspinal and psoas muscles, bowel gas; and the skin description."""
    body = recipe["body"]
    half_width, half_depth = 0.5 * body["width_mm"], 0.5 * body["depth_mm"]
    centre_y = spinous_tips[:, 1].max() + body["skin_to_spinous_mm"] - half_depth
    z_low, z_high = z_range
    centre = np.array([0.0, centre_y, 0.5 * (z_low + z_high)])
    half_height = 0.5 * (z_high - z_low)
    fat = body["fat_thickness_mm"]
    parts = [
        Part(elliptic_cylinder(centre, (half_width, half_depth), half_height), "fat", 0, "subcutaneous_fat"),
        Part(elliptic_cylinder(centre, (half_width - fat, half_depth - fat), half_height), "soft_tissue", 0,
             "soft_tissue"),
    ]
    lumbar_centres = np.array([levels[name].frame.origin_mm for name in LUMBAR_LEVELS])
    for key, side in SIDES.items():
        column = np.array([side * body["paraspinal_offset_mm"], centre_y + half_depth - body["paraspinal_depth_mm"],
                           centre[2]])
        parts.append(Part(elliptic_cylinder(column, body["paraspinal_semi_axes_mm"], half_height), "muscle", 0,
                          f"paraspinal_muscle_{key}"))
    for key, side in SIDES.items():
        psoas = np.array([side * body["psoas_offset_mm"], lumbar_centres[3, 1], lumbar_centres[:, 2].mean()])
        parts.append(Part(ellipsoid(psoas, body["psoas_semi_axes_mm"]), "muscle", 0, f"psoas_{key}"))
    for pocket in recipe["bowel"]:
        parts.append(Part(ellipsoid(pocket["centre_mm"], pocket["semi_axes_mm"]), "bowel_gas", 0, "bowel_gas"))
    skin = {
        "shape": "elliptic_cylinder",
        "center": centre,
        "axis": np.array([0.0, 0.0, 1.0]),
        "semi_axes_mm": np.array([half_width, half_depth]),
        "half_height_mm": half_height,
        "fat_thickness_mm": fat,
    }
    return parts, skin


# ---- landmarks ---------------------------------------------------------------------------------------------------------
def _sap_face(layout: dict, arch: ArchSide) -> np.ndarray:
    """Local centre (2,) of the SAP's lateral (non-articular) face in the axial plane."""
    return layout["sap_centre"][:2] - layout["sap_half"][1] * arch.facet_normal[:2]


def _medial_branch(level: Level, arch: ArchSide, layout: dict, junction_mm: float, behind_mm: float, top_z: float,
                   notch_z: float) -> tuple[np.ndarray, np.ndarray]:
    """SAP-TP junction and the medial-branch polyline on the SAP's lateral face (vertebra frame -> world).

    The nerve crosses the top of the TP root at the junction (``junction_mm`` along the face from its centre),
    runs back over it to just behind the TP (``behind_mm``), then down and back along the lateral neck of the SAP
    to the mamillo-accessory notch at the SAP's posterior edge (height ``notch_z``).
    """
    face = _sap_face(layout, arch)
    half_width = layout["sap_half"][0]
    base = layout["sap_centre"][2] - layout["sap_half"][2]

    def on_face(along: float, z: float) -> np.ndarray:
        return np.append(face + float(np.clip(along, -half_width, half_width)) * arch.facet_along[:2], z)

    path = [on_face(junction_mm, top_z), on_face(behind_mm, top_z), on_face(half_width, max(notch_z, base + 1.0))]
    return level.frame.point(path[0]), np.array([level.frame.point(p) for p in path])


def _level_landmarks(level: Level, below: Level, facets_own: dict, facets_below: dict, shared: dict,
                     root_end: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Landmarks of a lumbar level (or S1 with ``root_end`` giving its nerve path through the S1 foramen)."""
    frame, dims = level.frame, level.dims
    marks: dict[str, Any] = {
        "body_centroid": frame.origin_mm,
        "axes": {"left": frame.axes[:, 0], "posterior": frame.axes[:, 1], "superior": frame.axes[:, 2]},
    }
    for which in ("superior", "inferior"):
        centre, normal = level.endplate(which)
        marks[f"{which}_endplate"] = {"center": centre, "normal": normal}
    pedicle_z = level.arches["left"].pedicle_centre[2]
    outline = np.column_stack([level.canal, np.full(len(level.canal), pedicle_z)])
    marks["canal_center"] = frame.point(np.append(_polygon_centroid(level.canal), pedicle_z))
    marks["canal_outline"] = np.array([frame.point(p) for p in np.vstack([outline, outline[:1]])])
    r = shared["root_radius_mm"]
    for key, arch in level.arches.items():
        half_width, half_height = 0.5 * dims["pedicle_width_mm"], 0.5 * dims["pedicle_height_mm"]
        centre = arch.pedicle_centre
        marks[f"pedicle_{key}"] = {
            "center": frame.point(centre), "axis": frame.vector(arch.pedicle_axis),
            "narrowest_width_mm": dims["pedicle_width_mm"],
        }
        sap = facets_own[key]
        marks[f"sap_tip_{key}"] = frame.point(sap["sap_centre"] + [0.0, 0.0, sap["sap_half"][2]])
        start = centre - half_width * arch.pedicle_across + [0.0, 0.0, -half_height - r]
        if root_end is None:
            low = facets_below[key]
            marks[f"iap_tip_{key}"] = below.frame.point(low["iap_centre"] - [0.0, 0.0, low["iap_half"][2]])
            below_top = below.arches[key].pedicle_centre + [0.0, 0.0, 0.5 * below.dims["pedicle_height_mm"]]
            marks[f"foramen_{key}"] = 0.5 * (frame.point(centre - [0.0, 0.0, half_height]) + below.frame.point(below_top))
            lateral = centre + half_width * arch.pedicle_across + [0.0, -4.0, -half_height - r - 4.0]
            path = [start, lateral, lateral + [arch.side * 12.0, -8.0, -10.0]]
            marks[f"exiting_root_{key}"] = np.array([frame.point(p) for p in path])
            tp = _tp_layout(level, arch, shared)
            marks[f"tp_tip_{key}"] = frame.point(tp["tip"])
            # positions along the SAP face of the TP's axis and of its posterior face (+1 mm)
            face = _sap_face(sap, arch)
            behind = np.array([-tp["direction"][1], tp["direction"][0]]) * arch.side
            rate = float(np.dot(arch.facet_along[:2], behind))
            offset = float(np.dot(face - tp["root"][:2], behind))
            at_axis = -offset / rate
            at_back = (0.5 * dims["tp_thickness_mm"] + 1.0 - offset) / rate
            top = tp["root"][2] + 0.5 * dims["tp_height_mm"]
            junction, branch = _medial_branch(level, arch, sap, at_axis, at_back, top, top - dims["tp_height_mm"])
        else:
            front, back = root_end[f"channel_{key}"]
            marks[f"foramen_{key}"] = 0.5 * (front + back)
            in_canal = centre - (half_width + r) * arch.pedicle_across + [0.0, 0.0, -half_height]
            marks[f"exiting_root_{key}"] = np.array([frame.point(in_canal), 0.5 * (front + back),
                                                     root_end[f"anterior_foramen_{key}"]])
            ala_top = root_end["ala_top"]
            half = sap["sap_half"][0]
            junction, branch = _medial_branch(level, arch, sap, -0.5 * half, 0.0, ala_top, ala_top - 8.0)
        marks[f"sap_tp_junction_{key}"] = junction
        marks[f"medial_branch_{key}"] = branch
    if root_end is None:
        marks["spinous_tip"] = frame.point(_spinous_layout(level, shared)["tip"])
    return marks


def _exit_point(parts: list[Part], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Where the segment start -> end last leaves any of the given parts' solids."""
    direction = end - start
    t_last = -np.inf
    for part in parts:
        t_in, t_out = part.solid.ray_interval(start[None], direction[None])
        if t_in[0] <= t_out[0]:
            t_last = max(t_last, float(t_out[0]))
    return start + t_last * direction


# ---- the whole phantom ----------------------------------------------------------------------------------------------
def build_anatomy(recipe: dict, margin_mm: float = 10.0) -> Anatomy:
    """Build the painter's list and the landmarks from a realised recipe.

    Parameters
    ----------
    recipe : dict
        The recipe (``lumbar.toml`` layout) with its variation applied and ``recipe["bowel"]`` a list of gas
        pockets ``{"centre_mm": (3,), "semi_axes_mm": (3,)}``.
    margin_mm : float
        Soft tissue kept above the highest and below the lowest bone, and air beside the body outline.

    Returns
    -------
    Anatomy
        ``landmarks`` has one key per level "L1".."L5" and "S1", plus "pelvis" and "skin". A level's
        ``foramen`` is the foramen below it (L5: L5-S1), its ``medial_branch`` the nerve lying on its own SAP-TP
        junction (the medial branch of the level above). S1 has no IAP, TP or spinous tips; its inferior endplate
        is the fused S1-S2 junction, its foramen the S1 sacral foramen, its medial branch the L5 dorsal ramus in
        the groove between ala and SAP. Endplate normals point superiorly; pedicle axes anterior to posterior.
    """
    shared = dict(recipe["vertebra"])
    shared["disc_heights_mm"] = {name: recipe["discs"][f"{name}_mm"] for name in DISC_NAMES}
    shell = shared["cortical_shell_mm"]
    frames = spine_frames(recipe)
    order = [*LUMBAR_LEVELS, "S1"]
    levels = {name: level_layout(name, frames[name], recipe["levels"][name], shared) for name in order}
    facets = {
        lower: facet_layout(levels[lower], levels[upper] if upper else None, shared)
        for upper, lower in zip([None, *order[:-1]], order)
    }
    slope = recipe["curvature"]["sacral_slope_deg"]
    pelvic = Frame(np.zeros(3), _tilted_axes(slope - recipe["si_joint"]["reference_sacral_slope_deg"]))
    joints = {key: si_joint(pelvic, recipe["si_joint"], side) for key, side in SIDES.items()}

    bones = _Painter()
    pelvis_marks: dict[str, Any] = {}
    for key, side in SIDES.items():
        marks = _paint_ilium(bones, joints[key], pelvic, recipe["ilium"], side, key, shell)
        bones.finish_bone()
        pelvis_marks.update({f"{name}_{key}": point for name, point in marks.items()})
    sacrum = _paint_sacrum(bones, levels["S1"], facets["S1"], joints, recipe["sacrum"], shared)
    sacral_parts = bones.finish_bone()
    for upper, lower in zip(order[-2::-1], order[:0:-1]):  # L5 (below it S1) up to L1
        level = levels[upper]
        _paint_lumbar(bones, level, shared)
        _paint_facet_boxes(bones, level, facets[upper], "sap", level.label, shell)
        _paint_facet_boxes(bones, levels[lower], facets[lower], "iap", level.label, shell, level,
                           shared["iap_overlap_mm"])
        bones.finish_bone()

    late = _Painter()
    for upper, lower in zip(order[:-1], order[1:]):
        name = f"{upper}_{lower}"
        solid = _disc_solid(levels[upper], levels[lower], recipe["discs"]["bulge_mm"], shared["disc_heights_mm"][name])
        late.add(solid, "disc", 0, f"disc_{name}")
    channels = _sacral_carves(late, levels["S1"], sacrum, recipe["sacrum"])
    for index, name in enumerate(order):
        level = levels[name]
        if index == 0:
            centre, normal = level.endplate("superior")
            top = (centre + 0.5 * shared["disc_heights_mm"]["L1_L2"] * normal, normal)
        else:
            top = _mid_disc_plane(levels[order[index - 1]], level)
        if name == "S1":
            bottom = (level.frame.point([0.0, 0.0, -0.5 * level.height_mm]), level.frame.axes[:, 2])
        else:
            bottom = _mid_disc_plane(level, levels[order[index + 1]])
        late.add(_canal_solid(level, top, bottom), "csf", 0, "canal")
    for key, joint in joints.items():
        slab = box(joint.centre_mm, (0.5 * joint.gap_mm, 0.5 * joint.depth_mm, 0.5 * joint.length_mm),
                   _right_handed(joint.normal, joint.up))
        late.add(slab, "joint_space", 0, f"si_joint_{key}")

    landmarks: dict[str, Any] = {}
    for upper, lower in zip(order[:-1], order[1:]):
        landmarks[upper] = _level_landmarks(levels[upper], levels[lower], facets[upper], facets[lower], shared)
    root_end: dict[str, Any] = {f"channel_{key}": channels[key] for key in SIDES}
    for key, (front, back) in channels.items():
        root_end[f"anterior_foramen_{key}"] = _exit_point(sacral_parts, back, front)
    root_end["ala_top"] = sacrum["ala_top"]
    landmarks["S1"] = _level_landmarks(levels["S1"], levels["S1"], facets["S1"], facets["S1"], shared, root_end)

    foramen_fat = []
    semi = shared["foramen_fat_semi_axes_mm"]
    for upper, lower in zip(order[:-1], order[1:]):
        for key in SIDES:
            top_point = levels[upper].frame.point(levels[upper].arches[key].pedicle_centre)
            centre = np.asarray(landmarks[upper][f"foramen_{key}"])
            reach = np.linalg.norm(centre - top_point)
            foramen_fat.append(Part(ellipsoid(centre, (semi[0], semi[1], reach), levels[upper].frame.axes), "fat", 0,
                                    f"foramen_{key}"))

    s1_frame = levels["S1"].frame
    for key, side in SIDES.items():
        pelvis_marks[f"sacral_ala_{key}"] = s1_frame.point(
            [side * (0.5 * recipe["levels"]["S1"]["body_width_mm"] + 8.0), sacrum["ala_centre_y"], sacrum["ala_top"]])
        front, back = channels[key]
        pelvis_marks[f"s1_posterior_foramen_{key}"] = _exit_point(sacral_parts, front, back)
        pelvis_marks[f"si_joint_posterior_line_{key}"] = joints[key].line("posterior")
        pelvis_marks[f"si_joint_anterior_line_{key}"] = joints[key].line("anterior")
    tips = np.array([landmarks[name]["spinous_tip"] for name in LUMBAR_LEVELS])
    lefts = np.array([levels[name].frame.axes[:, 0] for name in LUMBAR_LEVELS])
    pelvis_marks["midline"] = {"point": tips.mean(axis=0), "normal": _unit(lefts.mean(axis=0))}
    landmarks["pelvis"] = pelvis_marks

    corners = np.vstack([part.solid.corners_mm() for part in bones.parts])
    z_range = (corners[:, 2].min() - margin_mm, corners[:, 2].max() + margin_mm)
    soft, skin = _soft_tissue(recipe, z_range, levels, tips)
    landmarks["skin"] = skin
    centre, (half_x, half_y) = skin["center"], skin["semi_axes_mm"]
    region = np.array([
        [centre[0] - half_x - margin_mm, centre[1] - half_y - margin_mm, z_range[0]],
        [centre[0] + half_x + margin_mm, centre[1] + half_y + margin_mm, z_range[1]],
    ])
    parts = tuple(soft + foramen_fat + bones.parts + late.parts)
    return Anatomy(parts, _listed(landmarks), region)
