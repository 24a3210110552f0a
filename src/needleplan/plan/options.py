"""Every engineering default of the planner ([eng] in CLINICAL.md), in one place, each one a parameter."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..anatomy import MIN_NUMBERING_CONFIDENCE
from ..errors import NeedleplanError


@dataclass(frozen=True)
class PlanOptions:
    """Planner parameters. Pass any of them to :func:`needleplan.plan` as keyword arguments.

    Distances in mm, angles in degrees. The defaults are the [eng] figures of CLINICAL.md sections 1-6.
    """

    # levels
    min_numbering_confidence: float = MIN_NUMBERING_CONFIDENCE
    """A spine whose automatic level numbering is less sure than this (0-1), or has no anchor, is not planned on
    until a person confirms or corrects its levels (:meth:`needleplan.anatomy.Spine.renumber`,
    :meth:`~needleplan.anatomy.Spine.confirm_levels`)."""

    # targets
    below_pedicle_mm: float = 2.0
    """Supraneural TFESI: how far under the pedicle's inferior border the tip sits."""
    above_pedicle_mm: float = 2.0
    """Infraneural TFESI: how far above the lower pedicle's superior border the tip sits."""
    pedicle_margin_inset_mm: float = 1.0
    """TFESI: the tip sits this far inside the line of the lateral pedicle margins."""
    s1_foramen_depth_mm: float = 3.0
    """S1 TFESI: how far into the posterior S1 foramen, along its channel, the tip sits."""
    mbb_below_tp_margin_mm: float = 1.5
    """MBB: the tip is on the lateral SAP surface this far below the TP's superior margin (1-2 mm)."""
    tip_off_bone_mm: float = 1.0
    """MBB: the tip sits this far out of the bone surface its target lies on (resting against it); an RF cannula
    lies against the SAP neck (its radius off the surface)."""
    si_above_lower_end_mm: float = 15.0
    """SI: the target lies this far cranial to the lower end of the posterior joint line (10-20 mm)."""

    # no-go margins
    root_radius_mm: float = 3.0
    """Radius of the modelled exiting root tube."""
    root_clearance_mm: float = 1.0
    """Supraneural TFESI: the tip must stay at least this far outside the root tube."""
    canal_warning_mm: float = 2.0
    """A tip closer than this to the canal wall is a warning."""
    anterior_margin_mm: float = 5.0
    """A path closer than this to anything anterior to the vertebral bodies, or to bowel gas, fails."""
    bone_contact_mm: float = 3.0
    """MBB and SI: bone within this distance of the target is the intended contact, not an obstacle."""

    endplate_axis_tolerance_deg: float = 15.0
    """An endplate fit further than this from its vertebra's axis is not trusted for squaring the view."""

    target_shift_max_mm: float = 2.0
    """TFESI: when the nominal target has no safe straight path, the tip may move this far inside the target
    region (bone-free points of a 1 mm grid, nearest first)."""

    # search
    grid_step_deg: float = 1.0
    """Step of the oblique/tilt search grid."""
    tfesi_oblique_deg: tuple[float, float] = (10.0, 45.0)
    """Ipsilateral oblique window for a lumbar TFESI."""
    tfesi_typical_oblique_deg: tuple[float, float] = (20.0, 35.0)
    """The first-choice TFESI oblique (SAP tip under the pedicle's 6 o'clock) is kept in this typical range."""
    s1_oblique_deg: tuple[float, float] = (0.0, 30.0)
    """Ipsilateral oblique window for the S1 TFESI (5-25 typical)."""
    mbb_oblique_deg: tuple[float, float] = (0.0, 60.0)
    """Ipsilateral oblique window for a medial branch block."""
    mbb_preferred_oblique_deg: float = 15.0
    """MBB L1-L4: oblique of the Scotty-dog trajectory view tried first (the L5 dorsal ramus prefers AP)."""
    tilt_window_deg: tuple[float, float] = (-20.0, 25.0)
    """Tilt window around the squared-endplate tilt b0 for TFESI and MBB (caudal positive)."""
    si_oblique_deg: tuple[float, float] = (10.0, 35.0)
    """Contralateral oblique window for the SI joint (15-33 typical)."""
    si_cephalad_deg: tuple[float, float] = (5.0, 30.0)
    """Cephalad tilt window for the SI joint (10-25 typical)."""
    rfa_oblique_deg: tuple[float, float] = (10.0, 50.0)
    """Ipsilateral oblique window for RF ablation."""
    rfa_caudal_from_endplate_deg: tuple[float, float] = (25.0, 50.0)
    """RFA caudal tilt window measured from the squared endplate."""

    # needles
    hub_margin_mm: float = 10.0
    """Needle length needed = depth + this margin outside the skin."""
    spinal_needle_lengths_mm: tuple[float, ...] = (89.0, 127.0, 178.0)
    """Standard spinal needles: 3.5", 5" and 7" (the 7" is marked non-standard)."""
    standard_needle_max_mm: float = 127.0
    """Longest needle called standard (5")."""
    needle_gauge: int = 22
    """Spinal needle gauge for TFESI, MBB and SI."""
    rfa_cannula_lengths_mm: tuple[float, ...] = (100.0, 150.0)
    """RF cannula lengths."""
    rfa_gauge: int = 18
    """RF cannula gauge (16, 18, 20 or 22)."""
    rfa_active_tip_mm: float = 10.0
    """RF active tip length (5 in tight spaces)."""
    rfa_lesion_extra_length_mm: float = 2.0
    """Lesion length = active tip + this (1-5 mm), all of it behind the tip."""

    # RFA rules (a plan that breaks one is not feasible; the practice score uses the same figures)
    rfa_capture_min_mm: float = 5.0
    """RFA: nerve length inside the lesion that counts as captured."""
    rfa_max_angle_deg: float = 20.0
    """RFA: largest acceptable electrode-to-nerve angle; only electrodes within it are searched."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: Lesion radius in mm by cannula gauge (Cosman, Pain Med 2014: about 1-2.2 mm for 22-18G, 3-4 mm wider at 16G).
LESION_RADIUS_MM: dict[int, float] = {22: 1.0, 20: 1.6, 18: 2.2, 16: 5.7}


def make_options(options: PlanOptions | None = None, **overrides: Any) -> PlanOptions:
    """Options with keyword overrides; an unknown name or a bad value raises NeedleplanError."""
    base = options or PlanOptions()
    known = {f.name for f in fields(PlanOptions)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise NeedleplanError(f"unknown planning option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    result = replace(base, **overrides)
    for f in fields(result):
        value = getattr(result, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, (int, float)) and v == v and abs(v) != float("inf") for v in values):
            raise NeedleplanError(f"planning option {f.name} must be finite numbers, got {value!r}")
    if result.rfa_gauge not in LESION_RADIUS_MM:
        raise NeedleplanError(f"rfa_gauge must be one of {sorted(LESION_RADIUS_MM)}, got {result.rfa_gauge}")
    if result.grid_step_deg <= 0 or result.grid_step_deg > 10:
        raise NeedleplanError(f"grid_step_deg must be in (0, 10], got {result.grid_step_deg}")
    return result
