"""The simulator's web server: the page, and the JSON API of docs/practice.md (FastAPI).

Every handler validates its whole request before anything changes, answers errors as ``{"error": message}``
with a 4xx status, and writes the session's log after every action. Rendering runs in worker threads, so the
server keeps answering while a shot renders.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import NeedleplanError
from . import imaging
from ..plan.procedures import get_procedure
from .case import PracticeCase
from .log import log_document, log_name, write_log
from .session import IMAGE_SIZE, LIMITS, PracticeInputError, Session, presets

STATIC = Path(__file__).parent / "static"
#: Largest request body accepted (bytes); every valid request is far smaller.
MAX_BODY_BYTES = 16 * 1024
#: A session untouched this long may be dropped to make room for a new one.
IDLE_S = 2 * 3600.0
_SESSION_ID = re.compile(r"^[0-9a-f]{10}$")


class Sessions:
    """At most ``limit`` sessions; to make room the oldest finished, then the oldest idle one is dropped."""

    def __init__(self, case: PracticeCase, limit: int) -> None:
        self.case = case
        self.limit = limit
        self._sessions: OrderedDict[str, tuple[Session, threading.Lock]] = OrderedDict()
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def create(self, trainee: str) -> Session:
        with self._lock:
            if len(self._sessions) >= self.limit:
                self._make_room()
            session = Session(self.case, secrets.token_hex(5), trainee)
            self._sessions[session.id] = (session, threading.Lock())
            self._touched[session.id] = time.monotonic()
            return session

    def _make_room(self) -> None:
        now = time.monotonic()
        sid = next((s for s, (session, _) in self._sessions.items() if session.finished), None)
        if sid is None:
            sid = next((s for s in self._sessions if now - self._touched[s] > IDLE_S), None)
        if sid is None:
            raise PracticeInputError(f"{self.limit} sessions are in progress, the most this simulator holds; finish "
                                     "one first", 429)
        del self._sessions[sid]
        del self._touched[sid]

    def get(self, sid: str) -> tuple[Session, threading.Lock]:
        with self._lock:
            if not _SESSION_ID.match(sid) or sid not in self._sessions:
                raise PracticeInputError(f"no session {sid[:40]!r} (it may have finished long ago and been dropped); "
                                         "start a new one", 404)
            self._touched[sid] = time.monotonic()
            return self._sessions[sid]


def create_app(case: PracticeCase, *, log_dir: str | os.PathLike[str], max_sessions: int = 8,
               review: Session | None = None, review_log: dict[str, Any] | None = None) -> FastAPI:
    """The simulator's app for one case and task.

    Parameters
    ----------
    case : PracticeCase
    log_dir : path
        Where session logs (and their reveal and review pictures) are written.
    max_sessions : int
        Sessions held at once.
    review, review_log : Session and its log, optional
        Serve a replayed session for review instead of new attempts.
    """
    if max_sessions < 1:
        raise NeedleplanError(f"max_sessions must be 1 or more, got {max_sessions}")
    log_dir = Path(log_dir)
    sessions = Sessions(case, max_sessions)
    app = FastAPI(title="needleplan practice", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.sessions = sessions

    @app.exception_handler(PracticeInputError)
    async def _refused(_: Request, error: PracticeInputError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        words = {404: "no such page or API endpoint", 405: "this endpoint does not take that method"}
        return JSONResponse({"error": words.get(error.status_code, str(error.detail))},
                            status_code=error.status_code)

    @app.exception_handler(OSError)
    async def _disk(_: Request, error: OSError) -> JSONResponse:
        return JSONResponse({"error": f"the server could not write the session log or picture: {error}"},
                            status_code=503)

    def task() -> dict[str, Any]:
        plan = case.plan
        assert plan.needle_choice is not None  # the case's plan is feasible, so it has its needle
        return {"mode": "review" if review is not None else "practice", "case": case.name,
                "procedure": plan.procedure, "procedure_name": get_procedure(plan.procedure).title, "level": plan.level,
                "side": plan.side, "approach": plan.approach, "in_words": case.task_words,
                "target_in_words": plan.target_region.description,
                "levels": {**case.spine.numbering.to_dict(), "in_words": case.spine.numbering.describe()},
                "needle": {"gauge": plan.needle_choice.gauge, "length_mm": plan.needle_choice.length_mm},
                "image_size": IMAGE_SIZE, "limits": {key: list(value) for key, value in LIMITS.items()},
                "presets": {name: {"oblique_deg": oblique, "tilt_deg": tilt}
                            for name, (oblique, tilt) in presets(plan.side).items()}}

    def save(session: Session) -> None:
        write_log(session, log_dir)

    async def act(sid: str, request: Request, work) -> Any:  # noqa: ANN001 - work(session, body) -> answer
        body = await _json_body(request)
        if review is not None:
            raise PracticeInputError("this server is replaying a saved session; start `needleplan practice` without "
                                     "--review to practise", 409)
        session, lock = sessions.get(sid)

        def locked() -> Any:
            with lock:
                answer = work(session, body)
                save(session)
                return answer
        return await run_in_threadpool(locked)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/task")
    async def get_task() -> dict[str, Any]:
        return task()

    @app.post("/api/sessions", status_code=201)
    async def start(request: Request) -> dict[str, Any]:
        body = await _json_body(request)
        if review is not None:
            raise PracticeInputError("this server is replaying a saved session; it starts no new ones", 409)
        if not isinstance(body, dict) or set(body) - {"trainee"}:
            raise PracticeInputError("the body must be {} or {\"trainee\": \"name\"}", 400)
        session = sessions.create(body.get("trainee", ""))
        await run_in_threadpool(save, session)
        return session.state()

    @app.get("/api/sessions/{sid}")
    async def get_state(sid: str) -> dict[str, Any]:
        session, lock = sessions.get(sid)

        def read() -> dict[str, Any]:
            with lock:  # held only while an action changes the session, never while a shot renders
                return session.state()
        return await run_in_threadpool(read)

    @app.put("/api/sessions/{sid}/carm")
    async def put_carm(sid: str, request: Request) -> dict[str, Any]:
        return await act(sid, request, lambda session, body: session.set_carm(body))

    @app.post("/api/sessions/{sid}/shots")
    async def post_shot(sid: str, request: Request) -> dict[str, Any]:
        shot, carm, needles, state = await act(sid, request, lambda session, body: (*session.shoot(body),
                                                                                     session.state()))
        png, render_ms, tip = await run_in_threadpool(imaging.shot_png, case, carm, needles)
        answer = shot.to_dict() | {"image_png": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                                   "size": IMAGE_SIZE, "render_ms": round(render_ms, 1), "needle_tip_px": tip}
        return {"shot": answer, "state": state}

    @app.post("/api/sessions/{sid}/needle")
    async def post_needle(sid: str, request: Request) -> dict[str, Any]:
        def move(session: Session, body: Any) -> dict[str, Any]:
            state, message, event = session.move_needle(body)
            return {"state": state, "message": message, "event": event}
        return await act(sid, request, move)

    @app.post("/api/sessions/{sid}/finish")
    async def post_finish(sid: str, request: Request) -> dict[str, Any]:
        def finish(session: Session, body: Any) -> dict[str, Any]:
            score = session.finish(body)
            return {"score": score, "reveal": _reveal(session), "state": session.state()}
        return await act(sid, request, finish)

    @app.get("/api/sessions/{sid}/score")
    async def get_score(sid: str) -> dict[str, Any]:
        session, _ = sessions.get(sid)
        if not session.finished:
            raise PracticeInputError("the session is not finished yet: press Finish first", 409)
        assert session.score is not None  # finish() scored it
        return session.score

    @app.get("/api/sessions/{sid}/log")
    async def get_log(sid: str) -> Response:
        session, lock = sessions.get(sid)

        def read() -> str:
            with lock:
                return json.dumps(log_document(session))
        return Response(await run_in_threadpool(read), media_type="application/json")

    @app.get("/api/sessions/{sid}/reveal.png")
    async def get_reveal(sid: str) -> Response:
        session = _finished(sid)
        path = log_dir / (Path(log_name(session)).stem + "-reveal.png")
        if not path.exists():
            carm, needles = _last_view(session)
            await run_in_threadpool(imaging.reveal_png, case, carm, needles, path)
        return FileResponse(path, media_type="image/png")

    @app.get("/api/sessions/{sid}/review.png")
    async def get_review(sid: str) -> Response:
        session = _finished(sid)
        path = log_dir / (Path(log_name(session)).stem + "-review.png")
        if not path.exists():
            trainee = None if session.needle is None else session.needle.needle()
            await run_in_threadpool(imaging.review_png, case, trainee, path)
        return FileResponse(path, media_type="image/png")

    @app.get("/api/review")
    async def get_review_log() -> dict[str, Any]:
        if review is None:
            raise PracticeInputError("this server is not replaying a session (start it with --review LOG)", 404)
        return {"log": review_log, "score": review.score}

    @app.get("/api/review/shots/{number}.png")
    async def get_review_shot(number: int) -> Response:
        if review is None:
            raise PracticeInputError("this server is not replaying a session (start it with --review LOG)", 404)
        carm, needles = review.shot_pose(number)
        png, _, _ = await run_in_threadpool(imaging.shot_png, case, carm, needles)
        return Response(png, media_type="image/png")

    def _finished(sid: str) -> Session:
        session, _ = sessions.get(sid)
        if not session.finished:
            raise PracticeInputError("the plan is revealed after Finish", 409)
        return session

    def _reveal(session: Session) -> dict[str, Any]:
        plan = case.plan
        assert plan.entry_mm is not None and plan.needle is not None  # the case's plan is feasible
        base = f"/api/sessions/{session.id}"
        return {"target_mm": plan.target_mm.round(2).tolist(), "entry_mm": plan.entry_mm.round(2).tolist(),
                "needle": plan.needle.to_dict(), "trajectory_in_words": next(
                    (view.words for view in plan.views if view.name == "Trajectory"), ""),
                "entry_in_words": plan.entry_in_words, "reveal_png": f"{base}/reveal.png",
                "review_png": f"{base}/review.png"}

    def _last_view(session: Session):  # noqa: ANN202 - (CArm, needles)
        if session.shots:
            carm, _ = session.shot_pose(len(session.shots))
        else:
            trajectory = next(view for view in case.plan.views if view.name == "Trajectory")
            carm = session.carm_of({"oblique_deg": trajectory.carm.oblique, "tilt_deg": trajectory.carm.tilt,
                                    "collimator_mm": session.collimator_mm, "pan_left_mm": 0.0,
                                    "pan_cranial_mm": 0.0})
        return carm, [] if session.needle is None else [session.needle.needle()]

    return app


async def _json_body(request: Request) -> Any:
    """The request's JSON body ({} when empty); 413 when too large, 400 when not JSON."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
        raise PracticeInputError(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise PracticeInputError(f"the request body is larger than {MAX_BODY_BYTES} bytes", 413)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PracticeInputError(f"the request body is not valid JSON: {error}", 400) from None
