"""The report as printed pages: one A4 page per plan (its facts, verdict, views and safety table), written as a PDF
and, for a PACS, as a DICOM Encapsulated PDF (:meth:`needleplan.io.dicom_capture.CaptureSeries.write_pdf`).

The pages are pictures drawn with Pillow; their words come from the same functions as report.html's.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .. import __version__
from ..errors import NeedleplanError
from ..io.atomic import atomic_file
from .model import Plan, View
from .report import clearance_words, facts_rows, levels_statements, needle_words, plan_warnings
from .procedures import get_procedure

__all__ = ["PAGE_PX", "plan_page", "report_pdf", "write_report_pdf"]

#: A4 portrait at 150 dots per inch (width, height).
PAGE_PX = (1240, 1754)
_MARGIN = 70
_LABEL_PX = 360
_CAPTION_LINES = 4
_DPI = 150.0
_COLOURS = {"text": (29, 35, 48), "muted": (74, 83, 101), "ok": (23, 102, 58), "warning": (154, 91, 0),
            "violation": (179, 38, 30), "rule": (201, 209, 221), "confirmed": (232, 244, 236),
            "automatic": (255, 244, 224)}


def _char_px(font: ImageFont.FreeTypeFont | ImageFont.ImageFont) -> float:
    """Mean width (pixels) of a character of English text in ``font``."""
    sample = "the needle passes 12 mm from the Canal, Tip; "
    return max(float(font.getlength(sample)) / len(sample), 1.0)


class _Writer:
    """Draws wrapped lines down a page."""

    def __init__(self, page: Image.Image) -> None:
        self.draw = ImageDraw.Draw(page)
        self.y = _MARGIN
        self.fonts = {size: ImageFont.load_default(size=size) for size in (16, 19, 24, 30)}

    def text(self, words: str, size: int = 19, colour: str = "text", indent: int = 0, gap: int = 6) -> None:
        width_px = PAGE_PX[0] - 2 * _MARGIN - indent
        font = self.fonts[size]
        chars = max(20, int(width_px / _char_px(font)))
        for line in textwrap.wrap(words, chars) or [""]:
            if self.y > PAGE_PX[1] - _MARGIN - size:
                return
            self.draw.text((_MARGIN + indent, self.y), line, fill=_COLOURS[colour], font=font)
            self.y += size + gap

    def pair(self, what: str, words: str, colour: str = "text") -> None:
        """A "what: words" row, the label wrapped in a column of its own."""
        start = self.y
        labels = textwrap.wrap(what, int(_LABEL_PX / _char_px(self.fonts[16])) - 1) or [""]
        for n, line in enumerate(labels):
            self.draw.text((_MARGIN, start + 20 * n), line, fill=_COLOURS["muted"], font=self.fonts[16])
        self.text(words, 19, colour, indent=_LABEL_PX + 20, gap=5)
        self.y = max(self.y, start + 20 * len(labels) + 4)

    def rule(self) -> None:
        self.y += 6
        self.draw.line([(_MARGIN, self.y), (PAGE_PX[0] - _MARGIN, self.y)], fill=_COLOURS["rule"], width=2)
        self.y += 12


def plan_page(plan: Plan, views: Sequence[tuple[View, np.ndarray]] = (), source: str = "") -> Image.Image:
    """One A4 page (RGB) of a plan: levels, verdict, facts, the views with their angles, the safety table.

    Parameters
    ----------
    plan : Plan
    views : sequence of (View, (H, W, 3) uint8 image)
        The annotated simulated fluoroscopy of each view, in order.
    source : str
        What was planned on (no patient identity: the CLI gives the grid and a content digest).
    """
    page = Image.new("RGB", PAGE_PX, "white")
    out = _Writer(page)
    procedure = get_procedure(plan.procedure)
    out.text(f"{procedure.level_words(plan.level, plan.approach)}, {plan.side}: {procedure.title}", 30)
    out.text(f"needleplan {__version__}; plan {plan.name}" + (f"; {source}" if source else "") + ". A planning aid: "
             "check every step on the live images. Nerves are modelled from bone landmarks, not seen.", 16, "muted")
    for confirmed, headline, _ in levels_statements([plan]):
        top = out.y
        out.y += 6
        out.text(headline, 19, "ok" if confirmed else "warning", indent=14)
        out.draw.rectangle([(_MARGIN, top), (_MARGIN + 6, out.y)], fill=_COLOURS["ok" if confirmed else "warning"])
    out.rule()
    if not plan.feasible:
        out.text("NOT FEASIBLE: no safe straight path.", 24, "violation")
        out.text(plan.reason, 19, "violation")
    else:
        warnings = plan_warnings(plan)
        out.text("FEASIBLE: every rule of the procedure passed" + (", with warnings" if warnings else "") + ".", 24,
                 "warning" if warnings else "ok")
        for what, words in facts_rows(plan):
            out.pair(what, words)
        needle = needle_words(plan)
        if needle:
            out.pair("needle", needle, "text" if plan.needle_choice and plan.needle_choice.standard else "violation")
        for warning in warnings:
            out.text(f"Warning: {warning}", 19, "warning")
    out.pair("target", plan.target_region.description)
    out.rule()
    if views:
        _draw_views(page, out, views)
    if plan.safety.items:
        out.text("Safety (clearances in mm: minimum along the needle / at the tip)", 19, "muted")
        for item in plan.safety.items:
            values = (item.clearance_mm, item.tip_clearance_mm)
            numbers = f" ({' / '.join(map(clearance_words, values))})" if np.isfinite(values).any() else ""
            words = f"{item.status}: {item.message}" if item.message else f"{item.status} (rule: {item.rule})"
            out.pair(f"{item.structure}{numbers}", words, item.status if item.status != "ok" else "text")
    return page


def _draw_views(page: Image.Image, out: _Writer, views: Sequence[tuple[View, np.ndarray]]) -> None:
    """The views in a grid of three per row, each with its number, name and C-arm angles under it."""
    columns, gap = 3, 20
    width = (PAGE_PX[0] - 2 * _MARGIN - (columns - 1) * gap) // columns
    for start in range(0, len(views), columns):
        row = views[start:start + columns]
        if out.y + width + 19 * _CAPTION_LINES + 14 > PAGE_PX[1] - _MARGIN:
            out.text(f"({len(views) - start} more views in report.html)", 16, "muted")
            return
        top = out.y
        for k, (view, rgb) in enumerate(row):
            x = _MARGIN + k * (width + gap)
            page.paste(Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize((width, width)), (x, top))
            caption = textwrap.wrap(f"{start + k + 1}. {view.name}: {view.words}", 40)[:_CAPTION_LINES]
            for n, line in enumerate(caption):
                out.draw.text((x, top + width + 4 + 19 * n), line, fill=_COLOURS["text"], font=out.fonts[16])
        out.y = top + width + 4 + 19 * _CAPTION_LINES + 10


def report_pdf(pages: Sequence[Image.Image]) -> bytes:
    """The pages as one PDF document (150 dots per inch, A4)."""
    if not pages:
        raise NeedleplanError("a report needs at least one page")
    buffer = io.BytesIO()
    pages[0].save(buffer, "PDF", resolution=_DPI, save_all=True, append_images=list(pages[1:]),
                  title="needleplan plan report", author="needleplan", creator=f"needleplan {__version__}")
    return buffer.getvalue()


def write_report_pdf(path: str | os.PathLike[str], pages: Sequence[Image.Image]) -> bytes:
    """Write :func:`report_pdf` to ``path`` atomically; returns the PDF's bytes."""
    data = report_pdf(pages)
    with atomic_file(Path(path)) as tmp:
        tmp.write_bytes(data)
    return data
