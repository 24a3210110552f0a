"""The lumbar spine phantom's anatomy: a painter's list of convex parts and landmarks computed from it.

The builder reads a realised recipe (``lumbar.toml`` after the seed's variation) and returns the ordered part
list plus every landmark, all in world LPS millimetres with the origin at the centre of the S1 superior
endplate.

Where each piece is built
-------------------------
- :mod:`.frames`: the lumbar curve (lordosis, sacral slope, scoliosis) and one frame per level.
- :mod:`.vertebra`: each vertebra's body, arch and facets in its own frame.
- :mod:`.painter`: every bone a cortical shell around a cancellous core.
- :mod:`.column`: discs between the endplates and the canal, painted after all bone.
- :mod:`.pelvis`: the sacrum, the SI joints and the ilia.
- :mod:`.body`: the body outline, muscles and bowel gas.
- :mod:`.landmarks`: the exact landmarks of each level.

The painter's list is soft tissue, foramen fat, bones (ilia, sacrum, L5 up to L1), then discs, sacral carves,
canal and SI joint spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .body import soft_tissue
from .column import canal_solid, disc_solid, mid_disc_plane
from .frames import Frame, right_handed, spine_frames, tilted_axes, unit
from .ids import DISC_NAMES, LUMBAR_LEVELS, MATERIALS, SIDES, STRUCTURE_IDS, VERTEBRA_LABELS
from .landmarks import exit_point, level_landmarks
from .painter import Painter
from .pelvis import paint_ilium, paint_sacrum, sacral_carves, si_joint
from .shapes import Part, box, ellipsoid
from .vertebra import facet_layout, level_layout, paint_facet_boxes, paint_lumbar

__all__ = [
    "DISC_NAMES", "LUMBAR_LEVELS", "MATERIALS", "STRUCTURE_IDS", "VERTEBRA_LABELS", "Anatomy",
    "build_anatomy",
]


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
        for upper, lower in zip([None, *order[:-1]], order, strict=True)
    }
    slope = recipe["curvature"]["sacral_slope_deg"]
    pelvic = Frame(np.zeros(3), tilted_axes(slope - recipe["si_joint"]["reference_sacral_slope_deg"]))
    joints = {key: si_joint(pelvic, recipe["si_joint"], side) for key, side in SIDES.items()}

    bones = Painter()
    pelvis_marks: dict[str, Any] = {}
    for key, side in SIDES.items():
        marks = paint_ilium(bones, joints[key], pelvic, recipe["ilium"], side, key, shell)
        bones.finish_bone()
        pelvis_marks.update({f"{name}_{key}": point for name, point in marks.items()})
    sacrum = paint_sacrum(bones, levels["S1"], facets["S1"], joints, recipe["sacrum"], shared)
    sacral_parts = bones.finish_bone()
    for upper, lower in zip(order[-2::-1], order[:0:-1], strict=True):  # L5 (below it S1) up to L1
        level = levels[upper]
        paint_lumbar(bones, level, shared)
        paint_facet_boxes(bones, level, facets[upper], "sap", level.label, shell)
        paint_facet_boxes(bones, levels[lower], facets[lower], "iap", level.label, shell, level,
                           shared["iap_overlap_mm"])
        bones.finish_bone()

    late = Painter()
    for upper, lower in zip(order[:-1], order[1:], strict=True):
        name = f"{upper}_{lower}"
        solid = disc_solid(levels[upper], levels[lower], recipe["discs"]["bulge_mm"], shared["disc_heights_mm"][name])
        late.add(solid, "disc", 0, f"disc_{name}")
    channels = sacral_carves(late, levels["S1"], sacrum, recipe["sacrum"])
    for index, name in enumerate(order):
        level = levels[name]
        if index == 0:
            centre, normal = level.endplate("superior")
            top = (centre + 0.5 * shared["disc_heights_mm"]["L1_L2"] * normal, normal)
        else:
            top = mid_disc_plane(levels[order[index - 1]], level)
        if name == "S1":
            bottom = (level.frame.point([0.0, 0.0, -0.5 * level.height_mm]), level.frame.axes[:, 2])
        else:
            bottom = mid_disc_plane(level, levels[order[index + 1]])
        late.add(canal_solid(level, top, bottom), "csf", 0, "canal")
    for key, joint in joints.items():
        slab = box(joint.centre_mm, (0.5 * joint.gap_mm, 0.5 * joint.depth_mm, 0.5 * joint.length_mm),
                   right_handed(joint.normal, joint.up))
        late.add(slab, "joint_space", 0, f"si_joint_{key}")

    landmarks: dict[str, Any] = {}
    for upper, lower in zip(order[:-1], order[1:], strict=True):
        landmarks[upper] = level_landmarks(levels[upper], levels[lower], facets[upper], facets[lower], shared)
    root_end: dict[str, Any] = {}
    for key, (front, back) in channels.items():
        root_end[f"anterior_foramen_{key}"] = exit_point(sacral_parts, back, front)
        root_end[f"posterior_foramen_{key}"] = exit_point(sacral_parts, front, back)
    root_end["ala_top"] = sacrum["ala_top"]
    landmarks["S1"] = level_landmarks(levels["S1"], levels["S1"], facets["S1"], facets["S1"], shared, root_end)

    foramen_fat = []
    semi = shared["foramen_fat_semi_axes_mm"]
    for upper in order[:-1]:
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
        pelvis_marks[f"s1_posterior_foramen_{key}"] = root_end[f"posterior_foramen_{key}"]
        pelvis_marks[f"si_joint_posterior_line_{key}"] = joints[key].line("posterior")
        pelvis_marks[f"si_joint_anterior_line_{key}"] = joints[key].line("anterior")
    tips = np.array([landmarks[name]["spinous_tip"] for name in LUMBAR_LEVELS])
    lefts = np.array([levels[name].frame.axes[:, 0] for name in LUMBAR_LEVELS])
    pelvis_marks["midline"] = {"point": tips.mean(axis=0), "normal": unit(lefts.mean(axis=0))}
    landmarks["pelvis"] = pelvis_marks

    corners = np.vstack([part.solid.corners_mm() for part in bones.parts])
    z_range = (corners[:, 2].min() - margin_mm, corners[:, 2].max() + margin_mm)
    soft, skin = soft_tissue(recipe, z_range, levels, tips)
    landmarks["skin"] = skin
    centre, (half_x, half_y) = skin["center"], skin["semi_axes_mm"]
    region = np.array([
        [centre[0] - half_x - margin_mm, centre[1] - half_y - margin_mm, z_range[0]],
        [centre[0] + half_x + margin_mm, centre[1] + half_y + margin_mm, z_range[1]],
    ])
    parts = tuple(soft + foramen_fat + bones.parts + late.parts)
    return Anatomy(parts, _listed(landmarks), region)
