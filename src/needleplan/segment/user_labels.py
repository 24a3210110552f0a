"""The user's own vertebra labels (TotalSegmentator, a VerSe-trained network, 3D Slicer), on the CT's grid.

Three kinds of input give the same thing, a label map in our ids on the CT's grid and a :class:`Numbering` that
takes the label names as confirmed levels:

- one multi-label map (a NIfTI / MHA / NRRD file, or a Volume of modality "LABEL") in TotalSegmentator's or
  VerSe's ids (:mod:`.label_conventions`);
- a folder of per-structure binary masks as TotalSegmentator writes them (``vertebrae_L4.nii.gz``,
  ``sacrum.nii.gz``, ``hip_left.nii.gz``; its other structures are ignored, and so are empty masks: it writes one
  file per structure whether it found it or not);
- a dict of structure name -> binary mask file or Volume, e.g. ``{"T12": "vertebrae_T12.nii.gz"}``.

Labels may sit on any grid in the CT's world frame (a crop, another spacing or orientation): they are resampled
onto the CT's voxels by nearest neighbour. Labels that land nowhere in the CT are an error, never an empty result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import numpy as np

from ..anatomy import ILIUM_IDS, LEVEL_ORDER, VERSE_NAMES, Numbering
from ..errors import InputNotFoundError, NeedleplanError, describe_path
from ..io.files import IMAGE_FILE_SUFFIXES, is_image_file_name, read_image_file
from ..volume import Volume
from .label_conventions import CONVENTIONS, choose_convention, mask_id, to_our_ids, totalseg_mask_id

#: What ``segment(labels=...)`` takes: a label file or folder, a label Volume, or names -> binary masks.
UserLabels = Union[str, os.PathLike, Volume, Mapping[str, Union[str, os.PathLike, Volume]]]
#: The conventions in words, for the numbering notes.
CONVENTION_WORDS = {"totalseg": "TotalSegmentator v2 'total' ids", "verse": "VerSe ids"}
_STRUCTURE_NAMES = {**VERSE_NAMES, **{label: f"ilium_{side}" for side, label in ILIUM_IDS.items()}}


def read_user_labels(labels: UserLabels, volume: Volume, convention: str = "auto") -> tuple[Volume, Numbering]:
    """The user's labels in our ids on the CT's grid, and the numbering they give.

    Parameters
    ----------
    labels : path, Volume or dict
        A multi-label file or Volume, a TotalSegmentator output folder, or structure name -> binary mask
        (module docstring). Names are levels ("L4", "S1"), "sacrum", "hip_left"/"hip_right" or TotalSegmentator's
        mask names ("vertebrae_L4").
    volume : Volume
        The CT the labels were made on.
    convention : {"auto", "totalseg", "verse"}
        The ids of a multi-label map (folders and dicts name their masks, so it does not apply to them).

    Returns
    -------
    labels : Volume
        uint8, modality "LABEL", ``volume``'s grid: VerSe ids (26 the whole sacrum) and the ilia's ids.
    numbering : Numbering
        Anchor "labels", confidence 1.0; the notes say which input and which convention gave the names.

    Raises
    ------
    NeedleplanError
        A missing path, a file that is not a label map, a folder without known masks, a mask that is not binary,
        labels that do not overlap the CT, an unknown convention or ids that "auto" cannot tell apart.
    """
    if convention not in CONVENTIONS:
        raise NeedleplanError(f"unknown label convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if volume.modality != "CT":
        raise NeedleplanError(f"your own labels need a CT to measure the landmarks on; this volume is "
                              f"{volume.modality}")
    if isinstance(labels, Mapping):
        masks = [(_named_id(name), _mask_volume(mask), _source(mask, name)) for name, mask in labels.items()]
        placed, notes = _paint(masks, volume, "the masks given")
        notes.insert(0, "level names given with the masks: " + "; ".join(name for _, _, name in masks))
    elif isinstance(labels, Volume):
        placed, notes = labels_on_ct(labels, "the labels Volume", volume, convention)
    else:
        path = Path(labels)
        if not path.exists():
            raise InputNotFoundError(f"labels {describe_path(path)} do not exist; check the path")
        if path.is_dir():
            placed, notes = _paint(_folder_masks(path), volume, f"the masks in {describe_path(path)}")
            notes.insert(0, f"level names from the TotalSegmentator-style masks in {describe_path(path)}")
        else:
            placed, notes = labels_on_ct(_label_file(path), describe_path(path), volume, convention)
    return placed, Numbering("labels", 1.0, notes, {"labels": "the names in the user's label file"},
                             confirmed_by="labels")


def _label_file(path: Path) -> Volume:
    """A multi-label file, refused when its values are not labels (a CT or MR given by mistake)."""
    if not is_image_file_name(path):
        raise NeedleplanError(f"labels {describe_path(path)} must be a label file ({', '.join(IMAGE_FILE_SUFFIXES)}) "
                              "or a TotalSegmentator output folder")
    found = read_image_file(path)
    if found.modality != "LABEL":
        raise NeedleplanError(f"labels {describe_path(path)} hold no label map but an image "
                              f"({found.metadata['modality_source']}, taken for {found.modality}); give the "
                              "label file")
    return found


def labels_on_ct(found: Volume, name: str, volume: Volume, convention: str) -> tuple[Volume, list[str]]:
    """A multi-label map in ``convention``'s ids -> our ids on the CT's grid, and notes saying how it was read.

    Parameters
    ----------
    found : Volume
        The label map, on any grid in the CT's world frame.
    name : str
        What it is, for messages and notes (e.g. its quoted path).
    volume : Volume
        The CT.
    convention : {"auto", "totalseg", "verse"}

    Returns
    -------
    labels : Volume
        As :func:`read_user_labels` returns them.
    notes : list of str
        Which convention was used and why; the structures that fall outside the CT.
    """
    ids = _whole_ids(found, name)
    present = set(np.unique(ids).tolist()) - {0}
    if not present:
        raise NeedleplanError(f"{name} holds no labels (every voxel is 0)")
    how = "as asked"
    try:
        if convention == "auto":
            convention, reason = choose_convention(present)
            how = f"chosen from the ids present: {reason}"
        ours = to_our_ids(ids, convention)
    except NeedleplanError as error:
        raise NeedleplanError(f"{name}: {error}") from None
    if not ours.any():
        raise NeedleplanError(f"{name} holds no vertebra, sacrum or hip in {CONVENTION_WORDS[convention]} (ids "
                              f"{', '.join(map(str, sorted(present)))}); check the convention")
    placed = _on_grid(Volume(ours, found.index_to_world, "LABEL"), volume, name)
    outside = sorted(set(np.unique(ours).tolist()) - set(np.unique(placed.voxels).tolist()))
    notes = [f"level names from {name}, read as {CONVENTION_WORDS[convention]} ({how})"]
    return placed, notes + _outside_note([_STRUCTURE_NAMES[label] for label in outside])


def _folder_masks(folder: Path) -> list[tuple[int, Volume, str]]:
    """The vertebra, sacrum and hip masks of a TotalSegmentator output folder, empty ones left out."""
    named = [(totalseg_mask_id(_stem(path)), path) for path in sorted(folder.iterdir()) if is_image_file_name(path)]
    known = [(label, path) for label, path in named if label is not None]
    if not known:
        raise NeedleplanError(f"folder {describe_path(folder)} holds no vertebra, sacrum or hip masks named as "
                              "TotalSegmentator names them (vertebrae_L4.nii.gz, sacrum.nii.gz, hip_left.nii.gz)")
    masks = [(label, read_image_file(path, modality="LABEL"), describe_path(path)) for label, path in known]
    found = [(label, mask, name) for label, mask, name in masks if np.any(mask.voxels)]
    if not found:
        raise NeedleplanError(f"every vertebra, sacrum and hip mask in {describe_path(folder)} is empty")
    return found


def _paint(masks: list[tuple[int, Volume, str]], volume: Volume, what: str) -> tuple[Volume, list[str]]:
    """Binary masks, each with our label id, painted in that order onto the CT's grid; notes on masks outside it."""
    out = np.zeros(volume.shape, dtype=np.uint8)
    outside = []
    for label, mask, name in masks:
        inside = mask.voxels != 0
        values = np.unique(np.asarray(mask.voxels)[inside])
        if values.size == 0:
            raise NeedleplanError(f"the mask {name} is empty")
        if values.size > 1:
            raise NeedleplanError(f"{name} is not a binary mask (it holds {values.size} different labels); give a "
                                  "multi-label map without a name, e.g. --labels PATH")
        carrier = Volume(inside.astype(np.uint8), mask.index_to_world, "LABEL")
        placed = _on_grid(carrier, volume, name, check=len(masks) == 1).voxels > 0
        out[placed] = label
        if not placed.any():
            outside.append(name)
    if not out.any():
        raise NeedleplanError(f"none of {what} overlaps the CT; were they made on this scan?")
    return Volume(out, volume.index_to_world, "LABEL", {"source": what, "convention": "verse"}), _outside_note(outside)


def _on_grid(labels: Volume, volume: Volume, name: str, check: bool = True) -> Volume:
    """Labels resampled (nearest) onto the CT's grid; with ``check``, refused when none of them lands in the CT."""
    same = labels.shape == volume.shape and np.allclose(labels.index_to_world, volume.index_to_world, atol=1e-3)
    placed = labels if same else labels.resample(volume.index_to_world, volume.shape, order=0)
    if check and not placed.voxels.any():
        (low, high), (ct_low, ct_high) = _box_mm(labels), _box_mm(volume)
        overlap = bool(np.all(low < ct_high) and np.all(ct_low < high))
        where = ("none of its labelled voxels falls inside the CT" if overlap else
                 f"its box {_mm(low)}..{_mm(high)} does not overlap the CT's {_mm(ct_low)}..{_mm(ct_high)} (LPS mm)")
        raise NeedleplanError(f"{name} does not fit this CT: {where}; were these labels made on this scan?")
    return Volume(np.asarray(placed.voxels, dtype=np.uint8), volume.index_to_world, "LABEL",
                  {"source": name, "convention": "verse"})


def _outside_note(outside: list[str]) -> list[str]:
    """A note naming the structures of the labels that fall outside the CT (e.g. labels of a larger scan)."""
    return [f"outside this CT, so left out: {', '.join(outside)}"] if outside else []


def _whole_ids(found: Volume, name: str) -> np.ndarray:
    voxels = np.asarray(found.voxels)
    if voxels.dtype.kind == "f" and not np.all(voxels == np.rint(voxels)):
        raise NeedleplanError(f"{name} holds fractional values, not label ids")
    ids = np.rint(voxels).astype(np.int64) if voxels.dtype.kind == "f" else voxels.astype(np.int64)
    if ids.min() < 0:
        raise NeedleplanError(f"{name} holds negative values, not label ids")
    return ids


def _named_id(name: str) -> int:
    label = mask_id(str(name))
    if label is None:
        raise NeedleplanError(f"unknown structure name {name!r} for a mask; use a level ({LEVEL_ORDER[0]}-"
                              f"{LEVEL_ORDER[-2]}, S1), sacrum, hip_left or hip_right")
    return label


def _mask_volume(mask: str | os.PathLike | Volume) -> Volume:
    if isinstance(mask, Volume):
        return mask
    path = Path(mask)
    if not path.is_file():
        raise InputNotFoundError(f"mask {describe_path(path)} does not exist; check the path")
    return read_image_file(path, modality="LABEL")


def _source(mask: str | os.PathLike | Volume, name: str) -> str:
    return f"the {name} mask Volume" if isinstance(mask, Volume) else f"the {name} mask {describe_path(mask)}"


def _stem(path: Path) -> str:
    name = path.name
    return next(name[:-len(suffix)] for suffix in IMAGE_FILE_SUFFIXES if name.lower().endswith(suffix))


def _box_mm(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest LPS corner of the box around a grid's voxels (their outer edges)."""
    size = np.array(volume.size_xyz, dtype=np.float64)
    corners = np.array([[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                        for k in (-0.5, size[2] - 0.5)])
    world = volume.index_to_world_points(corners)
    return world.min(axis=0), world.max(axis=0)


def _mm(point: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in point) + ")"
