"""What a finished run writes from every image's labels: the manifest, the COCO keypoints file and the card.

- ``manifest.csv``: one row per image (columns in :data:`MANIFEST_COLUMNS`).
- ``coco_keypoints.json``: COCO keypoint detection format. Category 1 is the needle (keypoints tip, hub);
  each vertebra name (L1, L2, ...) is a category whose keypoints are that vertebra's landmarks. Visibility is
  2 for a point on the image and 0 (with x = y = 0) for one outside it.
- ``README.md``: the dataset card: counts, the config (case paths replaced by case names), the file layout.

All three are rebuilt from the labels files, in case and index order, so they are the same however the images
were made.
"""

from __future__ import annotations

import csv
import io
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
    """Write the manifest, the COCO file and the dataset card of a finished run."""
    documents = list(_labels_in_order(config, out_dir, named))
    vertebra_points = _vertebra_keypoint_names(out_dir, [name for _, name in named])
    _write_text(out_dir / "manifest.csv", manifest_text(documents, out_dir))
    coco = coco_keypoints(documents, vertebra_points)
    _write_text(out_dir / "coco_keypoints.json", json.dumps(coco, separators=(",", ":")) + "\n")
    _write_text(out_dir / "README.md", dataset_card(config, documents, [name for _, name in named]))


def _labels_in_order(config: DatasetConfig, out_dir: Path, named: list[tuple[CaseSpec, str]]):
    for spec, name in named:
        for index in range(config.images_of(spec)):
            path = labels_path(out_dir, name, index)
            document = json.loads(path.read_text(encoding="utf-8"))
            document["_labels_file"] = path.relative_to(out_dir).as_posix()
            yield document


def manifest_text(documents: list[dict[str, Any]], out_dir: Path) -> str:
    """The manifest as CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    for doc in documents:
        carm = doc["carm"]
        needle = doc["needles"][0] if doc["needles"] else None
        tip = needle["tip"] if needle else {}
        writer.writerow([
            doc["id"], doc["case"], doc["index"], doc["image"], doc["_labels_file"], doc["width"], doc["height"],
            doc["procedure"] or "", doc["level"] or "", doc["side"] or "", doc["plan"] or "", doc["view"] or "",
            carm["oblique_deg"], carm["tilt_deg"], *carm["isocenter_mm"], carm["source_to_detector_mm"],
            carm["source_to_isocenter_mm"], len(doc["needles"]),
            _blank(tip.get("col")), _blank(tip.get("row")), _blank(tip.get("visible")),
            _blank(needle and needle["tip_error_mm"]), _blank(needle and needle["angle_error_deg"]),
            ";".join(v["name"] for v in doc["vertebrae"]),
        ])
    return buffer.getvalue()


def coco_keypoints(documents: list[dict[str, Any]], vertebra_points: list[str]) -> dict[str, Any]:
    """The dataset in COCO keypoint-detection form."""
    levels = sorted({v["name"] for doc in documents for v in doc["vertebrae"]}, key=_level_order)
    categories = [{"id": 1, "name": "needle", "supercategory": "instrument", "keypoints": list(NEEDLE_KEYPOINTS),
                   "skeleton": [[1, 2]]}]
    category_of = {}
    for number, level in enumerate(levels, start=2):
        category_of[level] = number
        categories.append({"id": number, "name": level, "supercategory": "vertebra",
                           "keypoints": vertebra_points, "skeleton": []})
    images, annotations = [], []
    for image_id, doc in enumerate(documents, start=1):
        images.append({"id": image_id, "file_name": doc["image"], "width": doc["width"], "height": doc["height"],
                       "needleplan_id": doc["id"]})
        for needle in doc["needles"]:
            points = [needle[name] for name in NEEDLE_KEYPOINTS]
            annotations.append(_annotation(len(annotations) + 1, image_id, 1, points, _box_of(points, doc), {}))
        for vertebra in doc["vertebrae"]:
            points = [doc["keypoints"].get(f"{vertebra['name']}.{name}") for name in vertebra_points]
            extra = {"segmentation": vertebra["mask_rle"]} if "mask_rle" in vertebra else {}
            if "mask" in vertebra:
                extra["mask_file"] = vertebra["mask"]
            annotations.append(_annotation(len(annotations) + 1, image_id, category_of[vertebra["name"]], points,
                                           vertebra["bbox"], extra, area=vertebra["area_px"]))
    return {"info": {"description": "needleplan simulated fluoroscopy", "version": "1"}, "images": images,
            "annotations": annotations, "categories": categories}


def _annotation(number: int, image_id: int, category: int, points: list, bbox: list, extra: dict,
                area: float | None = None) -> dict[str, Any]:
    flat, seen = [], 0
    for point in points:
        if point and point["visible"]:
            flat += [point["col"], point["row"], 2]
            seen += 1
        else:
            flat += [0, 0, 0]
    return {"id": number, "image_id": image_id, "category_id": category, "keypoints": flat, "num_keypoints": seen,
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


def dataset_card(config: DatasetConfig, documents: list[dict[str, Any]], names: list[str]) -> str:
    """The dataset card (README.md) in Markdown."""
    per_case = Counter(doc["case"] for doc in documents)
    per_procedure = Counter(doc["procedure"] or "none" for doc in documents)
    per_view = Counter(doc["view"] or "uniform" for doc in documents)
    needles = Counter(len(doc["needles"]) for doc in documents)
    tips_seen = sum(1 for doc in documents for n in doc["needles"] if n["tip"]["visible"])
    tips = sum(len(doc["needles"]) for doc in documents)
    seen_vertebrae = Counter(v["name"] for doc in documents for v in doc["vertebrae"])
    public = json.dumps(config.public_dict(names), indent=1)
    size = config.imaging.size
    lines = [
        "# needleplan simulated fluoroscopy dataset",
        "",
        f"{len(documents)} labelled simulated fluoroscopy images (digitally reconstructed radiographs), "
        f"{size} x {size} pixels, {config.output.image_format.upper()} {config.output.bits}-bit, made by needleplan "
        f"from {len(names)} case(s) with seed {config.seed}. The same config and seed give the same files.",
        "",
        "No patient identity: cases are named by the user, the phantom's seed, or a digest of their voxels; "
        "no names, ids, dates or UIDs of the source scans are stored.",
        "",
        "## Counts",
        "",
        _table("case", per_case),
        _table("procedure", per_procedure),
        _table("view", per_view),
        _table("needles per image", needles),
        _table("vertebra seen", seen_vertebrae),
        f"Needle tips inside the image: {tips_seen} of {tips}.",
        "",
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


def _level_order(name: str) -> tuple[int, int]:
    order = {"C": 0, "T": 1, "L": 2, "S": 3}
    digits = "".join(ch for ch in name if ch.isdigit())
    return order.get(name[:1], 4), int(digits) if digits else 0


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
