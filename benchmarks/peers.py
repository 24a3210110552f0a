"""Adapters that render DRRs with peer projectors under needleplan's contract.

Every adapter takes the same attenuation volume and the same
:class:`ConeGeometry` and returns the same quantity: for each detector pixel,
the line integral of ``mu`` (1/mm) along the straight segment from the source
to that pixel centre, as a float32 image of shape ``(rows, cols)``.

Contract
--------
* ``mu_zyx`` is a float32 array of shape ``(nz, ny, nx)``; values are samples at
  voxel centres, in 1/mm.
* ``index_to_world`` maps a voxel index ``(i, j, k, 1)`` (``i`` along the last
  array axis) to world millimetres (LPS). Its 3x3 block must be diagonal with a
  positive diagonal (identity direction); other volumes raise ``ValueError``.
* Pixel ``(r, c)`` is centred at
  ``detector_center_mm + (c - (cols-1)/2) * pixel_mm * u
  + (r - (rows-1)/2) * pixel_mm * v``.

Peer conventions (all verified against analytic integrals by
``check_peers.py``)
-----------------------------------------------------------------------------
plastimatch ``drr`` (1.10.0)
    Needs ``-P none`` (the default ``preprocess`` maps the voxels as HU to
    0.022/mm water), divides its line integrals by 10 (mm to cm), reads
    ``-r`` and ``-z`` as "columns rows" although its help says "row col",
    and treats ``-y`` as radians; the adapter uses ``--nrm`` instead, which
    places the source at ``isocenter + sad * nrm``. Columns grow along
    ``vup x nrm`` and rows along minus the part of ``vup`` normal to ``nrm``.
    Its raw output is row-major ``(rows, cols)``.
RTK (``itk-rtk`` 2.7.0.post1)
    ``ThreeDCircularProjectionGeometry.AddProjection(source, detector,
    row_vector, column_vector)`` takes the contract's frame directly, in the
    volume's physical (world) frame, for either handedness (a mirrored frame
    is stored as negative SID/SDD). The detector position is the physical
    point of projection coordinate (0, 0), so the projection stack's origin is
    set to minus half the detector extent.
DiffDRR (0.6.1)
    ``diffdrr.data.read`` would rescale the volume to [0, 1] as if it were HU,
    re-orient it and move it; the adapter builds the ``torchio.Subject``
    itself, with the attenuation as ``density`` and an identity ``reorient``.
    A pose is a plain 4x4 camera-to-world matrix whose camera frame has the
    source at the origin and the detector at ``+z * sdd``; with
    ``reverse_x_axis=False`` the column index grows along camera ``+x`` and
    the row index along camera ``-y``. ``reverse_x_axis`` is chosen so that
    the pose is a proper rotation for both handednesses.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

_TOL = 1e-6


@dataclass(frozen=True)
class ConeGeometry:
    """Cone-beam projection of one flat detector.

    Parameters
    ----------
    source_mm : numpy.ndarray
        Source position, shape (3,), world mm.
    detector_center_mm : numpy.ndarray
        Centre of the detector, shape (3,), world mm.
    u : numpy.ndarray
        Unit vector along which the column index increases, shape (3,).
    v : numpy.ndarray
        Unit vector along which the row index increases, shape (3,),
        perpendicular to ``u``.
    pixel_mm : float
        Side of the square pixels, mm.
    rows : int
        Number of detector rows.
    cols : int
        Number of detector columns.

    Raises
    ------
    ValueError
        If ``u`` or ``v`` is not a unit vector, if they are not orthogonal, or
        if the detector plane is not perpendicular to the line from the source
        to the detector centre.
    """

    source_mm: np.ndarray
    detector_center_mm: np.ndarray
    u: np.ndarray
    v: np.ndarray
    pixel_mm: float
    rows: int
    cols: int

    def __post_init__(self) -> None:
        for name in ("source_mm", "detector_center_mm", "u", "v"):
            value = np.asarray(getattr(self, name), dtype=np.float64).reshape(3)
            object.__setattr__(self, name, value)
        for name in ("u", "v"):
            if abs(np.linalg.norm(getattr(self, name)) - 1.0) > _TOL:
                raise ValueError(f"{name} must be a unit vector")
        if abs(self.u @ self.v) > _TOL:
            raise ValueError("u and v must be orthogonal")
        if abs(self.normal @ self.u) > _TOL or abs(self.normal @ self.v) > _TOL:
            raise ValueError("the detector must be perpendicular to source->centre")

    @property
    def sdd(self) -> float:
        """float: Source-to-detector-centre distance, mm."""
        return float(np.linalg.norm(self.detector_center_mm - self.source_mm))

    @property
    def normal(self) -> np.ndarray:
        """numpy.ndarray: Unit vector from the source toward the detector."""
        return (self.detector_center_mm - self.source_mm) / self.sdd

    @property
    def mirrored(self) -> bool:
        """bool: True when ``u x v`` points away from the source."""
        return bool(np.cross(self.u, self.v) @ self.normal > 0.0)

    def pixel_centres(self) -> np.ndarray:
        """World positions of all pixel centres.

        Returns
        -------
        numpy.ndarray
            Shape (rows, cols, 3), float64, mm.
        """
        r, c = np.mgrid[0 : self.rows, 0 : self.cols].astype(np.float64)
        du = (c - (self.cols - 1) / 2.0) * self.pixel_mm
        dv = (r - (self.rows - 1) / 2.0) * self.pixel_mm
        return self.detector_center_mm + du[..., None] * self.u + dv[..., None] * self.v


class Peer(Protocol):
    """What every adapter offers.

    Attributes
    ----------
    last_timing : dict[str, float]
        Timings of the latest :meth:`render`, seconds. ``"render_s"`` is the
        per-image time without the one-time setup; adapters add their own keys.
    """

    last_timing: dict[str, float]

    def render(self, geom: ConeGeometry) -> np.ndarray:
        """Render the line-integral image for ``geom``."""

    def close(self) -> None:
        """Release what the adapter holds."""


def _grid(mu_zyx: np.ndarray, index_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the volume against the contract and return its grid.

    Parameters
    ----------
    mu_zyx : numpy.ndarray
        Attenuation, shape (nz, ny, nx), 1/mm.
    index_to_world : numpy.ndarray
        4x4 voxel-index-to-world affine.

    Returns
    -------
    mu : numpy.ndarray
        C-contiguous float32 copy of ``mu_zyx``.
    origin : numpy.ndarray
        World position of voxel (0, 0, 0)'s centre, shape (3,).
    spacing : numpy.ndarray
        Voxel size along x, y, z, shape (3,).

    Raises
    ------
    ValueError
        If the volume is not 3-D or the affine is not diagonal positive.
    """
    mu = np.array(mu_zyx, dtype=np.float32, order="C", copy=True)
    if mu.ndim != 3:
        raise ValueError("mu_zyx must have shape (nz, ny, nx)")
    affine = np.asarray(index_to_world, dtype=np.float64)
    if affine.shape != (4, 4) or not np.allclose(affine[3], (0.0, 0.0, 0.0, 1.0)):
        raise ValueError("index_to_world must be a 4x4 affine")
    spacing = np.diag(affine[:3, :3]).copy()
    if np.any(affine[:3, :3] != np.diag(spacing)) or np.any(spacing <= 0.0):
        raise ValueError("index_to_world must have a diagonal positive 3x3 block")
    return mu, affine[:3, 3].copy(), spacing


def _volume_centre(mu: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """World position of the centre of the voxel grid, shape (3,)."""
    return origin + spacing * (np.array(mu.shape[::-1]) - 1) / 2.0


def _write_mha(path: Path, mu: np.ndarray, origin: np.ndarray, spacing: np.ndarray) -> None:
    """Write a float32 MetaImage with identity direction.

    Parameters
    ----------
    path : pathlib.Path
        Output ``.mha`` file.
    mu : numpy.ndarray
        Volume, shape (nz, ny, nx).
    origin : numpy.ndarray
        Centre of voxel (0, 0, 0), mm.
    spacing : numpy.ndarray
        Voxel size along x, y, z, mm.
    """

    def fmt(values: np.ndarray) -> str:
        return " ".join(f"{float(x):.17g}" for x in values)

    header = (
        "ObjectType = Image\nNDims = 3\nBinaryData = True\n"
        "BinaryDataByteOrderMSB = False\nCompressedData = False\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\n"
        f"Offset = {fmt(origin)}\nElementSpacing = {fmt(spacing)}\n"
        f"DimSize = {' '.join(str(n) for n in mu.shape[::-1])}\n"
        "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n"
    )
    with path.open("wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(mu.astype("<f4", copy=False).tobytes())


class PlastimatchDrr:
    """plastimatch ``drr -i exact`` (exact voxel ray tracing), run as a CLI.

    Parameters
    ----------
    mu_zyx : numpy.ndarray
        Attenuation, shape (nz, ny, nx), 1/mm.
    index_to_world : numpy.ndarray
        4x4 voxel-index-to-world affine, diagonal positive.
    threads : int, optional
        OpenMP and ITK threads of the subprocess.

    Attributes
    ----------
    last_timing : dict[str, float]
        ``render_s``: wall time of the subprocess (process start, reading the
        volume file, tracing, writing the image) plus reading the image back;
        ``internal_total_s`` and ``internal_io_s``: plastimatch's own "Total
        time" (tracing and writing, after the volume is loaded) and "I/O time"
        (writing); ``internal_trace_s``: their difference.

    Notes
    -----
    The volume is written once, as ``volume.mha`` in a temporary directory the
    adapter owns; every render re-reads it, as the CLI must.
    """

    def __init__(self, mu_zyx: np.ndarray, index_to_world: np.ndarray, threads: int = 2) -> None:
        import plastimatch

        mu, origin, spacing = _grid(mu_zyx, index_to_world)
        self._exe = Path(plastimatch.__file__).with_name("bin") / "plastimatch"
        self._centre = _volume_centre(mu, origin, spacing)
        self._tmp = tempfile.TemporaryDirectory(prefix="needleplan-plastimatch-")
        self._dir = Path(self._tmp.name)
        self._volume = self._dir / "volume.mha"
        _write_mha(self._volume, mu, origin, spacing)
        self._env = dict(os.environ)
        self._env["OMP_NUM_THREADS"] = str(threads)
        self._env["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
        self.last_timing: dict[str, float] = {}

    def command(self, geom: ConeGeometry) -> list[str]:
        """Build the ``plastimatch drr`` command line for ``geom``.

        Parameters
        ----------
        geom : ConeGeometry
            Projection geometry.

        Returns
        -------
        list[str]
            Arguments, executable first; the image goes to ``out_0000.raw`` in
            the adapter's directory.
        """

        def fmt(values: np.ndarray) -> str:
            return " ".join(f"{float(x):.9g}" for x in values)

        towards_source = -geom.normal
        # Isocentre: the point of the central ray nearest the volume centre.
        sad = float((self._centre - geom.source_mm) @ geom.normal)
        isocenter = geom.source_mm + sad * geom.normal
        return [
            str(self._exe), "drr",
            "-i", "exact",
            "-P", "none",
            "-t", "raw",
            "-A", "cpu",
            "-r", f"{geom.cols} {geom.rows}",
            "-z", fmt([geom.cols * geom.pixel_mm, geom.rows * geom.pixel_mm]),
            "--nrm", fmt(towards_source),
            "--vup", fmt(-geom.v),
            "-o", fmt(isocenter),
            "--sad", f"{sad:.9g}",
            "--sid", f"{geom.sdd:.9g}",
            "-I", str(self._volume),
            "-O", str(self._dir / "out_"),
        ]  # fmt: skip

    def render(self, geom: ConeGeometry) -> np.ndarray:
        """Render the line-integral image.

        Parameters
        ----------
        geom : ConeGeometry
            Projection geometry.

        Returns
        -------
        numpy.ndarray
            Line integrals, float32, shape (rows, cols).
        """
        out = self._dir / "out_0000.raw"
        start = time.perf_counter()
        run = subprocess.run(self.command(geom), env=self._env, capture_output=True, text=True, check=True)
        img = np.fromfile(out, dtype="<f4").reshape(geom.rows, geom.cols)
        wall = time.perf_counter() - start
        out.unlink()
        # Columns run along vup x nrm (nrm toward the source).
        column_axis = np.cross(-geom.v, -geom.normal)
        if column_axis @ geom.u < 0.0:
            img = img[:, ::-1]
        total = float(re.search(r"Total time:\s*([0-9.eE+-]+)", run.stdout).group(1))
        io = float(re.search(r"I/O time:\s*([0-9.eE+-]+)", run.stdout).group(1))
        self.last_timing = {
            "render_s": wall,
            "internal_total_s": total,
            "internal_io_s": io,
            "internal_trace_s": total - io,
        }
        # plastimatch divides by 10 ("mm pixels to cm*gm").
        return np.ascontiguousarray(img * np.float32(10.0))

    def close(self) -> None:
        """Delete the temporary directory."""
        self._tmp.cleanup()


class RtkJoseph:
    """RTK's Joseph forward projector (``rtk.JosephForwardProjectionImageFilter``).

    Parameters
    ----------
    mu_zyx : numpy.ndarray
        Attenuation, shape (nz, ny, nx), 1/mm.
    index_to_world : numpy.ndarray
        4x4 voxel-index-to-world affine, diagonal positive.
    threads : int, optional
        ITK's global default number of threads (process-wide).

    Attributes
    ----------
    last_timing : dict[str, float]
        ``render_s``: building the geometry, the filter update and copying the
        image out.
    """

    def __init__(self, mu_zyx: np.ndarray, index_to_world: np.ndarray, threads: int = 2) -> None:
        import itk
        from itk import RTK as rtk

        mu, origin, spacing = _grid(mu_zyx, index_to_world)
        itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(threads)
        self._itk = itk
        self._rtk = rtk
        self._volume = itk.GetImageFromArray(mu)
        self._volume.SetOrigin(origin.tolist())
        self._volume.SetSpacing(spacing.tolist())
        image_type = type(self._volume)
        self._filter = rtk.JosephForwardProjectionImageFilter[image_type, image_type].New()
        self._filter.SetInput(1, self._volume)
        # In place, the filter would consume the zero stack on the first update.
        self._filter.InPlaceOff()
        self._filter.SetNumberOfWorkUnits(threads)
        self._stack_key: tuple[int, int, float] | None = None
        self.last_timing: dict[str, float] = {}

    def _set_stack(self, geom: ConeGeometry) -> None:
        """Give the filter a zero projection stack of the detector's layout."""
        key = (geom.rows, geom.cols, geom.pixel_mm)
        if key == self._stack_key:
            return
        stack = self._itk.GetImageFromArray(np.zeros((1, geom.rows, geom.cols), dtype=np.float32))
        stack.SetSpacing([geom.pixel_mm, geom.pixel_mm, 1.0])
        # Projection coordinate (0, 0) is the detector position, its centre.
        stack.SetOrigin([-(geom.cols - 1) / 2.0 * geom.pixel_mm, -(geom.rows - 1) / 2.0 * geom.pixel_mm, 0.0])
        self._filter.SetInput(0, stack)
        self._stack_key = key

    def render(self, geom: ConeGeometry) -> np.ndarray:
        """Render the line-integral image.

        Parameters
        ----------
        geom : ConeGeometry
            Projection geometry.

        Returns
        -------
        numpy.ndarray
            Line integrals, float32, shape (rows, cols).

        Raises
        ------
        RuntimeError
            If RTK rejects the geometry.
        """
        itk = self._itk
        self._set_stack(geom)
        start = time.perf_counter()
        geometry = self._rtk.ThreeDCircularProjectionGeometry.New()
        if not geometry.AddProjection(
            itk.Point[itk.D, 3](geom.source_mm.tolist()),
            itk.Point[itk.D, 3](geom.detector_center_mm.tolist()),
            itk.Vector[itk.D, 3](geom.u.tolist()),
            itk.Vector[itk.D, 3](geom.v.tolist()),
        ):
            raise RuntimeError("RTK rejected the projection geometry")
        self._filter.SetGeometry(geometry)
        self._filter.Update()
        img = itk.GetArrayFromImage(self._filter.GetOutput())[0]
        self.last_timing = {"render_s": time.perf_counter() - start}
        return img.astype(np.float32, copy=False)

    def close(self) -> None:
        """Drop the ITK objects."""
        del self._filter, self._volume


class DiffDrrSiddon:
    """DiffDRR's ``DRR`` module with its Siddon renderer, on the CPU.

    Parameters
    ----------
    mu_zyx : numpy.ndarray
        Attenuation, shape (nz, ny, nx), 1/mm.
    index_to_world : numpy.ndarray
        4x4 voxel-index-to-world affine, diagonal positive.
    threads : int, optional
        ``torch.set_num_threads`` (process-wide).

    Attributes
    ----------
    last_timing : dict[str, float]
        ``render_s``: building the pose and the forward pass; a render whose
        detector differs from the previous one also rebuilds the detector grid
        (reported separately as ``detector_s``).

    Notes
    -----
    DiffDRR works in float32. To keep coordinates small the adapter moves the
    world by minus the volume centre (an exact translation applied to both the
    volume affine and the pose).
    """

    def __init__(self, mu_zyx: np.ndarray, index_to_world: np.ndarray, threads: int = 2) -> None:
        import torch
        from diffdrr.drr import DRR
        from diffdrr.pose import RigidTransform
        from torchio import ScalarImage, Subject

        mu, origin, spacing = _grid(mu_zyx, index_to_world)
        torch.set_num_threads(threads)
        self._torch = torch
        self._rigid = RigidTransform
        self._shift = _volume_centre(mu, origin, spacing)
        affine = np.diag(np.append(spacing, 1.0))
        affine[:3, 3] = origin - self._shift
        # torchio holds (channel, i, j, k): the x index first.
        data = torch.from_numpy(np.ascontiguousarray(mu.transpose(2, 1, 0)))[None]
        image = ScalarImage(tensor=data, affine=affine)
        subject = Subject(volume=image, density=image, reorient=torch.eye(4), mask=None)
        self._drr = DRR(subject, sdd=1.0, height=1, delx=1.0, reverse_x_axis=False)
        self._drr.eval()
        self._detector_key: tuple[float, int, int, float, bool] | None = None
        self.last_timing: dict[str, float] = {}

    def pose(self, geom: ConeGeometry) -> np.ndarray:
        """Camera-to-world matrix (in the shifted world) for ``geom``.

        Parameters
        ----------
        geom : ConeGeometry
            Projection geometry.

        Returns
        -------
        numpy.ndarray
            4x4 float64 matrix with columns (x axis, y axis, z axis, source);
            a proper rotation.
        """
        sign_u = -1.0 if geom.mirrored else 1.0
        matrix = np.eye(4)
        matrix[:3, 0] = sign_u * geom.u
        matrix[:3, 1] = -geom.v
        matrix[:3, 2] = geom.normal
        matrix[:3, 3] = geom.source_mm - self._shift
        return matrix

    def render(self, geom: ConeGeometry) -> np.ndarray:
        """Render the line-integral image.

        Parameters
        ----------
        geom : ConeGeometry
            Projection geometry.

        Returns
        -------
        numpy.ndarray
            Line integrals, float32, shape (rows, cols).
        """
        torch = self._torch
        start = time.perf_counter()
        key = (geom.sdd, geom.rows, geom.cols, geom.pixel_mm, geom.mirrored)
        if key != self._detector_key:
            self._drr.set_intrinsics_(
                sdd=geom.sdd, height=geom.rows, width=geom.cols,
                delx=geom.pixel_mm, dely=geom.pixel_mm, x0=0.0, y0=0.0,
                reverse_x_axis=geom.mirrored,
            )  # fmt: skip
            self._detector_key = key
        detector_s = time.perf_counter() - start
        start = time.perf_counter()
        pose = self._rigid(torch.as_tensor(self.pose(geom), dtype=torch.float32))
        with torch.no_grad():
            img = self._drr(pose)[0, 0].numpy()
        self.last_timing = {"render_s": time.perf_counter() - start, "detector_s": detector_s}
        return img.astype(np.float32, copy=True)

    def close(self) -> None:
        """Drop the torch module."""
        del self._drr


PEERS: dict[str, Callable[..., Peer]] = {
    "plastimatch": PlastimatchDrr,
    "rtk": RtkJoseph,
    "diffdrr": DiffDrrSiddon,
}
"""Adapter classes by peer name."""


def available() -> dict[str, str]:
    """Tell which peers import and render.

    Each adapter is built on a 4x4x4 volume and renders a 3x2 image.

    Returns
    -------
    dict[str, str]
        ``"ok"``, or the exception that stopped the peer, by peer name.
    """
    mu = np.full((4, 4, 4), 0.01, dtype=np.float32)
    geom = ConeGeometry(
        source_mm=(1.5, -100.0, 1.5), detector_center_mm=(1.5, 100.0, 1.5),
        u=(1.0, 0.0, 0.0), v=(0.0, 0.0, 1.0), pixel_mm=0.5, rows=3, cols=2,
    )  # fmt: skip
    status = {}
    for name, cls in PEERS.items():
        try:
            adapter = cls(mu, np.eye(4), threads=1)
            try:
                adapter.render(geom)
            finally:
                adapter.close()
        except Exception as exc:  # noqa: BLE001 - the report is the point
            status[name] = f"{type(exc).__name__}: {exc}"
        else:
            status[name] = "ok"
    return status
