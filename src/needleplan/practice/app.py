"""``needleplan practice``: prepare the case, listen, print the address, serve until Ctrl+C."""

from __future__ import annotations

import ipaddress
import os
import socket
import webbrowser
from pathlib import Path
from typing import Any

from ..errors import NeedleplanError
from ..segment.user_labels import UserLabels
from .case import prepare_case
from .log import read_log, replay


def run_practice(case_path: str | os.PathLike[str] | None = None, *, procedure: str = "tfesi",
                 level: str | None = None, side: str = "left", seed: int = 0, host: str = "127.0.0.1", port: int = 0,
                 log_dir: str | os.PathLike[str] = "practice-logs", max_sessions: int = 8, open_browser: bool = False,
                 review: str | os.PathLike[str] | None = None, labels: UserLabels | None = None,
                 labels_convention: str = "auto", anchors: dict[str, Any] | None = None,
                 levels_confirmed: bool = False) -> int:
    """Run the simulator (or the review of a saved session) until interrupted; returns the exit status."""
    import uvicorn

    from .server import create_app

    if not 0 <= port <= 65535:
        raise NeedleplanError(f"--port must be within 0-65535, got {port}")
    document = session = None
    if review is not None:
        document = read_log(review)
        task, source = document["task"], document["case"]
        procedure, level, side = task.get("procedure"), task.get("level"), task.get("side")
        if case_path is None:
            if "phantom_seed" not in source:
                raise NeedleplanError(f"this log was made on a scan ({source.get('name')}); give that scan as CASE")
            seed = int(source["phantom_seed"])
    print(f"needleplan practice: preparing {'the phantom' if case_path is None else case_path} "
          f"({procedure} {level or ''} {side})...", flush=True)
    case = prepare_case(case_path, procedure, level, side, seed=seed, labels=labels,
                        labels_convention=labels_convention, anchors=anchors, levels_confirmed=levels_confirmed)
    print(f"needleplan practice: {case.spine.numbering.describe()}", flush=True)
    if document is not None:
        session = replay(case, document)
        for line in (session.score or {}).get("summary", ["the session was not finished"]):
            print(f"  {line}", flush=True)
    app = create_app(case, log_dir=Path(log_dir), max_sessions=max_sessions, review=session, review_log=document)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{bound}/"
    if not _is_loopback(host):
        print(f"needleplan practice: listening on {host}: other computers on the network can reach it", flush=True)
    print(f"needleplan practice: {case.task_words} on {case.name}", flush=True)
    print(f"needleplan practice: open {address}", flush=True)
    if open_browser:
        webbrowser.open(address)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        sock.close()
        raise NeedleplanError(f"cannot listen on {host} port {port}: {error}") from None
    sock.listen(64)
    return sock


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
