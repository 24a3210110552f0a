"""A straight needle: where it is and how thick, shared by the renderer, the planner and the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Outer diameter in mm of hypodermic and spinal needles by Birmingham gauge (ISO 9626 nominal values).
GAUGE_OUTER_DIAMETER_MM = {
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
        cls, tip_mm: np.ndarray, direction: np.ndarray, length_mm: float, gauge: int = 22, name: str = "needle"
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
