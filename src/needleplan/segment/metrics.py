"""Scoring a vertebra segmentation against a reference, the VerSe challenge's way.

- **Dice** per label: ``2 |P & R| / (|P| + |R|)`` on two label maps on the same grid.
- **Centroids** per label in world (LPS) millimetres, through the Volume's ``index_to_world``.
- **Identification** (VerSe): a reference vertebra is identified when the predicted centroid with the same label
  exists, is the nearest of all predicted centroids to the reference centroid, and lies within 20 mm of it.
- **Landmark errors**: distance per landmark between two landmark dicts of the phantom's layout
  (:attr:`needleplan.phantoms.PhantomCase.landmarks`, :meth:`needleplan.anatomy.Spine.landmarks`).

Every function is pure: arrays and Volumes in, numbers out. Label ids are positive integers; 0 is background.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import VERSE_NAMES
from ..volume import Volume

__all__ = [
    "SegmentationScore", "centroid_distances_mm", "dice_per_label", "identification", "label_centroids_mm",
    "landmark_errors_mm", "on_grid_of", "score_labels",
]

#: Landmark names that hold directions or sizes, never positions.
_NOT_POINTS = frozenset({"normal", "axis", "axes", "direction"})


# ---- label maps -------------------------------------------------------------------------------------------------
def _label_array(labels: np.ndarray | Volume) -> np.ndarray:
    """A label map as a non-negative integer array (float maps with integral values are accepted)."""
    array = labels.voxels if isinstance(labels, Volume) else np.asarray(labels)
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise ValueError("a label map must hold integer ids; this float array has fractional values")
        array = rounded.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"a label map must hold integer ids, got dtype {array.dtype}")
    if array.dtype.kind == "i" and array.size and array.min() < 0:
        raise ValueError("a label map must hold non-negative ids; this one has negative values")
    return array


def _present(array: np.ndarray) -> list[int]:
    """Non-zero labels present in an integer array, ascending."""
    return sorted(_boxes(array))


def _boxes(array: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Bounding box (array slices) of every non-zero label."""
    if array.max(initial=0) <= 0:
        return {}
    return {index + 1: box for index, box in enumerate(ndimage.find_objects(array)) if box is not None}


def _box_overlap(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...] | None:
    """Intersection of two bounding boxes, or None when they do not overlap."""
    out = tuple(slice(max(p.start, q.start), min(p.stop, q.stop)) for p, q in zip(a, b, strict=True))
    return None if any(s.start >= s.stop for s in out) else out


def dice_per_label(
    predicted: np.ndarray | Volume, reference: np.ndarray | Volume, labels: Iterable[int] | None = None
) -> dict[int, float]:
    """Dice coefficient of each label between two label maps on the same grid.

    Parameters
    ----------
    predicted, reference : ndarray or Volume, same shape
        Integer label maps (0 background). Volumes must share the grid; see :func:`on_grid_of`.
    labels : iterable of int, optional
        Labels to score; default every non-zero label present in either map.

    Returns
    -------
    dict of int to float
        Dice in [0, 1] per label: 0 when the label is in only one map, NaN when it is in neither.

    Raises
    ------
    ValueError
        When the shapes differ or a map does not hold non-negative integer ids.
    """
    pred, ref = _label_array(predicted), _label_array(reference)
    if pred.shape != ref.shape:
        raise ValueError(f"label maps must have the same shape, got {pred.shape} and {ref.shape}")
    pred_boxes, ref_boxes = _boxes(pred), _boxes(ref)
    if labels is None:
        labels = sorted(set(pred_boxes) | set(ref_boxes))
    out: dict[int, float] = {}
    for label in (int(value) for value in labels):
        pred_box, ref_box = pred_boxes.get(label), ref_boxes.get(label)
        pred_size = int(np.count_nonzero(pred[pred_box] == label)) if pred_box else 0
        ref_size = int(np.count_nonzero(ref[ref_box] == label)) if ref_box else 0
        if pred_size + ref_size == 0:
            out[label] = math.nan
            continue
        both = _box_overlap(pred_box, ref_box) if pred_box and ref_box else None
        common = int(np.count_nonzero((pred[both] == label) & (ref[both] == label))) if both else 0
        out[label] = 2.0 * common / (pred_size + ref_size)
    return out


def label_centroids_mm(label_volume: Volume, labels: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """World centroid of each label: the mean LPS position of its voxel centres.

    Parameters
    ----------
    label_volume : Volume
        Integer label map (0 background); any orientation, oblique and sheared grids included.
    labels : iterable of int, optional
        Labels wanted; default every non-zero label present. Absent labels are left out of the result.

    Returns
    -------
    dict of int to ndarray, shape (3,)
        LPS millimetres per label.
    """
    array = _label_array(label_volume)
    boxes = _boxes(array)
    wanted = sorted(boxes) if labels is None else [int(value) for value in labels]
    out: dict[int, np.ndarray] = {}
    for label in wanted:
        if label not in boxes:
            continue
        box = boxes[label]
        mask = array[box] == label
        count = np.count_nonzero(mask)
        kji = [
            box[axis].start + float(np.dot(mask.sum(axis=tuple(a for a in range(3) if a != axis)),
                                           np.arange(mask.shape[axis]))) / count
            for axis in range(3)
        ]
        out[label] = label_volume.index_to_world_points(np.array(kji[::-1]))
    return out


def on_grid_of(predicted: Volume, reference: Volume) -> Volume:
    """``predicted`` on ``reference``'s grid: unchanged when the grids match, else resampled (nearest neighbour).

    Voxels of the reference grid outside the predicted volume become 0.
    """
    same = predicted.shape == reference.shape and np.allclose(
        predicted.index_to_world, reference.index_to_world, rtol=0.0, atol=1e-4)
    if same:
        return predicted
    return predicted.resample(reference.index_to_world, reference.shape, order=0, fill_value=0.0)


# ---- centroids and identification ------------------------------------------------------------------------------
def centroid_distances_mm(
    predicted_centroids: Mapping[int, np.ndarray], reference_centroids: Mapping[int, np.ndarray]
) -> dict[int, float]:
    """Distance (mm) between the predicted and reference centroid of each label present in both.

    Parameters
    ----------
    predicted_centroids, reference_centroids : mapping of int to array_like, shape (3,)
        World points per label, e.g. from :func:`label_centroids_mm`.

    Returns
    -------
    dict of int to float
        In the reference's label order; labels missing from either side are left out.
    """
    return {
        int(label): float(np.linalg.norm(np.asarray(predicted_centroids[label], float) - np.asarray(point, float)))
        for label, point in reference_centroids.items() if label in predicted_centroids
    }


def identification(
    predicted_centroids: Mapping[int, np.ndarray],
    reference_centroids: Mapping[int, np.ndarray],
    max_distance_mm: float = 20.0,
) -> dict[int, bool]:
    """VerSe identification of each reference vertebra.

    A reference vertebra counts as identified when the predicted centroid with its label exists, lies within
    ``max_distance_mm`` of the reference centroid, and no other predicted centroid is nearer to it.

    Parameters
    ----------
    predicted_centroids, reference_centroids : mapping of int to array_like, shape (3,)
        World points per label (mm).
    max_distance_mm : float
        The VerSe radius, 20 mm.

    Returns
    -------
    dict of int to bool
        Per reference label, in the reference's order.
    """
    labels = list(predicted_centroids)
    points = np.array([np.asarray(predicted_centroids[label], float) for label in labels]).reshape(-1, 3)
    out: dict[int, bool] = {}
    for label, reference in reference_centroids.items():
        if label not in predicted_centroids:
            out[int(label)] = False
            continue
        distances = np.linalg.norm(points - np.asarray(reference, float), axis=1)
        own = distances[labels.index(label)]
        out[int(label)] = bool(own <= max_distance_mm and own <= distances.min())
    return out


# ---- one score for a label map ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentationScore:
    """Per-label agreement of a predicted vertebra label map with a reference.

    Attributes
    ----------
    labels : tuple of int
        The scored reference labels (VerSe ids), in order.
    dice : dict of int to float
        Dice per label (0 when the prediction lacks the label).
    identified : dict of int to bool
        VerSe identification per label (see :func:`identification`).
    distance_mm : dict of int to float
        Centroid distance per label, NaN when the prediction lacks the label.
    """

    labels: tuple[int, ...]
    dice: dict[int, float]
    identified: dict[int, bool]
    distance_mm: dict[int, float]

    @property
    def mean_dice(self) -> float:
        """Mean Dice over the scored labels (a missing label counts 0); NaN when there are none."""
        values = [self.dice[label] for label in self.labels if not math.isnan(self.dice[label])]
        return float(np.mean(values)) if values else math.nan

    @property
    def identification_rate(self) -> float:
        """Fraction of the scored labels identified; NaN when there are none."""
        return float(np.mean([self.identified[label] for label in self.labels])) if self.labels else math.nan

    @property
    def mean_distance_mm(self) -> float:
        """Mean centroid distance over the labels the prediction has; NaN when it has none."""
        values = [d for d in (self.distance_mm[label] for label in self.labels) if not math.isnan(d)]
        return float(np.mean(values)) if values else math.nan

    def subset(self, labels: Iterable[int]) -> "SegmentationScore":
        """The same score restricted to some of its labels (e.g. L1-L5 without the sacrum)."""
        keep = tuple(int(label) for label in labels if int(label) in self.labels)
        return SegmentationScore(keep, {k: self.dice[k] for k in keep}, {k: self.identified[k] for k in keep},
                                 {k: self.distance_mm[k] for k in keep})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per-level rows (named by VerSe id) and the means."""
        return {
            "levels": {VERSE_NAMES.get(k, str(k)): {"label": k, "dice": self.dice[k], "identified": self.identified[k],
                                                     "distance_mm": self.distance_mm[k]} for k in self.labels},
            "mean_dice": self.mean_dice,
            "identification_rate": self.identification_rate,
            "mean_distance_mm": self.mean_distance_mm,
        }


def score_labels(
    predicted: Volume,
    reference: Volume,
    labels: Iterable[int] | None = None,
    max_distance_mm: float = 20.0,
) -> SegmentationScore:
    """Dice, identification and centroid distance of each reference vertebra.

    Parameters
    ----------
    predicted, reference : Volume
        Label maps in VerSe ids (convert TotalSegmentator maps with :func:`needleplan.anatomy.from_totalseg`).
        A prediction on another grid is resampled onto the reference's with nearest neighbour.
    labels : iterable of int, optional
        Reference labels to score; default every non-zero label of the reference. Labels the reference lacks
        are left out.
    max_distance_mm : float
        Identification radius (VerSe: 20 mm).

    Returns
    -------
    SegmentationScore

    Notes
    -----
    Identification compares against the centroids of every vertebra id (:data:`needleplan.anatomy.VERSE_NAMES`)
    in the prediction, scored or not; other ids (the ilia) are not candidates.
    """
    predicted = on_grid_of(predicted, reference)
    ref_array = _label_array(reference)
    present = _present(ref_array)
    wanted = present if labels is None else [int(label) for label in labels if int(label) in present]
    pred_centroids = {k: v for k, v in label_centroids_mm(predicted).items() if k in VERSE_NAMES}
    ref_centroids = label_centroids_mm(reference, wanted)
    dice = dice_per_label(predicted, ref_array, wanted)
    found = identification(pred_centroids, ref_centroids, max_distance_mm)
    distances = centroid_distances_mm(pred_centroids, ref_centroids)
    return SegmentationScore(
        labels=tuple(wanted),
        dice=dice,
        identified={k: found.get(k, False) for k in wanted},
        distance_mm={k: distances.get(k, math.nan) for k in wanted},
    )


# ---- landmarks --------------------------------------------------------------------------------------------------
def _as_point(value: Any) -> np.ndarray | None:
    """``value`` as a finite (3,) float array, or None when it is not one point."""
    if isinstance(value, (str, bytes, dict)) or value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (3,) and np.all(np.isfinite(array)) else None


def _group_errors(found: Mapping[str, Any], truth: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Errors of the points of one level (or the pelvis): (3,) entries, and the "center" of dict entries."""
    out: dict[str, float] = {}
    for name, true_value in truth.items():
        if name not in found or name in _NOT_POINTS or str(name).endswith("_mm"):
            continue
        key, found_value = f"{prefix}.{name}", found[name]
        if isinstance(true_value, Mapping) and isinstance(found_value, Mapping):
            key, true_value, found_value = f"{key}.center", true_value.get("center"), found_value.get("center")
        true_point, found_point = _as_point(true_value), _as_point(found_value)
        if true_point is not None and found_point is not None:
            out[key] = float(np.linalg.norm(found_point - true_point))
    return out


def landmark_errors_mm(found: Mapping[str, Any], truth: Mapping[str, Any]) -> dict[str, float]:
    """Distance (mm) of every landmark point present in both of two landmark dicts.

    Parameters
    ----------
    found, truth : mapping
        Phantom layout: group ("L4", "S1", "pelvis") -> landmark name -> a (3,) point, or a dict whose
        "center" is one (endplates, pedicles). Lists and arrays are both accepted.

    Returns
    -------
    dict of str to float
        Error per dotted key ("L4.body_centroid", "L4.pedicle_left.center"), in ``truth``'s order. Only
        points count: directions ("normal", "axis", "axes"), sizes ("..._mm"), polylines and outlines are
        skipped, as are landmarks missing from either dict.
    """
    out: dict[str, float] = {}
    for group, true_group in truth.items():
        found_group = found.get(group)
        if isinstance(true_group, Mapping) and isinstance(found_group, Mapping):
            out.update(_group_errors(found_group, true_group, str(group)))
    return out
