"""What a finished run writes from every image's labels: the manifest, the COCO keypoints file and the card.

- ``manifest.csv``: one row per image (columns in :data:`MANIFEST_COLUMNS`).
- ``coco_keypoints.json``: COCO keypoint detection format. Category 1 is the needle (keypoints tip, hub);
  each vertebra name (L1, L2, ...) is a category whose keypoints are that vertebra's landmarks. Visibility is
  2 for a point on the image and 0 (with x = y = 0) for one outside it.
- ``README.md``: the dataset card: counts, how each case's levels were numbered, the config (case paths replaced
  by case names), the file layout.

All three are rebuilt from the labels files, in case and index order, so they are the same however the images
were made.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_file
from .cases import CaseSpec, case_folder, read_case_document
from .config import DatasetConfig
from .images import labels_path

MANIFEST_COLUMNS = (
    "id", "case", "index", "image", "labels", "width", "height", "procedure", "level", "side", "plan", "view",
    "oblique_deg", "tilt_deg", "isocenter_x_mm", "isocenter_y_mm", "isocenter_z_mm", "source_to_detector_mm",
    "source_to_isocenter_mm", "needles", "needle_tip_col", "needle_tip_row", "needle_tip_visible",
    "needle_tip_error_mm", "needle_angle_error_deg", "vertebrae",
)
NEEDLE_KEYPOINTS = ("tip", "hub")


def write_exports(config: DatasetConfig, out_dir: Path, named: list[tuple[CaseSpec, str]]) -> None:
    """Write the manifest, the COCO file and the dataset card of a finished run, reading each labels file once.

    The labels are streamed: the manifest is written row by row and only the COCO entries and the card's counts
    are kept, so a large set does not hold every labels document in memory.
    """
    names = [name for _, name in named]
    coco = _Coco(_vertebra_keypoint_names(out_dir, names))
    counts = _Counts()
    with atomic_file(out_dir / "manifest.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for labels_file, doc in _labels_in_order(config, out_dir, named):
            writer.writerow(manifest_row(doc, labels_file))
            coco.add(doc)
            counts.add(doc)
    _write_text(out_dir / "coco_keypoints.json", json.dumps(coco.document(), separators=(",", ":")) + "\n")
    numbering = {}
    for name in names:
        document = read_case_document(case_folder(out_dir, name))
        assert document is not None  # the run prepared every case
        numbering[name] = document["numbering"]
    _write_text(out_dir / "README.md", dataset_card(config, counts, names, numbering))


def _labels_in_order(config: DatasetConfig, out_dir: Path, named: list[tuple[CaseSpec, str]]):
    for spec, name in named:
        for index in range(config.images_of(spec)):
            path = labels_path(out_dir, name, index)
            yield path.relative_to(out_dir).as_posix(), json.loads(path.read_text(encoding="utf-8"))


def manifest_row(doc: dict[str, Any], labels_file: str) -> list[Any]:
    """One image's manifest row (:data:`MANIFEST_COLUMNS`)."""
    carm = doc["carm"]
    needle = doc["needles"][0] if doc["needles"] else None
    tip = needle["tip"] if needle else {}
    return [
        doc["id"], doc["case"], doc["index"], doc["image"], labels_file, doc["width"], doc["height"],
        doc["procedure"] or "", doc["level"] or "", doc["side"] or "", doc["plan"] or "", doc["view"] or "",
        carm["oblique_deg"], carm["tilt_deg"], *carm["isocenter_mm"], carm["source_to_detector_mm"],
        carm["source_to_isocenter_mm"], len(doc["needles"]),
        _blank(tip.get("col")), _blank(tip.get("row")), _blank(tip.get("visible")),
        _blank(needle["tip_error_mm"] if needle else None), _blank(needle["angle_error_deg"] if needle else None),
        ";".join(v["name"] for v in doc["vertebrae"]),
    ]


class _Coco:
    """COCO keypoint entries gathered image by image; categories are numbered at the end, in level order."""

    def __init__(self, vertebra_points: list[str]) -> None:
        self.vertebra_points = vertebra_points
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, doc: dict[str, Any]) -> None:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": doc["image"], "width": doc["width"],
                            "height": doc["height"], "needleplan_id": doc["id"]})
        for needle in doc["needles"]:
            points = [needle[name] for name in NEEDLE_KEYPOINTS]
            self.annotations.append(_annotation(image_id, "needle", points, _box_of(points, doc), {}))
        for vertebra in doc["vertebrae"]:
            points = [doc["keypoints"].get(f"{vertebra['name']}.{name}") for name in self.vertebra_points]
            extra = {"segmentation": vertebra["mask_rle"]} if "mask_rle" in vertebra else {}
            if "mask" in vertebra:
                extra["mask_file"] = vertebra["mask"]
            self.annotations.append(_annotation(image_id, vertebra["name"], points, vertebra["bbox"], extra,
                                                area=vertebra["area_px"]))

    def document(self) -> dict[str, Any]:
        levels = sorted({a["category_id"] for a in self.annotations} - {"needle"}, key=_level_order)
        categories = [{"id": 1, "name": "needle", "supercategory": "instrument",
                       "keypoints": list(NEEDLE_KEYPOINTS), "skeleton": [[1, 2]]}]
        number = {"needle": 1}
        for level in levels:
            number[level] = len(categories) + 1
            categories.append({"id": number[level], "name": level, "supercategory": "vertebra",
                               "keypoints": self.vertebra_points, "skeleton": []})
        annotations = [{"id": i, **a, "category_id": number[a["category_id"]]}
                       for i, a in enumerate(self.annotations, start=1)]
        return {"info": {"description": "needleplan simulated fluoroscopy", "version": "1"}, "images": self.images,
                "annotations": annotations, "categories": categories}


class _Counts:
    """What the dataset card counts."""

    def __init__(self) -> None:
        self.images = 0
        self.per_case: Counter = Counter()
        self.per_procedure: Counter = Counter()
        self.per_view: Counter = Counter()
        self.needles: Counter = Counter()
        self.vertebrae: Counter = Counter()
        self.tips = self.tips_seen = 0

    def add(self, doc: dict[str, Any]) -> None:
        self.images += 1
        self.per_case[doc["case"]] += 1
        self.per_procedure[doc["procedure"] or "none"] += 1
        self.per_view[doc["view"] or "uniform"] += 1
        self.needles[len(doc["needles"])] += 1
        self.vertebrae.update(v["name"] for v in doc["vertebrae"])
        self.tips += len(doc["needles"])
        self.tips_seen += sum(1 for n in doc["needles"] if n["tip"]["visible"])


def _annotation(image_id: int, category: str, points: list, bbox: list, extra: dict,
                area: float | None = None) -> dict[str, Any]:
    """An annotation whose ``category_id`` still holds the category's name (numbered in :meth:`_Coco.document`)."""
    flat, seen = [], 0
    for point in points:
        if point and point["visible"]:
            flat += [point["col"], point["row"], 2]
            seen += 1
        else:
            flat += [0, 0, 0]
    return {"image_id": image_id, "category_id": category, "keypoints": flat, "num_keypoints": seen,
            "bbox": bbox, "area": area if area is not None else bbox[2] * bbox[3], "iscrowd": 0,
            "segmentation": [], **extra}


def _box_of(points: list[dict], doc: dict) -> list[float]:
    """Box around the visible ends of a needle, clipped to the image ([0, 0, 0, 0] when none is visible)."""
    seen = [p for p in points if p["visible"]]
    if not seen:
        return [0.0, 0.0, 0.0, 0.0]
    cols = [p["col"] for p in seen]
    rows = [p["row"] for p in seen]
    left, top = max(min(cols) - 0.5, -0.5), max(min(rows) - 0.5, -0.5)
    right, bottom = min(max(cols) + 0.5, doc["width"] - 0.5), min(max(rows) + 0.5, doc["height"] - 0.5)
    return [round(left, 3), round(top, 3), round(right - left, 3), round(bottom - top, 3)]


def _vertebra_keypoint_names(out_dir: Path, names: list[str]) -> list[str]:
    """Landmark names (without the level) over every case, in first-seen order."""
    seen: dict[str, None] = {}
    for name in names:
        document = read_case_document(case_folder(out_dir, name)) or {}
        levels = {v["name"] for v in document.get("vertebrae", [])}
        for point in document.get("points_mm", {}):
            level, _, rest = point.partition(".")
            if level in levels:
                seen.setdefault(rest, None)
    return list(seen)


def dataset_card(config: DatasetConfig, counts: _Counts, names: list[str],
                 numbering: dict[str, dict[str, Any]]) -> str:
    """The dataset card (README.md) in Markdown; ``numbering``: case name -> how its levels were numbered."""
    public = json.dumps(config.public_dict(names), indent=1)
    size = config.imaging.size
    lines = [
        "# needleplan simulated fluoroscopy dataset",
        "",
        f"{counts.images} labelled simulated fluoroscopy images (digitally reconstructed radiographs), "
        f"{size} x {size} pixels, {config.output.image_format.upper()} {config.output.bits}-bit, made by needleplan "
        f"from {len(names)} case(s) with seed {config.seed}. The same config and seed give the same files.",
        "",
        "No patient identity: cases are named by the user, the phantom's seed, or a digest of their voxels; "
        "no names, ids, dates or UIDs of the source scans are stored.",
        "",
        "## Counts",
        "",
        _table("case", counts.per_case),
        _table("procedure", counts.per_procedure),
        _table("view", counts.per_view),
        _table("needles per image", counts.needles),
        _table("vertebra seen", counts.vertebrae),
        f"Needle tips inside the image: {counts.tips_seen} of {counts.tips}.",
        "",
        "## Levels",
        "",
        "The vertebra names in the labels and masks are the case's level numbering: what it was counted from, "
        "how sure, and who confirmed it.",
        "",
        _numbering_table(numbering),
        "## Files",
        "",
        "- `images/<case>/<id>.png|.tif`: the image, as a C-arm monitor shows it (bone and metal dark unless "
        "inverted).",
        "- `labels/<case>/<id>.json`: the camera (C-arm pose, source, detector, the 3x4 projection matrix "
        "P with P @ (x, y, z, 1) = w (col, row, 1), world LPS mm, pixel centres at whole numbers), keypoints "
        "(landmarks and needle tip and hub) with visibility, needles (3D pose, plan, error against the plan), "
        "vertebrae (mask, box [x, y, w, h], area, mask centroid and projected 3D centroid).",
        "- `masks/<case>/<id>-<vertebra>.png`: 1-bit projected mask per vertebra (pixels whose ray crosses "
        f"at least {config.output.min_mask_path_mm:g} mm of it), unless masks are RLE in the labels.",
        "- `manifest.csv`: one row per image; `coco_keypoints.json`: COCO keypoints (needle: tip, hub; one "
        "category per vertebra with its landmarks).",
        "- `cases/<case>/`: the prepared case (vertebra labels, landmark points, plans) the images came from.",
        "",
        "## Config",
        "",
        "```json",
        public,
        "```",
        "",
    ]
    return "\n".join(lines)


def _table(what: str, counts: Counter) -> str:
    rows = [f"| {what} | images |", "|---|---|"]
    rows += [f"| {key} | {value} |" for key, value in sorted(counts.items(), key=lambda kv: str(kv[0]))]
    return "\n".join(rows) + "\n"


def _numbering_table(numbering: dict[str, dict[str, Any]]) -> str:
    rows = ["| case | numbered from | confidence | confirmed by |", "|---|---|---|---|"]
    rows += [f"| {name} | {item['anchor']} | {item['confidence']} | {item['confirmed_by'] or 'automatic'} |"
             for name, item in numbering.items()]
    return "\n".join(rows) + "\n"


def _level_order(name: str) -> tuple[int, int]:
    order = {"C": 0, "T": 1, "L": 2, "S": 3}
    digits = "".join(ch for ch in name if ch.isdigit())
    return order.get(name[:1], 4), int(digits) if digits else 0


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
