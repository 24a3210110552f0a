"""The spinal column on T2 MRI: the fluid-filled canal, the spine curve through it, and the discs along it.

Works on an LPS-aligned isotropic array ``image[z, y, x]`` (x to the patient's left, y posterior, z superior)
of T2 intensities scaled to about 0-1, fluid bright. The canal is the bright tube that runs through most axial
slices; the curve is its smoothed per-slice centre. The column in front of the canal is then resampled on
planes perpendicular to the curve (a "straightened" block indexed by arc length ``s``, anterior distance ``a``
from the curve and lateral offset ``l``), where each disc is a thin bright plate across ``s`` and the discs
repeat with a near-constant pitch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from .tissue import IN_SLICE

#: Canal cross-section area accepted for the fluid tube, mm^2 (a thin cervical canal to a wide lumbar sac).
CANAL_AREA_MM2 = (20.0, 900.0)
#: Length of the cranio-caudal line the canal mask is opened with, mm (longer than a disc nucleus is thick).
CANAL_OPENING_MM = 11.0
#: The canal's fluid must be brighter than a 3 mm shell around it by this much (normalised intensity).
MIN_CANAL_CONTRAST = 0.2
#: Radius of the in-slice closing that shuts the canal's ring of fluid where the cord touches the wall, mm.
CANAL_CLOSING_MM = 3.0
#: Fluid thresholds tried, as fractions of the normalised intensity scale (1 = the bright end).
FLUID_THRESHOLDS = (0.35, 0.5, 0.65)
#: The tube must be present in at least this many of the axial slices that hold at least half as much of the
#: scan as the fullest slice (an oblique scan's box adds sparse slices at both ends).
MIN_CANAL_COVERAGE = 0.4
#: Length of the curve's smoothing window along the cranio-caudal axis, mm.
CURVE_WINDOW_MM = 60.0
#: Extent of the straightened block: anterior reach from the canal centre, posterior reach, half width, mm.
BLOCK_ANTERIOR_MM, BLOCK_POSTERIOR_MM, BLOCK_HALF_WIDTH_MM = 70.0, 10.0, 12.0
#: Discs are searched within this half width of the midline, mm.
DISC_HALF_WIDTH_MM = 8.0
#: Gaussian scales of the disc ridge filter: across the disc (along the curve) and within its plane, mm.
RIDGE_SIGMA_MM, PLATE_SIGMA_MM = 1.2, 2.0
#: Ridge voxels must be brighter than the median along the curve within this distance, mm.
CONTRAST_REACH_MM = 10.0
#: Ridge voxels: above this many robust standard deviations of the ridge response.
RIDGE_Z = 2.0
#: A disc candidate spans at least this much front to back and side to side, mm...
MIN_DISC_LENGTH_MM, MIN_DISC_WIDTH_MM = 5.0, 4.0
#: ...tilts at most this much against the curve's cross-section, degrees...
MAX_DISC_TILT_DEG = 35.0
#: ...and lies in front of the canal at the discs' median depth, give or take this fraction of it or this many mm;
#: that depth is taken from the candidates at least STRONG_FRACTION as strong as the strongest.
DEPTH_SPREAD_FRACTION, MIN_DEPTH_SPREAD_MM, STRONG_FRACTION = 0.2, 2.5, 0.2
#: Within this distance above and below its centre a disc's bright band falls, on both sides, by at least this
#: fraction of its brightness (the dark endplates); marrow beside one dark endplate does not, nor does noise.
ENDPLATE_REACH_MM, MIN_ENDPLATE_DROP = 8.0, 0.4
#: Consecutive discs of a chain are one pitch apart, give or take this fraction of it.
PITCH_TOLERANCE = 0.25
#: Each disc of a chain costs this fraction of the strongest candidate's strength (weak ones do not pay).
CHAIN_MEMBER_COST = 0.1
#: Accepted distance between consecutive discs (one vertebra plus one disc), mm: cervical ~15, lumbar ~45.
PITCH_RANGE_MM = (11.0, 55.0)


@dataclass(frozen=True)
class Curve:
    """The spine curve sampled at equal arc-length steps, cranial to caudal, with a frame per point.

    Attributes
    ----------
    points : ndarray, shape (N, 3)
        LPS mm.
    superior, posterior, left : ndarray, shape (N, 3)
        Unit vectors: cranial tangent, and the posterior and left directions perpendicular to it.
    step_mm : float
        Arc length between consecutive points.
    """

    points: np.ndarray
    superior: np.ndarray
    posterior: np.ndarray
    left: np.ndarray
    step_mm: float

    def frame_at(self, s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Point, superior, posterior and left unit vectors at fractional sample index ``s`` (interpolated)."""
        n = len(self.points)
        low = int(np.clip(np.floor(s), 0, n - 1))
        high = min(low + 1, n - 1)
        w = float(np.clip(s - low, 0.0, 1.0))
        point = (1 - w) * self.points[low] + w * self.points[high]
        vectors = [_unit((1 - w) * v[low] + w * v[high]) for v in (self.superior, self.posterior, self.left)]
        return point, vectors[0], vectors[1], vectors[2]


@dataclass(frozen=True)
class Block:
    """The image resampled on planes perpendicular to the curve.

    ``values[s, a, l]`` is the intensity at ``curve.points[s] + a_mm[a] * anterior + l_mm[l] * left``, and
    ``valid`` says which of those samples lie inside the scan. ``wall_mm[s]`` is the distance from the curve to
    the canal's anterior wall.
    """

    values: np.ndarray
    valid: np.ndarray
    a_mm: np.ndarray
    l_mm: np.ndarray
    wall_mm: np.ndarray


@dataclass(frozen=True)
class Disc:
    """One intervertebral disc found along the curve.

    Attributes
    ----------
    s : float
        Fractional curve sample index of the disc's centre.
    center : ndarray, shape (3,)
        LPS mm: centre of the disc's bright ridge (the nucleus on T2).
    normal : ndarray, shape (3,)
        Unit normal of the disc plane, pointing cranially.
    height_mm : float
        Thickness of the bright band along the curve at the centre (full width at half its contrast).
    depth_mm : float
        Distance of the centre in front of the curve.
    strength : float
        Summed ridge response of the disc's voxels above :data:`RIDGE_Z` (robust standard deviations times
        voxels): a faint sheet of noise just above the threshold weighs little however large it is.
    """

    s: float
    center: np.ndarray
    normal: np.ndarray
    height_mm: float
    depth_mm: float
    strength: float


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


# ---- canal ---------------------------------------------------------------------------------------------------
#: Connectivity within axial slices only (a 3D structuring element with an empty z neighbourhood).
def fill_holes_in_slices(mask: np.ndarray, max_area_voxels: int | None = None) -> np.ndarray:
    """Fill holes within axial slices, only those up to ``max_area_voxels`` when given: the cord inside its ring
    of fluid, not the whole body inside a ring of bright subcutaneous fat."""
    background, count = ndimage.label(~mask, structure=IN_SLICE)
    edges = np.concatenate([background[:, 0].ravel(), background[:, -1].ravel(), background[:, :, 0].ravel(),
                            background[:, :, -1].ravel()])
    hole = np.ones(count + 1, dtype=bool)
    hole[edges] = False
    if max_area_voxels is not None:
        hole &= np.bincount(background.ravel(), minlength=count + 1) <= max_area_voxels
    hole[0] = False
    return mask | hole[background]


def _opened_along_z(mask: np.ndarray, length: int) -> np.ndarray:
    """Binary opening with a cranio-caudal line of ``length`` voxels: keeps the canal's tube and drops what is thin
    along it (a bright disc nucleus touching the canal, a root sleeve, a vessel crossing)."""
    eroded = ndimage.minimum_filter1d(mask.view(np.uint8), length, axis=0, mode="nearest")
    return ndimage.maximum_filter1d(eroded, length, axis=0, mode="nearest").astype(bool)


def _roundness(component: np.ndarray) -> float:
    """Median over its axial slices of the share of a component's cross-section covered by its largest inscribed
    circle (1 for a round section, about 0.15 for a band of fat 5 mm thick across a 38 mm sagittal slab)."""
    box = ndimage.find_objects(component.astype(np.uint8))[0]
    shares = []
    for piece in component[box]:
        area = np.count_nonzero(piece)
        if area:
            radius = float(ndimage.distance_transform_edt(np.pad(piece, 1)).max())
            shares.append(min(1.0, np.pi * radius**2 / area))
    return float(np.median(shares)) if shares else 0.0


def _tube_scores(components: np.ndarray, count: int, spacing_mm: float, n_slices: int) -> np.ndarray:
    """How canal-like each labelled component is (index 0 unused): its axial coverage times its roundness
    (:func:`_roundness`), when its cross-sections are canal-sized and steady; 0 otherwise."""
    nz = components.shape[0]
    z = np.broadcast_to(np.arange(nz)[:, None, None], components.shape)
    counts = np.bincount((components * nz + z).ravel(), minlength=(count + 1) * nz).reshape(count + 1, nz)
    areas = counts * spacing_mm**2
    present = areas > 0
    coverage = present.sum(axis=1) / max(n_slices, 1)
    median = np.array([np.median(row[row > 0]) if row.any() else 0.0 for row in areas])
    steady = np.array([np.mean(np.abs(row[row > 0] - m) < 0.6 * m) if row.any() else 0.0
                       for row, m in zip(areas, median, strict=True)])
    plausible = (coverage >= MIN_CANAL_COVERAGE) & (median >= CANAL_AREA_MM2[0]) & (median <= CANAL_AREA_MM2[1])
    plausible[0] = False
    scores = np.zeros(count + 1)
    for index in np.flatnonzero(plausible):
        scores[index] = coverage[index] * steady[index] * _roundness(components == index)
    return scores


def canal_mask(image: np.ndarray, valid: np.ndarray, spacing_mm: float) -> tuple[np.ndarray | None, float]:
    """The fluid-filled canal (with the cord or roots inside it) as a boolean array, or None when not found,
    and its score (0-1, :func:`_tube_scores`).

    Fluid is thresholded at a few levels; at each, holes up to a canal's size are filled within axial slices and
    the 3D components are scored by :func:`_tube_scores`. The best-scoring component over all levels that is
    clearly brighter than its surroundings (:data:`MIN_CANAL_CONTRAST`) wins.

    Parameters
    ----------
    image : ndarray, shape (nz, ny, nx)
        Fluid-bright intensities on an LPS-aligned isotropic grid, about 0-1.
    valid : ndarray of bool
        Voxels inside the scan's field of view.
    spacing_mm : float
        The grid's isotropic spacing.
    """
    smooth = ndimage.gaussian_filter(image, sigma=max(0.5, 0.8 / spacing_mm))
    # slices that hold at least half as much of the scan as the fullest one (an oblique box's tips do not count)
    seen = valid.sum(axis=(1, 2))
    n_slices = int(np.count_nonzero(seen >= 0.5 * seen.max()))
    max_hole = int(CANAL_AREA_MM2[1] / spacing_mm**2)
    best, best_score = None, 0.0
    line = 2 * int(round(0.5 * CANAL_OPENING_MM / spacing_mm)) + 1
    for threshold in FLUID_THRESHOLDS:
        fluid = _opened_along_z(fill_holes_in_slices((smooth > threshold) & valid, max_hole), line)
        components, count = ndimage.label(fluid)
        scores = _tube_scores(components, count, spacing_mm, n_slices)
        for index in np.flatnonzero(scores > best_score):
            candidate = components == index
            if _contrast(smooth, candidate, valid, spacing_mm) >= MIN_CANAL_CONTRAST:
                best, best_score = candidate, float(scores[index])
    if best is None:
        return None, 0.0
    return _closed_in_slices(best, spacing_mm), best_score


def _contrast(image: np.ndarray, region: np.ndarray, valid: np.ndarray, spacing_mm: float) -> float:
    """Mean intensity inside ``region`` minus the mean in a 3 mm shell around it within its axial slices."""
    box = tuple(slice(max(b.start - 4, 0), b.stop + 4) for b in ndimage.find_objects(region.astype(np.uint8))[0])
    inside = region[box]
    shell = ndimage.binary_dilation(inside, structure=IN_SLICE, iterations=max(1, round(3.0 / spacing_mm)))
    shell &= ~inside & valid[box]
    return float(image[box][inside].mean() - image[box][shell].mean()) if shell.any() else 0.0


def _closed_in_slices(canal: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The canal with its cross-sections closed (a disc of :data:`CANAL_CLOSING_MM`) and filled: where the cord
    touches the wall, its ring of fluid is open and the cord would otherwise be left out."""
    radius = max(1, int(round(CANAL_CLOSING_MM / spacing_mm)))
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = np.zeros((3, 2 * radius + 1, 2 * radius + 1), dtype=bool)
    disc[1] = x**2 + y**2 <= radius**2
    padded = np.pad(canal, ((0, 0), (radius, radius), (radius, radius)))
    closed = ndimage.binary_closing(padded, structure=disc)[:, radius:-radius, radius:-radius]
    return fill_holes_in_slices(closed | canal)


def _core_centre(piece: np.ndarray) -> np.ndarray:
    """(y, x) centroid of the thick core of a 2D region (at least half its largest inscribed radius), which
    ignores thin appendages such as root sleeves and foramina."""
    box = ndimage.find_objects(piece.astype(np.uint8))[0]
    depth = ndimage.distance_transform_edt(np.pad(piece[box], 1))[1:-1, 1:-1]
    core = np.array(ndimage.center_of_mass(depth >= 0.5 * depth.max()))
    return core + [box[0].start, box[1].start]


def _piece_near(mask: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Core centre of the 2D piece of ``mask`` nearest to ``previous`` (or of the largest piece)."""
    pieces, count = ndimage.label(mask)
    if previous is None:
        chosen = int(np.argmax(np.bincount(pieces.ravel())[1:])) + 1
    else:
        centroids = np.array(ndimage.center_of_mass(mask, pieces, range(1, count + 1)))
        chosen = int(np.argmin(np.linalg.norm(centroids - previous, axis=1))) + 1
    return _core_centre(pieces == chosen)


def canal_centres(canal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice canal centres: slice indices z (ascending) and (y, x) index centres, tracked from the middle
    slice outwards so that each slice follows its neighbour."""
    slices = np.flatnonzero(canal.any(axis=(1, 2)))
    middle = len(slices) // 2
    centres = np.zeros((len(slices), 2))
    centres[middle] = _piece_near(canal[slices[middle]], None)
    for order in (range(middle + 1, len(slices)), range(middle - 1, -1, -1)):
        for index in order:
            before = index - 1 if index > middle else index + 1
            centres[index] = _piece_near(canal[slices[index]], centres[before])
    return slices, centres


def _odd_window(samples: float, available: int) -> int:
    """The odd window length nearest to ``samples``, at most ``available`` (odd), at least 1."""
    largest = available if available % 2 else available - 1
    return max(1, min(largest, 2 * int(round(0.5 * samples)) + 1))


def spine_curve(canal: np.ndarray, index_to_world: np.ndarray, spacing_mm: float) -> Curve:
    """The smoothed canal centre line, resampled every ``spacing_mm`` of arc length, cranial to caudal.

    Gaps between tracked slices are interpolated, outlier slices removed by a median, and the line smoothed by
    a cubic Savitzky-Golay filter over :data:`CURVE_WINDOW_MM` (longer than a vertebra, so that the canal's
    level-to-level changes of shape do not make the curve wave).
    """
    slices, centres = canal_centres(canal)
    z = np.arange(slices[0], slices[-1] + 1)
    yx = np.column_stack([np.interp(z, slices, centres[:, c]) for c in range(2)])
    yx = ndimage.median_filter(yx, size=(5, 1), mode="nearest")
    window = _odd_window(CURVE_WINDOW_MM / spacing_mm, len(z))
    if window > 3:
        yx = signal.savgol_filter(yx, window, polyorder=3, axis=0, mode="interp")
    ijk = np.column_stack([yx[:, 1], yx[:, 0], z])[::-1]
    points = ijk @ index_to_world[:3, :3].T + index_to_world[:3, 3]
    return _resampled_curve(points, spacing_mm)


def _resampled_curve(points: np.ndarray, step_mm: float) -> Curve:
    """Equal arc-length resampling of a polyline (cranial to caudal) with its local frames."""
    lengths = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    s = np.arange(0.0, lengths[-1] + 1e-9, step_mm)
    out = np.column_stack([np.interp(s, lengths, points[:, c]) for c in range(3)])
    superior = -np.gradient(out, axis=0)
    superior /= np.linalg.norm(superior, axis=1, keepdims=True)
    posterior = np.array([0.0, 1.0, 0.0]) - superior[:, 1:2] * superior
    posterior /= np.linalg.norm(posterior, axis=1, keepdims=True)
    left = np.cross(posterior, superior)
    return Curve(out, superior, posterior, left, float(step_mm))


# ---- straightened block --------------------------------------------------------------------------------------
def straighten(image: np.ndarray, valid: np.ndarray, world_to_index: np.ndarray, curve: Curve,
               canal: np.ndarray) -> Block:
    """Resample the image on planes perpendicular to the curve and find the canal's anterior wall on each.

    Parameters
    ----------
    image, valid : ndarray, shape (nz, ny, nx)
        Fluid-bright intensities and the field-of-view mask on the working grid.
    world_to_index : ndarray, shape (4, 4)
        The working grid's inverse affine.
    curve : Curve
    canal : ndarray of bool
        The canal mask on the working grid.
    """
    h = curve.step_mm
    a_mm = np.arange(-BLOCK_POSTERIOR_MM, BLOCK_ANTERIOR_MM + 1e-9, h)
    l_mm = np.arange(-BLOCK_HALF_WIDTH_MM, BLOCK_HALF_WIDTH_MM + 1e-9, h)
    world = (curve.points[:, None, None, :] - a_mm[None, :, None, None] * curve.posterior[:, None, None, :]
             + l_mm[None, None, :, None] * curve.left[:, None, None, :])
    ijk = world @ world_to_index[:3, :3].T + world_to_index[:3, 3]
    coords = ijk[..., ::-1].transpose(3, 0, 1, 2)
    values = ndimage.map_coordinates(image, coords, order=1, mode="constant", cval=0.0)
    seen = ndimage.map_coordinates(valid.astype(np.float32), coords, order=0, mode="constant", cval=0.0) > 0.5
    midline = coords[:, :, :, [len(l_mm) // 2]]
    inside = ndimage.map_coordinates(canal.astype(np.float32), midline, order=0)[..., 0] > 0.5
    # the wall: the first sample in front of the curve that is outside the canal
    front = a_mm >= 0
    outside = ~inside[:, front]
    first = np.where(outside.any(axis=1), np.argmax(outside, axis=1), outside.shape[1] - 1)
    wall = ndimage.median_filter(a_mm[front][first], size=5, mode="nearest")
    return Block(values, seen, a_mm, l_mm, wall.astype(np.float64))


# ---- discs ---------------------------------------------------------------------------------------------------
def _block_point(curve: Curve, s: float, a_mm: float, l_mm: float) -> np.ndarray:
    """World point of block coordinates (fractional sample ``s``, anterior ``a_mm``, left ``l_mm``)."""
    point, _, posterior, left = curve.frame_at(s)
    return point - a_mm * posterior + l_mm * left


def _ridge_components(block: Block, step_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bright plates across the curve in front of the canal wall.

    The ridge response is minus the second derivative along the curve of the Gaussian-smoothed block, in robust
    standard deviations; voxels above :data:`RIDGE_Z` in front of the canal wall are grouped into components.

    Returns the component labels and ridge response on the front, central part of the block, and that part's
    anterior and lateral coordinates (mm).
    """
    front = block.a_mm >= 0
    central = np.abs(block.l_mm) <= DISC_HALF_WIDTH_MM
    values = block.values[:, front][:, :, central]
    a_mm, l_mm = block.a_mm[front], block.l_mm[central]
    sigma = (RIDGE_SIGMA_MM / step_mm, PLATE_SIGMA_MM / step_mm, PLATE_SIGMA_MM / step_mm)
    ridge = -ndimage.gaussian_filter(values, sigma, order=(2, 0, 0), mode="nearest")
    # brighter than the column above and below it: a disc, not the marrow beside a dark endplate line
    smooth = ndimage.gaussian_filter(values, sigma, mode="nearest")
    reach = 2 * int(round(CONTRAST_REACH_MM / step_mm)) + 1
    brighter = smooth > ndimage.median_filter(smooth, size=(reach, 1, 1), mode="nearest")
    allowed = block.valid[:, front][:, :, central] & (a_mm[None, :, None] >= block.wall_mm[:, None, None] + 1.0)
    sample = ridge[allowed]
    scale = 1.4826 * float(np.median(np.abs(sample - np.median(sample)))) if sample.size else 0.0
    ridge = ridge / max(scale, 1e-12)
    components, _ = ndimage.label(allowed & brighter & (ridge > RIDGE_Z))
    return components, ridge, a_mm, l_mm


def _plate(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted centroid, principal axes (columns, smallest variance first) and extents of a point cloud."""
    centre = np.average(points, axis=0, weights=weights)
    offsets = points - centre
    covariance = (offsets * weights[:, None]).T @ offsets / weights.sum()
    _, axes = np.linalg.eigh(covariance)
    return centre, axes, np.ptp(points, axis=0)


def _half_crossing(profile: np.ndarray, peak: int, half: float, step: int) -> float:
    """Fractional index where ``profile`` first falls below ``half`` walking from ``peak`` by ``step`` (+-1)."""
    index = peak
    while 0 <= index + step < len(profile) and profile[index + step] >= half:
        index += step
    if not 0 <= index + step < len(profile):
        return float(index)
    inside, outside = profile[index], profile[index + step]
    return index + step * float((inside - half) / max(inside - outside, 1e-12))


def _midline_profile(block: Block, a_mm: float) -> np.ndarray:
    """Intensity along the curve at ``a_mm`` in front of it, averaged within 2 mm of that depth and of the midline."""
    rows = np.abs(block.a_mm - a_mm) <= 2.0
    columns = np.abs(block.l_mm) <= 2.0
    return block.values[:, rows][:, :, columns].mean(axis=(1, 2))


def _endplate_drop(profile: np.ndarray, s: float, step_mm: float) -> float:
    """How far the profile falls from its peak at sample ``s`` within :data:`ENDPLATE_REACH_MM` above and below,
    on the side where it falls less, as a fraction of the peak (0 when it does not fall on one side)."""
    centre = int(round(s))
    reach = max(1, int(round(ENDPLATE_REACH_MM / step_mm)))
    above, below = profile[max(0, centre - reach):centre], profile[centre + 1:centre + reach + 1]
    if not len(above) or not len(below):
        return 0.0
    peak = float(profile[max(0, centre - 1):centre + 2].max())
    return max(0.0, peak - max(float(above.min()), float(below.min()))) / max(peak, 1e-12)


def _disc_height(profile: np.ndarray, curve: Curve, s: float, a_mm: float) -> float:
    """Thickness in mm of the bright band of a midline profile (:func:`_midline_profile` at ``a_mm``) through
    sample ``s``: the distance between the points where it falls halfway to the dark endplate lines within 12 mm
    above and below."""
    reach = int(round(12.0 / curve.step_mm))
    start = max(0, int(round(s)) - reach)
    window = profile[start:int(round(s)) + reach + 1]
    centre = int(round(s)) - start
    peak = max(range(max(0, centre - 1), min(len(window), centre + 2)), key=lambda i: window[i])
    half = 0.5 * (window[peak] + float(window.min()))
    ends = [_block_point(curve, start + _half_crossing(window, peak, half, step), a_mm, 0.0) for step in (-1, 1)]
    return float(np.linalg.norm(ends[1] - ends[0]))


def disc_candidates(block: Block, curve: Curve) -> list[Disc]:
    """Every plate-like bright ridge in front of the canal that could be a disc, cranial to caudal.

    On T2 a disc's water-rich nucleus is brighter than the marrow above and below it, and the disc is thin along
    the curve but extended front to back and side to side. A candidate must span :data:`MIN_DISC_LENGTH_MM` by
    :data:`MIN_DISC_WIDTH_MM`, tilt at most :data:`MAX_DISC_TILT_DEG` against the curve's cross-section, and lie
    between two dark endplates (:data:`MIN_ENDPLATE_DROP`).
    """
    h = curve.step_mm
    components, ridge, a_mm, l_mm = _ridge_components(block, h)
    found = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        where = np.nonzero(components[box] == index)
        s_idx, a_idx, l_idx = (w + b.start for w, b in zip(where, box, strict=True))
        points = np.column_stack([s_idx * h, a_mm[a_idx], l_mm[l_idx]])
        weights = ridge[s_idx, a_idx, l_idx] - RIDGE_Z
        centre, axes, extent = _plate(points, weights)
        normal = axes[:, 0] * np.sign(axes[0, 0] or 1.0)
        if extent[1] + h < MIN_DISC_LENGTH_MM or extent[2] + h < MIN_DISC_WIDTH_MM:
            continue
        if normal[0] < np.cos(np.radians(MAX_DISC_TILT_DEG)):
            continue
        profile = _midline_profile(block, float(centre[1]))
        if _endplate_drop(profile, centre[0] / h, h) < MIN_ENDPLATE_DROP:
            continue
        found.append(_disc_from_plate(curve, profile, centre, axes, float(weights.sum())))
    return sorted(found, key=lambda disc: disc.s)


def _disc_from_plate(curve: Curve, profile: np.ndarray, centre: np.ndarray, axes: np.ndarray, strength: float) -> Disc:
    """A Disc from a plate's centroid and axes in block millimetres (s, a, l) and its midline profile."""
    h = curve.step_mm
    s = centre[0] / h
    origin = _block_point(curve, s, centre[1], centre[2])
    in_plane = [_block_point(curve, s + axis[0] / h, centre[1] + axis[1], centre[2] + axis[2]) - origin
                for axis in axes[:, 1:].T]
    normal = _unit(np.cross(in_plane[0], in_plane[1]))
    if np.dot(normal, curve.frame_at(s)[1]) < 0:
        normal = -normal
    return Disc(float(s), origin, normal, _disc_height(profile, curve, s, float(centre[1])), float(centre[1]), strength)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])


def _best_chain(positions_mm: np.ndarray, weights: np.ndarray, pitch_mm: float, cost: float) -> tuple[list[int], float]:
    """The chain of candidates (ascending positions) with the highest total weight minus ``cost`` per member,
    consecutive members ``pitch_mm`` apart within :data:`PITCH_TOLERANCE` (dynamic programming)."""
    n = len(positions_mm)
    best = weights - cost
    previous = np.full(n, -1)
    for j in range(n):
        for i in range(j):
            deviation = (positions_mm[j] - positions_mm[i] - pitch_mm) / (PITCH_TOLERANCE * pitch_mm)
            if abs(deviation) <= 1.0:
                linked = best[i] + weights[j] - cost - cost * deviation**2
                if linked > best[j]:
                    best[j], previous[j] = linked, i
    chain = [int(np.argmax(best))]
    while previous[chain[-1]] >= 0:
        chain.append(int(previous[chain[-1]]))
    return chain[::-1], float(best.max())


def select_discs(candidates: list[Disc], step_mm: float) -> list[Disc]:
    """The candidates that form the column, cranial to caudal.

    Discs lie at a common depth in front of the canal: the strength-weighted median depth of the candidates at
    least :data:`STRONG_FRACTION` as strong as the strongest. Candidates farther from it than
    :data:`DEPTH_SPREAD_FRACTION` of it (at least :data:`MIN_DEPTH_SPREAD_MM`) are dropped: veins near the canal
    wall, lesions, vessels in front. Discs repeat with a near-constant pitch: for every pitch in
    :data:`PITCH_RANGE_MM`, the regularly spaced chain with the highest summed ridge strength is found, and the
    best chain over all pitches wins.
    """
    if not candidates:
        return []
    depths = np.array([d.depth_mm for d in candidates])
    weights = np.array([d.strength for d in candidates])
    strong = weights >= STRONG_FRACTION * weights.max()
    median_depth = _weighted_median(depths[strong], weights[strong])
    spread = max(MIN_DEPTH_SPREAD_MM, DEPTH_SPREAD_FRACTION * median_depth)
    near = sorted((d for d in candidates if abs(d.depth_mm - median_depth) <= spread), key=lambda d: d.s)
    positions = np.array([d.s * step_mm for d in near])
    strengths = np.array([d.strength for d in near])
    cost = CHAIN_MEMBER_COST * float(strengths.max())
    chains = [_best_chain(positions, strengths, pitch, cost)
              for pitch in np.arange(PITCH_RANGE_MM[0], PITCH_RANGE_MM[1] + 1e-9, 0.5)]
    chain, _ = max(chains, key=lambda item: item[1])
    return [near[i] for i in chain]
