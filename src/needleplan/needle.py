"""A straight needle: where it is and how thick, shared by the renderer, the planner and the simulator."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NeedleplanError, NeedleplanWarning, describe_path

#: Outer diameter in mm of hypodermic and spinal needles by Birmingham gauge (ISO 9626 nominal values).
GAUGE_OUTER_DIAMETER_MM = {
    16: 1.651,
    18: 1.270,
    20: 0.908,
    21: 0.819,
    22: 0.718,
    23: 0.642,
    25: 0.515,
    26: 0.464,
    27: 0.413,
}


@dataclass(frozen=True, eq=False)
class Needle:
    """A straight steel needle from its hub to its tip, in world LPS millimetres.

    Parameters
    ----------
    tip_mm : array-like, shape (3,)
        The needle point.
    hub_mm : array-like, shape (3,)
        Where the shaft leaves the hub (the end held by the operator).
    gauge : int
        Birmingham gauge, a key of ``GAUGE_OUTER_DIAMETER_MM`` (22 G is the usual spinal needle).
    name : str
        Used to name its keypoints (``"<name>.tip"``, ``"<name>.hub"``).

    The shaft is rendered as a solid steel cylinder (the stylet fills the lumen) with flat ends.
    """

    tip_mm: np.ndarray = field(repr=False)
    hub_mm: np.ndarray = field(repr=False)
    gauge: int = 22
    name: str = "needle"

    def __post_init__(self) -> None:
        tip = np.array(self.tip_mm, dtype=np.float64).reshape(-1)
        hub = np.array(self.hub_mm, dtype=np.float64).reshape(-1)
        if tip.shape != (3,) or hub.shape != (3,) or not (np.all(np.isfinite(tip)) and np.all(np.isfinite(hub))):
            raise ValueError("a needle's tip_mm and hub_mm must be finite 3-vectors (LPS mm)")
        if np.linalg.norm(tip - hub) < 1e-6:
            raise ValueError("a needle's tip and hub must differ")
        if self.gauge not in GAUGE_OUTER_DIAMETER_MM:
            raise ValueError(f"unknown needle gauge {self.gauge!r}; known: {sorted(GAUGE_OUTER_DIAMETER_MM)}")
        tip.flags.writeable = False
        hub.flags.writeable = False
        object.__setattr__(self, "tip_mm", tip)
        object.__setattr__(self, "hub_mm", hub)

    @classmethod
    def from_direction(
        cls, tip_mm: np.ndarray | Sequence[float], direction: np.ndarray | Sequence[float], length_mm: float,
        gauge: int = 22, name: str = "needle"
    ) -> "Needle":
        """A needle of ``length_mm`` whose tip is at ``tip_mm`` and which advances along ``direction``."""
        unit = np.asarray(direction, dtype=np.float64)
        norm = np.linalg.norm(unit)
        if not np.isfinite(norm) or norm == 0 or length_mm <= 0:
            raise ValueError("a needle needs a non-zero direction and a positive length")
        tip = np.asarray(tip_mm, dtype=np.float64)
        return cls(tip, tip - unit / norm * length_mm, gauge, name)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from hub to tip (the direction the needle advances)."""
        axis = self.tip_mm - self.hub_mm
        return axis / np.linalg.norm(axis)

    @property
    def length_mm(self) -> float:
        """Shaft length from hub to tip."""
        return float(np.linalg.norm(self.tip_mm - self.hub_mm))

    @property
    def diameter_mm(self) -> float:
        """Outer diameter from the gauge."""
        return GAUGE_OUTER_DIAMETER_MM[self.gauge]

    def to_dict(self) -> dict:
        """JSON-ready description (the format ``needleplan render --needle-from`` reads)."""
        return {"name": self.name, "tip_mm": self.tip_mm.tolist(), "hub_mm": self.hub_mm.tolist(),
                "gauge": self.gauge}

    @classmethod
    def from_dict(cls, data: dict) -> "Needle":
        """Inverse of :meth:`to_dict`; raises ValueError naming what is missing or wrong."""
        if not isinstance(data, dict):
            raise ValueError("a needle must be a JSON object with tip_mm and hub_mm")
        missing = [key for key in ("tip_mm", "hub_mm") if key not in data]
        if missing:
            raise ValueError(f"a needle needs {' and '.join(missing)}")
        try:
            return cls(data["tip_mm"], data["hub_mm"], int(data.get("gauge", 22)), str(data.get("name", "needle")))
        except (TypeError, ValueError) as error:
            raise ValueError(f"bad needle {data!r}: {error}") from None


def read_needles(path: str | Path) -> list[Needle]:
    """Needles from a JSON file: {"needle": {...}} (a plan), {"needles": [{...}, ...]} or a bare list.

    Each needle is in :meth:`Needle.to_dict` form. Repeated names get "-2", "-3" with a warning, so that their
    keypoints stay apart. Raises NeedleplanError naming the file and what is wrong with it.
    """
    path = Path(path)
    where = describe_path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NeedleplanError(f"needle file {where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedleplanError(f"cannot read needle file {where}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise NeedleplanError(f"needle file {where} is not valid JSON: {exc.msg} at line {exc.lineno} "
                              f"column {exc.colno}") from None
    if isinstance(data, dict) and "needles" in data:
        items = data["needles"]
    elif isinstance(data, dict) and "needle" in data:
        items = [data["needle"]]
    else:
        items = data
    if not isinstance(items, list):
        raise NeedleplanError(f'needle file {where} must hold {{"needle": {{...}}}}, {{"needles": [...]}} or a '
                              "list of needles (each with tip_mm and hub_mm)")
    if not items:
        raise NeedleplanError(f"needle file {where} holds no needles")
    needles = []
    for number, item in enumerate(items, start=1):
        try:
            needles.append(Needle.from_dict(item))
        except ValueError as exc:
            raise NeedleplanError(f"needle file {where}, needle {number}: {exc}") from None
    return _unique_names(needles)


def _unique_names(needles: list[Needle]) -> list[Needle]:
    """Rename repeated needle names ("needle", "needle-2", ...) so that their keypoints stay apart."""
    seen: dict[str, int] = {}
    unique = []
    for needle in needles:
        count = seen[needle.name] = seen.get(needle.name, 0) + 1
        if count > 1:
            renamed = f"{needle.name}-{count}"
            warnings.warn(f"two needles are named {needle.name!r}; calling the second one {renamed!r}",
                          NeedleplanWarning, stacklevel=2)
            needle = dataclasses.replace(needle, name=renamed)
        unique.append(needle)
    return unique
