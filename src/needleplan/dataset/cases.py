"""Cases of a dataset: each scan is loaded, named, segmented and planned once, and saved in ``OUTDIR/cases/<name>``.

What is saved holds no patient identity: the vertebra label map cropped to the spine (``labels.npy``), its
geometry, vertebra names and centroids, the landmark points and the feasible plans (``case.json``). Workers
read it with :func:`load_case` and render many images from one load. Every file is deterministic (no dates,
no compression headers), so two runs of one config give identical folders.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..anatomy import Numbering, Spine
from ..errors import LevelsUnconfirmedError, NeedleplanError
from ..fluoro import CArm
from ..fluoro.render import crop_to_labels
from ..io.atomic import atomic_file
from ..phantoms import shared_phantom
from ..volume import Volume
from .config import CaseSpec, DatasetConfig

CASE_FILE = "case.json"
LABELS_FILE = "labels.npy"
#: Landmark entries that are directions or measures, not points to project.
_NOT_POINTS = ("axes", "normal", "axis", "narrowest_width_mm")


@dataclass(frozen=True)
class PlannedNeedle:
    """A feasible plan as the sampler needs it: its id, target, needle and C-arm views."""

    id: str
    procedure: str
    level: str
    side: str
    target_mm: np.ndarray
    tip_mm: np.ndarray
    hub_mm: np.ndarray
    gauge: int
    views: dict[str, CArm]


@dataclass(frozen=True)
class Case:
    """A prepared case as a worker uses it."""

    name: str
    ct: Volume
    labels: Volume
    vertebrae: dict[str, int]
    """Vertebra name -> label id, cranial to caudal."""
    centroids_mm: dict[str, np.ndarray]
    """Vertebra name -> centroid of its label voxels (LPS mm)."""
    points_mm: dict[str, np.ndarray]
    """Landmark name ("L4.pedicle_left.center", "pelvis.psis_left", "L4.centroid": of the label) -> LPS mm."""
    plans: list[PlannedNeedle]


def case_folder(out_dir: Path, name: str) -> Path:
    """Where a case's prepared files live."""
    return Path(out_dir) / "cases" / name


def load_ct(spec: CaseSpec) -> Volume:
    """The case's CT: the built-in phantom for its seed, or the scan at its path."""
    if spec.phantom is not None:
        return shared_phantom(spec.phantom, spec.spacing_mm).ct
    from ..io import load

    assert spec.path is not None  # a case is the phantom or a scan at its path (checked with the config)
    ct = load(spec.path)
    if ct.modality != "CT":
        raise NeedleplanError(f"dataset cases must be CT scans; {spec.path!r} is {ct.modality}")
    return ct


def case_name(spec: CaseSpec, ct: Volume | None) -> str:
    """The user's name, "phantom-<seed>", or "case-" and a digest of the voxels (never the path or headers)."""
    if spec.name is not None:
        return spec.name
    if spec.phantom is not None:
        return f"phantom-{spec.phantom}" + ("" if spec.spacing_mm == 1.0 else f"-{spec.spacing_mm:g}mm")
    assert ct is not None, "a scan's case is named by its voxels: give its CT"
    return "case-" + content_digest(ct)[:12]


def content_digest(ct: Volume) -> str:
    """SHA-256 of the voxels and their geometry: the same scan gives the same digest wherever it is stored.

    Remembered on the Volume: naming a case and preparing it both ask for it.
    """
    return ct.derived("content_digest", _sha256)


def _sha256(ct: Volume) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(ct.voxels).tobytes())
    digest.update(np.ascontiguousarray(ct.index_to_world, dtype=np.float64).tobytes())
    return digest.hexdigest()


def prepare_case(spec: CaseSpec, ct: Volume, name: str, config: DatasetConfig, out_dir: Path) -> dict[str, Any]:
    """Segment (or take the phantom's exact anatomy), plan, and save the case; reuse a saved one.

    Returns the case document (``case.json``). Raises NeedleplanError when the folder holds another scan under
    this name, when its levels are not confirmed (:func:`check_levels`), or when the case has no plan the config
    can use.
    """
    folder = case_folder(out_dir, name)
    digest = content_digest(ct)
    saved = read_case_document(folder)
    if saved is not None:
        if saved["content_digest"] != digest:
            raise NeedleplanError(f"{folder} holds another scan under the name {name!r}; give the case another name "
                                  "or use a new output folder")
        return saved
    spine = _spine(spec, ct)
    _require_confirmed_levels(spine.numbering, name)
    plans = _plans(spine, config)
    labels = _cropped_vertebra_labels(spine)
    centroids = _centroids(labels, {v.name: int(v.label) for v in spine})
    document = {
        "name": name,
        "content_digest": digest,
        "source": "phantom" if spec.phantom is not None else "scan",
        "numbering": spine.numbering.to_dict(),
        "labels_index_to_world": labels.index_to_world.tolist(),
        "vertebrae": [{"name": v.name, "label": int(v.label)} for v in spine],
        "centroids_mm": centroids,
        "points_mm": {**_landmark_points(spine), **{f"{name}.centroid": c for name, c in centroids.items()}},
        "plans": plans,
    }
    if config.needles.mode != "none" or config.poses.mode == "planned":
        if not plans:
            raise NeedleplanError(f"case {name}: no feasible plan for procedures {', '.join(config.poses.procedures)}"
                                  " at the levels and sides asked; the poses or needles need one")
    with atomic_file(folder / LABELS_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(labels.voxels))
    with atomic_file(folder / CASE_FILE) as tmp:  # written last: its presence means the case is complete
        tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    return document


def read_case_document(folder: Path) -> dict[str, Any] | None:
    """The saved case.json, or None when the case has not been prepared."""
    path = Path(folder) / CASE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NeedleplanError(f"cannot read {path}: {error}; delete that folder to prepare the case again") from None


def load_case(spec: CaseSpec, name: str, out_dir: Path) -> Case:
    """A prepared case, with its CT loaded: what a worker renders from."""
    folder = case_folder(out_dir, name)
    document = read_case_document(folder)
    if document is None:
        raise NeedleplanError(f"case {name} is not prepared in {folder}")
    voxels = np.load(folder / LABELS_FILE)
    labels = Volume(voxels, np.asarray(document["labels_index_to_world"]), modality="LABEL")
    plans = [_planned_needle(item) for item in document["plans"]]
    return Case(
        name=name,
        ct=load_ct(spec),
        labels=labels,
        vertebrae={item["name"]: int(item["label"]) for item in document["vertebrae"]},
        centroids_mm={k: np.asarray(v) for k, v in document["centroids_mm"].items()},
        points_mm={k: np.asarray(v) for k, v in document["points_mm"].items()},
        plans=plans,
    )


def check_levels(spec: CaseSpec, ct: Volume | None, name: str) -> None:
    """Refuse a scan whose level names are not confirmed, as preparing it would (a dry run's check).

    The scan (``ct``, loaded here when None) is segmented, with the case's own labels and levels named at points,
    to learn how its levels were numbered. The phantom's levels are exact, and ``levels_confirmed = true`` needs
    no segmenting.
    """
    if spec.phantom is None and not spec.levels_confirmed:
        _require_confirmed_levels(_spine(spec, load_ct(spec) if ct is None else ct).numbering, name)


def _require_confirmed_levels(numbering: Numbering, name: str) -> None:
    """Vertebra names become training labels: refuse a case whose names are unsure and unconfirmed."""
    if not numbering.confirmed():
        raise LevelsUnconfirmedError(
            f"case {name}: {numbering.describe()}{': ' + numbering.notes[0] if numbering.notes else ''}; so no "
            "image is made with its vertebra names. In its [[cases]] "
            "table name a level you are sure of at a world LPS point inside it (level_at = { L3 = [x, y, z] }), "
            "give your own labels (labels = \"file\"), or, after checking the count yourself, set "
            "levels_confirmed = true")


def _spine(spec: CaseSpec, ct: Volume) -> Spine:
    """The phantom's exact anatomy, or the scan segmented with the case's labels and levels named at points."""
    if spec.phantom is not None:
        return shared_phantom(spec.phantom, spec.spacing_mm).spine()
    from ..segment import segment

    spine = segment(ct, labels=spec.labels, convention=spec.labels_convention or "auto", anchors=spec.level_at)
    return spine.confirm_levels() if spec.levels_confirmed else spine


def _plans(spine: Spine, config: DatasetConfig) -> list[dict[str, Any]]:
    """Feasible plans of the asked procedures, levels and sides, as plain data."""
    if config.needles.mode == "none" and config.poses.mode == "uniform":
        return []
    from ..plan import plan_all

    poses = config.poses
    out = []
    for plan in plan_all(spine, procedures=poses.procedures).feasible:
        if plan.side not in poses.sides or (poses.levels and plan.level not in poses.levels):
            continue
        views = {view.name: view.carm for view in plan.views
                 if view.carm is not None and (not poses.views or view.name in poses.views)}
        if not views:
            continue
        assert plan.needle is not None  # a feasible plan has its needle
        out.append({
            "id": f"{plan.procedure}-{plan.level}-{plan.side}",
            "procedure": plan.procedure, "level": plan.level, "side": plan.side,
            "target_mm": plan.target_mm.tolist(),
            "tip_mm": plan.needle.tip_mm.tolist(), "hub_mm": plan.needle.hub_mm.tolist(), "gauge": plan.needle.gauge,
            "views": {name: _carm_dict(carm) for name, carm in views.items()},
        })
    return out


def _carm_dict(carm: CArm) -> dict[str, Any]:
    return {"oblique": carm.oblique, "tilt": carm.tilt, "isocenter": np.asarray(carm.isocenter).tolist(),
            "source_to_detector_mm": carm.source_to_detector_mm,
            "source_to_isocenter_mm": carm.source_to_isocenter_mm}


def _planned_needle(item: dict[str, Any]) -> PlannedNeedle:
    return PlannedNeedle(
        id=item["id"], procedure=item["procedure"], level=item["level"], side=item["side"],
        target_mm=np.asarray(item["target_mm"]), tip_mm=np.asarray(item["tip_mm"]),
        hub_mm=np.asarray(item["hub_mm"]), gauge=int(item["gauge"]),
        views={name: CArm(**view) for name, view in item["views"].items()},
    )


def _cropped_vertebra_labels(spine: Spine) -> Volume:
    """The vertebra labels only (no ilia), cropped to their bounding box plus one voxel, geometry kept."""
    ids = tuple(int(v.label) for v in spine)
    voxels = np.asarray(spine.labels.voxels)
    if not np.isin(voxels, ids).any():
        raise NeedleplanError("the segmentation found no vertebra voxels; this scan cannot give labelled images")
    cropped = crop_to_labels(spine.labels, ids)
    kept = np.where(np.isin(cropped.voxels, ids), cropped.voxels, 0)
    return Volume(kept.astype(np.uint8 if max(ids) < 256 else np.uint16), cropped.index_to_world, modality="LABEL")


def _centroids(labels: Volume, vertebrae: dict[str, int]) -> dict[str, list[float]]:
    ids = list(vertebrae.values())
    centres = ndimage.center_of_mass(np.ones(labels.shape), labels.voxels, ids)
    out = {}
    for name, centre in zip(vertebrae, centres, strict=True):
        if np.all(np.isfinite(centre)):
            out[name] = labels.index_to_world_points(np.asarray(centre)[::-1][None])[0].tolist()
    return out


def _landmark_points(spine: Spine) -> dict[str, list[float]]:
    """Every landmark that is a single world point, flattened to dotted names."""
    out: dict[str, list[float]] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key not in _NOT_POINTS:
                    visit(f"{prefix}.{key}", item)
            return
        point = np.asarray(value, dtype=np.float64) if isinstance(value, (list, np.ndarray)) else None
        if point is not None and point.shape == (3,) and np.all(np.isfinite(point)):
            out[prefix] = point.tolist()

    for vertebra in spine:
        visit(vertebra.name, vertebra.landmarks)
    visit("pelvis", spine.pelvis)
    return out
