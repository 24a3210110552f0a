"""One vertebra laid out and painted in its own frame: body, pedicles, laminae, processes and facets.

A vertebra is a body (elliptic cylinder) with pedicles (elliptic cylinders converging forward), laminae (boxes
whose lower border slopes up laterally), a spinous process, transverse processes and articular processes. The
facet joint between Ln and Ln+1 is built in the frame of Ln+1: the SAP of Ln+1 and the IAP of Ln are parallel
plates with the joint gap between them, so the gap is exact under any curvature. The S1 segment of the sacrum
shares the layout (pedicles, SAPs, canal outline) but is painted by :mod:`.pelvis`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .frames import Frame, unit
from .ids import SIDES, VERTEBRA_LABELS
from .painter import Painter
from .shapes import box, elliptic_cylinder


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
    along = unit(apex - np.append(arch.medial_corner[:2], 0.0))
    return along, arch.side * np.array([along[1], -along[0], 0.0])


def paint_pedicle(painter: Painter, level: Level, key: str, arch: ArchSide, shell: float, back: float) -> None:
    middle = arch.pedicle_centre + 0.5 * (back + arch.pedicle_front_mm) * arch.pedicle_axis
    pedicle = elliptic_cylinder(
        level.frame.point(middle),
        (0.5 * level.dims["pedicle_width_mm"], 0.5 * level.dims["pedicle_height_mm"]),
        0.5 * (back - arch.pedicle_front_mm),
        level.frame.rotation(arch.pedicle_across, arch.pedicle_axis),
    )
    painter.bone(pedicle, level.label, f"pedicle_{key}", shell)


def tp_layout(level: Level, arch: ArchSide, shared: dict) -> dict[str, Any]:
    """Local root, direction and length of a transverse process."""
    gamma = np.radians(shared["tp_backward_deg"])
    direction = np.array([arch.side * np.cos(gamma), np.sin(gamma), 0.0])
    root = arch.lamina_root - np.array([0.0, level.dims["tp_forward_mm"], 0.0])
    root[2] = arch.pedicle_centre[2] - 1.0
    reach = (0.5 * level.dims["tp_span_mm"] - abs(root[0])) / np.cos(gamma)
    return {"root": root, "direction": direction, "reach": reach, "tip": root + reach * direction}


def spinous_layout(level: Level, shared: dict) -> dict[str, Any]:
    droop = np.radians(shared["spinous_droop_deg"])
    axis = np.array([0.0, np.cos(droop), -np.sin(droop)])
    root = np.array([
        0.0, level.apex_y_mm + 0.5 * shared["lamina_thickness_mm"],
        0.5 * (level.lamina_top_mm + level.lamina_bottom_mid_mm),
    ])
    return {"root": root, "axis": axis, "tip": root + level.dims["spinous_length_mm"] * axis}


def paint_lumbar(painter: Painter, level: Level, shared: dict) -> None:
    """Body, pedicles, laminae, transverse and spinous processes of a lumbar vertebra (one bone group)."""
    frame, dims, label = level.frame, level.dims, level.label
    shell, z_up = shared["cortical_shell_mm"], np.array([0.0, 0.0, 1.0])
    for key, arch in level.arches.items():
        paint_pedicle(painter, level, key, arch, shell, shared["pedicle_posterior_mm"])
        along, outward = _lamina_directions(level, arch)
        corner = np.append(arch.medial_corner[:2], 0.0)
        apex = np.array([0.0, level.apex_y_mm, 0.0])
        centre = 0.5 * (corner + apex) + 0.5 * shared["lamina_thickness_mm"] * outward
        centre[2] = 0.5 * (level.lamina_top_mm + level.lamina_bottom_mid_mm)
        half = (
            0.5 * float(np.linalg.norm(apex - corner)) + 3.0, 0.5 * shared["lamina_thickness_mm"],
            0.5 * (level.lamina_top_mm - level.lamina_bottom_mid_mm),
        )
        lamina = box(frame.point(centre), half, frame.rotation(along, z_up))
        slope = (level.lamina_bottom_lateral_mm - level.lamina_bottom_mid_mm) / abs(corner[0])
        lamina = frame.clip(lamina, [0.0, 0.0, level.lamina_bottom_mid_mm], [arch.side * slope, 0.0, -1.0])
        painter.bone(lamina, label, f"lamina_{key}", shell)
        tp = tp_layout(level, arch, shared)
        overlap = shared["tp_root_overlap_mm"]
        solid = box(
            frame.point(tp["root"] + 0.5 * (tp["reach"] - overlap) * tp["direction"]),
            (0.5 * (tp["reach"] + overlap), 0.5 * dims["tp_thickness_mm"], 0.5 * dims["tp_height_mm"]),
            frame.rotation(tp["direction"], z_up),
        )
        painter.bone(solid, label, f"transverse_process_{key}", shell)
    sp = spinous_layout(level, shared)
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
            # reach well into the upper vertebra; paint_facet_boxes cuts the top in the upper frame
            upper_in_lower = 0.5 * lower.height_mm + _disc_height(lower, upper, shared) + 0.5 * upper.height_mm
            top = upper_in_lower + upper.lamina_bottom_lateral_mm + shared["iap_overlap_mm"] + 20.0
            bottom = lower.lamina_top_mm + shared["iap_clearance_mm"]
            offset = 0.5 * shared["sap_thickness_mm"] + shared["facet_gap_mm"] + 0.5 * shared["iap_thickness_mm"]
            layout["iap_centre"] = np.append(arch.sap_centre_xy + offset * arch.facet_normal[:2], 0.5 * (bottom + top))
            layout["iap_half"] = np.array([0.5 * shared["iap_width_mm"], 0.5 * shared["iap_thickness_mm"],
                                           0.5 * (top - bottom)])
        out[key] = layout
    return out


def _disc_height(lower: Level, upper: Level, shared: dict) -> float:
    return shared["disc_heights_mm"][f"{upper.name}_{lower.name}"]


def paint_facet_boxes(painter: Painter, lower: Level, facets: dict, which: str, label: int, shell: float,
                       upper: Level | None = None, overlap_mm: float = 0.0) -> None:
    """Paint the SAPs (``which="sap"``) or the IAPs (``"iap"``, cut in the ``upper`` frame) of a facet layout."""
    for key, layout in facets.items():
        rotation = lower.frame.rotation(lower.arches[key].facet_along, [0.0, 0.0, 1.0])
        solid = box(lower.frame.point(layout[f"{which}_centre"]), layout[f"{which}_half"], rotation)
        if upper is not None:
            solid = upper.frame.clip(solid, [0.0, 0.0, upper.lamina_bottom_lateral_mm + overlap_mm], [0.0, 0.0, 1.0])
        painter.bone(solid, label, f"{which}_{key}", shell)
