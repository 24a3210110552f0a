"""Writing a Fluoro to disk: PNG, TIFF, NumPy and DICOM images, and a JSON sidecar with the geometry.

The suffix picks the format:

- ``.png``: the display image, 8- or 16-bit grayscale, ``round(display * 255)`` or ``round(display * 65535)``.
- ``.tif`` / ``.tiff``: the display image as for PNG, or (``quantity="line_integral"`` / ``"intensity"``) a
  float32 TIFF of that array, NaN off the collimated field kept.
- ``.npy``: a float32 array of ``quantity`` (default ``"line_integral"``).
- ``.dcm``: a DICOM X-Ray Angiographic (C-arm) Image of the display image, ``round(display * 65535)`` in 16 bits.

Every file is written atomically (it appears complete or not at all) and never carries patient identity.
"""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import numpy as np

from ..errors import NeedleplanError, describe_path
from ..io.atomic import atomic_file
from ..io.dicom_write import decimal_string, new_dataset
from .carm import CArm
from .render import Fluoro

#: Output formats by file suffix.
SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".dcm": "dicom"}
#: Arrays of a Fluoro that can be written.
QUANTITIES = ("display", "line_integral", "intensity")
#: SOP class of X-Ray Angiographic Image Storage: the C-arm image object, whose XA Positioner module holds the
#: primary and secondary angles (the RF object's positioner module has no C-arm angles).
XA_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.12.1"

_FLOAT_QUANTITIES = {"png": (), "tiff": ("line_integral", "intensity"), "npy": QUANTITIES, "dicom": ()}


def image_format(path: str | Path, *, bits: int = 8, quantity: str | None = None) -> tuple[str, str]:
    """Check an output path and options before any work; returns (format, quantity).

    Raises
    ------
    NeedleplanError
        Unknown suffix, bits not 8 or 16, unknown quantity, or a quantity the format cannot hold.
    """
    path = Path(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise NeedleplanError(
            f"cannot tell the image format of {describe_path(path)}: use one of {', '.join(SUFFIXES)}"
        )
    if bits not in (8, 16):
        raise NeedleplanError(f"bits must be 8 or 16, got {bits!r}")
    if quantity is None:
        quantity = "line_integral" if fmt == "npy" else "display"
    if quantity not in QUANTITIES:
        raise NeedleplanError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
    if quantity != "display" and quantity not in _FLOAT_QUANTITIES[fmt]:
        raise NeedleplanError(
            f"{describe_path(path)}: a {path.suffix} file holds the display image only; write {quantity} "
            "as .tif or .npy"
        )
    return fmt, quantity


def write_image(fluoro: Fluoro, path: str | Path, *, bits: int = 8, quantity: str | None = None) -> Path:
    """Write a simulated fluoroscopy image; the format follows the file suffix (see the module table).

    Parameters
    ----------
    fluoro : Fluoro
        What :func:`needleplan.render` returned.
    path : path
        Output file; parent folders are created. Replaced atomically if it exists.
    bits : {8, 16}
        Depth of the display image in PNG and TIFF. DICOM is always 16-bit; float arrays are float32.
    quantity : {"display", "line_integral", "intensity"}, optional
        Which array to write. Default "line_integral" for .npy and "display" otherwise; .tif also takes
        "line_integral" and "intensity" (float32), .png and .dcm only "display".

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt, quantity = image_format(path, bits=bits, quantity=quantity)
    array = np.asarray(getattr(fluoro, quantity), dtype=np.float32)
    if fmt == "dicom":
        dataset = fluoro_dataset(fluoro)  # built before the file is opened: a bad Fluoro leaves nothing
    try:
        with atomic_file(path) as work:
            if fmt == "npy":
                with open(work, "wb") as handle:
                    np.save(handle, array)
            elif fmt == "dicom":
                dataset.save_as(work, enforce_file_format=True)
            elif quantity == "display":
                save_pixels(display_pixels(array, bits), work, fmt)
            else:
                save_pixels(array, work, fmt)
    except OSError as exc:
        raise NeedleplanError(f"cannot write {describe_path(path)}: {exc.strerror or exc}") from None
    return path


def display_pixels(display: np.ndarray, bits: int) -> np.ndarray:
    """The display image [0, 1] as unsigned integers: round(display * (2**bits - 1)), uint8 or uint16."""
    top = (1 << bits) - 1
    scaled = np.rint(np.clip(np.nan_to_num(display, nan=0.0), 0.0, 1.0) * top)
    return scaled.astype(np.uint8 if bits == 8 else np.uint16)


def save_pixels(pixels: np.ndarray, path: Path, fmt: str) -> None:
    """Write an array as a PNG or TIFF ("png" / "tiff"): bool 1-bit, uint8, uint16, or float32 (TIFF only)."""
    # Encoded in memory and written at once: Pillow writing to a file makes many small writes (4x slower at 256^2).
    path.write_bytes(encode_pixels(pixels, fmt))


def encode_pixels(pixels: np.ndarray, fmt: str = "png") -> bytes:
    """The bytes of :func:`save_pixels`'s file (for sending an image without writing it)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with the scientific stack
        raise NeedleplanError("PNG and TIFF output need Pillow: pip install pillow") from None
    # uint8 -> "L", uint16 -> "I;16", float32 -> "F" (a 32-bit float TIFF). zlib level 1: radiographs with
    # quantum noise come out within a few percent of level 6's size, three times faster (a training set's cost).
    image = Image.fromarray(np.ascontiguousarray(pixels))
    encoded = io.BytesIO()
    if fmt == "png":
        image.save(encoded, format="PNG", compress_level=1)
    else:
        image.save(encoded, format="TIFF")
    return encoded.getvalue()


# ---- DICOM ----------------------------------------------------------------------------------------------------
def dicom_positioner_angles(carm: CArm) -> tuple[float, float]:
    """(Positioner Primary Angle, Positioner Secondary Angle) in degrees, DICOM PS3.3 C.8.7.5.1.2.

    DICOM gives the position of the detector (image intensifier) around the patient, in the patient's frame
    whatever the patient position: at 0/0 the patient's chest faces the detector (detector anterior, LPS -y).
    The primary angle turns in the transverse plane, +90 = detector at the patient's left (LAO), -90 at the
    right (RAO), +-180 behind the back; the secondary angle leaves that plane, +90 = cranial, < 0 = caudal.
    The unit vector from the isocentre to the detector is our beam direction d (source -> detector), so

        d = (sin P cos S, -cos P cos S, sin S)   =>   S = asin(d_z),  P = atan2(d_x, -d_y)

    With d = (sin(oblique) cos(tilt), cos(oblique) cos(tilt), -sin(tilt)) this is S = -tilt and
    P = 180 - oblique, wrapped to (-180, 180]: our prone AP view (detector over the back) is P = 180, a left
    lateral (oblique 90) is P = 90 (LAO 90), 25 degrees left oblique with 10 degrees caudal tilt is 155 / -10.
    """
    d = carm.beam_direction
    secondary = float(np.degrees(np.arcsin(np.clip(d[2], -1.0, 1.0))))
    primary = float(np.degrees(np.arctan2(d[0], -d[1])))
    if primary <= -180.0 + 1e-9:
        primary += 360.0
    return primary, secondary


def patient_orientation(vector: np.ndarray) -> str:
    """DICOM Patient Orientation letters of an LPS direction, strongest first ("R", "FAR", ...)."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(vector), kind="stable")
    return "".join(letters[axis][0 if vector[axis] > 0 else 1] for axis in order if abs(vector[axis]) > 1e-3)


def geometry_text(fluoro: Fluoro) -> str:
    """The pose, imaging chain and projection matrix in words and numbers (the DICOM ImageComments)."""
    carm = fluoro.carm
    assert carm.isocenter is not None  # render() fills it in; write_dicom checks it before
    rows, cols = carm.detector_rows_cols
    width, height = carm.detector_width_height_mm
    collimator = "none" if carm.collimator_diameter_mm is None else f"{carm.collimator_diameter_mm:g} mm circle"
    lines = [
        "needleplan simulated fluoroscopy (digitally reconstructed radiograph), patient prone, LPS mm.",
        f"Pose: {carm.describe()} (oblique {carm.oblique:g} deg, tilt {carm.tilt:g} deg).",
        f"Isocenter: {_vector(carm.isocenter)}; table offset: {_vector(carm.table_offset_mm)}.",
        (f"SID {carm.source_to_detector_mm:g} mm, SOD {carm.source_to_isocenter_mm:g} mm; detector {width:g} x "
         f"{height:g} mm (width x height), {rows} x {cols} pixels (rows x columns); collimator {collimator}."),
        f"Source: {_vector(carm.source_mm)}; detector centre: {_vector(carm.detector_center_mm)}.",
        f"Detector u (columns): {_vector(carm.rotation[0])}; v (rows): {_vector(carm.rotation[1])}.",
        ("Projection matrix P, P @ (x, y, z, 1) = w (column, row, 1), pixel centres at whole numbers, "
         "w = depth from the source in mm:"),
        json.dumps(_rounded(carm.projection_matrix)),
        (f"Display window (attenuation, white to black): {fluoro.window[0]:.6g} .. {fluoro.window[1]:.6g}; "
         "pixel = round(display * 65535)."),
    ]
    return "\n".join(lines)


def fluoro_dataset(fluoro: Fluoro):
    """A pydicom FileDataset-ready Dataset: X-Ray Angiographic Image Storage of the display image.

    Modules: Patient (anonymous), General Study, General Series (modality XA, patient position HFP), General
    Equipment (manufacturer "needleplan"), General Image, Image Pixel (16 bits stored, MONOCHROME2), X-Ray Image
    (DERIVED\\SECONDARY\\SINGLE PLANE, pixel intensity relationship DISP), X-Ray Acquisition (radiation setting
    SC, kVp unknown and empty), XA Positioner (SID, SOD, magnification, and the primary and secondary angles
    of :func:`dicom_positioner_angles`), VOI LUT (full-range window) and SOP Common. The full
    geometry and projection matrix are in ImageComments (:func:`geometry_text`).
    """
    from pydicom.uid import generate_uid

    from .. import __version__

    carm = fluoro.carm
    if carm.isocenter is None:
        raise NeedleplanError("this Fluoro's C-arm has no isocenter; write images that render() returned")
    pixels = display_pixels(fluoro.display, 16)
    now = datetime.datetime.now(datetime.UTC)
    date, clock = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    ds = new_dataset(XA_IMAGE_STORAGE)  # SOP Common, Patient (explicitly anonymous), Manufacturer
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, clock
    # General Study
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, clock
    ds.ReferringPhysicianName = ds.AccessionNumber = ""  # type 2: present, empty
    ds.StudyID = "1"
    ds.StudyDescription = "needleplan simulated fluoroscopy"
    # General Series
    ds.Modality = "XA"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, clock
    ds.SeriesDescription = f"fluoro {carm.describe()}"  # LO: at most 64 characters
    ds.PatientPosition = "HFP"
    # General Equipment
    ds.SoftwareVersions = __version__
    # General Image
    ds.InstanceNumber = 1
    ds.PatientOrientation = [patient_orientation(carm.rotation[0]), patient_orientation(carm.rotation[1])]
    ds.ContentDate, ds.ContentTime = date, clock
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = geometry_text(fluoro)
    # Image Pixel and X-Ray Image
    ds.ImageType = ["DERIVED", "SECONDARY", "SINGLE PLANE"]
    ds.PixelIntensityRelationship = "DISP"  # windowed (and maybe inverted, gamma'd) for display
    ds.DerivationDescription = "Digitally reconstructed radiograph computed from a CT volume by needleplan"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    # VOI LUT: show the stored range as written
    ds.WindowCenter, ds.WindowWidth = "32767.5", "65536"
    # X-Ray Acquisition
    ds.KVP = None  # type 2: a simulation has no tube voltage
    ds.RadiationSetting = "SC"  # fluoroscopic (low dose) setting
    ds.XRayTubeCurrent = ds.ExposureTime = None  # type 2C: present, empty
    pixel_u, pixel_v = carm.pixel_mm
    ds.ImagerPixelSpacing = [decimal_string(pixel_v), decimal_string(pixel_u)]  # (between rows, between columns)
    if carm.collimator_diameter_mm is not None:
        ds.FieldOfViewShape = "ROUND"
        ds.FieldOfViewDimensions = round(carm.collimator_diameter_mm)  # diameter, mm
    else:
        ds.FieldOfViewShape = "RECTANGLE"
    # XA Positioner (angles in the patient's frame)
    ds.DistanceSourceToDetector = decimal_string(carm.source_to_detector_mm)
    ds.DistanceSourceToPatient = decimal_string(carm.source_to_isocenter_mm)
    ds.EstimatedRadiographicMagnificationFactor = decimal_string(carm.magnification)
    primary, secondary = dicom_positioner_angles(carm)
    ds.PositionerPrimaryAngle, ds.PositionerSecondaryAngle = decimal_string(primary), decimal_string(secondary)
    return ds


# ---- geometry sidecar -----------------------------------------------------------------------------------------
def geometry_dict(fluoro: Fluoro) -> dict:
    """JSON-ready geometry of a Fluoro: the C-arm, projection matrix, detector frame, window and keypoints.

    ``carm`` holds exactly the :class:`CArm` parameters (``CArm(**geometry["carm"])`` rebuilds the pose).
    """
    carm = fluoro.carm
    if carm.isocenter is None:
        raise NeedleplanError("this Fluoro's C-arm has no isocenter; write images that render() returned")
    rows, cols = carm.detector_rows_cols
    primary, secondary = dicom_positioner_angles(carm)
    return {
        "format": "needleplan fluoro geometry",
        "version": 1,
        "conventions": {
            "world": "patient LPS millimetres; the patient lies prone",
            "pixels": "(col, row) with pixel centres at whole numbers, (0, 0) the top-left pixel",
            "projection_matrix": "P @ (x, y, z, 1) = w * (col, row, 1), w = depth in mm from the source",
            "detector_size_mm": "(width along u, height along v)",
            "detector_pixels": "(rows, cols)",
        },
        "pose": carm.describe(),
        "carm": {
            "oblique": carm.oblique,
            "tilt": carm.tilt,
            "isocenter": carm.isocenter.tolist(),
            "source_to_detector_mm": carm.source_to_detector_mm,
            "source_to_isocenter_mm": carm.source_to_isocenter_mm,
            "detector_size_mm": list(carm.detector_width_height_mm),
            "detector_pixels": [rows, cols],
            "collimator_diameter_mm": carm.collimator_diameter_mm,
            "table_offset_mm": carm.table_offset_mm.tolist(),
        },
        "pixel_mm": list(carm.pixel_mm),
        "magnification": carm.magnification,
        "dicom_positioner_angles_deg": {"primary": primary, "secondary": secondary},
        "projection_matrix": carm.projection_matrix.tolist(),
        "source_mm": carm.source_mm.tolist(),
        "detector_center_mm": carm.detector_center_mm.tolist(),
        "detector_u": carm.rotation[0].tolist(),
        "detector_v": carm.rotation[1].tolist(),
        "view_direction": carm.view_direction.tolist(),
        "window": [float(fluoro.window[0]), float(fluoro.window[1])],
        "keypoints": {
            name: {"col": _finite(point.col), "row": _finite(point.row), "depth_mm": _finite(point.depth_mm),
                   "visible": bool(point.visible)}
            for name, point in fluoro.keypoints.items()
        },
    }


def write_geometry_json(fluoro: Fluoro, path: str | Path) -> Path:
    """Write :func:`geometry_dict` as JSON (strict: no NaN), atomically; parent folders are created."""
    path = Path(path)
    text = json.dumps(geometry_dict(fluoro), indent=2, allow_nan=False)
    try:
        with atomic_file(path) as work:
            work.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise NeedleplanError(f"cannot write {describe_path(path)}: {exc.strerror or exc}") from None
    return path


def sidecar_path(image_path: str | Path) -> Path:
    """Where the geometry of an image goes: the image's name with ".json" appended (shot.png -> shot.png.json)."""
    image_path = Path(image_path)
    return image_path.with_name(image_path.name + ".json")


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _rounded(matrix: np.ndarray) -> list:
    return [[float(f"{v:.12g}") for v in row] for row in np.asarray(matrix)]


def _vector(vector: np.ndarray) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in vector) + ")"
