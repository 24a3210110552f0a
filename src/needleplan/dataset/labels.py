"""The labels of one image: camera, keypoints with visibility, needles, per-vertebra masks and boxes.

Pixel coordinates follow the renderer: column, row, pixel centres at whole numbers, origin at the centre of
the top-left pixel. Boxes are COCO's [x, y, width, height] with x, y the top-left pixel edge (so a mask
covering only pixel (0, 0) has box [-0.5, -0.5, 1, 1]). Masks in RLE are COCO's uncompressed run-length
encoding: column-major runs alternating background and mask, starting with background.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..anatomy import jsonable
from ..fluoro import Fluoro
from .cases import Case
from .sampling import PlacedNeedle, Shot


def image_labels(stem: str, case: Case, index: int, shot: Shot, fluoro: Fluoro,
                 masks: dict[str, tuple[np.ndarray, np.ndarray]], imaging: dict[str, Any]) -> dict[str, Any]:
    """The JSON document of one image (its ``mask`` entries are filled in by the writer)."""
    carm = fluoro.carm
    rows, cols = carm.detector_rows_cols
    plan = shot.plan
    return {
        "id": stem,
        "case": case.name,
        "index": index,
        "width": cols,
        "height": rows,
        "procedure": plan.procedure if plan else None,
        "level": plan.level if plan else None,
        "side": plan.side if plan else None,
        "plan": plan.id if plan else None,
        "view": shot.view,
        "carm": carm_labels(fluoro),
        "projection_matrix": carm.projection_matrix.tolist(),
        "imaging": {**imaging, "noise_seed": shot.noise_seed,
                    "display_window": [round(float(v), 6) for v in fluoro.window]},
        "needles": [needle_labels(placed, fluoro) for placed in shot.needles],
        "keypoints": {name: _keypoint(fluoro, name) for name in case.points_mm if name in fluoro.keypoints},
        "vertebrae": [vertebra_labels(name, case.vertebrae[name], mask, path_mm, case, fluoro)
                      for name, (mask, path_mm) in masks.items()],
    }


def carm_labels(fluoro: Fluoro) -> dict[str, Any]:
    """The pose and imaging chain in numbers (full precision: they reproduce the image exactly) and words."""
    carm = fluoro.carm
    return {
        "oblique_deg": carm.oblique,
        "tilt_deg": carm.tilt,
        "isocenter_mm": np.asarray(carm.isocenter).tolist(),
        "source_to_detector_mm": carm.source_to_detector_mm,
        "source_to_isocenter_mm": carm.source_to_isocenter_mm,
        "detector_size_mm": list(carm.detector_width_height_mm),
        "detector_pixels": list(carm.detector_rows_cols),
        "pixel_mm": list(carm.pixel_mm),
        "collimator_diameter_mm": carm.collimator_diameter_mm,
        "source_mm": carm.source_mm.tolist(),
        "words": carm.describe(),
    }


def needle_labels(placed: PlacedNeedle, fluoro: Fluoro) -> dict[str, Any]:
    """A needle's 3D pose, its error against the plan, and its projected tip and hub."""
    needle = placed.needle
    plan = placed.plan
    offset = placed.tip_offset_mm
    exact = {"tip_mm": needle.tip_mm.tolist(), "hub_mm": needle.hub_mm.tolist()}
    return exact | jsonable({
        "name": needle.name,
        "plan": plan.id,
        "procedure": plan.procedure,
        "level": plan.level,
        "side": plan.side,
        "direction": needle.direction,
        "length_mm": needle.length_mm,
        "gauge": needle.gauge,
        "diameter_mm": needle.diameter_mm,
        "planned_tip_mm": plan.tip_mm,
        "target_mm": plan.target_mm,
        "tip_offset_mm": offset,
        "tip_error_mm": float(np.linalg.norm(offset)),
        "tip_to_target_mm": float(np.linalg.norm(needle.tip_mm - plan.target_mm)),
        "angle_error_deg": placed.angle_error_deg,
        "advance_mm": placed.advance_mm,
        "tip": _keypoint(fluoro, f"{needle.name}.tip"),
        "hub": _keypoint(fluoro, f"{needle.name}.hub"),
    })


def vertebra_labels(name: str, label: int, mask: np.ndarray, path_mm: np.ndarray, case: Case,
                    fluoro: Fluoro) -> dict[str, Any]:
    """A vertebra's projected mask statistics: box, area, centroids.

    ``mask_centroid_px`` is the mask's centroid weighted by each ray's path through the vertebra (the
    centroid of the projected bone, which is where the 3D centroid projects, up to perspective);
    ``centroid_px`` is the 3D centroid of the vertebra's label projected. The plain centroid of the mask's
    pixels is not used: in oblique views the thin posterior elements pull it several pixels away.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    weights = path_mm.astype(np.float64)
    total = weights.sum()
    entry: dict[str, Any] = {
        "name": name,
        "label": label,
        "area_px": int(np.count_nonzero(mask)),
        "bbox": [float(cols[0]) - 0.5, float(rows[0]) - 0.5, float(cols[-1] - cols[0] + 1),
                 float(rows[-1] - rows[0] + 1)],
        "mask_centroid_px": [round(float(weights.sum(axis=0) @ np.arange(weights.shape[1]) / total), 3),
                             round(float(weights.sum(axis=1) @ np.arange(weights.shape[0]) / total), 3)],
    }
    if name in case.centroids_mm:
        projection = fluoro.carm.project(case.centroids_mm[name][None])
        entry["centroid_px"] = [round(float(projection.col[0]), 3), round(float(projection.row[0]), 3)]
    return entry


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a boolean (rows, cols) mask: {"size": [rows, cols], "counts": [...]}."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_rle`."""
    rows, cols = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((cols, rows)).T


def _keypoint(fluoro: Fluoro, name: str) -> dict[str, Any]:
    point = fluoro.keypoints[name]
    return {"col": _finite(point.col), "row": _finite(point.row), "depth_mm": _finite(point.depth_mm),
            "visible": point.visible}


def _finite(value: float) -> float | None:
    """Rounded to 1/1000, or None (JSON null) for a point that does not project (at or behind the source)."""
    return round(value, 3) if np.isfinite(value) else None
