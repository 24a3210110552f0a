"""The body around the spine: outline (fat), soft-tissue core, paraspinal and psoas muscles, bowel gas."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ids import LUMBAR_LEVELS, SIDES
from .shapes import Part, elliptic_cylinder, ellipsoid
from .vertebra import Level


def soft_tissue(recipe: dict, z_range: tuple[float, float], levels: dict[str, Level],
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
