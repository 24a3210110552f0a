"""Everything a plan run leaves in its output folder: plan.json, the annotated views, 3D pictures, report.html and
report.pdf (one page per plan), the views and the report also as DICOM.

Used by ``needleplan plan`` and the demo. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..anatomy import Spine
from ..io.atomic import atomic_file
from ..io.dicom_capture import CaptureSeries
from ..volume import Volume
from .model import Plan
from .overlay import render_plan_views, write_view_images
from .picture import plan_picture, plan_scene
from .report import write_report
from .report_pages import plan_page, write_report_pdf

__all__ = ["plan_document", "write_plan_outputs"]

#: Sub-folder of the output folder that holds the PNGs.
IMAGES = "images"
#: Sub-folder that holds the same views as DICOM Secondary Capture images (one series, no identity).
DICOM = "dicom"


def plan_document(plans: Sequence[Plan], skipped: Mapping[str, str] | None = None, single: bool = True
                  ) -> dict[str, Any]:
    """The plan.json document: one plan's ``to_dict()``, or {"plans", "skipped", "needles"} for several.

    ``needles`` lists the needles of the feasible plans, so that ``needleplan render --needle-from`` reads the file.
    """
    if single and len(plans) == 1 and not skipped:
        return plans[0].to_dict()
    return {"schema": "needleplan.plans/1", "plans": [plan.to_dict() for plan in plans],
            "skipped": dict(skipped or {}),
            "needles": [plan.needle.to_dict() for plan in plans if plan.feasible and plan.needle is not None]}


def write_plan_outputs(volume: Volume, spine: Spine, plans: Sequence[Plan], out_dir: str | os.PathLike[str], *,
                       skipped: Mapping[str, str] | None = None, single: bool = True, size: int = 512,
                       source: str = "", picture_size: tuple[int, int] = (900, 700)) -> dict[str, Any]:
    """Render, draw and write the outputs of plans made on ``volume`` / ``spine`` into ``out_dir``.

    Parameters
    ----------
    volume : Volume
        The CT (HU) the plans were made on.
    spine : Spine
        Its segmentation.
    plans : sequence of Plan
    out_dir : path
        Created when missing. Gets ``plan.json``, ``report.html``, ``report.pdf`` (one A4 page per plan),
        ``images/<plan>-NN-<view>.png`` (one per view of each feasible plan), the same views as DICOM Secondary
        Capture images in ``dicom/`` (one series, no patient identity) with the report as a DICOM Encapsulated PDF
        (``dicom/report.dcm``, same study), and ``images/<plan>-3d.png`` (every plan; an infeasible one shows its
        target).
    skipped : mapping, optional
        Plans that could not be made and why (``CasePlans.skipped``).
    single : bool
        Write one plan as the bare plan document (else always the {"plans": ...} form).
    size : int
        Pixels per side of the simulated fluoroscopy.
    source : str
        What the report names as the input.
    picture_size : (width, height)
        Of the 3D pictures.

    Returns
    -------
    dict
        ``plan_json``, ``report``, ``report_pdf`` (paths), ``views`` (plan name -> list of paths), ``pictures``
        (plan name -> path).
    """
    out = Path(out_dir)
    images = out / IMAGES
    captures = CaptureSeries("needleplan plan views")
    views: dict[str, list] = {}
    view_paths: dict[str, list[Path]] = {}
    pictures: dict[str, Path] = {}
    scene = None
    pages = []
    for plan in plans:
        scene = scene or plan_scene(spine)
        pictures[plan.name] = plan_picture(plan, scene, images / f"{plan.name}-3d.png", size=picture_size)
        if not plan.feasible or plan.needle is None:
            pages.append(plan_page(plan, source=source))
            continue
        rendered = render_plan_views(volume, spine, plan, size=size)
        paths = write_view_images(rendered, images, prefix=f"{plan.name}-")
        views[plan.name] = [(image.view, path) for image, path in zip(rendered, paths, strict=True)]
        view_paths[plan.name] = paths
        for image, path in zip(rendered, paths, strict=True):
            captures.write(image.rgb, out / DICOM / path.with_suffix(".dcm").name,
                           f"{plan.name}: {image.view.name} ({image.view.words}); simulated fluoroscopy with the "
                           "planned needle, a planning aid")
        pages.append(plan_page(plan, [(image.view, image.rgb) for image in rendered], source))
    plan_json = out / "plan.json"
    with atomic_file(plan_json) as tmp:
        tmp.write_text(json.dumps(plan_document(plans, skipped, single), indent=1) + "\n", encoding="utf-8")
    report = write_report(out / "report.html", plans, views=views, pictures=pictures, skipped=skipped,
                          source=source)
    report_pdf = out / "report.pdf"
    if pages:
        captures.write_pdf(write_report_pdf(report_pdf, pages), out / DICOM / "report.dcm",
                           "needleplan plan report (planning aid)")
    return {"plan_json": plan_json, "report": report, "report_pdf": report_pdf if pages else None,
            "views": view_paths, "pictures": pictures}
