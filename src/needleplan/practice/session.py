"""One trainee's attempt: the C-arm pose, the needle, the shots taken and every action, as plain state.

A :class:`Session` validates each request completely before it changes anything, so a refused request leaves
no trace. It renders nothing: :meth:`Session.shoot` records the shot and returns the pose and needle to render,
which lets a saved log be replayed exactly (:func:`needleplan.practice.log.replay`) without rendering.

Needle mechanics: the needle enters at a skin point and pivots there; ``depth_mm`` is how far the tip is in
along the needle's direction. Advancing stops where the tip would enter bone (the trainee "feels bone"); aiming
or redirecting a needle that is in keeps its depth unless the new path meets bone first.
"""

from __future__ import annotations

import datetime
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..anatomy import SIDE_SIGN, jsonable
from ..errors import NeedleplanError
from ..fluoro import CArm
from ..needle import Needle
from ..plan.angles import angles_from_direction, direction_from_angles
from ..plan.assemble import midline_plane
from ..plan.safety import assess
from ..plan.procedures import get_procedure
from .case import PracticeCase

#: Inclusive ranges of every number a request may hold.
LIMITS: dict[str, tuple[float, float]] = {
    "oblique_deg": (-95.0, 95.0),
    "tilt_deg": (-60.0, 60.0),
    "collimator_mm": (60.0, 300.0),
    "step_mm": (0.5, 50.0),
    "redirect_deg": (-20.0, 20.0),
    "offset_mm": (-150.0, 150.0),
    "needle_tilt_deg": (-70.0, 70.0),
    "pan_mm": (-100.0, 100.0),
}
#: Pixels per side of a shot.
IMAGE_SIZE = 512
#: Diameter (mm, on the detector) of the open round field: the whole 300 mm detector's inscribed circle.
OPEN_FIELD_MM = 300.0
MAX_ACTIONS = 1000
MAX_SHOTS = 300
#: The needle is "in" (its moves count as tissue path, its turns as redirections) beyond this depth.
IN_TISSUE_MM = 1.0
_SAMPLE_MM = 0.25
_TRAINEE = re.compile(r"^[A-Za-z0-9 ._-]{0,60}$")


def presets(side: str) -> dict[str, tuple[float, float]]:
    """The C-arm presets as (oblique, tilt) degrees: AP, and lateral and 25 degrees oblique toward ``side``."""
    sign = SIDE_SIGN[side]
    return {"ap": (0.0, 0.0), "lateral": (90.0 * sign, 0.0), "oblique": (25.0 * sign, 0.0)}


class PracticeInputError(NeedleplanError):
    """A request the simulator refuses; ``status`` is the HTTP status that says why (400, 404, 409, 422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class NeedleState:
    """The trainee's needle: skin entry, unit direction, depth of the tip along it, and whether it rests on bone."""

    entry_mm: np.ndarray
    direction: np.ndarray
    depth_mm: float
    length_mm: float
    gauge: int
    bone_contact: bool = False

    @property
    def tip_mm(self) -> np.ndarray:
        return self.entry_mm + self.depth_mm * self.direction

    def needle(self) -> Needle:
        """The whole needle, hub out of the skin, for rendering and checking."""
        return Needle.from_direction(self.tip_mm, self.direction, self.length_mm, self.gauge, name="trainee")

    def to_dict(self) -> dict[str, Any]:
        oblique, tilt = angles_from_direction(self.direction)
        return jsonable({"entry_mm": self.entry_mm, "direction": self.direction, "depth_mm": self.depth_mm,
                         "tip_mm": self.tip_mm, "hub_mm": self.tip_mm - self.length_mm * self.direction,
                         "oblique_deg": oblique, "tilt_deg": tilt, "length_mm": self.length_mm,
                         "gauge": self.gauge, "bone_contact": self.bone_contact}, finite=True)


@dataclass(frozen=True)
class Shot:
    """What a shot saw: its number, time, pose, needle, and whether it shows anything no earlier shot showed."""

    number: int
    t_s: float
    carm: dict[str, Any]
    needle: dict[str, Any] | None
    field_area_cm2: float
    informative: bool

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Session:
    """A trainee's attempt at the case's task.

    Parameters
    ----------
    case : PracticeCase
    session_id : str
    trainee : str
        Letters, digits, spaces and ``.-_``, at most 60.
    clock : callable, optional
        Seconds since some origin (default ``time.monotonic``); every action is stamped with the time since start.
    """

    def __init__(self, case: PracticeCase, session_id: str, trainee: str = "", clock: Any = time.monotonic) -> None:
        if not isinstance(trainee, str) or not _TRAINEE.match(trainee):
            raise PracticeInputError("trainee must be at most 60 letters, digits, spaces or .-_", 422)
        self.case = case
        self.id = session_id
        self.trainee = trainee
        self._clock = clock
        self._start = clock()
        self.started_utc = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.oblique_deg = 0.0
        self.tilt_deg = 0.0
        self.collimator_mm = OPEN_FIELD_MM
        self.pan_left_mm = 0.0
        self.pan_cranial_mm = 0.0
        self.needle: NeedleState | None = None
        self.shots: list[Shot] = []
        self.actions: list[dict[str, Any]] = []
        self.punctures = 0
        self.path_mm = 0.0
        self.redirections = 0
        self.back_and_forth = 0
        self.violations_during: list[dict[str, Any]] = []
        self.finished = False
        self.score: dict[str, Any] | None = None
        self.finished_at_s: float | None = None
        self._last_move = 0
        scene = case.scene  # bone this close to the tip is the intended contact, as the planner counts it
        self.contact_mm = get_procedure(case.plan.procedure).contact_mm(scene, case.plan.options)
        self._record("start", {"trainee": trainee}, "", None)

    # ---- the C-arm -----------------------------------------------------------------------------------------------
    def carm(self) -> CArm:
        """The current pose, centred on the task level, as a 512 x 512 round-field C-arm."""
        return self.carm_of(self._carm_dict(words=False))

    def carm_of(self, pose: dict[str, Any]) -> CArm:
        """The C-arm of a recorded pose (``oblique_deg``, ``tilt_deg``, ``collimator_mm``, ``pan_*_mm``)."""
        shift = np.array([pose["pan_left_mm"], 0.0, pose["pan_cranial_mm"]])  # LPS: +x left, +z cranial
        return CArm(oblique=pose["oblique_deg"], tilt=pose["tilt_deg"], isocenter=self.case.isocenter_mm + shift,
                    detector_pixels=IMAGE_SIZE, collimator_diameter_mm=pose["collimator_mm"])

    def field_area_cm2(self) -> float:
        """Area of the collimated field at the isocentre plane (the dose proxy's unit), cm^2."""
        carm = self.carm()
        radius_mm = 0.5 * self.collimator_mm / carm.magnification
        return math.pi * radius_mm ** 2 / 100.0

    def set_carm(self, body: Any, at_s: float | None = None) -> dict[str, Any]:
        """Apply ``{"oblique_deg", "tilt_deg", "collimator_mm"}`` (any subset) or ``{"preset": name}``."""
        body = self._open(body, "carm")
        if "preset" in body:
            _only(body, {"preset"})
            oblique, tilt = self._preset(body["preset"])
            collimator, left, cranial = self.collimator_mm, self.pan_left_mm, self.pan_cranial_mm
        else:
            _only(body, {"oblique_deg", "tilt_deg", "collimator_mm", "pan_left_mm", "pan_cranial_mm"})
            if not body:
                raise PracticeInputError("give oblique_deg, tilt_deg, collimator_mm or pan_left_mm / pan_cranial_mm, "
                                         "or a preset", 400)
            left = _number(body, "pan_left_mm", LIMITS["pan_mm"], self.pan_left_mm)
            cranial = _number(body, "pan_cranial_mm", LIMITS["pan_mm"], self.pan_cranial_mm)
            oblique = _number(body, "oblique_deg", LIMITS["oblique_deg"], self.oblique_deg)
            tilt = _number(body, "tilt_deg", LIMITS["tilt_deg"], self.tilt_deg)
            if body.get("collimator_mm", 0) is None:
                collimator = OPEN_FIELD_MM
            else:
                collimator = _number(body, "collimator_mm", LIMITS["collimator_mm"], self.collimator_mm)
        self.oblique_deg, self.tilt_deg, self.collimator_mm = oblique, tilt, collimator
        self.pan_left_mm, self.pan_cranial_mm = left, cranial
        self._record("carm", body, "", None, at_s)
        return self.state()

    def _preset(self, name: Any) -> tuple[float, float]:
        named = presets(self.case.plan.side)
        if name not in named:
            raise PracticeInputError(f"preset must be one of {', '.join(named)}, got {name!r}", 422)
        return named[name]

    # ---- shots ---------------------------------------------------------------------------------------------------
    def shoot(self, body: Any = None, at_s: float | None = None) -> tuple[Shot, CArm, list[Needle]]:
        """Record a shot of the current pose; returns it with the C-arm and needles to render."""
        body = self._open({} if body is None else body, "shot")
        _only(body, set())
        if len(self.shots) >= MAX_SHOTS:
            raise PracticeInputError(f"this session has taken its {MAX_SHOTS} shots; finish it", 409)
        carm = self.carm()
        pose = self._carm_dict()
        needle = None if self.needle is None else self.needle.to_dict()
        # a shot that repeats an earlier one (same pose, same needle) shows nothing new
        informative = all(shot.carm != pose or shot.needle != needle for shot in self.shots)
        t_s = self._now(at_s)
        shot = Shot(len(self.shots) + 1, t_s, pose, needle, self.field_area_cm2(), informative)
        self.shots.append(shot)
        self._record("shot", {}, "", None, t_s, shot=shot.number)
        return shot, carm, [] if self.needle is None else [self.needle.needle()]

    def shot_pose(self, number: Any) -> tuple[CArm, list[Needle]]:
        """The C-arm and needles of shot ``number`` as it was taken (to re-render it)."""
        shot = self._shot(number)
        carm = self.carm_of(shot.carm)
        needles = [] if shot.needle is None else [Needle(shot.needle["tip_mm"], shot.needle["hub_mm"],
                                                         shot.needle["gauge"], name="trainee")]
        return carm, needles

    def _shot(self, number: Any) -> Shot:
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= len(self.shots):
            have = f"shots 1-{len(self.shots)}" if self.shots else "no shot taken yet"
            raise PracticeInputError(f"no shot {number!r} in this session ({have})", 404)
        return self.shots[number - 1]

    # ---- the needle ----------------------------------------------------------------------------------------------
    def move_needle(self, body: Any, at_s: float | None = None) -> tuple[dict[str, Any], str, str | None]:
        """Apply one needle action (see docs/practice.md); returns the state, a message and an event."""
        body = self._open(body, "needle")
        action = body.get("action")
        handlers = {"place": self._place, "aim": self._aim, "redirect": self._redirect, "advance": self._advance,
                    "withdraw": self._withdraw}
        if action not in handlers:
            raise PracticeInputError(f"action must be one of {', '.join(handlers)}, got {action!r}", 400)
        if action != "place" and self.needle is None:
            raise PracticeInputError("there is no needle yet: place it first (click the image or give offsets)", 409)
        before = self.needle
        after, message, event = handlers[action](body)
        self._account(action, before, after)
        self.needle = after
        index = self._record("needle", body, message, event, at_s)
        self._check_safety(index)
        return self.state(), message, event

    def _place(self, body: dict[str, Any]) -> tuple[NeedleState, str, str | None]:
        if "shot" in body:
            _only(body, {"action", "shot", "col", "row"})
            carm, _ = self.shot_pose(body["shot"])
            col = _number(body, "col", (-0.5, IMAGE_SIZE - 0.5))
            row = _number(body, "row", (-0.5, IMAGE_SIZE - 0.5))
            origin, step_col, step_row = carm.detector_grid_mm()
            pixel = origin + col * step_col + row * step_row
            direction = carm.source_mm - pixel
            direction /= np.linalg.norm(direction)
            entry = self._skin(pixel, direction, float(carm.source_to_detector_mm))
            if entry is None:
                raise PracticeInputError(f"the ray of pixel ({col:.0f}, {row:.0f}) of shot {body['shot']} misses the "
                                         "body; pick a point on the patient", 422)
        elif "left_mm" in body or "cranial_mm" in body:
            _only(body, {"action", "left_mm", "cranial_mm"})
            left = _number(body, "left_mm", LIMITS["offset_mm"], 0.0)
            cranial = _number(body, "cranial_mm", LIMITS["offset_mm"], 0.0)
            start, inward = self._offset_line(left, cranial)
            entry = self._skin(start - 400.0 * inward, inward, 800.0)
            direction = np.array([0.0, -1.0, 0.0])  # straight anterior: seen as a dot in the AP view
            if entry is None:
                raise PracticeInputError("no skin found at those offsets; they lie beside the body", 422)
        else:
            raise PracticeInputError("place needs either shot, col and row (a pixel of a shot) or left_mm and "
                                     "cranial_mm (offsets on the back)", 400)
        choice = self.case.plan.needle_choice
        assert choice is not None  # the case's plan is feasible, so it has its needle
        needle = NeedleState(entry, direction, 0.0, float(choice.length_mm), int(choice.gauge))
        return needle, f"needle placed on the skin, {self._entry_words(entry)}", "skin"

    def _aim(self, body: dict[str, Any]) -> tuple[NeedleState, str, str | None]:
        if "along" in body:
            _only(body, {"action", "along"})
            if body["along"] != "beam":
                raise PracticeInputError(f"along must be 'beam', got {body['along']!r}", 422)
            # the X-ray through the entry, source-ward: the needle then shows as a dot (the gun-barrel view)
            direction = self.carm().source_mm - self._placed().entry_mm
            direction /= np.linalg.norm(direction)
        else:
            _only(body, {"action", "oblique_deg", "tilt_deg"})
            if "oblique_deg" not in body or "tilt_deg" not in body:
                raise PracticeInputError("aim needs along: 'beam', or both oblique_deg and tilt_deg", 400)
            direction = direction_from_angles(_number(body, "oblique_deg", LIMITS["oblique_deg"]),
                                              _number(body, "tilt_deg", LIMITS["needle_tilt_deg"]))
        return self._pivot(direction)

    def _redirect(self, body: dict[str, Any]) -> tuple[NeedleState, str, str | None]:
        _only(body, {"action", "oblique_deg", "tilt_deg"})
        d_oblique = _number(body, "oblique_deg", LIMITS["redirect_deg"], 0.0)
        d_tilt = _number(body, "tilt_deg", LIMITS["redirect_deg"], 0.0)
        if "oblique_deg" not in body and "tilt_deg" not in body:
            raise PracticeInputError("redirect needs oblique_deg or tilt_deg (degrees to turn)", 400)
        oblique, tilt = angles_from_direction(self._placed().direction)
        tilt = tilt + d_tilt
        low, high = LIMITS["needle_tilt_deg"]
        if not low <= tilt <= high:
            raise PracticeInputError(f"that would tilt the needle to {tilt:.0f} degrees; the needle's tilt must stay "
                                     f"within {low:g}..{high:g}", 422)
        return self._pivot(direction_from_angles(oblique + d_oblique, tilt))

    def _pivot(self, direction: np.ndarray) -> tuple[NeedleState, str, str | None]:
        needle = self._placed()
        if direction[1] > 0:  # toward the back: out of the patient
            raise PracticeInputError("that direction points out of the patient's back; aim anteriorly", 422)
        depth, on_bone = self._reach(needle.entry_mm, direction, 0.0, needle.depth_mm)
        moved = NeedleState(needle.entry_mm, direction, depth, needle.length_mm, needle.gauge, on_bone)
        oblique, tilt = angles_from_direction(direction)
        message = f"needle aimed at {oblique:.1f} degrees oblique, {tilt:.1f} degrees tilt"
        if on_bone and depth < needle.depth_mm - 1e-6:
            message += f"; the new path meets bone, the tip stopped on it at {depth:.1f} mm"
        return moved, message, "bone" if on_bone else None

    def _advance(self, body: dict[str, Any]) -> tuple[NeedleState, str, str | None]:
        _only(body, {"action", "mm"})
        step = _number(body, "mm", LIMITS["step_mm"])
        needle = self._placed()
        goal = min(needle.depth_mm + step, needle.length_mm)
        depth, on_bone = self._reach(needle.entry_mm, needle.direction, needle.depth_mm, goal)
        moved = NeedleState(needle.entry_mm, needle.direction, depth, needle.length_mm, needle.gauge, on_bone)
        if on_bone:
            return moved, f"bone contact at {depth:.1f} mm", "bone"
        if goal >= needle.length_mm:
            return moved, f"the needle is in to its hub ({depth:.0f} mm)", "full"
        return moved, f"advanced to {depth:.1f} mm", None

    def _withdraw(self, body: dict[str, Any]) -> tuple[NeedleState, str, str | None]:
        _only(body, {"action", "mm"})
        step = _number(body, "mm", LIMITS["step_mm"])
        needle = self._placed()
        depth = max(needle.depth_mm - step, 0.0)
        moved = NeedleState(needle.entry_mm, needle.direction, depth, needle.length_mm, needle.gauge, False)
        if depth == 0.0:
            return moved, "withdrawn to the skin", "skin"
        return moved, f"withdrawn to {depth:.1f} mm", None

    def _placed(self) -> NeedleState:
        """The needle, for the actions that :meth:`move_needle` takes only once it is placed."""
        assert self.needle is not None, "move_needle refuses this action before the needle is placed"
        return self.needle

    def _reach(self, entry: np.ndarray, direction: np.ndarray, start_mm: float, goal_mm: float) -> tuple[float, bool]:
        """Depth the tip reaches going from ``start_mm`` to ``goal_mm`` along the needle; True if bone stopped it."""
        if goal_mm <= start_mm:
            return goal_mm, False
        depths = np.arange(start_mm, goal_mm, _SAMPLE_MM)[1:]
        depths = np.append(depths, goal_mm)
        bone = self.case.scene.lookup(self.case.scene.bone, entry + depths[:, None] * direction) > 0
        if not bone.any():
            return goal_mm, False
        first = int(np.argmax(bone))
        return (float(depths[first - 1]) if first > 0 else start_mm), True

    def _skin(self, start: np.ndarray, direction: np.ndarray, length_mm: float) -> np.ndarray | None:
        """First point inside the body along ``start + t direction``, t in [0, length] (0.5 mm steps)."""
        t = np.arange(0.0, length_mm, 0.5)
        inside = self.case.scene.lookup(self.case.scene.body, start + t[:, None] * direction)
        if not inside.any():
            return None
        return start + t[int(np.argmax(inside))] * direction

    def _offset_line(self, left_mm: float, cranial_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """The line of points ``left_mm`` from the midline and ``cranial_mm`` from the task level's spinous tip
        along its superior axis (the plan's ``entry_offsets``): a point on it and its anterior direction."""
        plan = self.case.plan
        marks = self.case.spine[plan.level].landmarks if plan.level in self.case.spine else {}
        tip = marks.get("spinous_tip")
        midline = midline_plane(self.case.spine)
        if tip is None or "axes" not in marks or midline is None:
            raise PracticeInputError(f"offsets need the {plan.level} spinous process and the midline, which this "
                                     "case lacks; pick the entry on an image instead", 409)
        left = midline[1]
        superior = np.asarray(marks["axes"]["superior"], dtype=np.float64)
        inward = np.cross(left, superior)
        inward /= np.linalg.norm(inward)
        if inward[1] > 0:
            inward = -inward
        # solve p . left = mid . left + left_mm and p . superior = tip . superior + cranial_mm, p nearest the tip
        normals = np.vstack([left, superior])
        values = np.array([midline[0] @ left + left_mm, np.asarray(tip) @ superior + cranial_mm])
        tip = np.asarray(tip, dtype=np.float64)
        point = tip + np.linalg.lstsq(normals, values - normals @ tip, rcond=None)[0]
        return point, inward

    def _entry_words(self, entry: np.ndarray) -> str:
        midline = midline_plane(self.case.spine)
        if midline is None:
            return ""
        left = float((entry - midline[0]) @ midline[1])
        return f"{abs(left):.0f} mm {'left' if left >= 0 else 'right'} of the midline"

    def _account(self, action: str, before: NeedleState | None, after: NeedleState) -> None:
        """Update punctures, tissue path, redirections and back-and-forth moves."""
        if action == "place":
            if before is None or before.depth_mm > IN_TISSUE_MM:
                self.punctures += 1
            self._last_move = 0
            return
        assert before is not None  # only place comes without a needle
        if before.depth_mm > IN_TISSUE_MM or after.depth_mm > IN_TISSUE_MM:
            self.path_mm += float(np.linalg.norm(after.tip_mm - before.tip_mm))
        if action in ("aim", "redirect") and before.depth_mm > IN_TISSUE_MM:
            self.redirections += 1
        move = int(np.sign(after.depth_mm - before.depth_mm)) if action in ("advance", "withdraw") else 0
        if move and self._last_move and move != self._last_move:
            self.back_and_forth += 1
        if move:
            self._last_move = move

    def safety(self):  # noqa: ANN201 - a plan.model.Safety
        """The plan's no-go checks applied to the needle as it is now (None before it is in)."""
        needle = self.needle
        if needle is None or needle.depth_mm <= IN_TISSUE_MM:
            return None
        plan = self.case.plan
        return assess(self.case.scene, get_procedure(plan.procedure), plan.approach, plan.level, plan.side,
                      needle.entry_mm, needle.tip_mm, plan.options, self.contact_mm)

    def _check_safety(self, index: int) -> None:
        safety = self.safety()
        if safety is not None and safety.violations:
            assert self.needle is not None  # a safety report means the needle is in
            self.violations_during.append({"action": index, "depth_mm": round(self.needle.depth_mm, 2),
                                           "violations": safety.violations})

    # ---- finish --------------------------------------------------------------------------------------------------
    def finish(self, body: Any = None, at_s: float | None = None) -> dict[str, Any]:
        """Score the attempt (CLINICAL.md section 7) and close the session."""
        from .score import score_session

        body = self._open({} if body is None else body, "finish")
        _only(body, set())
        self.finished_at_s = self._now(at_s)
        self.score = score_session(self)
        self.finished = True
        self._record("finish", {}, "", None, self.finished_at_s)
        return self.score

    # ---- state and bookkeeping -----------------------------------------------------------------------------------
    def elapsed_s(self) -> float:
        return self.finished_at_s if self.finished_at_s is not None else self._now(None)

    def dose_proxy_cm2(self) -> float:
        """Sum over shots of the collimated field area at the isocentre."""
        return float(sum(shot.field_area_cm2 for shot in self.shots))

    def _carm_dict(self, words: bool = True) -> dict[str, Any]:
        pose: dict[str, Any] = {"oblique_deg": self.oblique_deg, "tilt_deg": self.tilt_deg,
                                "collimator_mm": self.collimator_mm, "pan_left_mm": self.pan_left_mm,
                                "pan_cranial_mm": self.pan_cranial_mm}
        if words:
            pose["in_words"] = self.carm_of(pose).describe()
            pose["field_area_cm2"] = round(self.field_area_cm2(), 2)
        return pose

    def state(self) -> dict[str, Any]:
        """The session as the page shows it."""
        return {"id": self.id, "finished": self.finished, "elapsed_s": round(self.elapsed_s(), 2),
                "actions": len(self.actions), "carm": self._carm_dict(),
                "needle": None if self.needle is None else self.needle.to_dict(), "shots": len(self.shots),
                "dose_proxy_cm2": round(self.dose_proxy_cm2(), 2), "punctures": self.punctures}

    def _open(self, body: Any, what: str) -> dict[str, Any]:
        """Refuse anything on a finished or full session, and bodies that are not JSON objects."""
        if self.finished:
            raise PracticeInputError("this session is finished; start a new one", 409)
        if len(self.actions) >= MAX_ACTIONS:
            raise PracticeInputError(f"this session's log is full ({MAX_ACTIONS} actions); finish it", 409)
        if not isinstance(body, dict):
            raise PracticeInputError(f"the {what} request body must be a JSON object", 400)
        return body

    def _now(self, at_s: float | None) -> float:
        return float(at_s) if at_s is not None else round(self._clock() - self._start, 3)

    def _record(self, kind: str, body: dict[str, Any], message: str, event: str | None, at_s: float | None = None,
                **extra: Any) -> int:
        entry = {"index": len(self.actions), "t_s": self._now(at_s), "kind": kind, "input": dict(body),
                 "carm": self._carm_dict(), "needle": None if self.needle is None else self.needle.to_dict(),
                 "message": message, "event": event, **extra}
        self.actions.append(entry)
        return entry["index"]


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise PracticeInputError(f"unknown key(s) {', '.join(map(repr, unknown))}; expected "
                                 f"{', '.join(sorted(allowed)) or 'an empty object'}", 400)


def _number(body: dict[str, Any], key: str, limits: tuple[float, float], default: float | None = None) -> float:
    """A finite number within ``limits`` from ``body[key]`` (``default`` when absent; required without one)."""
    if key not in body:
        if default is None:
            raise PracticeInputError(f"{key} is required", 400)
        return float(default)
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PracticeInputError(f"{key} must be a number, got {value!r}", 422)
    low, high = limits
    if not low <= value <= high:
        raise PracticeInputError(f"{key} must be within {low:g}..{high:g}, got {value:g}", 422)
    return float(value)
