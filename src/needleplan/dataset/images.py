"""Making one labelled image: draw its shot, render it, write the image, its masks and its labels.

Layout under the output folder (``<stem>`` is ``<case>-<index:06d>``)::

    images/<case>/<stem>.png            (or .tif)
    masks/<case>/<stem>-<vertebra>.png  (when masks = "png"; 1-bit, one per vertebra seen)
    labels/<case>/<stem>.json           (written last: an image is finished when its labels exist)

Each file is written atomically, so an interrupted run leaves whole files or none.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..fluoro import Display, Exposure, Fluoro, render
from ..fluoro.writers import save_pixels, write_image
from ..io.atomic import atomic_file
from .cases import Case
from .config import IMAGE_FORMATS, DatasetConfig
from .labels import encode_rle, image_labels
from .sampling import draw_shot


def image_stem(case_name: str, index: int) -> str:
    """The file stem of image ``index`` of a case."""
    return f"{case_name}-{index:06d}"


def labels_path(out_dir: Path, case_name: str, index: int) -> Path:
    """Where image ``index``'s labels are written; its existence marks the image done."""
    return Path(out_dir) / "labels" / case_name / f"{image_stem(case_name, index)}.json"


def image_path(out_dir: Path, config: DatasetConfig, case_name: str, index: int) -> Path:
    """Where image ``index`` is written."""
    suffix = IMAGE_FORMATS[config.output.image_format]
    return Path(out_dir) / "images" / case_name / f"{image_stem(case_name, index)}{suffix}"


def make_image(config: DatasetConfig, case: Case, index: int, out_dir: Path) -> dict[str, Any]:
    """Render and write image ``index`` of ``case`` with its masks and labels; returns the labels document."""
    out_dir = Path(out_dir)
    shot = draw_shot(config, case, index)
    imaging = config.imaging
    exposure = Exposure(photons_per_pixel=imaging.photons_per_pixel, scatter_fraction=imaging.scatter_fraction,
                        blur_px=imaging.blur_px, seed=shot.noise_seed)
    wanted_masks = config.output.masks != "none"
    fluoro = render(
        case.ct, shot.carm,
        needles=[placed.needle for placed in shot.needles],
        labels=case.labels if wanted_masks else None,
        label_ids=list(case.vertebrae.values()) if wanted_masks else None,
        points=case.points_mm if config.output.landmarks else None,
        energy_kev=imaging.energy_kev,
        exposure=exposure,
        display=Display(gamma=imaging.gamma, invert=imaging.invert),
    )
    masks = _vertebra_masks(case, fluoro, config.output.min_mask_path_mm) if wanted_masks else {}
    stem = image_stem(case.name, index)
    document = image_labels(stem, case, index, shot, fluoro, masks, asdict(imaging))
    image_file = image_path(out_dir, config, case.name, index)
    write_image(fluoro, image_file, bits=config.output.bits)
    document["image"] = image_file.relative_to(out_dir).as_posix()
    for entry in document["vertebrae"]:
        mask = masks[entry["name"]][0]
        if config.output.masks == "rle":
            entry["mask_rle"] = encode_rle(mask)
        else:
            mask_file = out_dir / "masks" / case.name / f"{stem}-{entry['name']}.png"
            _write_mask(mask, mask_file)
            entry["mask"] = mask_file.relative_to(out_dir).as_posix()
    with atomic_file(labels_path(out_dir, case.name, index)) as tmp:
        tmp.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    return document


def _vertebra_masks(case: Case, fluoro: Fluoro, min_path_mm: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Vertebra name -> (projected mask, path length in mm) for the vertebrae seen, cranial to caudal."""
    masks = fluoro.label_masks(min_path_mm)
    assert fluoro.label_path_mm is not None  # rendered with the vertebra labels
    channel = {label: index for index, label in enumerate(fluoro.label_ids)}
    return {name: (masks[label], fluoro.label_path_mm[channel[label]])
            for name, label in case.vertebrae.items() if label in masks and masks[label].any()}


def _write_mask(mask: np.ndarray, path: Path) -> None:
    """A 1-bit PNG, atomically."""
    with atomic_file(path) as tmp:
        save_pixels(mask, tmp, "png")
