"""The simulator's pictures: a shot as PNG bytes, the reveal (the plan drawn on the trainee's last view) and the 3D
review picture.

Shots are rendered one at a time (:data:`RENDER_LOCK`): the ray caster already uses every core, and two at once
would each take twice as long. The pictures take their own lock: the off-screen OpenGL context is not shared
between threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..fluoro import CArm, render
from ..fluoro.writers import display_pixels, encode_pixels
from ..needle import Needle
from ..plan.model import View
from .case import PracticeCase

RENDER_LOCK = threading.Lock()
PICTURE_LOCK = threading.Lock()


def shot_png(case: PracticeCase, carm: CArm, needles: Sequence[Needle]) -> tuple[bytes, float, tuple | None]:
    """Render a shot and encode it as an 8-bit PNG (outside the round field: black, as on a C-arm monitor).

    Returns
    -------
    png : bytes
    render_ms : float
        Server time from the pose to the encoded PNG.
    tip_px : (col, row) or None
        Where the first needle's tip is on the image (None without a needle or off the image).
    """
    start = time.perf_counter()
    with RENDER_LOCK:
        fluoro = render(case.shot_ct, carm, needles=needles)
    png = encode_pixels(display_pixels(fluoro.display, 8), "png")
    elapsed_ms = (time.perf_counter() - start) * 1000.0
    tip = None
    if needles:
        key = fluoro.keypoints.get(f"{needles[0].name}.tip")
        if key is not None and key.visible:
            tip = (round(key.col, 2), round(key.row, 2))
    return png, elapsed_ms, tip


def reveal_png(case: PracticeCase, carm: CArm, trainee: Sequence[Needle], path: str | os.PathLike[str]) -> Path:
    """The trainee's view with the plan drawn on it: target ring, planned needle, canal and roots (written to
    ``path`` atomically)."""
    from ..io.atomic import atomic_file
    from ..plan.overlay import render_view

    view = View("Your last view", carm, "the plan over your needle", None, carm.describe())
    with RENDER_LOCK:
        image = render_view(case.shot_ct, case.spine, case.plan, view, size=carm.detector_rows_cols[0], needles=trainee)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(encode_pixels(np.ascontiguousarray(image.rgb), "png"))
    return path


def review_png(case: PracticeCase, trainee: Needle | None, path: str | os.PathLike[str]) -> Path:
    """The 3D review picture: bone, canal, roots, target, the plan's needle and the trainee's (PNG, atomic)."""
    from ..plan.picture import plan_picture

    scene = case.picture_scene()
    with PICTURE_LOCK:
        return plan_picture(case.plan, scene, path, size=(900, 700), trainee=trainee)
