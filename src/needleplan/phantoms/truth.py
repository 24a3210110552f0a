"""The phantom's exact anatomy as a :class:`~needleplan.anatomy.Spine`: what a perfect segmentation would give."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..anatomy import ILIUM_IDS, Numbering, Spine, Vertebra, landmark_arrays
from ..anatomy import STRUCTURE_IDS as SPINE_IDS
from ..volume import Volume
from .ids import DISC_NAMES, STRUCTURE_IDS, VERTEBRA_LABELS

if TYPE_CHECKING:
    from .case import PhantomCase

_BONE = ("vertebral_body", "pedicle_left", "pedicle_right", "lamina_left", "lamina_right", "spinous_process",
         "transverse_process_left", "transverse_process_right", "sap_left", "sap_right", "iap_left", "iap_right",
         "sacrum", "sacral_ala_left", "sacral_ala_right", "ilium_left", "ilium_right")


def truth_spine(case: "PhantomCase") -> Spine:
    """Labels (ilia 60/61 included), landmarks and the structure map of ``Spine`` from the phantom's truth."""
    table = np.full(256, SPINE_IDS["body"], dtype=np.uint8)
    table[STRUCTURE_IDS["background"]] = SPINE_IDS["background"]
    table[STRUCTURE_IDS["bowel_gas"]] = SPINE_IDS["bowel_gas"]
    table[STRUCTURE_IDS["canal"]] = SPINE_IDS["canal"]
    for name in _BONE:
        table[STRUCTURE_IDS[name]] = SPINE_IDS["bone"]
    for name in DISC_NAMES:
        table[STRUCTURE_IDS[f"disc_{name}"]] = SPINE_IDS["disc"]
    ids = case.structures.voxels
    labels = case.labels.voxels.copy()
    for side, label in ILIUM_IDS.items():
        labels[ids == STRUCTURE_IDS[f"ilium_{side}"]] = label
    vertebrae = {name: Vertebra(name, label, 1.0, landmark_arrays(case.landmarks[name]))
                 for name, label in VERTEBRA_LABELS.items()}
    return Spine(
        labels=Volume(labels, case.labels.index_to_world, "LABEL"),
        vertebrae=vertebrae,
        pelvis=landmark_arrays(case.landmarks["pelvis"]),
        structures=Volume(table[ids], case.structures.index_to_world, "LABEL"),
        numbering=Numbering("phantom ground truth", 1.0, confirmed_by="phantom recipe"),
        engine="phantom truth",
    )

