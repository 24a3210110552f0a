"""Raster drawing on image arrays: projected masks, their outlines, text panels and colours.

Plain functions over (rows, cols) masks and (rows, cols, 3) uint8 RGB images; pixel coordinates are
(col, row) with pixel centres at whole numbers, as :meth:`needleplan.CArm.project` gives them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

__all__ = ["band_mask", "blend", "font", "gray_to_rgb", "hex_to_rgb", "hull_mask", "outline", "paint", "text_panel",
           "wrap_to_width"]

RGB = tuple[int, int, int]


def hex_to_rgb(colour: str) -> RGB:
    """``"#rrggbb"`` -> (r, g, b) in 0-255."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def gray_to_rgb(display: np.ndarray) -> np.ndarray:
    """A [0, 1] monitor image (rows, cols) -> uint8 RGB (rows, cols, 3); NaN shows black."""
    gray = np.rint(np.clip(np.nan_to_num(display, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def band_mask(shape: tuple[int, int], cols: np.ndarray, rows: np.ndarray, radius_px: float) -> np.ndarray:
    """Pixels within ``radius_px`` of a 2D polyline (vertices ``cols``, ``rows``), as a boolean (rows, cols) mask."""
    mask = np.zeros(shape, dtype=bool)
    points = np.column_stack([cols, rows]).astype(np.float64)
    if len(points) == 0 or not np.all(np.isfinite(points)):
        return mask
    if len(points) == 1:
        points = np.vstack([points, points])
    reach = radius_px + 1.0
    low = np.floor(points.min(axis=0) - reach).astype(int)
    high = np.ceil(points.max(axis=0) + reach).astype(int)
    c0, r0 = max(low[0], 0), max(low[1], 0)
    c1, r1 = min(high[0], shape[1] - 1), min(high[1], shape[0] - 1)
    if c0 > c1 or r0 > r1:
        return mask
    grid_r, grid_c = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(np.float64)
    nearest = np.full(grid_r.shape, np.inf)
    for a, b in zip(points[:-1], points[1:], strict=True):
        axis = b - a
        length2 = max(float(axis @ axis), 1e-12)
        t = np.clip(((grid_c - a[0]) * axis[0] + (grid_r - a[1]) * axis[1]) / length2, 0.0, 1.0)
        nearest = np.minimum(nearest, np.hypot(grid_c - a[0] - t * axis[0], grid_r - a[1] - t * axis[1]))
    mask[r0:r1 + 1, c0:c1 + 1] = nearest <= radius_px
    return mask


def hull_mask(shape: tuple[int, int], cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The filled convex hull of 2D points as a boolean (rows, cols) mask (empty for fewer than 3 points)."""
    points = np.column_stack([cols, rows]).astype(np.float64)
    points = points[np.all(np.isfinite(points), axis=1)]
    if len(points) < 3:
        return np.zeros(shape, dtype=bool)
    try:
        polygon = points[ConvexHull(points).vertices]
    except QhullError:  # collinear: a line seen edge-on
        return band_mask(shape, points[:, 0], points[:, 1], 1.0)
    canvas = Image.new("1", (shape[1], shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in polygon], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def outline(mask: np.ndarray, width_px: int = 2) -> np.ndarray:
    """The inner border of a mask, ``width_px`` pixels wide (pixels of the mask next to its outside)."""
    if not mask.any():
        return mask.copy()
    inner = ndimage.binary_erosion(mask, iterations=max(1, int(width_px)), border_value=0)
    return mask & ~inner


def paint(image: np.ndarray, mask: np.ndarray, colour: RGB) -> None:
    """Set the pixels of ``mask`` to ``colour`` in place."""
    image[mask] = colour


def blend(image: np.ndarray, mask: np.ndarray, colour: RGB, alpha: float) -> None:
    """Tint the pixels of ``mask`` toward ``colour`` by ``alpha`` (0-1) in place."""
    mixed = (1.0 - alpha) * image[mask].astype(np.float64) + alpha * np.asarray(colour, dtype=np.float64)
    image[mask] = np.rint(mixed).astype(np.uint8)


def font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at about ``size_px`` pixels (the fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def wrap_to_width(text: str, face: ImageFont.ImageFont | ImageFont.FreeTypeFont, width_px: int) -> list[str]:
    """Break ``text`` into lines no wider than ``width_px`` when drawn in ``face`` (words are never split)."""
    average = max(face.getlength("abcdefghijklmnopqrstuvwxyz") / 26.0, 1.0)
    chars = max(int(width_px / average), 8)
    while True:
        lines = textwrap.wrap(text, chars) or [""]
        if chars <= 8 or max(face.getlength(line) for line in lines) <= width_px:
            return lines
        chars -= 2


def text_panel(image: np.ndarray, lines: Sequence[tuple[str, RGB]], anchor: str, size_px: int,
               swatches: Sequence[RGB | None] = (), opacity: float = 0.65) -> np.ndarray:
    """Draw lines of coloured text on a dark translucent box in a corner of an RGB image.

    Parameters
    ----------
    image : ndarray (rows, cols, 3) uint8
    lines : sequence of (text, colour)
    anchor : {"top-left", "top-right", "bottom-left", "bottom-right"}
    size_px : int
        Text height in pixels.
    swatches : sequence of colour or None
        Optional colour square drawn before each line (legends).
    opacity : float
        Of the box behind the text.

    Returns
    -------
    ndarray
        A new image with the panel.
    """
    face = font(size_px)
    pad = max(2, size_px // 3)
    swatch = size_px if any(s is not None for s in swatches) else 0
    gap = pad if swatch else 0
    step = int(round(size_px * 1.3))
    width = int(max((face.getlength(text) for text, _ in lines), default=0)) + swatch + gap + 2 * pad
    height = step * len(lines) + 2 * pad
    rows, cols = image.shape[:2]
    x0 = pad if anchor.endswith("left") else cols - width - pad
    y0 = pad if anchor.startswith("top") else rows - height - pad
    canvas = Image.fromarray(image).convert("RGBA")
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle([x0, y0, x0 + width, y0 + height], fill=(0, 0, 0, int(255 * opacity)))
    for number, (text, colour) in enumerate(lines):
        y = y0 + pad + number * step
        colour_box = swatches[number] if number < len(swatches) else None
        if colour_box is not None:
            draw.rectangle([x0 + pad, y + 1, x0 + pad + swatch - 2, y + swatch - 1], fill=(*colour_box, 255))
        draw.text((x0 + pad + swatch + gap, y), text, fill=(*colour, 255), font=face)
    return np.array(Image.alpha_composite(canvas, layer).convert("RGB"))
