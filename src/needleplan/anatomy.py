"""Spine, Vertebra and their landmarks: the contract between segmentation and planning.

A :class:`Spine` is what :func:`needleplan.segment` returns and what the planner reads. Every point and vector
is in world (patient LPS) millimetres. Landmark names and shapes are the same as the phantom's ground truth
(:attr:`needleplan.phantoms.PhantomCase.landmarks`), so a segmentation is scored against the phantom key by key.

Per vertebra (``Vertebra.landmarks``; a key is absent when it could not be found, e.g. on MRI or at a cut edge):

====================================  ===========================================================================
``body_centroid``                     (3,) centre of the vertebral body
``axes``                              {"left", "posterior", "superior"}: (3,) unit vectors of the vertebra's frame
``superior_endplate``,                {"center": (3,), "normal": (3,) unit, pointing out of the body}
``inferior_endplate``
``canal_center``                      (3,) centre of the vertebral foramen at pedicle height
``canal_outline``                     (N, 3) closed polygon of the vertebral foramen (first point repeated last)
``pedicle_left``, ``pedicle_right``   {"center": (3,), "axis": (3,) unit, posterior-pointing, "narrowest_width_mm"}
``sap_tip_<side>``                    (3,) tip of the superior articular process
``iap_tip_<side>``                    (3,) tip of the inferior articular process
``tp_tip_<side>``                     (3,) tip of the transverse process
``sap_tp_junction_<side>``            (3,) where the SAP meets the TP's upper border (medial branch target)
``spinous_tip``                       (3,) posterior tip of the spinous process
``foramen_<side>``                    (3,) centre of the neural foramen below this vertebra's pedicle
``exiting_root_<side>``               (K, 3) polyline of the modelled exiting nerve root (tube radius 3 mm)
``medial_branch_<side>``              (K, 3) polyline of the modelled medial branch
====================================  ===========================================================================

Pelvis (``Spine.pelvis``): ``sacral_ala_<side>``, ``s1_posterior_foramen_<side>``, ``iliac_crest_top_<side>``,
``psis_<side>``, ``si_joint_posterior_line_<side>`` and ``si_joint_anterior_line_<side>`` ((K, 3) polylines,
superior to inferior), ``midline`` {"point", "normal"}.

Label maps use VerSe ids (``VERSE_IDS``); the ilia get :data:`ILIUM_IDS`. :func:`to_totalseg` and
:func:`from_totalseg` convert to and from TotalSegmentator v2 ``total`` ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import NeedleplanError
from .volume import Volume

#: VerSe vertebra ids: 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum (named "S1" here), 28 T13.
VERSE_IDS: dict[str, int] = {
    **{f"C{n}": n for n in range(1, 8)},
    **{f"T{n}": 7 + n for n in range(1, 13)},
    **{f"L{n}": 19 + n for n in range(1, 7)},
    "S1": 26,
    "T13": 28,
}
VERSE_NAMES: dict[int, str] = {value: key for key, value in VERSE_IDS.items()}
#: Label ids of the ilia in our label maps (not VerSe vertebrae; the phantom's structure ids).
ILIUM_IDS: dict[str, int] = {"left": 60, "right": 61}
#: TotalSegmentator v2 ``total`` ids of the same structures.
TOTALSEG_IDS: dict[str, int] = {
    "S1": 26, "L5": 27, "L4": 28, "L3": 29, "L2": 30, "L1": 31,
    **{f"T{n}": 44 - n for n in range(1, 13)},
    **{f"C{n}": 51 - n for n in range(1, 8)},
}
TOTALSEG_SACRUM = 25
TOTALSEG_HIP_IDS: dict[str, int] = {"left": 77, "right": 78}
#: Cranio-caudal order of the level names.
LEVEL_ORDER: tuple[str, ...] = (
    *(f"C{n}" for n in range(1, 8)), *(f"T{n}" for n in range(1, 13)), "T13", *(f"L{n}" for n in range(1, 7)), "S1",
)
SIDES: tuple[str, str] = ("left", "right")
#: +1 for the patient's left (+x in LPS), -1 for the right: lateral = SIDE_SIGN[side] * left axis.
SIDE_SIGN: dict[str, float] = {"left": 1.0, "right": -1.0}


def _lookup(mapping: dict[int, int], labels: np.ndarray) -> np.ndarray:
    table = np.zeros(max(256, int(labels.max(initial=0)) + 1), dtype=np.uint8)
    for source, target in mapping.items():
        table[source] = target
    return table[labels.astype(np.int64, copy=False)]


def to_totalseg(labels: np.ndarray) -> np.ndarray:
    """VerSe ids (and :data:`ILIUM_IDS`) -> TotalSegmentator v2 ids; the sacrum becomes TS ``sacrum`` (25).

    Ids without a TotalSegmentator counterpart (L6, T13) become 0.
    """
    mapping = {VERSE_IDS[name]: ts for name, ts in TOTALSEG_IDS.items() if name != "S1"}
    mapping[VERSE_IDS["S1"]] = TOTALSEG_SACRUM
    mapping.update({ILIUM_IDS[side]: TOTALSEG_HIP_IDS[side] for side in SIDES})
    return _lookup(mapping, np.asarray(labels))


def from_totalseg(labels: np.ndarray) -> np.ndarray:
    """TotalSegmentator v2 ids -> VerSe ids: vertebrae, ``sacrum`` and ``vertebrae_S1`` (both -> 26), hips -> ilia.

    Every other TotalSegmentator structure (organs, ribs, femurs...) becomes 0.
    """
    mapping = {ts: VERSE_IDS[name] for name, ts in TOTALSEG_IDS.items()}
    mapping[TOTALSEG_SACRUM] = VERSE_IDS["S1"]
    mapping.update({TOTALSEG_HIP_IDS[side]: ILIUM_IDS[side] for side in SIDES})
    return _lookup(mapping, np.asarray(labels))


def level_below(name: str) -> str | None:
    """The next level caudally ("L5" -> "S1"), or None below the sacrum."""
    index = LEVEL_ORDER.index(name)
    return LEVEL_ORDER[index + 1] if index + 1 < len(LEVEL_ORDER) else None


@dataclass
class Vertebra:
    """One identified vertebra (or the sacrum, named "S1").

    Attributes
    ----------
    name : str
        Level name ("L4"; "S1" for the sacrum).
    label : int
        Its VerSe id in ``Spine.labels``.
    confidence : float
        0-1: how sure the numbering is of this name (not of the mask).
    landmarks : dict
        World-mm landmarks, keys as in the module docstring.
    notes : list of str
        What was unusual or could not be found, in words.
    """

    name: str
    label: int
    confidence: float
    landmarks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        if key not in self.landmarks:
            raise NeedleplanError(f"{self.name} has no landmark {key!r}; it has {sorted(self.landmarks)}")
        return self.landmarks[key]

    def __contains__(self, key: str) -> bool:
        return key in self.landmarks


#: Below this numbering confidence a spine's levels are not trusted for planning unless a person confirmed them.
MIN_NUMBERING_CONFIDENCE = 0.7


@dataclass
class Numbering:
    """How the levels were named: the anchor used, a confidence and what was noticed (transitional anatomy...).

    Attributes
    ----------
    anchor : str
        What the names hang on: "sacrum", "ribs", "sacrum+ribs", "labels" (the user's label file), "user" (a
        level the user named at a point), "none"...
    confidence : float
        0-1: how sure the names are.
    notes : list of str
        What was noticed, in words: agreement or conflict between anchors, transitional anatomy.
    anchors : dict of str to str
        Every anchor that was looked for and what it said ("sacrum": "found; the vertebra above it is L5").
    confirmed_by : str
        Who confirmed the names ("" when nobody did): "user" for a level named at a point or an explicit
        confirmation, "labels" for names read from the user's label file.
    """

    anchor: str
    confidence: float
    notes: list[str] = field(default_factory=list)
    anchors: dict[str, str] = field(default_factory=dict)
    confirmed_by: str = ""

    def confirmed(self, min_confidence: float = MIN_NUMBERING_CONFIDENCE) -> bool:
        """Whether the names may be planned on: confirmed by a person, or automatic and at least this sure."""
        if self.confirmed_by:
            return True
        return self.anchor != "none" and self.confidence >= min_confidence

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy."""
        return {"anchor": self.anchor, "confidence": round(float(self.confidence), 3), "notes": list(self.notes),
                "anchors": dict(self.anchors), "confirmed_by": self.confirmed_by}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Numbering:
        """Inverse of :meth:`to_dict` (older documents without ``anchors``/``confirmed_by`` are read too)."""
        return cls(str(data["anchor"]), float(data["confidence"]), [str(n) for n in data.get("notes", [])],
                   {str(k): str(v) for k, v in dict(data.get("anchors", {})).items()},
                   str(data.get("confirmed_by", "")))

    def describe(self) -> str:
        """One line: anchor, confidence and whether the names are confirmed."""
        state = (f"confirmed by {self.confirmed_by}" if self.confirmed_by else
                 "automatic" if self.confirmed() else "NOT CONFIRMED")
        return f"levels numbered from {self.anchor} (confidence {self.confidence:.2f}, {state})"


@dataclass
class Spine:
    """A segmented spine: label map, vertebrae with landmarks, pelvis landmarks, body structures.

    Attributes
    ----------
    labels : Volume
        Label map on the image grid: VerSe ids for vertebrae (26 sacrum) and :data:`ILIUM_IDS` for the ilia.
    vertebrae : dict of str to Vertebra
        Found vertebrae, cranial to caudal.
    pelvis : dict
        Pelvic landmarks (module docstring); empty when the pelvis is out of view.
    structures : Volume or None
        Soft-tissue map on the image grid, ids :data:`STRUCTURE_IDS` (inside the body, bowel gas, bone, ribs, canal,
        discs).
    curve_mm : ndarray, shape (N, 3)
        The spine curve through the vertebral canal, cranial to caudal.
    numbering : Numbering
    modality : str
        "CT" or "MR".
    engine : str
        What made the masks ("classical", "totalsegmentator", "user labels").
    unavailable : dict of str to str
        Landmarks this image cannot give, with the reason (e.g. MRI: cortical landmarks).
    """

    labels: Volume
    vertebrae: dict[str, Vertebra]
    pelvis: dict[str, Any] = field(default_factory=dict)
    structures: Volume | None = None
    curve_mm: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    numbering: Numbering = field(default_factory=lambda: Numbering("none", 0.0))
    modality: str = "CT"
    engine: str = "classical"
    unavailable: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Vertebra:
        if name not in self.vertebrae:
            found = ", ".join(self.vertebrae) or "none"
            raise NeedleplanError(f"level {name!r} is not in this scan (found: {found})")
        return self.vertebrae[name]

    def __contains__(self, name: str) -> bool:
        return name in self.vertebrae

    def __iter__(self) -> Iterator[Vertebra]:
        return iter(self.vertebrae.values())

    @property
    def levels(self) -> list[str]:
        """Names of the found vertebrae, cranial to caudal."""
        return list(self.vertebrae)

    def renumber(self, anchors: dict[str, Any]) -> Spine:
        """A copy whose levels are named from levels the user names at points (:func:`needleplan.levels.renumber`)."""
        from .levels import renumber

        return renumber(self, anchors)

    def confirm_levels(self, by: str = "user") -> Spine:
        """A copy whose automatic level names are marked as checked by a person (``by``)."""
        from .levels import confirm_levels

        return confirm_levels(self, by)

    def landmarks(self) -> dict[str, Any]:
        """All landmarks as one dict: level name -> landmarks, plus "pelvis"; the phantom's layout."""
        out: dict[str, Any] = {v.name: v.landmarks for v in self}
        if self.pelvis:
            out["pelvis"] = self.pelvis
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: numbering, vertebrae (landmarks in LPS mm), pelvis, curve, notes."""
        return {
            "frame": "LPS",
            "units": "mm",
            "modality": self.modality,
            "engine": self.engine,
            "numbering": self.numbering.to_dict(),
            "vertebrae": [
                {"name": v.name, "label": v.label, "confidence": v.confidence, "notes": list(v.notes),
                 "landmarks": jsonable(v.landmarks)}
                for v in self
            ],
            "pelvis": jsonable(self.pelvis),
            "curve_mm": jsonable(self.curve_mm),
            "unavailable": dict(self.unavailable),
        }


#: Ids of ``Spine.structures``. "rib" marks the ribs (beyond the vertebra they articulate with) among the bone;
#: for a needle a rib is bone all the same. "bone_edge" is the partial-volume rim of bone: voxels that hold some
#: bone but too little to be counted in the vertebra's mask (on a 3 mm scan, a thin crest or a transverse process's
#: tip). Landmarks and targets ignore it; a needle's shaft must not cross it.
STRUCTURE_IDS: dict[str, int] = {"background": 0, "body": 1, "bowel_gas": 7, "bone": 8, "rib": 9, "bone_edge": 10,
                                 "canal": 30, "disc": 40}


def jsonable(value: Any, finite: bool = False) -> Any:
    """Nested dicts, lists and numpy values as JSON-ready Python, floats rounded to 3 decimals (micrometres).

    ``finite=True`` writes non-finite floats as None (JSON null) instead of NaN/Infinity.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v, finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, finite) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), finite) if finite else np.round(value.astype(np.float64), 3).tolist()
    if isinstance(value, (np.floating, float)):
        return None if finite and not np.isfinite(value) else round(float(value), 3)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def landmark_arrays(value: Any) -> Any:
    """Inverse of :func:`jsonable` for landmarks: numeric lists become arrays."""
    if isinstance(value, dict):
        return {k: landmark_arrays(v) for k, v in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in np.ravel(value)):
        try:
            return np.asarray(value, dtype=np.float64)
        except ValueError:
            return value
    return value


def landmarks_from_dict(data: dict[str, Any]) -> tuple[dict[str, Vertebra], dict[str, Any], Numbering]:
    """Vertebrae, pelvis and numbering from :meth:`Spine.to_dict` output (e.g. a landmarks.json)."""
    try:
        vertebrae = {
            item["name"]: Vertebra(item["name"], int(item["label"]), float(item["confidence"]),
                                   landmark_arrays(item["landmarks"]), list(item.get("notes", [])))
            for item in data["vertebrae"]
        }
        numbering = Numbering.from_dict(data["numbering"])
    except (KeyError, TypeError, ValueError) as error:
        raise NeedleplanError(f"not a needleplan landmarks document: {error!r}") from error
    return vertebrae, landmark_arrays(data.get("pelvis", {})), numbering


def read_landmarks(path: str | Path) -> tuple[dict[str, Vertebra], dict[str, Any], Numbering]:
    """Read a landmarks JSON written by ``needleplan segment --landmarks``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise NeedleplanError(f"cannot read landmarks {path}: {error}") from error
    return landmarks_from_dict(data)


#: Files of a saved Spine (:func:`save_spine`); the JSON is written last, so a folder holding it is complete.
SPINE_FILES = {"labels": "labels.nii.gz", "structures": "structures.nii.gz", "spine": "spine.json"}


def save_spine(spine: Spine, folder: str | Path, source: str = "") -> Path:
    """Write a Spine to a folder: its label map, structure map and landmarks (``spine.json``), each atomically.

    ``source`` is stored with it (e.g. a digest of the scan it was made from) so that a later run can tell whether
    the saved spine belongs to its input. Returns the folder.
    """
    from .io import save_volume

    folder = Path(folder)
    save_volume(spine.labels, folder / SPINE_FILES["labels"])
    if spine.structures is not None:
        save_volume(spine.structures, folder / SPINE_FILES["structures"])
    document = {**spine.to_dict(), "source": source}
    from .io.atomic import atomic_file

    with atomic_file(folder / SPINE_FILES["spine"]) as tmp:
        tmp.write_text(json.dumps(document) + "\n", encoding="utf-8")
    return folder


def load_spine(folder: str | Path) -> tuple[Spine, str]:
    """Read a Spine written by :func:`save_spine`, and the ``source`` it was saved with."""
    from .io import load

    folder = Path(folder)
    try:
        document = json.loads((folder / SPINE_FILES["spine"]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise NeedleplanError(f"no saved spine in {folder}: {error}") from error
    vertebrae, pelvis, numbering = landmarks_from_dict(document)
    structures_path = folder / SPINE_FILES["structures"]
    spine = Spine(
        labels=load(folder / SPINE_FILES["labels"], modality="LABEL"),
        vertebrae=vertebrae,
        pelvis=pelvis,
        structures=load(structures_path, modality="LABEL") if structures_path.exists() else None,
        curve_mm=np.asarray(document.get("curve_mm", []), dtype=np.float64).reshape(-1, 3),
        numbering=numbering,
        modality=str(document.get("modality", "CT")),
        engine=str(document.get("engine", "classical")),
        unavailable=dict(document.get("unavailable", {})),
    )
    return spine, str(document.get("source", ""))

