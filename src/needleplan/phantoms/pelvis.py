"""The sacrum, the sacroiliac joints and the ilia.

The sacrum is the S1 segment (body, pedicles, arch, SAPs, alae) plus two tapered blocks (S2-S3, S4-S5) bent
forward, carved by the sacral canal and the S1 foramina. The pelvis (ilia, SI joints) lives in the pelvic frame:
the S1 frame turned back by the recipe's sacral slope, so it is the world frame for the default slope and
follows the sacrum when the slope varies. The SI joint is a plane: sacrum on its medial side, ilium on its
lateral side, each kept ``gap/2`` away from it, and a joint-space slab painted over the auricular area.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .frames import Frame, right_handed, unit
from .ids import SIDES
from .painter import Painter
from .shapes import ConvexSolid, box, elliptic_cylinder, ellipsoid
from .vertebra import Level, paint_facet_boxes, paint_pedicle


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
    along = unit(along - np.dot(along, up) * up)
    normal = side * unit(np.cross(along, up))
    return SIJoint(
        pelvic.point([side * cx, cy, cz]), normal, along, up,
        recipe["gap_mm"], recipe["depth_mm"], recipe["length_mm"],
    )


def paint_ilium(painter: Painter, joint: SIJoint, pelvic: Frame, recipe: dict, side: int, key: str,
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
    painter.bone(lateral(box(centre, half, right_handed(n, w))), 0, structure, shell)
    psis_semi = np.asarray(recipe["psis_semi_axes_mm"], dtype=float)
    psis_centre = (
        joint.centre_mm + (0.5 * joint.gap_mm + 0.45 * thick) * n
        + (0.5 * joint.depth_mm + back - 0.6 * psis_semi[1]) * u
    )
    painter.bone(lateral(ellipsoid(psis_centre, psis_semi, pelvic.axes)), 0, structure, shell)
    # iliac wing: an elliptic plate running anterolaterally and leaning out, cut below
    omega, flare = np.radians(recipe["wing_angle_deg"]), np.radians(recipe["wing_flare_deg"])
    across = pelvic.vector([side * np.sin(omega), -np.cos(omega), 0.0])
    rise = pelvic.vector([side * np.sin(flare), 0.0, np.cos(flare)])
    rise = unit(rise - np.dot(rise, across) * across)
    plate_normal = unit(np.cross(across, rise))
    wx, wy, wz = recipe["wing_centre_mm"]
    wing_centre = pelvic.point([side * wx, wy, wz])
    semi = recipe["wing_semi_axes_mm"]
    wing = elliptic_cylinder(wing_centre, semi, 0.5 * recipe["wing_thickness_mm"], right_handed(across, plate_normal))
    wing = wing.clipped(wing_centre - recipe["wing_keep_below_mm"] * rise, -rise)
    painter.bone(lateral(wing), 0, structure, shell)
    # the crest top is the ilium's highest point in the patient's frame (the world's), not the end of the wing's
    # axis: the wing leans out and the pelvis tilts
    up = np.array([0.0, 0.0, 1.0])
    rim = 0.5 * recipe["wing_thickness_mm"] * np.sign(plate_normal @ up) * plate_normal
    return {
        "iliac_crest_top": extreme_point(wing_centre, right_handed(across, plate_normal), (*semi, 0.0), up) + rim,
        "psis": psis_centre + psis_semi[1] * pelvic.axes[:, 1],
    }


def extreme_point(centre: np.ndarray, axes: np.ndarray, semi_axes_mm, direction: np.ndarray) -> np.ndarray:
    """The point of an ellipsoid (centre (3,), axes columns (3, 3), semi-axes (3,) mm; a 0 semi-axis makes it a
    flat ellipse) farthest along ``direction`` (3,)."""
    scaled = axes * np.asarray(semi_axes_mm, dtype=np.float64)
    reach = scaled.T @ direction
    return centre + scaled @ reach / np.linalg.norm(reach)


def _sacral_block_frames(s1: Level, recipe: dict) -> list[tuple[Frame, np.ndarray, float]]:
    """Frames (origin at block centre), half sizes and half-length of the S2-S3 and S4-S5 blocks."""
    blocks = []
    anterior_top = np.array([0.0, -0.5 * s1.dims["body_depth_mm"], -0.5 * s1.height_mm + 6.0])
    previous_up = None
    for length, kyphosis, width, depth in zip(
        recipe["segment_lengths_mm"], recipe["segment_kyphosis_deg"], recipe["segment_top_widths_mm"],
        recipe["segment_depths_mm"], strict=True,
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


def paint_sacrum(painter: Painter, s1: Level, facets: dict, joints: dict[str, SIJoint], recipe: dict,
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
        blocks, recipe["segment_bottom_widths_mm"], recipe["segment_taper_depths_mm"], strict=True
    ):
        painter.bone(medial(_tapered_block(block_frame, half, bottom_width, bottom_depth)), label, "sacrum", shell)
    for joint in joints.values():  # the lateral mass behind each auricular surface
        mass = recipe["lateral_mass_mm"]
        centre = joint.centre_mm - (0.5 * joint.gap_mm + 0.5 * mass) * joint.normal
        half_sizes = (0.5 * mass, 0.5 * joint.depth_mm + 3.0, 0.5 * joint.length_mm + 3.0)
        painter.bone(box(centre, half_sizes, right_handed(joint.normal, joint.up)), label, "sacrum", shell)
    for key, arch in s1.arches.items():
        paint_pedicle(painter, s1, key, arch, shell, shared["pedicle_posterior_mm"])
    paint_facet_boxes(painter, s1, facets, "sap", label, shell)
    return {
        "blocks": blocks, "dorsal_y": dorsal, "ala_top": ala_top,
        "ala_centre_y": ala_front + 0.5 * recipe["ala_depth_mm"], "ala_inner": ala_inner,
    }


def sacral_carves(painter: Painter, s1: Level, info: dict, recipe: dict) -> dict[str, Any]:
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
            0.5 * (front + back), (recipe["foramen_radius_mm"],) * 2, 0.5 * float(np.linalg.norm(axis)),
            right_handed(s1.frame.axes[:, 0], axis),
        )
        painter.add(channel, "fat", 0, f"s1_foramen_{key}")
        channels[key] = (front, back)
    return channels
