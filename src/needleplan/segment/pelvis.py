"""Pelvic landmarks from the sacrum and ilium labels: crest tops, PSIS and the SI joint lines."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import ILIUM_IDS, VERSE_IDS, Vertebra
from .grid import bounding_box, voxel_centres_mm
from .landmarks import cap

#: Height bins of the SI joint lines, mm.
JOINT_STEP_MM = 5.0
#: Sacral and iliac bone facing each other across at most this gap (joint space 2-4 mm, partial volume on both
#: sides) bound the joint space, mm.
JOINT_GAP_MM = 6.0
#: A joint whose facing sacral and iliac voxels are apart (a gap the scan shows) on less than this share of it is not
#: resolved (1 mm phantom: 0.75; the shared 3 mm CT and the phantom at 3 mm: 0.09-0.21).
MIN_CLEFT_SHARE = 0.4
#: Sacrum-ilium contact closer than this to the midline is not the SI joint, mm.
JOINT_MIN_LATERAL_MM = 20.0
#: Percentiles of the contact's depth (along the joint) that make its posterior and anterior edges in each bin.
EDGE_PERCENTILES = (90.0, 10.0)
#: The patient's superior and posterior directions (LPS): crest tops are the highest points, the joint lines run
#: superior to inferior and their depth axis points posteriorly.
SUPERIOR = np.array([0.0, 0.0, 1.0])
POSTERIOR = np.array([0.0, 1.0, 0.0])


def pelvis_landmarks(verse: np.ndarray, affine: np.ndarray, s1: Vertebra | None,
                     unresolved: dict[str, str] | None = None) -> dict[str, Any]:
    """Pelvic landmarks (world mm) from a VerSe label map on an LPS-aligned grid and the S1 vertebra.

    The iliac crest top is the ilium's highest point in the patient's frame: the centre of its top voxel layer,
    at the bone's surface (one voxel would wander along the long, nearly level crest). The PSIS is the ilium's
    most posterior point in the S1 frame.
    The sacroiliac joint is the space between sacrum and ilium labels (:func:`joint_space`, :func:`joint_lines`).
    With ``unresolved`` (a dict to fill), labels made by our own segmentation are held to the scan: a joint whose
    space the scan does not show (sacrum and ilium labels touching on most of it, less than
    :data:`MIN_CLEFT_SHARE` with a gap) gets no joint lines, and ``unresolved["si_joint_<side>"]`` says why: where
    the watershed put the boundary is then a guess, not the joint.
    """
    sacrum = verse == VERSE_IDS["S1"]
    if not sacrum.any() or s1 is None or "axes" not in s1.landmarks:
        return {}
    axes = s1.landmarks["axes"]
    origin = np.asarray(s1.landmarks["body_centroid"])
    marks: dict[str, Any] = {"midline": {"point": origin, "normal": np.asarray(axes["left"])}}
    spacing_mm = float(np.linalg.norm(affine[:3, 0]))  # the working grid is isotropic
    for side, label in ILIUM_IDS.items():
        ilium = verse == label
        if not ilium.any():
            continue
        points = voxel_centres_mm(np.argwhere(ilium), affine)
        marks[f"iliac_crest_top_{side}"] = cap(points, SUPERIOR, spacing_mm, spacing_mm)
        marks[f"psis_{side}"] = points[np.argmax((points - origin) @ np.asarray(axes["posterior"]))]
        contact, gap = joint_space(sacrum, ilium, affine, spacing_mm)
        share = float(gap.mean()) if gap.size else 0.0
        if share >= MIN_CLEFT_SHARE:
            contact = contact[gap]  # the cleft itself; where the bones touch is the ligamentous part behind it
        elif unresolved is not None and len(contact):
            unresolved[f"si_joint_{side}"] = (
                f"the {side} sacroiliac joint space is not visible on this scan ({spacing_mm:.1f} mm voxels: sacrum "
                f"and ilium touch on {100 * (1 - share):.0f}% of the joint), so where the joint runs is not known; "
                "give your own labels (segment(labels=...), --labels on the command line) or a thinner-slice scan")
            continue
        # the joint lies well lateral of the midline; contact near it is a labelling error (an ilium piece that
        # took some of the sacrum's dorsal bone), not the joint
        lateral = (contact - origin) @ np.asarray(axes["left"]) * (1.0 if side == "left" else -1.0)
        lines = joint_lines(contact[lateral >= JOINT_MIN_LATERAL_MM], np.asarray(axes["superior"]))
        if lines is not None:
            marks[f"si_joint_posterior_line_{side}"], marks[f"si_joint_anterior_line_{side}"] = lines
    return marks


def joint_space(sacrum: np.ndarray, ilium: np.ndarray, affine: np.ndarray, spacing_mm: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Points (M, 3) world mm between sacrum and ilium, and which of them (M,) bool lie across a gap the scan shows.

    The points are the midpoints between every sacral bone voxel and the nearest iliac one (and the other way
    round) closer than :data:`JOINT_GAP_MM`: whether the scan resolves the cleft between the two cortices or the
    two labels touch, the midpoint of a facing pair lies between them, at any voxel size. A pair farther apart
    than a voxel's diagonal has a gap between: the joint space (cleft) as the scan shows it. Bone touching bone
    with no gap is the ligamentous part behind the joint, or a joint the scan does not resolve.
    """
    reach = int(np.ceil(JOINT_GAP_MM / spacing_mm)) + 1
    near = ndimage.binary_dilation(sacrum, iterations=reach) & ndimage.binary_dilation(ilium, iterations=reach)
    box = bounding_box(near, margin=reach)
    if box is None:
        return np.empty((0, 3)), np.zeros(0, dtype=bool)
    offset = np.array([s.start for s in box])
    points, gaps = [], []
    for bone, other in ((sacrum[box], ilium[box]), (ilium[box], sacrum[box])):
        distance, nearest = ndimage.distance_transform_edt(~other, return_indices=True)
        facing = bone & (distance * spacing_mm <= JOINT_GAP_MM)
        here = np.argwhere(facing)
        there = nearest[:, facing].T
        points.append(0.5 * (here + there) + offset)
        gaps.append(distance[facing] > 1.01 * np.sqrt(3.0))
    kji = np.concatenate(points)
    return voxel_centres_mm(kji, affine), np.concatenate(gaps)


def joint_lines(contact: np.ndarray, sacrum_up: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior and anterior SI joint lines ((K, 3) each, superior to inferior) from the contact points (M, 3).

    The contact's least principal axis is the joint's normal. Its long axis is the sacrum's superior axis
    (``sacrum_up``, e.g. S1's) laid into the joint's plane, or the contact's own longest axis when none is given
    (a coarse, thick contact can be longer front to back than up and down); the depth axis, turned posterior,
    completes the frame. In each :data:`JOINT_STEP_MM` bin along the long axis, high and low percentiles of
    the depth are the edges; depth and normal offset of each edge are then smoothed by a quadratic in the height,
    so that voxel steps do not make the lines zig-zag.
    """
    if len(contact) < 8:
        return None
    centre = contact.mean(axis=0)
    basis = np.linalg.svd(contact - centre, full_matrices=False)[2]
    normal = basis[2]
    up = basis[0] if sacrum_up is None else np.asarray(sacrum_up, dtype=np.float64)
    up = up - (up @ normal) * normal
    up = up / np.linalg.norm(up) * (np.sign(up @ SUPERIOR) or 1.0)
    back = np.cross(normal, up)
    back *= np.sign(back @ POSTERIOR) or 1.0
    normal = np.cross(up, back)
    rel = contact - centre
    height, depth, offset = rel @ up, rel @ back, rel @ normal
    heights, edges = [], []
    for start in np.arange(height.max(), height.min() - 1e-6, -JOINT_STEP_MM):
        band = (height <= start) & (height > start - JOINT_STEP_MM)
        if band.sum() >= 2:
            heights.append(float(height[band].mean()))
            edges.append([*np.percentile(depth[band], EDGE_PERCENTILES), float(np.median(offset[band]))])
    if len(heights) < 2:
        return None
    h, edge_rows = np.array(heights), np.array(edges)
    degree = min(2, len(h) - 1)
    smooth = np.column_stack([np.polyval(np.polyfit(h, edge_rows[:, j], degree), h) for j in range(3)])
    lines = []
    for j in (0, 1):
        lines.append(centre + h[:, None] * up + smooth[:, j, None] * back + smooth[:, 2, None] * normal)
    return lines[0], lines[1]
