"""Label id conventions of the user's own label maps: TotalSegmentator v2 ``total`` ids or VerSe ids.

Both are read into our label ids (:data:`needleplan.anatomy.VERSE_IDS`, 26 the whole sacrum, and
:data:`needleplan.anatomy.ILIUM_IDS`). "auto" decides from the ids present (:func:`choose_convention`) and refuses
to guess when both readings are plausible and differ.
"""

from __future__ import annotations

import numpy as np

from ..anatomy import ILIUM_IDS, TOTALSEG_HIP_IDS, TOTALSEG_IDS, TOTALSEG_SACRUM, VERSE_IDS, from_totalseg
from ..errors import NeedleplanError

CONVENTIONS = ("auto", "totalseg", "verse")
#: Ids a VerSe label map may hold: vertebrae and sacrum, 27 the coccyx (not used here), and our ilia.
VERSE_KNOWN = frozenset({*VERSE_IDS.values(), 27, *ILIUM_IDS.values()})
#: TotalSegmentator ids of the structures read from its maps; its other structures (organs, ribs...) are ignored.
TOTALSEG_SPINE = frozenset({*TOTALSEG_IDS.values(), TOTALSEG_SACRUM, *TOTALSEG_HIP_IDS.values()})


def mask_id(name: str) -> int | None:
    """Our label id of a structure named like a level ("L4", "S1"), "sacrum", "ilium_left", or as TotalSegmentator
    names its masks ("vertebrae_L4", "hip_left"); None for any other name (organs, ribs, femurs...)."""
    key = name.lower()
    level = key.removeprefix("vertebrae_").upper()
    if level in VERSE_IDS:
        return VERSE_IDS[level]
    if key == "sacrum":
        return VERSE_IDS["S1"]
    side = key.removeprefix("hip_").removeprefix("ilium_")
    return ILIUM_IDS[side] if side != key and side in ILIUM_IDS else None


def totalseg_mask_id(name: str) -> int | None:
    """Our label id of a mask TotalSegmentator writes ("vertebrae_L4", "sacrum", "hip_left"); None for its other
    structures, and for any file it does not write (a scan named "t2.nii.gz" is not the T2 vertebra)."""
    level = name.removeprefix("vertebrae_")
    if level in TOTALSEG_IDS and level != name or name in ("sacrum", "hip_left", "hip_right"):
        return mask_id(name)
    return None


def to_our_ids(ids: np.ndarray, convention: str) -> np.ndarray:
    """A label array in ``convention`` ("totalseg" or "verse") -> our ids (uint8); unused structures become 0.

    Raises
    ------
    NeedleplanError
        "verse" ids that VerSe does not define.
    """
    if convention == "totalseg":
        return from_totalseg(ids)
    unknown = sorted(set(np.unique(ids).tolist()) - VERSE_KNOWN - {0})
    if unknown:
        raise NeedleplanError(f"ids {_listed(unknown)} are not VerSe ids (1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, "
                              "26 sacrum, 28 T13); if these are TotalSegmentator ids, use the totalseg convention")
    kept = np.isin(ids, [*VERSE_IDS.values(), *ILIUM_IDS.values()])
    return np.where(kept, ids, 0).astype(np.uint8)


def choose_convention(ids: set[int]) -> tuple[str, str]:
    """Decide from the ids present whether a label map holds TotalSegmentator or VerSe ids.

    Parameters
    ----------
    ids : set of int
        The nonzero ids of the map.

    Returns
    -------
    (convention, reason) : (str, str)
        "totalseg" or "verse", and why, in words.

    Raises
    ------
    NeedleplanError
        A binary mask (only id 1), ids that name no vertebra in either convention, or ids that both conventions
        read as a spine, differently (only TotalSegmentator's 25-28 and VerSe's 25-28, e.g. {26, 28}).
    """
    if ids == {1}:
        raise NeedleplanError("it holds a single structure with id 1: a binary mask; say which level it is, "
                              "e.g. labels={'T12': path} or --labels T12=path")
    not_verse = sorted(ids - VERSE_KNOWN)
    if not_verse:
        if not ids & TOTALSEG_SPINE:
            raise NeedleplanError(f"its ids ({_listed(sorted(ids))}) name no vertebra, sacrum or hip in "
                                  "TotalSegmentator's or VerSe's ids; for a binary mask say which level it is, "
                                  "e.g. --labels T12=path")
        return "totalseg", f"ids {_listed(not_verse)} are not VerSe ids"
    if not ids & TOTALSEG_SPINE:
        return "verse", "every id is a VerSe id and none is a TotalSegmentator vertebra, sacrum or hip id"
    present = np.array(sorted(ids))
    if np.array_equal(to_our_ids(present, "verse"), from_totalseg(present)):
        return "verse", "its ids mean the same levels in VerSe's and TotalSegmentator's ids"
    others = sorted(ids - TOTALSEG_SPINE)
    if others:
        return "verse", (f"ids {_listed(others)} name vertebrae or ilia in VerSe's ids but organs or vessels in "
                         "TotalSegmentator's, whose maps of a spine also hold ids above 28 (aorta, spinal cord, "
                         "hips)")
    raise NeedleplanError(f"its ids ({_listed(sorted(ids))}) are vertebrae in both TotalSegmentator's and VerSe's "
                          "ids, with different names; say which: convention='totalseg' or 'verse' "
                          "(--labels-convention)")


def _listed(ids: list[int]) -> str:
    """Ids in words, at most eight of them: "25, 26, 27 ... 117"."""
    shown = [str(i) for i in ids]
    return ", ".join(shown if len(shown) <= 8 else [*shown[:6], "...", shown[-1]])
