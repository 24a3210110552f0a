"""Vertebra segmentation, numbering and landmarks: ``segment(volume) -> Spine``.

The default engine is classical image analysis (no model weights, no network): bone and body masks with
thresholds that adapt to the scan, a spine curve tracked through the vertebral canal, discs found on planes
perpendicular to that curve, a marker-controlled watershed that splits the bone into vertebrae, sacrum and
ilia, numbering anchored on the sacrum (or the last rib-bearing vertebra), and landmarks measured on each
vertebra's own mask in its own frame. MRI gets the curve, discs, bodies and canal (:mod:`.mri`).
"""

from __future__ import annotations

from typing import Any

from ..anatomy import Spine
from ..errors import NeedleplanError
from ..volume import Volume
from .user_labels import UserLabels, read_user_labels

__all__ = ["segment"]

ENGINES = ("classical", "totalsegmentator")


def segment(volume: Volume, *, engine: str = "classical",
            labels: UserLabels | None = None, convention: str = "auto", anchors: dict[str, Any] | None = None) -> Spine:
    """Find, number and measure the vertebrae of a spine CT or MRI.

    Parameters
    ----------
    volume : Volume
        A CT (HU) or MR volume; any orientation and spacing.
    engine : {"classical", "totalsegmentator"}
        What makes the bone masks. "totalsegmentator" needs the ``totalsegmentator`` package and its weights
        installed; the landmarks are derived the same way.
    labels : path, Volume or dict, optional
        The user's own vertebra labels instead of an engine (:func:`.user_labels.read_user_labels`): a label
        file, a Volume of modality LABEL, a TotalSegmentator output folder, or ``{"T12": mask_file}``. Their
        names are taken as confirmed levels (numbering anchor "labels").
    convention : {"auto", "totalseg", "verse"}
        The ids of a ``labels`` file or Volume: TotalSegmentator v2 ``total`` ids, VerSe ids, or decided from
        the ids present.
    anchors : dict of str to (3,) array-like, optional
        Levels the user knows: name -> a world point (LPS mm) inside that vertebra (``{"L3": (x, y, z)}``), or a
        disc name -> a point on the disc (``{"T9-T10": (x, y, z)}``). The levels are then named by counting from
        them and marked confirmed (:func:`needleplan.levels.renumber`).

    Returns
    -------
    Spine
    """
    if engine not in ENGINES:
        raise NeedleplanError(f"unknown segmentation engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if not isinstance(volume, Volume):
        raise NeedleplanError(f"segment() needs a needleplan Volume (from npl.load), got {type(volume).__name__}")
    from .ct import segment_ct, spine_from_labels

    if labels is not None:
        if engine != "classical":
            raise NeedleplanError(f"give either your own labels or engine={engine!r}, not both")
        spine = spine_from_labels(volume, *read_user_labels(labels, volume, convention), engine="user labels")
    elif volume.modality == "MR":
        from .mri import segment_mri

        spine = segment_mri(volume)
    elif engine == "totalsegmentator":
        from .totalseg_engine import totalseg_masks, totalseg_numbering

        spine = spine_from_labels(volume, totalseg_masks(volume), totalseg_numbering(), engine=engine)
    else:
        spine = segment_ct(volume)
    return spine.renumber(anchors) if anchors else spine
