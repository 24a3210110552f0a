"""Session logs: written after every action, read back, and replayed to check and review a session.

A log holds the case's name and digest, the task, every action (time, input, the resulting C-arm pose and
needle, the message), every shot's pose and needle, and the score. Replaying feeds the logged inputs, at their
logged times, to a fresh :class:`~needleplan.practice.session.Session` on the same case: it must end in the
same needle and the same score, or the log was edited or belongs to another case.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import NeedleplanError, describe_path
from ..io.atomic import atomic_file
from .case import PracticeCase
from .session import LIMITS, PracticeInputError, Session

LOG_SCHEMA = "needleplan.practice-log/1"
#: A log larger than this is not one of ours (1000 actions take well under 2 MB).
MAX_LOG_BYTES = 20 * 1024 * 1024


def log_name(session: Session) -> str:
    """``practice-<date>-<time>-<procedure>-<level>-<side>-<id>.json``."""
    plan = session.case.plan
    stamp = session.started_utc.replace("-", "").replace(":", "").replace("T", "-")[:15]
    return f"practice-{stamp}-{plan.procedure}-{plan.level}-{plan.side}-{session.id}.json"


def log_document(session: Session) -> dict[str, Any]:
    """The session as a JSON-ready log."""
    case, plan = session.case, session.case.plan
    return {
        "schema": LOG_SCHEMA,
        "case": {"name": case.name, "digest": case.digest, **case.source},
        "task": {"procedure": plan.procedure, "level": plan.level, "side": plan.side, "approach": plan.approach,
                 "in_words": case.task_words},
        "session": {"id": session.id, "trainee": session.trainee, "started_utc": session.started_utc},
        "limits": {key: list(value) for key, value in LIMITS.items()},
        "finished": session.finished,
        "actions": session.actions,
        "shots": [shot.to_dict() for shot in session.shots],
        "score": session.score,
    }


def write_log(session: Session, folder: str | os.PathLike[str]) -> Path:
    """Write (or rewrite) the session's log in ``folder`` atomically; returns its path."""
    path = Path(folder) / log_name(session)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(log_document(session), indent=1), encoding="utf-8")
    return path


def read_log(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a session log, refusing anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise NeedleplanError(f"no session log at {describe_path(path)}")
    if path.stat().st_size > MAX_LOG_BYTES:
        raise NeedleplanError(f"{describe_path(path)} is larger than any session log ({MAX_LOG_BYTES >> 20} MB)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NeedleplanError(f"{describe_path(path)} is not a JSON session log: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != LOG_SCHEMA:
        raise NeedleplanError(f"{describe_path(path)} is not a needleplan practice log (schema {LOG_SCHEMA})")
    for key, kind in (("case", dict), ("task", dict), ("session", dict), ("actions", list)):
        if not isinstance(document.get(key), kind):
            raise NeedleplanError(f"{describe_path(path)} has no valid {key!r}; the log is damaged")
    return document


def replay(case: PracticeCase, document: dict[str, Any]) -> Session:
    """Re-run a logged session on ``case`` and check it ends as logged.

    Raises
    ------
    NeedleplanError
        The log is of another case or task, or replaying it gives another needle or score.
    """
    if document["case"].get("digest") != case.digest:
        raise NeedleplanError(f"this log was made on case {document['case'].get('name')!r}, not on "
                              f"{case.name!r}; give the scan it was made on")
    task, plan = document["task"], case.plan
    if (task.get("procedure"), task.get("level"), task.get("side")) != (plan.procedure, plan.level, plan.side):
        raise NeedleplanError(f"this log is a {task.get('procedure')} {task.get('level')} {task.get('side')} "
                              f"session; start the review with those options ({plan.name} was prepared)")
    actions = document["actions"]
    info = document["session"]
    try:
        session = Session(case, str(info.get("id", "replay")), str(info.get("trainee", "")), clock=lambda: 0.0)
        session.started_utc = str(info.get("started_utc", ""))
        apply: dict[str, Callable[..., Any]] = {"carm": session.set_carm, "shot": session.shoot,
                                                "needle": session.move_needle, "finish": session.finish}
        for action in actions[1:]:
            kind = action.get("kind") if isinstance(action, dict) else None
            if kind not in apply:
                raise NeedleplanError(f"action {action!r} of the log has an unknown kind")
            apply[kind](action.get("input", {}), at_s=float(action.get("t_s", 0.0)))
    except PracticeInputError as error:
        raise NeedleplanError(f"the log does not replay on {case.name}: {error}") from None
    _check_same(session, document)
    return session


def _check_same(session: Session, document: dict[str, Any]) -> None:
    logged = document["actions"][-1].get("needle") if document["actions"] else None
    now = None if session.needle is None else session.needle.to_dict()
    if json.dumps(logged, sort_keys=True) != json.dumps(now, sort_keys=True):
        raise NeedleplanError("replaying the log ends with another needle than the log's: it was edited or made by "
                              "another version")
    if document.get("score") is not None and json.dumps(document["score"], sort_keys=True) != json.dumps(
            session.score, sort_keys=True):
        raise NeedleplanError("replaying the log gives another score than the log's: it was edited or made by "
                              "another version")
