"""C-arm geometry: pose, projection matrix, pixel rays and point projection.

The patient lies prone. At oblique = tilt = 0 (the AP view) the source is under the table (anterior, world -y)
and the detector is over the back (posterior, +y). ``oblique > 0`` rotates the detector toward the patient's
left (+x); ``tilt > 0`` moves it toward the feet (-z, caudal tilt). The detector direction is

    d = (sin(oblique) cos(tilt), cos(oblique) cos(tilt), -sin(tilt))

i.e. the tilt is applied in the plane of the C after it has been rotated by the oblique angle, as on a real C-arm.

The image is shown as the operator sees the patient's back: in the AP view the head is at the top (rows grow
toward the feet) and the patient's left is on the image's left (columns grow toward the patient's right). The
detector axes turn with the C-arm, so the image stays continuous as the pose changes. Pixel (row, col) has its
centre at ``detector_center + (col - (cols-1)/2) * pixel_u * u + (row - (rows-1)/2) * pixel_v * v``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple, cast

import numpy as np


class Projection(NamedTuple):
    """World points projected onto the detector: pixel coordinates and depth."""

    col: np.ndarray
    """Column coordinate in pixels (pixel centres are integers), shape (N,)."""
    row: np.ndarray
    """Row coordinate in pixels, shape (N,)."""
    depth_mm: np.ndarray
    """Distance from the source along the central ray, shape (N,); <= 0 means behind the source."""


def _pair(value: float | tuple[float, float], what: str) -> tuple[float, float]:
    pair = tuple(float(v) for v in np.broadcast_to(np.asarray(value, dtype=np.float64), (2,)))
    if not all(np.isfinite(pair)) or min(pair) <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class CArm:
    """A C-arm pose and its imaging chain.

    Parameters
    ----------
    oblique : float
        Degrees of rotation about the patient's cranio-caudal axis; > 0 turns the detector toward the patient's
        left. 90 is a lateral view with the detector on the left.
    tilt : float
        Degrees of rotation about the left-right axis (in the plane of the C); > 0 is caudal tilt (detector
        toward the feet, beam running cephalad).
    isocenter : array-like (3,) or None
        World LPS point the central ray passes through; None means "the rendered volume's centre" and is
        filled in by :func:`needleplan.render`.
    source_to_detector_mm : float
        Source to detector plane distance (SID).
    source_to_isocenter_mm : float
        Source to isocentre distance (SOD); must be smaller than SID.
    detector_size_mm : float or (width, height)
        Physical size of the active detector area.
    detector_pixels : int or (rows, cols)
        Pixel count; the pixel pitch is the size divided by the count on each axis.
    collimator_diameter_mm : float or None
        Diameter, on the detector, of a circular field (image-intensifier look); None: the whole detector.
    table_offset_mm : array-like (3,)
        Displacement of the table, with the patient on it, relative to the C-arm (LPS mm). Moving the table by
        t moves the beam's isocentre in the patient by -t.
    """

    oblique: float = 0.0
    tilt: float = 0.0
    isocenter: np.ndarray | None = field(default=None, repr=False)
    source_to_detector_mm: float = 1000.0
    source_to_isocenter_mm: float = 600.0
    detector_size_mm: float | tuple[float, float] = 300.0
    detector_pixels: int | tuple[int, int] = 512
    collimator_diameter_mm: float | None = None
    table_offset_mm: np.ndarray = field(default_factory=lambda: np.zeros(3), repr=False)

    def __post_init__(self) -> None:
        for name in ("oblique", "tilt"):
            value = float(getattr(self, name))
            if not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number of degrees, got {value!r}")
            object.__setattr__(self, name, value)
        if not -90.0 <= self.tilt <= 90.0:
            raise ValueError(f"tilt must be within -90..90 degrees, got {self.tilt:g}")
        if self.isocenter is not None:
            object.__setattr__(self, "isocenter", _point(self.isocenter, "isocenter"))
        object.__setattr__(self, "table_offset_mm", _point(self.table_offset_mm, "table_offset_mm"))
        sid, sod = float(self.source_to_detector_mm), float(self.source_to_isocenter_mm)
        if not (np.isfinite(sid) and np.isfinite(sod) and 0 < sod < sid):
            raise ValueError(f"need 0 < source_to_isocenter_mm ({sod:g}) < source_to_detector_mm ({sid:g})")
        object.__setattr__(self, "source_to_detector_mm", sid)
        object.__setattr__(self, "source_to_isocenter_mm", sod)
        object.__setattr__(self, "detector_size_mm", _pair(self.detector_size_mm, "detector_size_mm"))
        pixels = np.broadcast_to(np.asarray(self.detector_pixels), (2,))
        if not np.all(np.equal(np.mod(pixels, 1), 0)) or pixels.min() < 1 or pixels.max() > 8192:
            raise ValueError(f"detector_pixels must be whole numbers in 1..8192, got {self.detector_pixels!r}")
        object.__setattr__(self, "detector_pixels", (int(pixels[0]), int(pixels[1])))
        if self.collimator_diameter_mm is not None:
            diameter = float(self.collimator_diameter_mm)
            if not np.isfinite(diameter) or diameter <= 0:
                raise ValueError(f"collimator_diameter_mm must be positive, got {self.collimator_diameter_mm!r}")
            object.__setattr__(self, "collimator_diameter_mm", diameter)

    # ---- named views ------------------------------------------------------------------------------------------
    @classmethod
    def ap(cls, **kwargs) -> "CArm":
        """The reference AP view of a prone patient (source under the table)."""
        return cls(oblique=0.0, tilt=kwargs.pop("tilt", 0.0), **kwargs)

    @classmethod
    def lateral(cls, side: str = "left", **kwargs) -> "CArm":
        """A lateral view with the detector on the patient's ``side`` ("left" or "right")."""
        return cls(oblique=_side_sign(side) * 90.0, **kwargs)

    @classmethod
    def oblique_view(cls, side: str, angle_deg: float, **kwargs) -> "CArm":
        """An oblique view rotated ``angle_deg`` with the detector toward the patient's ``side``."""
        return cls(oblique=_side_sign(side) * float(angle_deg), **kwargs)

    @classmethod
    def coaxial(cls, direction: np.ndarray, **kwargs) -> "CArm":
        """The view in which a needle advancing along ``direction`` (world vector) projects as a dot.

        The view direction (detector toward source) is made parallel to ``direction``; the isocentre defaults
        to None (pass the needle's target as ``isocenter=`` to centre it). Directions that need more than 90
        degrees of tilt cannot be reached and raise ValueError.
        """
        axis = np.asarray(direction, dtype=np.float64).reshape(3)
        norm = np.linalg.norm(axis)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("coaxial view needs a non-zero direction")
        beam = -axis / norm  # source -> detector
        tilt = float(np.degrees(np.arcsin(np.clip(-beam[2], -1.0, 1.0))))
        horizontal = np.hypot(beam[0], beam[1])
        oblique = float(np.degrees(np.arctan2(beam[0], beam[1]))) if horizontal > 1e-12 else 0.0
        return cls(oblique=oblique, tilt=tilt, **kwargs)

    def replace(self, **changes) -> "CArm":
        """A copy with some parameters changed (``dataclasses.replace``)."""
        return replace(self, **changes)

    # ---- frame ------------------------------------------------------------------------------------------------
    @property
    def rotation(self) -> np.ndarray:
        """3x3 matrix whose rows are the detector axes u (columns), v (rows) and the beam direction d."""
        a, b = np.radians(self.oblique), np.radians(self.tilt)
        sa, ca, sb, cb = np.sin(a), np.cos(a), np.sin(b), np.cos(b)
        u = np.array([-ca, sa, 0.0])
        v = np.array([-sa * sb, -ca * sb, -cb])
        d = np.array([sa * cb, ca * cb, -sb])
        return np.stack([u, v, d])

    @property
    def beam_direction(self) -> np.ndarray:
        """Unit vector from the source toward the detector (LPS)."""
        return self.rotation[2]

    @property
    def view_direction(self) -> np.ndarray:
        """Unit vector from the detector toward the source; a needle advancing along it is seen as a dot."""
        return -self.rotation[2]

    def _isocenter_in_patient(self) -> np.ndarray:
        if self.isocenter is None:
            raise ValueError("this CArm has no isocenter yet; give one, or let render() use the volume centre")
        return self.isocenter - self.table_offset_mm

    @property
    def source_mm(self) -> np.ndarray:
        """X-ray focal spot in world LPS mm."""
        return self._isocenter_in_patient() - self.source_to_isocenter_mm * self.beam_direction

    @property
    def detector_center_mm(self) -> np.ndarray:
        """Centre of the detector plane in world LPS mm."""
        return self.source_mm + self.source_to_detector_mm * self.beam_direction

    @property
    def detector_rows_cols(self) -> tuple[int, int]:
        """``detector_pixels`` as every C-arm holds it once made: (rows, cols)."""
        return cast(tuple[int, int], self.detector_pixels)  # __post_init__ turned an int into the pair

    @property
    def detector_width_height_mm(self) -> tuple[float, float]:
        """``detector_size_mm`` as every C-arm holds it once made: (width, height)."""
        return cast(tuple[float, float], self.detector_size_mm)  # __post_init__ turned a float into the pair

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """Pixel pitch (along u, along v) in mm on the detector."""
        rows, cols = self.detector_rows_cols
        width, height = self.detector_width_height_mm
        return width / cols, height / rows

    @property
    def magnification(self) -> float:
        """Geometric magnification at the isocentre (SID / SOD)."""
        return self.source_to_detector_mm / self.source_to_isocenter_mm

    # ---- projection -------------------------------------------------------------------------------------------
    @property
    def intrinsics(self) -> np.ndarray:
        """3x3 camera matrix K: focal lengths in pixels and the principal point (the detector centre)."""
        rows, cols = self.detector_rows_cols
        pixel_u, pixel_v = self.pixel_mm
        sid = self.source_to_detector_mm
        return np.array([[sid / pixel_u, 0.0, (cols - 1) / 2.0], [0.0, sid / pixel_v, (rows - 1) / 2.0],
                         [0.0, 0.0, 1.0]])

    @property
    def projection_matrix(self) -> np.ndarray:
        """3x4 matrix P with P @ (x, y, z, 1) = w * (col, row, 1), w the depth in mm from the source.

        ``P = K [R | -R s]`` with R the rows (u, v, d) of :attr:`rotation` and s the source. R is a reflection
        (det -1) because the image is shown as seen from behind the detector.
        """
        rotation = self.rotation
        return self.intrinsics @ np.hstack([rotation, -(rotation @ self.source_mm)[:, None]])

    def project(self, points_mm: np.ndarray) -> Projection:
        """Project world points (N, 3) or (3,) to pixel coordinates and depth."""
        points = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        if points.shape[-1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {points.shape}")
        homogeneous = np.hstack([points, np.ones((len(points), 1))]) @ self.projection_matrix.T
        depth = homogeneous[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            col, row = homogeneous[:, 0] / depth, homogeneous[:, 1] / depth
        return Projection(col, row, depth)

    def on_detector(self, projection: Projection) -> np.ndarray:
        """Boolean (N,): in front of the source, within the pixel grid and inside the collimated field."""
        rows, cols = self.detector_rows_cols
        col, row = projection.col, projection.row
        with np.errstate(invalid="ignore"):
            inside = ((projection.depth_mm > 0) & (col >= -0.5) & (col <= cols - 0.5) & (row >= -0.5)
                      & (row <= rows - 0.5))
        if self.collimator_diameter_mm is not None:
            pixel_u, pixel_v = self.pixel_mm
            radius = np.hypot((col - (cols - 1) / 2) * pixel_u, (row - (rows - 1) / 2) * pixel_v)
            inside &= radius <= self.collimator_diameter_mm / 2
        return inside

    def field_mask(self) -> np.ndarray:
        """Boolean (rows, cols): pixels inside the collimated field (all True without collimation)."""
        rows, cols = self.detector_rows_cols
        if self.collimator_diameter_mm is None:
            return np.ones((rows, cols), dtype=bool)
        pixel_u, pixel_v = self.pixel_mm
        du = (np.arange(cols) - (cols - 1) / 2) * pixel_u
        dv = (np.arange(rows) - (rows - 1) / 2) * pixel_v
        return np.hypot(du[None, :], dv[:, None]) <= self.collimator_diameter_mm / 2

    def pixel_centers_mm(self) -> np.ndarray:
        """World position of every pixel centre, shape (rows, cols, 3)."""
        origin, step_col, step_row = self.detector_grid_mm()
        rows, cols = self.detector_rows_cols
        return (origin + np.arange(rows)[:, None, None] * step_row + np.arange(cols)[None, :, None] * step_col)

    def detector_grid_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre of pixel (0, 0), step to the next column, step to the next row), world mm."""
        rows, cols = self.detector_rows_cols
        pixel_u, pixel_v = self.pixel_mm
        u, v, _ = self.rotation
        origin = self.detector_center_mm - (cols - 1) / 2 * pixel_u * u - (rows - 1) / 2 * pixel_v * v
        return origin, pixel_u * u, pixel_v * v

    def pixel_rays(self) -> tuple[np.ndarray, np.ndarray]:
        """The source (3,) and unit ray directions toward each pixel centre (rows, cols, 3)."""
        rays = self.pixel_centers_mm() - self.source_mm
        return self.source_mm, rays / np.linalg.norm(rays, axis=-1, keepdims=True)

    # ---- words ------------------------------------------------------------------------------------------------
    def describe(self) -> str:
        """The pose in words, e.g. "25 degrees left oblique, 10 degrees caudal"."""
        parts = []
        if round(self.oblique, 1) == 0:
            parts.append("AP")
        else:
            side = "left" if self.oblique > 0 else "right"
            parts.append(f"{abs(self.oblique):.0f} degrees {side} oblique")
        if round(self.tilt, 1) != 0:
            parts.append(f"{abs(self.tilt):.0f} degrees {'caudal' if self.tilt > 0 else 'cephalad'}")
        return ", ".join(parts)


def _point(value: np.ndarray, what: str) -> np.ndarray:
    point = np.array(value, dtype=np.float64).reshape(-1)
    if point.shape != (3,) or not np.all(np.isfinite(point)):
        raise ValueError(f"{what} must be a finite 3-vector in LPS mm, got {value!r}")
    point.flags.writeable = False
    return point


def _side_sign(side: str) -> float:
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return 1.0 if side == "left" else -1.0
