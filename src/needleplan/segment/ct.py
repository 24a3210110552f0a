"""The classical CT pipeline: tissue masks -> canal and spine curve -> discs -> watershed split -> numbering ->
landmarks, all on a patient-aligned working grid, with the label map carried back to the scan's grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import ILIUM_IDS, LEVEL_ORDER, STRUCTURE_IDS, VERSE_IDS, Numbering, Spine, Vertebra
from ..errors import NeedleplanError
from ..volume import Volume
from .curve import SpineCurve, canal_mask, spine_curve
from .discs import Disc, body_line, find_discs
from .endplates import endplate_discs
from .grid import to_scan_grid, voxel_centres_mm, work_grid, work_spacing_mm
from .landmarks import foramen_and_root, vertebra_landmarks
from .numbering import name_levels
from .pelvis import pelvis_landmarks
from .ribs import ribs_by_vertebra
from .sacrum import sacrum_landmarks
from .split import slab_index, split_bone
from .tissue import SMOOTHING_MM, Tissue, tissue_masks

#: A piece of other bone touching the sacrum counts as ilium from this size, ml.
MIN_ILIUM_ML = 20.0
#: The lowest vertebra is the sacrum when it is at least this tall along the spine (mm) and touches an ilium.
MIN_SACRUM_HEIGHT_MM = 40.0
#: ... and at most this tall: sacrum and coccyx together are 100-150 mm long; a taller lowest piece is a run of
#: vertebrae whose discs were not found (thin thoracic discs), mm.
MAX_SACRUM_HEIGHT_MM = 160.0
#: An ilium piece with at least this share of its voxels on each side of the sacrum's midsagittal plane holds both
#: hip bones (joined through the pubic symphysis at coarse spacing) and is cut apart on that plane.
JOINED_SHARE = 0.2
#: The S1 segment: sacrum within this distance below the L5-S1 disc (its lower half-height), mm.
S1_SEGMENT_MM = 30.0


Box = tuple[slice, ...]


def _neighbours(labels: np.ndarray, label: int, box: Box, reach: int = 2) -> dict[int, int]:
    """Other labels within ``reach`` voxels of ``label``'s voxels (which lie in ``box``), with the count of contact
    voxels."""
    box = tuple(slice(max(s.start - reach, 0), s.stop + reach) for s in box)
    crop = labels[box]
    grown = ndimage.binary_dilation(crop == label, iterations=reach)
    found, counts = np.unique(crop[grown & (crop != label) & (crop > 0)], return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))


def _voxels_of(labels: np.ndarray, label: int, box: Box) -> np.ndarray:
    """Indices (M, 3) (z, y, x) of ``label``'s voxels, which lie in ``box``, in ``np.argwhere``'s order."""
    return np.argwhere(labels[box] == label) + [s.start for s in box]


def _frame(curve: SpineCurve, centroid: np.ndarray, above: Disc | None, below: Disc | None) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Origin (nearest curve point) and axes (columns left, posterior, superior) of a vertebra."""
    n = int(curve.nearest(centroid)[0])
    normals = [d.normal for d in (above, below) if d is not None]
    superior = np.mean(normals, axis=0) if normals else curve.superior[n]
    superior = superior / np.linalg.norm(superior)
    posterior = curve.posterior[n] - np.dot(curve.posterior[n], superior) * superior
    posterior /= np.linalg.norm(posterior)
    return curve.points_mm[n], np.column_stack([np.cross(posterior, superior), posterior, superior])


@dataclass(frozen=True)
class Column:
    """What every CT path finds before naming vertebrae: the working grid (HU, smoothed HU), tissue masks, canal,
    curve and discs."""

    work: Volume
    hu: np.ndarray
    smooth_hu: np.ndarray
    tissue: Tissue
    canal: np.ndarray
    curve: SpineCurve
    line: SpineCurve
    discs: list[Disc]
    spacing: float


def find_column(volume: Volume) -> Column:
    """The working grid of a CT and the spine column on it: tissue masks, canal, spine curve, body line, discs (from
    the bone share along the body line, and thin discs from their endplates)."""
    if volume.modality not in ("CT",):
        raise NeedleplanError(f"the CT pipeline needs a CT volume in HU, got modality {volume.modality!r}")
    spacing = work_spacing_mm(volume)
    work = work_grid(volume, spacing)
    if min(work.shape) < 8:
        raise NeedleplanError(f"this CT covers too little to hold a vertebra ({work.shape[::-1]} voxels of "
                              f"{spacing:.2g} mm); segment a scan that shows at least one vertebra whole")
    hu = work.voxels.astype(np.float32)
    tissue = tissue_masks(hu, spacing)
    if not tissue.bone.any():
        raise NeedleplanError("no bone found in this CT (nothing above the bone threshold inside the body); "
                              "is it a CT in Hounsfield units?")
    canal = canal_mask(tissue.bone_wide, hu, spacing, tissue.soft_peak_hu)
    curve = spine_curve(canal, work.index_to_world)
    bone = tissue.bone.astype(np.float32)
    line = body_line(bone, work.world_to_index, curve, spacing)
    smooth = ndimage.gaussian_filter(hu, SMOOTHING_MM / spacing)
    discs = endplate_discs(smooth, work.world_to_index, line, find_discs(bone, work.world_to_index, line, spacing))
    return Column(work, hu, smooth, tissue, canal, curve, line, discs, spacing)


def segment_ct(volume: Volume) -> Spine:
    """Segment, number and measure the spine of a CT (see :func:`needleplan.segment.segment`)."""
    column = find_column(volume)
    work, tissue, curve, discs, spacing = column.work, column.tissue, column.curve, column.discs, column.spacing
    affine = work.index_to_world
    slabs, other_base = split_bone(tissue.bone, column.smooth_hu, affine, curve, discs, column.line)

    piece_ml = np.bincount(slabs.ravel()) * (spacing**3 / 1000.0)  # volume of every label, counted once
    present = [k for k in range(1, min(other_base, len(piece_ml))) if piece_ml[k] > 0]
    if not present:
        raise NeedleplanError("the spine curve was found but no vertebra could be separated; "
                              "the scan may be too coarse or cut too close to the spine")
    boxes = ndimage.find_objects(slabs)  # label k's voxels lie in boxes[k - 1]
    sacrum_slab = (present[-1] if _is_sacrum(slabs, present[-1], other_base, affine, column, piece_ml, boxes)
                   else None)
    ilium_of = _ilia(slabs, sacrum_slab, other_base, affine, curve, piece_ml, boxes) if sacrum_slab else {}
    rib_pieces = ribs_by_vertebra(slabs, present, other_base, affine, curve, discs,
                                  {k: _neighbours(slabs, k, boxes[k - 1]) for k in present})
    ribs = [bool(rib_pieces[k]) for k in present]
    names, numbering = name_levels(len(present), sacrum_slab is not None, ribs)

    verse = np.zeros(slabs.shape, dtype=np.uint8)
    for k, name in zip(present, names, strict=True):
        verse[slabs == k] = VERSE_IDS[name]
    for piece, side in ilium_of.items():
        verse[slabs == piece] = ILIUM_IDS[side]
    labels = Volume(to_scan_grid(verse, work, volume), volume.index_to_world, "LABEL",
                    {"source": "needleplan.segment", "convention": "verse"})

    vertebrae, sacral = _vertebrae(slabs, present, present, names, ribs, numbering.confidence, column)
    unresolved: dict[str, str] = {}
    pelvis = {**pelvis_landmarks(verse, affine, vertebrae.get("S1"), unresolved), **sacral} if sacrum_slab else {}
    structures = _structures(column, verse, np.isin(slabs, [p for pieces in rib_pieces.values() for p in pieces]))
    return Spine(
        labels=labels, vertebrae=vertebrae, pelvis=pelvis,
        structures=Volume(to_scan_grid(structures, work, volume), volume.index_to_world, "LABEL"),
        curve_mm=curve.points_mm, numbering=numbering, modality="CT", engine="classical",
        unavailable={**_unavailable(vertebrae, pelvis), **unresolved},
    )


def _unavailable(vertebrae: dict[str, Vertebra], pelvis: dict[str, Any]) -> dict[str, str]:
    """The S1 landmarks that could not be measured (foramen, L5 dorsal ramus), with the reason."""
    if "S1" not in vertebrae:
        return {}
    out = {}
    missing = [side for side in ("left", "right") if f"s1_posterior_foramen_{side}" not in pelvis]
    if missing:
        out["s1_posterior_foramen"] = (f"no S1 foramen channel ({' and '.join(missing)}) was found as a hole through "
                                       "the sacrum below the S1 pedicle (too coarse a scan, or a cut edge)")
    s1 = vertebrae["S1"].landmarks
    for side in ("left", "right"):
        if f"medial_branch_{side}" in s1 or f"pedicle_{side}" not in s1:
            continue
        if f"sap_tip_{side}" not in s1:
            why = (f"the {side} S1 superior articular process was not found apart from L5 (where the L5-S1 facet "
                   "joint is not resolved, as on thick slices, its bone goes to L5)")
        else:
            why = f"the {side} sacral ala, whose top the ramus crosses, was not found"
        out[f"l5_dorsal_ramus_{side}"] = (f"{why}, so the L5 dorsal ramus has no landmark; give your own labels "
                                          "(segment(labels=...), --labels) or a thinner-slice scan")
    return out


def spine_from_labels(volume: Volume, labels: Volume, numbering: Numbering, engine: str) -> Spine:
    """A Spine whose masks and names come from a label map; landmarks are measured as on our own masks.

    Parameters
    ----------
    volume : Volume
        The CT in HU.
    labels : Volume
        VerSe ids (26 sacrum) and :data:`ILIUM_IDS`, on ``volume``'s grid; it becomes ``Spine.labels`` as it is.
    numbering : Numbering
        How the names were given (e.g. anchor "labels" for the user's own labels); its confidence is every
        vertebra's.
    engine : str
        What made the masks, for ``Spine.engine``.
    """
    column = find_column(volume)
    work = column.work
    affine = work.index_to_world
    verse = labels.resample(affine, work.shape, order=0).voxels.astype(np.uint8)
    names = [name for name in LEVEL_ORDER if np.any(verse == VERSE_IDS[name])]
    if not names:
        raise NeedleplanError("the labels hold no vertebra inside this CT's field of view")
    ids = [VERSE_IDS[name] for name in names]
    # each vertebra is measured between the disc planes of the slab that holds most of it
    slabs = [int(np.median(slab_index(voxel_centres_mm(np.argwhere(verse == label), affine), column.discs))) + 1
             for label in ids]
    vertebrae, sacral = _vertebrae(verse, ids, slabs, names, [False] * len(names), numbering.confidence, column)
    pelvis = {**pelvis_landmarks(verse, affine, vertebrae.get("S1")), **sacral} if "S1" in vertebrae else {}
    structures = _structures(column, verse)
    return Spine(labels=labels, vertebrae=vertebrae, pelvis=pelvis,
                 structures=Volume(to_scan_grid(structures, work, volume), volume.index_to_world, "LABEL"),
                 curve_mm=column.curve.points_mm, numbering=numbering, modality="CT", engine=engine,
                 unavailable=_unavailable(vertebrae, pelvis))


def _is_sacrum(slabs: np.ndarray, k: int, other_base: int, affine: np.ndarray, column: Column,
               piece_ml: np.ndarray, boxes: list[Box | None]) -> bool:
    """Whether the lowest vertebra is the sacrum: below a thick disc (the L5-S1 disc, never a thin thoracic one),
    sacrum-tall along the spine and touching a large piece of other bone (``boxes[k - 1]`` holds label k)."""
    if k < 2 or column.discs[k - 2].thin:
        return False
    box = boxes[k - 1]
    assert box is not None  # k is a label present in slabs
    points = voxel_centres_mm(_voxels_of(slabs, k, box), affine)
    axis = column.line.superior[int(column.line.nearest(points.mean(axis=0)[None])[0])]
    height = float(np.ptp(points @ axis))
    touching = _neighbours(slabs, k, box)
    big = [p for p in touching if p >= other_base and piece_ml[p] >= MIN_ILIUM_ML]
    return MIN_SACRUM_HEIGHT_MM <= height <= MAX_SACRUM_HEIGHT_MM and bool(big)


def _ilia(slabs: np.ndarray, sacrum: int, other_base: int, affine: np.ndarray, curve: SpineCurve,
          piece_ml: np.ndarray, boxes: list[Box | None]) -> dict[int, str]:
    """Pieces of other bone that touch the sacrum and are large: ilium id -> side (``boxes[k - 1]`` holds label k).

    A piece lying on both sides of the sacrum's midsagittal plane (curve point and left vector nearest the
    sacrum's centroid) holds both hip bones: it is cut on that plane and its right part gets a new id in
    ``slabs`` (changed in place).
    """
    sacral_box = boxes[sacrum - 1]
    assert sacral_box is not None  # the sacrum is a label present in slabs
    sacral_centre = voxel_centres_mm(_voxels_of(slabs, sacrum, sacral_box), affine).mean(axis=0)
    n = int(curve.nearest(sacral_centre[None])[0])
    out: dict[int, str] = {}
    for piece in _neighbours(slabs, sacrum, sacral_box):
        if piece < other_base or piece_ml[piece] < MIN_ILIUM_ML:
            continue
        piece_box = boxes[piece - 1]
        assert piece_box is not None  # a piece touching the sacrum is present
        zyx = _voxels_of(slabs, piece, piece_box)
        on_left = (voxel_centres_mm(zyx, affine) - curve.points_mm[n]) @ curve.left[n] > 0
        share = float(on_left.mean())
        if min(share, 1.0 - share) >= JOINED_SHARE:
            right = int(slabs.max()) + 1
            slabs[tuple(zyx[~on_left].T)] = right
            out[piece], out[right] = "left", "right"
        else:
            out[piece] = "left" if share > 0.5 else "right"
    return out


def _s1_segment(points: np.ndarray, above: Disc | None) -> np.ndarray:
    """The points (M, 3) of the sacrum's S1 segment: within :data:`S1_SEGMENT_MM` below the L5-S1 disc."""
    if above is None:
        return points
    depth = (above.center_mm - points) @ above.normal - 0.5 * above.height_mm
    return points[depth <= S1_SEGMENT_MM]


def _vertebrae(labels: np.ndarray, ids: list[int], slabs: list[int], names: list[str], ribs: list[bool],
               confidence: float, column: Column) -> tuple[dict[str, Vertebra], dict[str, Any]]:
    """The vertebrae with their landmarks, and the pelvic landmarks measured on the sacrum (ala, S1 foramina).

    Vertebra ``names[i]`` is ``labels == ids[i]`` on the working grid, measured between the disc planes of slab
    ``slabs[i]`` (1 = above the first disc).
    """
    discs, affine, spacing = column.discs, column.work.index_to_world, column.spacing
    canal_points = voxel_centres_mm(np.argwhere(column.canal), affine)
    canal_slab = slab_index(canal_points, discs) + 1
    marks: dict[str, dict[str, Any]] = {}
    out: dict[str, Vertebra] = {}
    sacral: dict[str, Any] = {}
    for label, k, name, rib in zip(ids, slabs, names, ribs, strict=True):
        mask = labels == label
        points = voxel_centres_mm(np.argwhere(mask), affine)
        above = discs[k - 2] if k >= 2 else None
        below = discs[k - 1] if k - 1 < len(discs) else None
        own, own_canal = points, _within_height(canal_points[canal_slab == k], points, column.curve)
        if name == "S1":  # the sacrum's lower segments curve forward: measure S1 on its own segment
            own, own_canal = _s1_segment(points, above), _s1_segment(own_canal, above)
        origin, axes = _frame(column.curve, own.mean(axis=0)[None], above, below)
        found = vertebra_landmarks(own, own_canal, origin, axes, spacing, is_sacrum=name == "S1")
        if name == "S1" and "body_centroid" in found:
            s1_marks, sacral = sacrum_landmarks(mask, affine, found, spacing)
            found.update(s1_marks)
        notes = ["ribs articulate with it"] if rib else []
        if above is None or below is None:
            notes.append("cut by the edge of the scan or without a disc on one side: landmarks may be partial")
        marks[name] = found
        out[name] = Vertebra(name, VERSE_IDS[name], confidence, found, notes)
    for upper, lower in zip(names[:-1], names[1:], strict=True):
        if _adjacent(upper, lower):  # a level missing from the labels leaves no foramen to model
            for side in ("left", "right"):
                marks[upper].update(foramen_and_root(marks[upper], marks[lower], side))
    return out, sacral


def _within_height(canal_points: np.ndarray, vertebra_points: np.ndarray, curve: SpineCurve) -> np.ndarray:
    """The canal points level with a vertebra: within its extent along the spine (where no disc bounds its slab,
    e.g. a labelled vertebra on a scan whose discs were not found, the slab's canal runs the whole spine)."""
    if canal_points.size == 0:
        return canal_points
    axis = curve.superior[int(curve.nearest(vertebra_points.mean(axis=0)[None])[0])]
    heights = vertebra_points @ axis
    along = canal_points @ axis
    return canal_points[(along >= heights.min()) & (along <= heights.max())]


def _adjacent(upper: str, lower: str) -> bool:
    """Whether ``lower`` is the level right below ``upper`` (T13 and L6 exist in some spines only)."""
    between = LEVEL_ORDER[LEVEL_ORDER.index(upper) + 1:LEVEL_ORDER.index(lower)]
    return all(name in ("T13", "L6") for name in between)


def _structures(column: Column, verse: np.ndarray, ribs: np.ndarray | None = None) -> np.ndarray:
    """Soft-tissue map on the working grid: body, gas, bone, its partial-volume rim, ribs (when given), canal,
    discs (:data:`STRUCTURE_IDS`)."""
    tissue, discs, affine = column.tissue, column.discs, column.work.index_to_world
    out = np.zeros(verse.shape, dtype=np.uint8)
    out[tissue.body] = STRUCTURE_IDS["body"]
    out[tissue.gas] = STRUCTURE_IDS["bowel_gas"]
    out[tissue.bone_wide] = STRUCTURE_IDS["bone_edge"]
    out[tissue.bone] = STRUCTURE_IDS["bone"]
    if ribs is not None:
        out[ribs] = STRUCTURE_IDS["rib"]
    out[column.canal] = STRUCTURE_IDS["canal"]
    to_index = np.linalg.inv(affine)[:3]
    for disc in discs:
        reach = 22.0 + disc.height_mm
        lo = np.floor(to_index @ np.append(disc.center_mm - reach, 1.0)).astype(int)
        hi = np.ceil(to_index @ np.append(disc.center_mm + reach, 1.0)).astype(int) + 1
        lo, hi = np.maximum(lo, 0), np.minimum(hi, verse.shape[::-1])
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        zyx = np.argwhere(np.ones(out[box].shape, dtype=bool)) + [lo[2], lo[1], lo[0]]
        rel = voxel_centres_mm(zyx, affine) - disc.center_mm
        along = rel @ disc.normal
        radial = np.linalg.norm(rel - along[:, None] * disc.normal, axis=1)
        inside = (np.abs(along) <= 0.5 * disc.height_mm + 1.0) & (radial <= 20.0)
        zyx = zyx[inside]
        keep = ~tissue.bone[tuple(zyx.T)] & tissue.body[tuple(zyx.T)]
        out[tuple(zyx[keep].T)] = STRUCTURE_IDS["disc"]
    return out
