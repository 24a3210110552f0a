"""The physician's report: one self-contained HTML page per case (images inline, no scripts, no links out).

Per plan: level, side, approach, skin entry (offsets from the midline and landmarks), angles in words relative to
the table and to the squared endplate, depth, the needle, the C-arm views with their simulated images and what to
see in each, the safety table, warnings, notes and, for RFA, the lesion. Infeasible plans are listed with their
reason. Several plans get a summary table first. Every text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import __version__
from ..io.atomic import atomic_file
from .model import Plan, View
from .procedures import get_procedure

__all__ = ["clearance_words", "facts_rows", "levels_statements", "needle_words", "offset_words", "plan_warnings",
           "report_html", "table_angle_words", "write_report"]

Image = bytes | str | os.PathLike
"""A PNG as bytes or as the path of a file."""

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#1d2330;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-top:2px solid #c9d1dd;padding-top:.8em;margin-top:2em}
h3{margin-bottom:.3em}
table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #c9d1dd;padding:.3em .6em;text-align:left;
vertical-align:top}th{background:#eef2f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17663a;font-weight:600}.warning{color:#9a5b00;font-weight:600}.violation{color:#b3261e;font-weight:700}
.badge{display:inline-block;padding:.1em .5em;border-radius:.3em;font-size:.8em;vertical-align:middle;color:#fff}
.badge.feasible{background:#17663a}.badge.infeasible{background:#b3261e}
.note{color:#4a5365}.caution{background:#fff4e0;border-left:4px solid #e0a030;padding:.4em .8em}
figure{margin:0}.views{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:1em}
.views img{width:100%;height:auto;border:1px solid #c9d1dd}.picture img{max-width:100%;height:auto}
figcaption{font-size:.92em}small{color:#4a5365}
.levels{padding:.5em .9em;margin:.8em 0;border-left:6px solid}.levels.confirmed{background:#e8f4ec;border-color:#17663a}
.levels.automatic{background:#fff4e0;border-color:#e0a030}.levels ul{margin:.3em 0 0}
@media print{body{max-width:none;margin:0;font-size:10pt}section{break-before:page}h2{border-top:none;margin-top:0}
.views{grid-template-columns:repeat(3,1fr)}figure,table,tr{break-inside:avoid}
.badge,.levels,.caution{-webkit-print-color-adjust:exact;print-color-adjust:exact}a{color:inherit;text-decoration:none}}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _data_uri(image: Image) -> str:
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _mm(value: float | None, digits: int = 0) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f} mm"


def clearance_words(value: float) -> str:
    """A clearance cell: one decimal, or a dash when the rule has no distance (bone on the way)."""
    return f"{value:.1f}" if math.isfinite(value) else "-"


# ---- words ---------------------------------------------------------------------------------------------------------
def table_angle_words(oblique_deg: float, tilt_deg: float, side: str) -> str:
    """C-arm angles relative to the table, e.g. "25 degrees left oblique (ipsilateral), 10 degrees caudal"."""
    if round(oblique_deg) == 0:
        oblique = "AP (no oblique)"
    else:
        toward = "left" if oblique_deg > 0 else "right"
        relation = "ipsilateral" if toward == side else "contralateral"
        oblique = f"{abs(oblique_deg):.0f} degrees {toward} oblique ({relation})"
    tilt = "no tilt" if round(tilt_deg) == 0 else (
        f"{abs(tilt_deg):.0f} degrees {'caudal' if tilt_deg > 0 else 'cephalad'} tilt")
    return f"{oblique}, {tilt}"


def endplate_tilt_words(tilt_from_endplate_deg: float | None) -> str:
    """The tilt relative to the squared endplate in words."""
    if tilt_from_endplate_deg is None:
        return "-"
    if round(tilt_from_endplate_deg) == 0:
        return "at the squared endplate"
    way = "caudal" if tilt_from_endplate_deg > 0 else "cephalad"
    return f"{abs(tilt_from_endplate_deg):.0f} degrees {way} of the squared endplate"


def offset_words(key: str, value_mm: float) -> tuple[str, str]:
    """A plan's entry offset key and value -> (what it is measured from, the offset in words)."""
    words = key.removesuffix("_mm").split("_")
    if words[:2] == ["from", "midline"]:
        return "midline", f"{abs(value_mm):.0f} mm {'left' if value_mm >= 0 else 'right'}"
    if words[0] == "from" and words[-1] in ("cranial", "medial", "left", "lateral"):
        opposite = {"cranial": "caudal", "medial": "lateral", "left": "right", "lateral": "medial"}[words[-1]]
        landmark = " ".join(words[1:-1]).replace("psis", "PSIS")
        return landmark, f"{abs(value_mm):.0f} mm {words[-1] if value_mm >= 0 else opposite}"
    return " ".join(words), f"{value_mm:.0f} mm"


def _level_words(plan: Plan) -> str:
    return get_procedure(plan.procedure).level_words(plan.level, plan.approach)


def _heading(plan: Plan) -> str:
    return f"{_level_words(plan)}, {plan.side}: {get_procedure(plan.procedure).title}"


# ---- page ------------------------------------------------------------------------------------------------------------
def report_html(plans: Sequence[Plan], *, views: Mapping[str, Sequence[tuple[View, Image]]] | None = None,
                pictures: Mapping[str, Image] | None = None, skipped: Mapping[str, str] | None = None,
                source: str = "", title: str = "needleplan: needle plan") -> str:
    """The report as one HTML string.

    Parameters
    ----------
    plans : sequence of Plan
    views : mapping of plan name to [(View, PNG)], optional
        The annotated simulated fluoroscopy of each view (:mod:`needleplan.plan.overlay`).
    pictures : mapping of plan name to PNG, optional
        The 3D picture of each plan (:mod:`needleplan.plan.picture`).
    skipped : mapping of str to str, optional
        Plans that could not be made, with the reason.
    source : str
        What was planned on (a file name or "phantom seed 0"); shown as given.
    title : str
    """
    views = views or {}
    pictures = pictures or {}
    skipped = skipped or {}
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{_e(title)}</title>\n"
             f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{_e(title)}</h1>\n"]
    facts = [f"needleplan {__version__}"] + ([f"input: {source}"] if source else [])
    parts.append(f"<p class=\"note\">{_e('; '.join(facts))}. Frame: patient LPS, millimetres; the patient lies "
                 "prone; C-arm angles as the operator sets them (oblique toward the patient's left or right, caudal "
                 "tilt = detector toward the feet). Nerves are modelled from bone landmarks, not seen. A planning "
                 "aid: check every step on the live images.</p>\n")
    parts.append(_levels_banner(plans))
    if len(plans) > 1 or skipped:
        parts.append(_summary_table(plans, skipped))
    for plan in plans:
        parts.append(_plan_section(plan, views.get(plan.name, ()), pictures.get(plan.name)))
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def write_report(path: str | os.PathLike[str], plans: Sequence[Plan], **options: object) -> Path:
    """Write :func:`report_html` to ``path`` atomically (UTF-8); returns the path."""
    path = Path(path)
    text = report_html(plans, **options)  # type: ignore[arg-type]
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def levels_statements(plans: Sequence[Plan]) -> list[tuple[bool, str, list[str]]]:
    """How the levels were named, once per numbering: (confirmed by a person or labels, headline, details)."""
    numberings = {repr(plan.numbering): plan.numbering for plan in plans if plan.numbering}
    out = []
    for numbering in numberings.values():
        confirmed = bool(numbering.get("confirmed_by"))
        state = (f"confirmed by the {numbering['confirmed_by']}" if confirmed else
                 "automatic, not confirmed by a person: count the levels on the live images before treating")
        items = [f"{name}: {said}" for name, said in numbering.get("anchors", {}).items()]
        items += list(numbering.get("notes", []))
        out.append((confirmed, f"Levels numbered from {numbering.get('anchor', '?')}, confidence "
                               f"{float(numbering.get('confidence', 0)):.2f}; {state}.", items))
    return out


def _levels_banner(plans: Sequence[Plan]) -> str:
    """How the levels were named, at the top: every plan inherits the numbering's certainty."""
    out = []
    for confirmed, headline, items in levels_statements(plans):
        listed = "".join(f"<li>{_e(item)}</li>" for item in items)
        out.append(f"<div class=\"levels {'confirmed' if confirmed else 'automatic'}\"><strong>{_e(headline)}"
                   f"</strong><ul>{listed}</ul></div>\n")
    return "".join(out)


def _summary_table(plans: Sequence[Plan], skipped: Mapping[str, str]) -> str:
    rows = []
    for plan in plans:
        if plan.feasible:
            status = "feasible" + (", with warnings" if plan_warnings(plan) else "")
            css = "warning" if plan_warnings(plan) else "ok"
            assert plan.oblique_deg is not None and plan.tilt_deg is not None  # a feasible plan has its path
            angles = table_angle_words(plan.oblique_deg, plan.tilt_deg, plan.side)
            needle = (f"{plan.needle_choice.gauge}G {plan.needle_choice.length_mm:.0f} mm"
                      if plan.needle_choice else "-")
        else:
            status, css, angles, needle = "not feasible", "violation", plan.reason, "-"
        rows.append(f"<tr><td><a href=\"#{_e(plan.name)}\">{_e(plan.name)}</a></td><td>{_e(_level_words(plan))}"
                    f"</td><td>{_e(plan.side)}</td><td>{_e(plan.approach)}</td><td class=\"{css}\">{_e(status)}</td>"
                    f"<td>{_e(angles)}</td><td class=\"num\">{_e(_mm(plan.depth_mm))}</td><td>{_e(needle)}</td></tr>")
    for name, why in skipped.items():
        rows.append(f"<tr><td>{_e(name)}</td><td colspan=\"3\"></td><td class=\"violation\">not planned</td>"
                    f"<td colspan=\"3\">{_e(why)}</td></tr>")
    return ("<h2 id=\"summary\">Summary</h2>\n<table><tr><th>plan</th><th>target</th><th>side</th><th>approach</th>"
            "<th>status</th><th>trajectory (table angles)</th><th>depth</th><th>needle</th></tr>\n"
            + "\n".join(rows) + "\n</table>\n")


def plan_warnings(plan: Plan) -> list[str]:
    """The warnings of a plan's safety report and needle choice, as report.html lists them."""
    return list(plan.safety.to_dict()["warnings"])


def _plan_section(plan: Plan, views: Sequence[tuple[View, Image]], picture: Image | None) -> str:
    badge = ("<span class=\"badge feasible\">feasible</span>" if plan.feasible
             else "<span class=\"badge infeasible\">not feasible</span>")
    parts = [f"<section id=\"{_e(plan.name)}\">\n<h2>{_e(_heading(plan))} {badge}</h2>\n"
             f"<p>Plan <b>{_e(plan.name)}</b>; approach: <b>{_e(plan.approach)}</b>; target: "
             f"{_e(plan.target_region.description)}.</p>\n"]
    if not plan.feasible:
        parts.append(f"<p class=\"caution\"><b>No safe straight path:</b> {_e(plan.reason)}</p>\n")
    if plan.entry_mm is not None and plan.feasible:
        parts.append(_facts_table(plan))
    if picture is not None:
        parts.append(f"<figure class=\"picture\"><img alt=\"3D picture of {_e(plan.name)}\" "
                     f"src=\"{_data_uri(picture)}\"><figcaption>The plan in 3D: bone, needle, target and no-go "
                     "structures, seen from behind and from the plan's side.</figcaption></figure>\n")
    if views:
        parts.append(_views_section(views))
    if plan.safety.items:
        parts.append(_safety_table(plan))
    warnings = plan_warnings(plan)
    if warnings:
        parts.append("<h3>Warnings</h3>\n<ul>" + "".join(f"<li class=\"warning\">{_e(w)}</li>" for w in warnings)
                     + "</ul>\n")
    if plan.lesion is not None:
        parts.append(_lesion_table(plan))
    if plan.notes:
        parts.append("<h3>Notes</h3>\n<ul>" + "".join(f"<li>{_e(n)}</li>" for n in plan.notes) + "</ul>\n")
    parts.append(_coordinates(plan))
    parts.append("</section>\n")
    return "".join(parts)


def facts_rows(plan: Plan) -> list[tuple[str, str]]:
    """The plan's facts as (what, words) rows: level, entry, angles, depth (the needle is :func:`needle_words`)."""
    assert plan.oblique_deg is not None and plan.tilt_deg is not None, "facts_rows needs a plan with a path"
    rows = [("level and side", f"{_level_words(plan)}, {plan.side}"),
            ("skin entry", plan.entry_in_words or "-")]
    rows += [(f"entry from the {where}", words) for where, words in
             (offset_words(key, value) for key, value in plan.entry_offsets.items())]
    rows += [("trajectory, relative to the table", table_angle_words(plan.oblique_deg, plan.tilt_deg, plan.side))]
    if plan.tilt_from_endplate_deg is not None:
        rows += [("trajectory, relative to the squared endplate", endplate_tilt_words(plan.tilt_from_endplate_deg)),
                 ("squared endplate", f"{plan.reference_endplate} squares at "
                                      f"{table_angle_words(plan.oblique_deg, plan.squared_tilt_deg, plan.side)}")]
    return rows + [("depth (skin to target)", _mm(plan.depth_mm))]


def needle_words(plan: Plan) -> str | None:
    """The needle to take in words, with a caution when a standard one does not reach (None: no needle)."""
    choice = plan.needle_choice
    if choice is None:
        return None
    return choice.note + ("" if choice.standard else " (a standard needle does not reach)")


def _facts_table(plan: Plan) -> str:
    choice = plan.needle_choice
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts_rows(plan))
    if choice is not None:
        css = "" if choice.standard else " class=\"caution\""
        cells += f"<tr><th>needle</th><td{css}>{_e(needle_words(plan))}</td></tr>"
    return f"<h3>Plan</h3>\n<table>{cells}</table>\n"


def _views_section(views: Sequence[tuple[View, Image]]) -> str:
    figures = []
    for number, (view, image) in enumerate(views, start=1):
        figures.append(f"<figure><img alt=\"view {number}: {_e(view.name)}\" src=\"{_data_uri(image)}\">"
                       f"<figcaption><b>{number}. {_e(view.name)}</b>: {_e(view.words)}.<br>"
                       f"<i>See:</i> {_e(view.expect)}.</figcaption></figure>")
    return ("<h3>C-arm views, in order</h3>\n<p class=\"note\">Simulated fluoroscopy of each view with the planned "
            "needle; overlays: target (green ring), vertebral canal (cyan), modelled exiting roots (yellow), medial "
            "branch (orange), RF lesion (magenta), skin entry (red x). The inset magnifies the target.</p>\n"
            "<div class=\"views\">" + "\n".join(figures) + "</div>\n")


def _safety_table(plan: Plan) -> str:
    rows = "".join(
        f"<tr><td>{_e(item.structure)}</td><td class=\"num\">{clearance_words(item.clearance_mm)}</td>"
        f"<td class=\"num\">{clearance_words(item.tip_clearance_mm)}</td><td>{_e(item.rule)}</td>"
        f"<td class=\"{_e(item.status)}\">{_e(item.status)}</td><td>{_e(item.message)}</td></tr>"
        for item in plan.safety.items)
    verdict = ("<p class=\"ok\">No no-go rule is broken.</p>" if plan.safety.safe else
               "<p class=\"violation\">Broken rules: " + _e("; ".join(plan.safety.violations)) + "</p>")
    return ("<h3>Safety</h3>\n<table><tr><th>structure</th><th>minimum clearance (mm)</th><th>at the tip (mm)</th>"
            "<th>rule</th><th>status</th><th>finding</th></tr>" + rows + "</table>\n" + verdict + "\n")


def _lesion_table(plan: Plan) -> str:
    lesion = plan.lesion
    assert lesion is not None  # _plan_section adds this table only for a plan with a lesion
    rows = [("active tip", _mm(lesion.active_tip_mm)), ("lesion length", _mm(lesion.length_mm, 1)),
            ("lesion radius", _mm(lesion.radius_mm, 1)),
            ("nerve inside the lesion", _mm(lesion.nerve_captured_mm, 1) + f" (aim: at least "
             f"{plan.options.rfa_capture_min_mm:g} mm)"),
            ("electrode to nerve angle", f"{lesion.electrode_to_nerve_deg:.0f} degrees (aim: at most "
             f"{plan.options.rfa_max_angle_deg:g} degrees)")]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<h3>RF lesion</h3>\n<table>{cells}</table>\n"


def _coordinates(plan: Plan) -> str:
    def point(value: object) -> str:
        return "-" if value is None else "(" + ", ".join(f"{float(v):.1f}" for v in value) + ")"  # type: ignore

    return (f"<p><small>LPS mm: target {_e(point(plan.target_mm))}, entry {_e(point(plan.entry_mm))}, direction "
            f"{_e('-' if plan.direction is None else '(' + ', '.join(f'{v:.3f}' for v in plan.direction) + ')')}"
            "</small></p>\n")
