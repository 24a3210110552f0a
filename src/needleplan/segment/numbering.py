"""Naming the vertebrae: anchored on the sacrum, or on the last rib-bearing vertebra (T12), with a confidence.

Transitional anatomy is reported, not hidden: six rib-free vertebrae above the sacrum are named L1-L6, four
are named L1-L4 with a note (sacralised L5 or a lumbar-type T12 cannot be told apart on CT alone), and a
disagreement between the two anchors lowers the confidence and says what each anchor says and which was used.
Every anchor looked for is reported in ``Numbering.anchors`` with what it found.
"""

from __future__ import annotations

from ..anatomy import LEVEL_ORDER, Numbering

#: The last rib-bearing vertebra alone, with a rib-free one below it, names the levels; no second anchor checks
#: the count, so planning (which needs 0.7 by default) asks the user to confirm.
RIBS_ALONE_CONFIDENCE = 0.65

_ABOVE_SACRUM = ("L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10", "T9", "T8", "T7", "T6", "T5", "T4", "T3", "T2",
                 "T1", "C7", "C6", "C5", "C4", "C3", "C2", "C1")


def _upward(lowest: str, count: int) -> list[str]:
    """``count`` level names, cranial first, ending at ``lowest`` (standard 12 thoracic and 5 lumbar levels)."""
    order = [name for name in LEVEL_ORDER if name not in ("T13", "L6", "S1")]
    end = order.index(lowest)
    start = end - count + 1
    if start < 0:
        raise ValueError("more vertebrae than levels above the anchor")
    return order[start:end + 1]


def name_levels(count: int, has_sacrum: bool, ribs: list[bool]) -> tuple[list[str], Numbering]:
    """Names for ``count`` vertebrae, cranial first (the last one is the sacrum when ``has_sacrum``).

    Parameters
    ----------
    count : int
        Number of vertebrae found, including the sacrum when present.
    has_sacrum : bool
        Whether the lowest one is the sacrum.
    ribs : list of bool
        For each vertebra, whether ribs articulate with it.

    Returns
    -------
    names : list of str
    numbering : Numbering
    """
    rib_levels = [n for n, has in enumerate(ribs) if has]
    last_rib = rib_levels[-1] if rib_levels else None
    names, numbering = _named(count, has_sacrum, last_rib)
    numbering.anchors.update(_anchors(count, has_sacrum, last_rib))
    return names, numbering


def _anchors(count: int, has_sacrum: bool, last_rib: int | None) -> dict[str, str]:
    """What each anchor looked for said, in words (:attr:`needleplan.anatomy.Numbering.anchors`)."""
    out = {"sacrum": "found; the vertebra above it is L5" if has_sacrum else "not in view"}
    if last_rib is None:
        out["ribs"] = "no rib-bearing vertebra in view"
    else:
        below = count - 1 - last_rib - (1 if has_sacrum else 0)
        out["ribs"] = (f"last rib-bearing vertebra found ({last_rib + 1} of {count} from the top), taken as T12; "
                       f"{below} rib-free vertebrae below it")
    out["first rib"] = "not looked for: the first rib (T1) and C7 are not detected yet"
    return out


def _named(count: int, has_sacrum: bool, last_rib: int | None) -> tuple[list[str], Numbering]:
    """Names and numbering from the sacrum and the last rib-bearing vertebra (index from the top, or None)."""
    if has_sacrum:
        lumbar_type = count - 1 - (last_rib + 1 if last_rib is not None else 0)
        notes: list[str] = []
        if last_rib is None:
            confidence = 0.85
            names = [*reversed(_ABOVE_SACRUM[:count - 1]), "S1"]
            notes.append("anchored on the sacrum; no rib-bearing vertebra in view to confirm the count")
            return names, Numbering("sacrum", confidence, notes)
        if lumbar_type == 5:
            names = [*reversed(_ABOVE_SACRUM[:count - 1]), "S1"]
            notes.append("sacrum and the last rib-bearing vertebra (T12) agree: five lumbar vertebrae")
            return names, Numbering("sacrum+ribs", 0.97, notes)
        if lumbar_type == 6:
            lumbar = [f"L{n}" for n in range(1, 7)]
            thoracic = _upward("T12", count - 7)
            notes.append("sacrum says L5, ribs say L6: six rib-free vertebrae above the sacrum: transitional anatomy, "
                         "the lowest is named L6; confirm the count on a full-spine image before treating")
            return [*thoracic, *lumbar, "S1"], Numbering("sacrum+ribs", 0.6, notes)
        names = [*reversed(_ABOVE_SACRUM[:count - 1]), "S1"]
        ribs_say = f"L{lumbar_type}" if lumbar_type else "T12"
        notes.append(f"sacrum says L5, ribs say {ribs_say}: only {lumbar_type} rib-free vertebrae above the "
                     "sacrum: a sacralised L5, lumbar ribs or a missed rib; named from the sacrum; confirm the count "
                     "before treating")
        return names, Numbering("sacrum", 0.5, notes)
    if last_rib is not None:
        names = [*_upward("T12", last_rib + 1), *[f"L{n}" for n in range(1, count - last_rib)]]
        notes = ["no sacrum in view: anchored on the last rib-bearing vertebra, taken as T12 (twelve rib pairs "
                 "assumed: a thirteenth pair, hypoplastic twelfth ribs or lumbar ribs would shift every name; "
                 "confirm the level before treating)"]
        confidence = RIBS_ALONE_CONFIDENCE
        if last_rib == count - 1:
            notes.append("no rib-free vertebra below it is in view, so it could be a higher thoracic level")
            confidence = 0.4
        return names[:count], Numbering("ribs", confidence, notes)
    names = [*reversed(_ABOVE_SACRUM[:count])]
    return names, Numbering("none", 0.2, ["neither the sacrum nor a rib-bearing vertebra is in view: the lowest "
                                          "vertebra was assumed to be L5; do not rely on these names"])
