"""render(): a CT volume, a posed C-arm and optional needles and labels -> a simulated fluoroscopy image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..attenuation import FLUORO_EFFECTIVE_KEV, fluoroscopy_coefficients
from ..errors import NeedleplanError
from ..needle import Needle
from ..volume import Volume
from .backends import get_backend
from .carm import CArm
from .display import Display, display_image
from .exposure import Exposure, detected_intensity
from .kernels import METHODS
from .needles import needle_chords_mm
from .rays import DetectorRays

_MAX_LABEL_ID = 65535
#: Default exposure and display: exact noise-free intensities, window from the image's own percentiles.
NOISE_FREE = Exposure()
AUTO_WINDOW = Display()


class Keypoint(NamedTuple):
    """A world point as seen on the image."""

    col: float
    """Column in pixels (pixel centres are whole numbers)."""
    row: float
    """Row in pixels."""
    depth_mm: float
    """Distance from the source along the central ray."""
    visible: bool
    """In front of the source, on the detector and inside the collimated field."""


@dataclass(eq=False)
class Fluoro:
    """A simulated fluoroscopy image with its geometry and labels.

    Attributes
    ----------
    line_integral : ndarray (rows, cols) float32
        Integral of linear attenuation along each pixel's ray (dimensionless), needles included; NaN off-field.
    intensity : ndarray (rows, cols) float32
        Detected I / I0 after scatter, blur and noise (0 off-field).
    display : ndarray (rows, cols) float32
        Monitor brightness in [0, 1]: bone and metal dark unless the display was inverted; black off-field.
    carm : CArm
        The pose and imaging chain used, isocentre and pixel count filled in.
    keypoints : dict of str to Keypoint
        Projected points: the ``points`` given to render and each needle's "<name>.tip" and "<name>.hub".
    label_ids : tuple of int
        Label values of the channels of ``label_path_mm``.
    label_path_mm : ndarray (len(label_ids), rows, cols) float32 or None
        mm each ray travels through each label (DiffDRR-style channels).
    window : (float, float)
        Attenuation window used for the display.
    """

    line_integral: np.ndarray
    intensity: np.ndarray
    display: np.ndarray
    carm: CArm
    keypoints: dict[str, Keypoint] = field(default_factory=dict)
    label_ids: tuple[int, ...] = ()
    label_path_mm: np.ndarray | None = None
    window: tuple[float, float] = (0.0, 1.0)

    @property
    def projection_matrix(self) -> np.ndarray:
        """3x4 world-to-pixel projection (see :attr:`CArm.projection_matrix`)."""
        return self.carm.projection_matrix

    @property
    def field(self) -> np.ndarray:
        """Boolean (rows, cols): pixels inside the collimated field."""
        return self.carm.field_mask()

    def label_masks(self, min_path_mm: float = 1.0) -> dict[int, np.ndarray]:
        """Boolean projected mask per label id: rays that travel at least ``min_path_mm`` through the label."""
        if self.label_path_mm is None:
            return {}
        return {label: self.label_path_mm[index] >= min_path_mm for index, label in enumerate(self.label_ids)}


def render(
    volume: Volume,
    carm: CArm | None = None,
    *,
    size: int | tuple[int, int] | None = None,
    needles: Sequence[Needle] = (),
    labels: Volume | None = None,
    label_ids: Sequence[int] | None = None,
    points: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    method: str = "joseph",
    step_voxels: float = 1.0,
    energy_kev: float = FLUORO_EFFECTIVE_KEV,
    exposure: Exposure = NOISE_FREE,
    display: Display = AUTO_WINDOW,
    backend: str = "cpu",
) -> Fluoro:
    """Render simulated fluoroscopy (a digitally reconstructed radiograph) of a CT volume.

    Parameters
    ----------
    volume : Volume
        A CT in HU, any orientation (direction cosines and shear are honoured without resampling).
    carm : CArm, optional
        The pose; default AP. A CArm without an isocentre is centred on the volume's centre.
    size : int or (rows, cols), optional
        Detector pixel count, overriding ``carm.detector_pixels`` (the physical detector size stays).
    needles : sequence of Needle
        Steel needles, composited analytically (exact ray-cylinder chords).
    labels : Volume, optional
        A label map (any grid; its own geometry is used) to project as per-label path lengths.
    label_ids : sequence of int, optional
        Which labels to project; default every non-zero value in ``labels``.
    points : mapping of name to (x, y, z), optional
        World points (landmarks) to project as keypoints.
    method : {"joseph", "trilinear", "siddon"}
        Ray walk (see :mod:`needleplan.fluoro.kernels`); "siddon" is exact for the voxel volume, slower.
    step_voxels : float
        Sample spacing of the "trilinear" method, in voxels of the ray's dominant axis.
    energy_kev : float
        Effective energy of the fluoroscope (40-100 keV); sets water, bone and steel attenuation
        (:func:`needleplan.attenuation.fluoroscopy_coefficients`).
    exposure : Exposure
        Noise, scatter and blur (default: exact and noise-free).
    display : Display
        Window, gamma, inversion of ``Fluoro.display``.
    backend : str
        A registered backend (:mod:`needleplan.fluoro.backends`); "cpu" is the reference.

    Returns
    -------
    Fluoro
    """
    if volume.modality != "CT":
        raise NeedleplanError(f"render needs a CT volume (HU), got modality {volume.modality}; MR has no "
                              "X-ray attenuation to project")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (np.isfinite(step_voxels) and 0.01 <= step_voxels <= 10):
        raise ValueError(f"step_voxels must be within 0.01-10, got {step_voxels!r}")
    carm = _posed(carm or CArm(), volume, size)
    engine = get_backend(backend)
    mu_water, bone_scale, mu_steel = fluoroscopy_coefficients(energy_kev)

    mu = volume.attenuation(mu_water, bone_scale)
    rays = DetectorRays.from_carm(carm, volume.world_to_index)
    line_integral = engine.line_integrals(mu, rays, method, step_voxels)
    if needles:
        steel = needle_chords_mm(carm, needles).sum(axis=0) * mu_steel
        line_integral = (line_integral + steel).astype(np.float32)  # NaN off-field stays NaN

    intensity = detected_intensity(line_integral, rays.field, exposure)
    shown, window = display_image(intensity, rays.field, display)
    fluoro = Fluoro(line_integral, intensity, shown, carm, window=window)
    fluoro.keypoints = _keypoints(carm, points or {}, needles)
    if labels is not None:
        fluoro.label_ids, fluoro.label_path_mm = _project_labels(labels, label_ids, carm, engine)
    return fluoro


def _posed(carm: CArm, volume: Volume, size: int | tuple[int, int] | None) -> CArm:
    changes: dict[str, Any] = {}
    if carm.isocenter is None:
        changes["isocenter"] = volume.center_mm
    if size is not None:
        changes["detector_pixels"] = size
    return carm.replace(**changes) if changes else carm


def _keypoints(carm: CArm, points: Mapping[str, Sequence[float] | np.ndarray], needles: Sequence[Needle]
               ) -> dict[str, Keypoint]:
    named: dict[str, Sequence[float] | np.ndarray] = dict(points)
    for needle in needles:
        named[f"{needle.name}.tip"] = needle.tip_mm
        named[f"{needle.name}.hub"] = needle.hub_mm
    if not named:
        return {}
    names = list(named)
    try:
        world = np.array([np.asarray(named[name], dtype=np.float64).reshape(3) for name in names])
    except ValueError:
        raise ValueError("every point must be a 3-vector (x, y, z) in LPS mm") from None
    projection = carm.project(world)
    visible = carm.on_detector(projection)
    return {name: Keypoint(float(projection.col[i]), float(projection.row[i]), float(projection.depth_mm[i]),
                           bool(visible[i])) for i, name in enumerate(names)}


def _project_labels(labels: Volume, label_ids: Sequence[int] | None, carm: CArm, engine) -> tuple:
    if labels.modality not in ("LABEL", "OT"):
        raise NeedleplanError(f"labels must be a label map (modality LABEL), got modality {labels.modality}")
    present = labels.derived("label_values", _label_values)
    ids = tuple(int(i) for i in (present if label_ids is None else label_ids))
    if any(not 0 < i <= _MAX_LABEL_ID for i in ids):
        raise ValueError(f"label ids must be within 1-{_MAX_LABEL_ID}, got {ids}")
    cropped = labels.derived(("label_crop", ids), lambda v: crop_to_labels(v, ids))
    channels = cropped.derived(("label_channels", ids), lambda v: _channel_volume(v, ids))
    rays = DetectorRays.from_carm(carm, cropped.world_to_index)
    return ids, engine.label_path_lengths(channels, len(ids), rays)


def crop_to_labels(labels: Volume, ids: tuple[int, ...]) -> Volume:
    """The label map cut to the bounding box of ``ids`` plus one voxel, at the same place in the world.

    Rays are clipped to the volume's box, so a smaller box means fewer samples. The margin keeps the path lengths
    unchanged: where a ray crosses a side of the box, the sample of that slice lies within half a voxel of the
    side, so in the margin (no chosen label) in the crop and in the whole map alike. With none of ``ids``
    present the crop is a single voxel that holds none of them.
    """
    return labels.cropped_to(np.isin(labels.voxels, ids), "LABEL")


def _label_values(labels: Volume) -> tuple[int, ...]:
    voxels = labels.voxels
    if not np.issubdtype(voxels.dtype, np.integer):
        if not np.array_equal(voxels, np.round(voxels)):
            raise NeedleplanError("the label map holds fractional values; labels must be whole numbers")
    values = np.unique(voxels)
    if values.size and (values.min() < 0 or values.max() > _MAX_LABEL_ID):
        raise NeedleplanError(f"label values must be within 0-{_MAX_LABEL_ID}, got {values.min()}-{values.max()}")
    return tuple(int(v) for v in values if v != 0)


def _channel_volume(labels: Volume, ids: tuple[int, ...]) -> np.ndarray:
    """uint8/uint16 volume: 0 where no chosen label, c where label ids[c - 1]."""
    lookup = np.zeros(_MAX_LABEL_ID + 1, dtype=np.uint8 if len(ids) < 255 else np.uint16)
    lookup[list(ids)] = np.arange(1, len(ids) + 1)
    voxels = labels.voxels
    indices = voxels if np.issubdtype(voxels.dtype, np.integer) else np.rint(voxels).astype(np.int64)
    return lookup[np.clip(indices, 0, _MAX_LABEL_ID)]
