"""The detector's rays expressed in a volume's continuous index space: what every backend consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .carm import CArm


@dataclass(frozen=True, eq=False)
class DetectorRays:
    """Source and pixel grid of a posed C-arm, in world mm and in one volume's (i, j, k) index space.

    Pixel (r, c) has its centre at ``origin + c * col_step + r * row_step`` in either space; the ray runs from
    the source to that centre. ``field`` marks the pixels inside the collimated field.
    """

    source_ijk: np.ndarray
    origin_ijk: np.ndarray
    col_step_ijk: np.ndarray
    row_step_ijk: np.ndarray
    source_mm: np.ndarray
    origin_mm: np.ndarray
    col_step_mm: np.ndarray
    row_step_mm: np.ndarray
    field: np.ndarray

    @classmethod
    def from_carm(cls, carm: CArm, world_to_index: np.ndarray) -> "DetectorRays":
        """Rays of ``carm`` (isocentre set) in the index space given by a 4x4 world-to-index affine."""
        linear, shift = world_to_index[:3, :3], world_to_index[:3, 3]
        origin, col_step, row_step = carm.detector_grid_mm()
        source = carm.source_mm
        return cls(
            source_ijk=linear @ source + shift,
            origin_ijk=linear @ origin + shift,
            col_step_ijk=linear @ col_step,
            row_step_ijk=linear @ row_step,
            source_mm=source,
            origin_mm=origin,
            col_step_mm=col_step,
            row_step_mm=row_step,
            field=carm.field_mask(),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.field.shape

    def kernel_arguments(self) -> tuple:
        """The eight float64 3-vectors and the field mask, in the order the CPU kernels take them."""
        vectors = (self.source_ijk, self.origin_ijk, self.col_step_ijk, self.row_step_ijk, self.source_mm,
                   self.origin_mm, self.col_step_mm, self.row_step_mm)
        return (*(np.ascontiguousarray(v, dtype=np.float64) for v in vectors), self.field)
