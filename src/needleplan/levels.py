"""Confirming and correcting the level names of a Spine: levels the user names at points, or an explicit check.

A physician often knows one level for sure (counted on a full-spine image, or read from the radiology report and
the viewer). :func:`renumber` takes such anchors, ``{"L3": (x, y, z)}`` with a world (LPS mm) point inside that
vertebra (or ``{"T9-T10": point}`` on a disc), and names every other vertebra by counting from it: twelve thoracic
and five lumbar levels, the sacrum always "S1", an extra rib-free vertebra above the sacrum "L6". The automatic
numbering is kept in the notes, and a disagreement with it is said in words.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .anatomy import LEVEL_ORDER, VERSE_IDS, Numbering, Spine, Vertebra
from .errors import NeedleplanError

#: A point this close to a vertebra's voxels (or, for a disc, to an endplate's face) names it, mm.
ANCHOR_REACH_MM = 10.0
#: An endplate's face, for a disc anchor: a flat disc of this radius around the endplate centre, mm (half a
#: thoracolumbar disc's front-to-back depth), so that a point on the disc's posterior edge (where Spinal Cord
#: Toolbox labels discs) or off the mid-sagittal plane still names it.
ENDPLATE_RADIUS_MM = 15.0
#: Level names counted from an anchor: the standard 7 cervical, 12 thoracic and 5 lumbar vertebrae.
COUNTED = tuple(name for name in LEVEL_ORDER if name not in ("T13", "L6", "S1"))


def _point(value: Any, name: str) -> np.ndarray:
    point = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else np.zeros(0)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise NeedleplanError(f"the anchor for {name} must be a world point (x, y, z) in LPS mm, got {value!r}")
    return point


def _vertebra_at(spine: Spine, point: np.ndarray) -> tuple[int, float]:
    """Index (cranial to caudal) of the vertebra whose voxels are nearest the point, and that distance (mm)."""
    labels = spine.labels
    ids = {v.label: n for n, v in enumerate(spine)}
    spacing = labels.spacing_mm
    reach = np.ceil(ANCHOR_REACH_MM / spacing).astype(int)
    centre = np.rint(labels.world_to_index_points(point[None])[0]).astype(int)  # (i, j, k)
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, labels.shape[::-1])
    if np.any(hi <= lo):
        return -1, float("inf")
    crop = labels.voxels[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]
    kji = np.argwhere(np.isin(crop, list(ids)))
    if kji.size == 0:
        return -1, float("inf")
    ijk = kji[:, ::-1] + lo
    world = (labels.index_to_world[:3, :3] @ ijk.T).T + labels.index_to_world[:3, 3]
    distance = np.linalg.norm(world - point, axis=1)
    best = int(np.argmin(distance))
    return ids[int(crop[tuple(kji[best])])], float(distance[best])


def _distance_to_endplate(point: np.ndarray, endplate: dict[str, Any]) -> float:
    """Distance (mm) from a point to an endplate's face: a flat disc of :data:`ENDPLATE_RADIUS_MM` around its
    centre, on the plane through it perpendicular to its normal."""
    offset = point - np.asarray(endplate["center"], dtype=np.float64)
    normal = np.asarray(endplate["normal"], dtype=np.float64)
    along = float(np.dot(offset, normal)) / float(np.linalg.norm(normal))
    across = float(np.sqrt(max(0.0, float(np.dot(offset, offset)) - along**2)))
    return float(np.hypot(along, max(0.0, across - ENDPLATE_RADIUS_MM)))


def _vertebra_below_disc(spine: Spine, point: np.ndarray) -> tuple[int, float]:
    """Index of the vertebra just below the disc at the point (by its nearest endplate face), and the distance."""
    best, best_mm = -1, float("inf")
    for n, vertebra in enumerate(spine):
        for key, below in (("superior_endplate", n), ("inferior_endplate", n + 1)):
            if key in vertebra:
                gap = _distance_to_endplate(point, vertebra[key])
                if gap < best_mm:
                    best, best_mm = below, gap
    return best, best_mm


def _anchor_offset(spine: Spine, name: str, point: np.ndarray) -> tuple[int, str]:
    """The position in :data:`COUNTED` of the spine's first vertebra implied by one anchor, and its words."""
    where = "(" + ", ".join(f"{v:.1f}" for v in point) + ") mm"
    parts = name.upper().replace("/", "-").split("-")
    if len(parts) == 2:
        upper, lower = parts
        if upper not in COUNTED or lower not in (*COUNTED, "S1") or (
                COUNTED.index(upper) + 1 != (COUNTED + ("S1",)).index(lower)):
            raise NeedleplanError(f"a disc anchor is named by two adjacent levels such as 'L4-L5', got {name!r}")
        index, gap = _vertebra_below_disc(spine, point)
        if gap > ANCHOR_REACH_MM:
            raise NeedleplanError(f"no disc of this spine is near the {name} anchor at {where} (the nearest "
                                  f"endplate is {gap:.0f} mm away); give a point on the disc")
        if lower == "S1":
            return len(COUNTED) - index, f"{name} disc at {where}"
        return COUNTED.index(lower) - index, f"{name} disc at {where}"
    level = parts[0]
    if level not in (*COUNTED, "S1"):
        raise NeedleplanError(f"an anchor names a level such as 'L3' (C1-L5, S1) or a disc such as 'L4-L5', "
                              f"got {name!r}")
    index, gap = _vertebra_at(spine, point)
    if gap > ANCHOR_REACH_MM:
        found = "no labelled vertebra within reach" if index < 0 else f"the nearest vertebra is {gap:.0f} mm away"
        raise NeedleplanError(f"the {level} anchor at {where} is not inside a vertebra of this spine ({found}); "
                              "give a point inside the vertebral body")
    if level == "S1" or spine.levels[index] == "S1":
        if level != spine.levels[index]:
            raise NeedleplanError(f"the {level} anchor at {where} lies on "
                                  f"{'the sacrum' if spine.levels[index] == 'S1' else 'a mobile vertebra'}; "
                                  "the sacrum is always S1")
        return len(COUNTED) - index, f"S1 (sacrum) at {where}"
    return COUNTED.index(level) - index, f"{level} at {where}"


def _names(spine: Spine, first: int) -> tuple[list[str], list[str]]:
    """Names counted from position ``first`` of :data:`COUNTED`, the sacrum kept S1; and notes on the count."""
    has_sacrum = bool(spine.levels) and spine.levels[-1] == "S1"
    mobile = len(spine.levels) - int(has_sacrum)
    if first < 0:
        raise NeedleplanError(f"the anchors put the top vertebra {-first} level(s) above C1")
    names: list[str] = []
    notes: list[str] = []
    for n in range(mobile):
        position = first + n
        if position < len(COUNTED):
            names.append(COUNTED[position])
        elif position == len(COUNTED) and has_sacrum:
            names.append("L6")
            notes.append("the anchors leave six rib-free lumbar-type vertebrae above the sacrum: the lowest is "
                         "named L6 (transitional anatomy)")
        else:
            raise NeedleplanError("the anchors name more vertebrae below L5 than the spine can hold; check them")
    if has_sacrum:
        lowest = names[-1] if names else None
        if lowest is not None and lowest not in ("L5", "L6"):
            notes.append(f"the anchors leave the vertebra above the sacrum as {lowest}: a sacralised L5 or a "
                         "miscount; check the anchors")
        names.append("S1")
    return names, notes


def renumber(spine: Spine, anchors: dict[str, Any]) -> Spine:
    """A copy of ``spine`` whose levels are named by counting from levels the user names at points.

    Parameters
    ----------
    spine : Spine
        A segmented spine (CT or MRI; MRI's unnumbered "V1", "V2"... get names too).
    anchors : dict of str to (3,) array-like
        Level name -> a world point (LPS mm) inside that vertebra, e.g. ``{"L3": (12.0, 40.5, -210.0)}``; or a
        disc name ("T9-T10", "L5-S1") -> a point on that disc. Several anchors must agree.

    Returns
    -------
    Spine
        Same masks and landmarks, new names and label ids; ``numbering.anchor`` "user", confidence 1, confirmed
        by the user, with the automatic numbering's verdict kept in the notes.

    Raises
    ------
    NeedleplanError
        An anchor that is not a level or disc name, a point that is not on a vertebra or disc of the spine,
        anchors that disagree, or a count that runs off the spine.
    """
    if not anchors:
        raise NeedleplanError("renumber needs at least one anchor: a level name and a point inside that vertebra")
    if not spine.vertebrae:
        raise NeedleplanError("this spine has no vertebrae to name")
    found = [(*_anchor_offset(spine, str(name), _point(point, str(name))), str(name))
             for name, point in anchors.items()]
    first, words, _ = found[0]
    for other, other_words, _ in found[1:]:
        if other != first:
            raise NeedleplanError(f"the anchors disagree: {words} and {other_words} are {abs(other - first)} "
                                  "level(s) apart from where counting puts them; check both points")
    names, notes = _names(spine, first)
    return _renamed(spine, names, notes, [w for _, w, _ in found])


def _renamed(spine: Spine, names: list[str], notes: list[str], anchor_words: list[str]) -> Spine:
    old = spine.numbering
    shift = [f"{a}->{b}" for a, b in zip(spine.levels, names, strict=True) if a != b]
    if old.anchor == "none" or all(a.startswith("V") for a in spine.levels):
        verdict = f"the automatic numbering had no anchor ({old.anchor})"
    elif not shift:
        verdict = f"agrees with the automatic numbering from {old.anchor} (confidence {old.confidence:.2f})"
    else:
        verdict = (f"the automatic numbering from {old.anchor} (confidence {old.confidence:.2f}) named them "
                   f"differently: {', '.join(shift)}")
    table = np.arange(256, dtype=np.uint8)
    vertebrae: dict[str, Vertebra] = {}
    for vertebra, name in zip(spine, names, strict=True):
        table[vertebra.label] = VERSE_IDS[name]
        notes_kept = [n for n in vertebra.notes if not n.startswith("unnumbered")]
        vertebrae[name] = Vertebra(name, VERSE_IDS[name], 1.0, vertebra.landmarks, notes_kept)
    labels = spine.labels
    ids = np.asarray(labels.voxels)
    if ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
        raise NeedleplanError("the spine's label map holds ids outside 0-255; it cannot be renamed")
    voxels = table[ids if ids.dtype == np.uint8 else ids.astype(np.intp)]
    numbering = Numbering(
        "user", 1.0,
        [f"levels named by counting from the user's anchor(s): {'; '.join(anchor_words)}", verdict, *notes],
        {**old.anchors, "user": "; ".join(anchor_words)}, "user")
    new_labels = type(labels)(voxels.astype(labels.voxels.dtype), labels.index_to_world, labels.modality,
                              dict(labels.metadata))
    return dataclasses.replace(spine, labels=new_labels, vertebrae=vertebrae, numbering=numbering)


def confirm_levels(spine: Spine, by: str = "user") -> Spine:
    """A copy of ``spine`` whose automatic names are marked as checked by a person; nothing else changes.

    Use it only after checking the count yourself (e.g. on a full-spine image): the plan then trusts the names.
    """
    if any(name.startswith("V") for name in spine.levels):
        raise NeedleplanError("this spine's vertebrae are unnumbered (V1, V2...): name one level at a point "
                              "(anchors) instead of confirming")
    old = spine.numbering
    numbering = dataclasses.replace(old, confirmed_by=by, notes=[
        *old.notes, f"the automatic numbering (from {old.anchor}, confidence {old.confidence:.2f}) was confirmed "
                    f"by the {by}"])
    return dataclasses.replace(spine, numbering=numbering)


__all__ = ["ANCHOR_REACH_MM", "ENDPLATE_RADIUS_MM", "confirm_levels", "renumber"]
