"""The practice simulator: a fellow steers a needle under simulated fluoroscopy and is scored against the plan.

``needleplan practice`` serves it to a browser (docs/practice.md). The pieces are plain objects that tests and
scripts use directly: :func:`prepare_case` (the case and the plan of the task), :class:`Session` (one attempt),
:func:`score_session`, and the session logs (:func:`read_log`, :func:`replay`).
"""

from .case import PracticeCase, prepare_case
from .log import log_document, read_log, replay, write_log
from .score import score_session
from .session import LIMITS, PracticeInputError, Session

__all__ = ["LIMITS", "PracticeCase", "PracticeInputError", "Session", "log_document", "prepare_case", "read_log",
           "replay", "score_session", "write_log"]
