"""Optional mask engine: TotalSegmentator's ``total`` task, its labels converted to VerSe ids.

TotalSegmentator (``pip install TotalSegmentator``, which brings PyTorch) is not a needleplan dependency, and its
model weights are not shipped: they are downloaded into ``~/.totalsegmentator`` (or ``$TOTALSEG_HOME_DIR``) on
first use, which needs network access. This module never downloads: it refuses with instructions instead.
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Any

from ..anatomy import Numbering
from ..errors import NeedleplanError
from ..io import read_image_file, save_volume
from ..volume import Volume
from .user_labels import labels_on_ct

__all__ = ["totalseg_masks", "totalseg_numbering"]

#: nnU-Net dataset ids of the ``total`` task's weights: the 3 mm "fast" model, or the five 1.5 mm part models.
TASK_IDS = {True: (297,), False: (291, 292, 293, 294, 295)}
_INSTALL = (
    "install it with `pip install TotalSegmentator`; its model weights are downloaded on first run, which needs "
    "network access (e.g. `totalseg_download_weights -t {task}`)"
)


def totalseg_masks(volume: Volume, *, fast: bool = True, device: str = "gpu") -> Volume:
    """Vertebra, sacrum and hip masks from TotalSegmentator, as a label map in VerSe ids on the volume's grid.

    The volume goes to TotalSegmentator as a temporary NIfTI file (written by SimpleITK, so its geometry is
    exact) and its multilabel answer is read back the same way.

    Parameters
    ----------
    volume : Volume
        A CT in HU, any orientation.
    fast : bool
        Use the 3 mm model (one network; minutes on a CPU) instead of the five 1.5 mm ones.
    device : str
        Passed to TotalSegmentator: "gpu" (it falls back to the CPU without CUDA), "gpu:1", "cpu" or "mps".

    Returns
    -------
    Volume
        Modality "LABEL", uint8, same grid as ``volume``: VerSe vertebra ids, 26 sacrum, and
        :data:`needleplan.anatomy.ILIUM_IDS` for the hips.

    Raises
    ------
    NeedleplanError
        TotalSegmentator is not installed, its weights are absent, the volume is not a CT, or the run failed.
    """
    if volume.modality != "CT":
        raise NeedleplanError(f"the totalsegmentator engine needs a CT volume, got {volume.modality}")
    api = _load_totalsegmentator(fast)
    with tempfile.TemporaryDirectory(prefix="needleplan-totalseg-") as folder:
        source, answer = Path(folder) / "ct.nii", Path(folder) / "labels.nii"
        save_volume(volume, source)
        try:
            api.totalsegmentator(source, answer, ml=True, fast=fast, device=device, quiet=True, task="total")
        except (RuntimeError, ValueError, OSError) as error:
            raise NeedleplanError(f"TotalSegmentator failed on this volume: {error}") from error
        if not answer.is_file():
            raise NeedleplanError("TotalSegmentator finished without writing its label map")
        found = read_image_file(answer, modality="LABEL")
    return labels_on_ct(found, "TotalSegmentator's answer", volume, "totalseg")[0]


def _load_totalsegmentator(fast: bool) -> Any:
    """The ``totalsegmentator.python_api`` module, after checking that the weights it needs are on disk."""
    task = "total_fast" if fast else "total"
    try:
        api = importlib.import_module("totalsegmentator.python_api")
        config = importlib.import_module("totalsegmentator.config")
    except ImportError as error:
        raise NeedleplanError(
            f"the totalsegmentator engine needs the TotalSegmentator package ({error}); "
            + _INSTALL.format(task=task)
        ) from None
    weights = Path(config.get_weights_dir())
    missing = [task_id for task_id in TASK_IDS[fast] if not any(weights.glob(f"Dataset{task_id}_*"))]
    if missing:
        raise NeedleplanError(
            f"TotalSegmentator's weights for the {task} task are not in {weights} (missing datasets "
            f"{', '.join(map(str, missing))}); " + _INSTALL.format(task=task)
        )
    return api


def totalseg_numbering() -> Numbering:
    """How TotalSegmentator's level names are taken: a strong model's prediction, not a confirmed count."""
    return Numbering("totalsegmentator", 0.9, ["names from TotalSegmentator's labels"])
