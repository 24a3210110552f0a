"""The practice case: one CT, its anatomy and the plan of the task, prepared once when the simulator starts.

A session never loads anything: it renders from :attr:`PracticeCase.ct`, checks the needle against
:attr:`PracticeCase.scene` and scores against :attr:`PracticeCase.plan`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..anatomy import Spine
from ..errors import NeedleplanError, describe_path
from ..phantoms import shared_phantom
from ..plan import Plan, plan
from ..plan.procedures import get_procedure
from ..plan.scene import Scene, scene_for
from ..segment.user_labels import UserLabels
from ..volume import Volume

#: Shots render from voxels at least this size (mm): a 512 x 512 shot of a 1 mm scan then takes about 100 ms on
#: 2 cores instead of 125-160 (benchmarks/RESULTS.md, "Practice simulator"), and looks the same on screen.
SHOT_VOXEL_MM = 1.25


@dataclass(eq=False)
class PracticeCase:
    """What every session of one simulator run shares.

    Attributes
    ----------
    name : str
        "phantom-<seed>" or "case-" and a digest of the voxels (never a path or a patient's name).
    digest : str
        SHA-256 of the voxels and geometry: a review checks that it replays on the same scan.
    ct, spine, plan, scene
        The CT, its anatomy, the feasible plan of the task and the planner's masks.
    shot_ct : Volume
        What shots render (:func:`shot_volume`): the CT cut to the patient, on voxels of at least
        :data:`SHOT_VOXEL_MM`.
    """

    name: str
    digest: str
    ct: Volume
    spine: Spine
    plan: Plan
    scene: Scene
    source: dict[str, Any]
    shot_ct: Volume
    _picture_scene: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def task_words(self) -> str:
        """E.g. "Left L4 transforaminal epidural injection, supraneural approach"."""
        p = self.plan
        return f"{p.side.capitalize()} {p.level} {get_procedure(p.procedure).title}, {p.approach} approach"

    @property
    def isocenter_mm(self) -> np.ndarray:
        """Where the C-arm is centred: the task level's vertebral body (what a radiographer centres on)."""
        marks = self.spine[self.plan.level].landmarks if self.plan.level in self.spine else {}
        centre = marks.get("body_centroid")
        if centre is None:
            return np.asarray(self.plan.target_mm, dtype=np.float64)
        return np.asarray(centre, dtype=np.float64)

    def picture_scene(self) -> Any:
        """The bone and canal surfaces for 3D review pictures, made on first use (about a second)."""
        from ..plan.picture import plan_scene

        with self._lock:
            if self._picture_scene is None:
                self._picture_scene = plan_scene(self.spine)
            return self._picture_scene


def prepare_case(path: str | os.PathLike[str] | None = None, procedure: str = "tfesi", level: str | None = None,
                 side: str = "left", *, seed: int = 0, labels: UserLabels | None = None,
                 labels_convention: str = "auto", anchors: dict[str, Any] | None = None,
                 levels_confirmed: bool = False) -> PracticeCase:
    """Load (or build) the case, segment it, and plan the task.

    Parameters
    ----------
    path : path, optional
        A CT: DICOM folder or file, NIfTI, MHA or NRRD. None: the built-in phantom with its exact anatomy.
    procedure : str
        "tfesi", "mbb", "rfa" or "si".
    level : str, optional
        Default L4 (S1 for "si").
    side : str
        "left" or "right".
    seed : int
        The phantom's seed (with no ``path``).
    labels : path, Volume or dict, optional
        The user's own vertebra labels of the scan, and their id convention: see :func:`needleplan.segment`.
    labels_convention : {"auto", "totalseg", "verse"}
    anchors : dict, optional
        Levels named at world points, for a scan (:func:`needleplan.segment`).
    levels_confirmed : bool
        The user checked the scan's automatic level names (:meth:`~needleplan.anatomy.Spine.confirm_levels`).

    Raises
    ------
    NeedleplanError
        A scan that is not a CT, unconfirmed levels, a spine without that level, or a task with no safe straight
        path.
    """
    from ..dataset.cases import content_digest

    kind = get_procedure(procedure)
    if side not in ("left", "right"):
        raise NeedleplanError(f"side must be left or right, got {side!r}")
    level = level or kind.default_level
    if path is None:
        if labels is not None:
            raise NeedleplanError("your own labels need the scan they were made on; give it as the case")
        phantom = shared_phantom(int(seed))
        ct, spine = phantom.ct, phantom.spine()
        name, source = f"phantom-{int(seed)}", {"phantom_seed": int(seed)}
    else:
        from ..io import load
        from ..segment import segment

        ct = load(path)
        if ct.modality != "CT":
            raise NeedleplanError(f"practice needs a CT; {describe_path(Path(path))} is {ct.modality} (simulated "
                                  "fluoroscopy needs X-ray attenuation)")
        spine = segment(ct, labels=labels, convention=labels_convention, anchors=anchors)
        if levels_confirmed:
            spine = spine.confirm_levels()
        name, source = "case-" + content_digest(ct)[:12], {"scan": True}
    task = plan(spine, procedure, level, side)
    if not task.feasible:
        raise NeedleplanError(f"{task.name} has no safe straight path on {name}: {task.reason}; choose another "
                              "level, side or procedure")
    return PracticeCase(name, content_digest(ct), ct, spine, task, scene_for(spine), source, shot_volume(ct))


def shot_volume(ct: Volume, voxel_mm: float = SHOT_VOXEL_MM) -> Volume:
    """The CT as shots render it: cut to the patient (:func:`crop_to_body`), and resampled (trilinear) so that no
    axis has voxels finer than ``voxel_mm`` (coarser axes keep theirs; directions and position are kept)."""
    body = crop_to_body(ct)
    spacing = np.asarray(body.spacing_mm, dtype=np.float64)
    coarse = np.maximum(spacing, voxel_mm)
    if np.allclose(coarse, spacing):
        return body
    extent = (np.array(body.shape[::-1]) - 1) * spacing  # (x, y, z) mm from the first voxel centre to the last
    count = np.floor(extent / coarse + 1e-9).astype(int) + 1
    index_to_world = body.index_to_world.copy()
    index_to_world[:3, :3] = body.index_to_world[:3, :3] / spacing * coarse
    return body.resample(index_to_world, (int(count[2]), int(count[1]), int(count[0])))  # (nz, ny, nx)


def crop_to_body(ct: Volume, air_hu: float = -900.0) -> Volume:
    """The CT cut to the bounding box of its voxels above ``air_hu`` plus one voxel, at the same place.

    Air attenuates nothing in the renderer's model, and rays are clipped to the volume's box, so the shots are
    the same with fewer samples (a scan's field of view is often much wider than the patient).
    """
    dense = np.asarray(ct.hu) > air_hu
    if not dense.any():
        raise NeedleplanError("the CT holds nothing denser than air; there is no patient to practise on")
    cut = ct.cropped_to(dense)
    return ct if cut.shape == ct.shape else cut  # the whole scan: keep its cached attenuation

