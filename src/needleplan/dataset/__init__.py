"""Labelled simulated-fluoroscopy training sets: ``make_dataset(read_config("dataset.toml"), "out")``.

See docs/dataset.md for the config and the files written.
"""

from .config import DatasetConfig, config_from_dict, read_config
from .labels import decode_rle, encode_rle
from .runner import DatasetSummary, make_dataset

__all__ = ["DatasetConfig", "DatasetSummary", "config_from_dict", "decode_rle", "encode_rle", "make_dataset",
           "read_config"]
