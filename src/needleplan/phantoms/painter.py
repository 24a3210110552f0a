"""The painter's list under construction, with bones kept as cortical shells around cancellous cores.

Every bone is a cortical shell around a cancellous core: all shells of a bone are painted before all its cores,
so the inside of a union of pieces is cancellous and only its outside is cortical.
"""

from __future__ import annotations

from .shapes import ConvexSolid, Part


class Painter:
    """Collects parts: shells and cores of one bone are kept apart until the bone is finished."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._shells: list[Part] = []
        self._cores: list[Part] = []

    def add(self, solid: ConvexSolid, material: str, label: int, structure: str) -> None:
        self.parts.append(Part(solid, material, label, structure))

    def bone(self, solid: ConvexSolid, label: int, structure: str, shell_mm: float) -> None:
        self._shells.append(Part(solid, "cortical", label, structure))
        self._cores.append(Part(solid.shrunk(shell_mm), "cancellous", label, structure))

    def finish_bone(self) -> list[Part]:
        """Append the pending shells, then the pending cores; return the shells."""
        shells = self._shells
        self.parts.extend(shells + self._cores)
        self._shells, self._cores = [], []
        return shells
