"""Exact landmarks of a level, computed from the same local layouts its parts are built from."""

from __future__ import annotations

from typing import Any

import numpy as np

from .shapes import Part
from .vertebra import ArchSide, Level, spinous_layout, tp_layout


def _polygon_centroid(points: np.ndarray) -> np.ndarray:
    x, y = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    area = 0.5 * cross.sum()
    return np.array([((x + x1) * cross).sum(), ((y + y1) * cross).sum()]) / (6.0 * area)


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


def level_landmarks(level: Level, below: Level, facets_own: dict, facets_below: dict, shared: dict,
                     root_end: dict[str, Any] | None = None) -> dict[str, Any]:
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
            marks[f"foramen_{key}"] = 0.5 * (frame.point(centre - [0.0, 0.0, half_height])
                                             + below.frame.point(below_top))
            lateral = centre + half_width * arch.pedicle_across + [0.0, -4.0, -half_height - r - 4.0]
            path = [start, lateral, lateral + [arch.side * 12.0, -8.0, -10.0]]
            marks[f"exiting_root_{key}"] = np.array([frame.point(p) for p in path])
            tp = tp_layout(level, arch, shared)
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
            # the middle of the bony channel, half-way between its openings on the pelvic and dorsal surfaces
            channel_middle = 0.5 * (root_end[f"anterior_foramen_{key}"] + root_end[f"posterior_foramen_{key}"])
            marks[f"foramen_{key}"] = channel_middle
            in_canal = centre - (half_width + r) * arch.pedicle_across + [0.0, 0.0, -half_height]
            marks[f"exiting_root_{key}"] = np.array([frame.point(in_canal), channel_middle,
                                                     root_end[f"anterior_foramen_{key}"]])
            ala_top = root_end["ala_top"]
            half = sap["sap_half"][0]
            junction, branch = _medial_branch(level, arch, sap, -0.5 * half, 0.0, ala_top, ala_top - 8.0)
        marks[f"sap_tp_junction_{key}"] = junction
        marks[f"medial_branch_{key}"] = branch
    if root_end is None:
        marks["spinous_tip"] = frame.point(spinous_layout(level, shared)["tip"])
    return marks


def exit_point(parts: list[Part], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Where the segment start -> end last leaves any of the given parts' solids."""
    direction = end - start
    t_last = -np.inf
    for part in parts:
        t_in, t_out = part.solid.ray_interval(start[None], direction[None])
        if t_in[0] <= t_out[0]:
            t_last = max(t_last, float(t_out[0]))
    return start + t_last * direction
