"""The dataset config: a TOML file read into checked, frozen dataclasses (documented in docs/dataset.md)."""

from __future__ import annotations

import hashlib
import json
import math
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..attenuation import FLUORO_EFFECTIVE_KEV
from ..errors import NeedleplanError, describe_path
from ..levels import COUNTED
from ..plan.procedures import PROCEDURES
from ..segment.label_conventions import CONVENTIONS

POSE_MODES = ("planned", "uniform")
NEEDLE_MODES = ("none", "planned", "perturbed", "several")
IMAGE_FORMATS = {"png": ".png", "tiff": ".tif"}
MASK_FORMATS = ("png", "rle", "none")
SIDES = ("left", "right")
#: Case names become file names: letters, digits, dot, dash, underscore.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: What ``level_at`` may name, as ``npl.segment(anchors=...)`` takes it: a level (C1-L5, S1) or a disc ("L4-L5").
ANCHOR_NAMES = (*COUNTED, "S1",
                *(f"{upper}-{lower}" for upper, lower in zip(COUNTED, (*COUNTED[1:], "S1"), strict=True)))
#: Most images one case may get, and one config in all: a larger count is a typing error, not a dataset.
MAX_IMAGES_PER_CASE = 1_000_000
MAX_IMAGES = 10_000_000
#: The keys that name or confirm a scan's levels (a phantom's are its recipe's truth).
LEVEL_KEYS = ("labels", "labels_convention", "level_at", "levels_confirmed")


@dataclass(frozen=True)
class CaseSpec:
    """One source scan: a CT file or folder (``path``) or the built-in phantom (``phantom`` = its seed).

    A scan's levels are named by its own labels (``labels``, ids read as ``labels_convention``), counted from
    levels the user names at world LPS points inside them (``level_at``: name -> (x, y, z) mm), or confirmed as
    the automatic numbering named them (``levels_confirmed``).
    """

    path: str | None = None
    phantom: int | None = None
    spacing_mm: float = 1.0
    name: str | None = None
    images: int | None = None
    labels: str | None = None
    labels_convention: str | None = None
    level_at: dict[str, tuple[float, float, float]] | None = None
    levels_confirmed: bool = False


@dataclass(frozen=True)
class PoseSpec:
    """How C-arm poses are drawn.

    ``planned``: one of the plan's views (``views``, default all), its oblique and tilt moved by normal errors of
    ``oblique_sd_deg`` / ``tilt_sd_deg`` and its isocentre by ``isocenter_sd_mm`` on each axis.
    ``uniform``: oblique and tilt uniform in their ranges, the isocentre a level's body centroid (``levels``)
    moved uniformly within +- ``isocenter_range_mm`` per axis, source distances uniform in their ranges.
    """

    mode: str = "planned"
    procedures: tuple[str, ...] = PROCEDURES
    levels: tuple[str, ...] = ()
    sides: tuple[str, ...] = SIDES
    views: tuple[str, ...] = ()
    oblique_sd_deg: float = 0.0
    tilt_sd_deg: float = 0.0
    isocenter_sd_mm: float = 0.0
    oblique_deg: tuple[float, float] = (-45.0, 45.0)
    tilt_deg: tuple[float, float] = (-30.0, 30.0)
    isocenter_range_mm: tuple[float, float, float] = (20.0, 20.0, 30.0)
    source_to_isocenter_mm: tuple[float, float] = (600.0, 600.0)
    source_to_detector_mm: tuple[float, float] = (1000.0, 1000.0)


@dataclass(frozen=True)
class NeedleSpec:
    """Which needles are in the image.

    ``none``; ``planned``: the plan's needle at its planned place; ``perturbed``: the plan's needle with its tip
    moved by a normal error of ``tip_sd_mm`` per axis and its direction turned by a normal angle of
    ``angle_sd_deg``; ``several``: ``count`` needles of different plans, perturbed the same way. ``advance_mm``
    (uniform range) moves the tip along the needle: below 0 the needle stops short of where it was placed.
    """

    mode: str = "planned"
    count: int = 1
    tip_sd_mm: float = 0.0
    angle_sd_deg: float = 0.0
    advance_mm: tuple[float, float] = (0.0, 0.0)
    gauge: int | None = None


@dataclass(frozen=True)
class ImagingSpec:
    """Detector, exposure and display of every image."""

    size: int = 256
    detector_mm: float = 300.0
    collimator_mm: float | None = None
    energy_kev: float = FLUORO_EFFECTIVE_KEV
    photons_per_pixel: float | None = None
    scatter_fraction: float = 0.0
    blur_px: float = 0.0
    invert: bool = False
    gamma: float = 1.0


@dataclass(frozen=True)
class OutputSpec:
    """What is written per image."""

    image_format: str = "png"
    bits: int = 8
    masks: str = "png"
    min_mask_path_mm: float = 1.0
    landmarks: bool = True


@dataclass(frozen=True)
class DatasetConfig:
    """A whole dataset job: cases, images per case, poses, needles, imaging, outputs and the seed."""

    cases: tuple[CaseSpec, ...]
    seed: int = 0
    images_per_case: int = 100
    poses: PoseSpec = field(default_factory=PoseSpec)
    needles: NeedleSpec = field(default_factory=NeedleSpec)
    imaging: ImagingSpec = field(default_factory=ImagingSpec)
    output: OutputSpec = field(default_factory=OutputSpec)

    def images_of(self, case: CaseSpec) -> int:
        """How many images this case gets."""
        return self.images_per_case if case.images is None else case.images

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (TOML/JSON-ready, None fields dropped)."""
        return _drop_none(asdict(self))

    def digest(self) -> str:
        """SHA-256 of the config's content: a rerun into the same folder must have the same digest."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def public_dict(self, case_names: list[str]) -> dict[str, Any]:
        """The config with each case's source and labels paths replaced by its case name (for the dataset card)."""
        data = self.to_dict()
        data["cases"] = [
            {**{k: v for k, v in case.items() if k not in ("path", "labels")}, "name": name}
            for case, name in zip(data["cases"], case_names, strict=True)
        ]
        return data


def read_config(path: str | Path) -> DatasetConfig:
    """Read and check a dataset config TOML file; case paths are taken relative to the file's folder.

    Raises
    ------
    NeedleplanError
        Missing file, bad TOML, unknown keys, values of the wrong type or out of range, with the key named.
    """
    path = Path(path)
    where = describe_path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NeedleplanError(f"dataset config {where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedleplanError(f"cannot read dataset config {where}: {getattr(exc, 'strerror', None) or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise NeedleplanError(f"dataset config {where} is not valid TOML: {exc}") from None
    return config_from_dict(data, base=path.parent, where=where)


def config_from_dict(data: dict[str, Any], base: Path | None = None, where: str = "dataset config") -> DatasetConfig:
    """Check plain data (as read from TOML) and build a :class:`DatasetConfig`; relative paths join ``base``."""
    reader = _Reader(where)
    top = reader.table(data, "", ("cases", "seed", "images_per_case", "poses", "needles", "imaging", "output"))
    raw_cases = top.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        reader.fail("cases", "give at least one [[cases]] table with path = ... or phantom = SEED")
    cases = tuple(_case(reader, item, index, base) for index, item in enumerate(raw_cases))
    names = [c.name for c in cases if c.name is not None]
    if len(set(names)) != len(names):
        reader.fail("cases", f"case names must differ, got {names}")
    config = DatasetConfig(
        cases=cases,
        seed=reader.integer(top, "seed", 0, low=0),
        images_per_case=reader.integer(top, "images_per_case", 100, low=0, high=MAX_IMAGES_PER_CASE),
        poses=_poses(reader, reader.table(top.get("poses", {}), "poses", tuple(PoseSpec.__dataclass_fields__))),
        needles=_needles(reader, reader.table(top.get("needles", {}), "needles",
                                              tuple(NeedleSpec.__dataclass_fields__))),
        imaging=_imaging(reader, reader.table(top.get("imaging", {}), "imaging",
                                              tuple(ImagingSpec.__dataclass_fields__))),
        output=_output(reader, reader.table(top.get("output", {}), "output", tuple(OutputSpec.__dataclass_fields__))),
    )
    total = sum(config.images_of(case) for case in cases)
    if total > MAX_IMAGES:
        reader.fail("images_per_case", f"and the cases' images ask for {total} images in all; at most {MAX_IMAGES}")
    return config


def _case(reader: "_Reader", item: Any, index: int, base: Path | None) -> CaseSpec:
    key = f"cases[{index}]"
    table = reader.table(item, key, tuple(CaseSpec.__dataclass_fields__))
    if ("path" in table) == ("phantom" in table):
        reader.fail(key, "give exactly one of path = \"...\" (a CT file or DICOM folder) or phantom = SEED")
    given = [k for k in LEVEL_KEYS if k in table]
    if "phantom" in table and given:
        reader.fail(f"{key}.{given[0]}", "is for scans (path = ...); the phantom's levels are exact")
    if "labels_convention" in table and "labels" not in table:
        reader.fail(f"{key}.labels_convention", "is for labels = \"...\"; give the labels file too")
    name = table.get("name")
    if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
        reader.fail(f"{key}.name", "must be 1-64 letters, digits, '.', '-' or '_', starting with a letter or digit")
    return CaseSpec(
        path=_file_name(reader, table, "path", base, prefix=key),
        phantom=reader.integer(table, "phantom", None, low=0, prefix=key),
        spacing_mm=reader.number(table, "spacing_mm", 1.0, low=0.5, high=5.0, prefix=key),
        name=name,
        images=reader.integer(table, "images", None, low=0, high=MAX_IMAGES_PER_CASE, prefix=key),
        labels=_file_name(reader, table, "labels", base, prefix=key),
        labels_convention=reader.choice(table, "labels_convention", "auto", CONVENTIONS, prefix=key)
        if "labels" in table else None,
        level_at=_level_at(reader, table, prefix=key),
        levels_confirmed=reader.boolean(table, "levels_confirmed", False, prefix=key),
    )


def _file_name(reader: "_Reader", table: dict[str, Any], name: str, base: Path | None, prefix: str) -> str | None:
    """A file or folder name of the config, joined to the config's folder when relative; None when not given."""
    if name not in table:
        return None
    if not isinstance(table[name], str) or not table[name]:
        reader.fail(f"{prefix}.{name}", "must be a file or folder name")
    path = Path(table[name]).expanduser()
    return str(path if path.is_absolute() or base is None else (base / path))


def _level_at(reader: "_Reader", table: dict[str, Any], prefix: str) -> dict[str, tuple[float, float, float]] | None:
    """``level_at = { L3 = [x, y, z] }``: levels (or discs) the user names at world LPS points, mm."""
    if "level_at" not in table:
        return None
    key = f"{prefix}.level_at"
    value = table["level_at"]
    if not isinstance(value, dict) or not value:
        reader.fail(key, f"must be a table of levels and world points (LPS mm), as in {{ L3 = [x, y, z] }}; "
                         f"got {value!r}")
    unknown = [name for name in value if name not in ANCHOR_NAMES]
    if unknown:
        reader.fail(key, f"names unknown level(s) {', '.join(unknown)}; name a level (C1-L5, S1) or a disc such as "
                         "L4-L5")
    for name, point in value.items():
        if (not isinstance(point, list) or len(point) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in point)):
            reader.fail(f"{key}.{name}", f"must be a world point [x, y, z] of finite numbers (LPS mm), got {point!r}")
    return {name: (float(p[0]), float(p[1]), float(p[2])) for name, p in value.items()}


def _poses(reader: "_Reader", table: dict[str, Any]) -> PoseSpec:
    k = "poses"
    return PoseSpec(
        mode=reader.choice(table, "mode", "planned", POSE_MODES, prefix=k),
        procedures=reader.names(table, "procedures", PROCEDURES, PROCEDURES, prefix=k),
        levels=reader.names(table, "levels", (), None, prefix=k),
        sides=reader.names(table, "sides", SIDES, SIDES, prefix=k),
        views=reader.names(table, "views", (), None, prefix=k),
        oblique_sd_deg=reader.number(table, "oblique_sd_deg", 0.0, low=0, high=45, prefix=k),
        tilt_sd_deg=reader.number(table, "tilt_sd_deg", 0.0, low=0, high=45, prefix=k),
        isocenter_sd_mm=reader.number(table, "isocenter_sd_mm", 0.0, low=0, high=100, prefix=k),
        oblique_deg=reader.interval(table, "oblique_deg", (-45.0, 45.0), -180, 180, prefix=k),
        tilt_deg=reader.interval(table, "tilt_deg", (-30.0, 30.0), -90, 90, prefix=k),
        isocenter_range_mm=reader.vector(table, "isocenter_range_mm", (20.0, 20.0, 30.0), 0, 200, prefix=k),
        source_to_isocenter_mm=reader.interval(table, "source_to_isocenter_mm", (600.0, 600.0), 100, 2000, prefix=k),
        source_to_detector_mm=reader.interval(table, "source_to_detector_mm", (1000.0, 1000.0), 200, 3000,
                                              prefix=k),
    )


def _needles(reader: "_Reader", table: dict[str, Any]) -> NeedleSpec:
    k = "needles"
    spec = NeedleSpec(
        mode=reader.choice(table, "mode", "planned", NEEDLE_MODES, prefix=k),
        count=reader.integer(table, "count", 1, low=1, high=8, prefix=k),
        tip_sd_mm=reader.number(table, "tip_sd_mm", 0.0, low=0, high=50, prefix=k),
        angle_sd_deg=reader.number(table, "angle_sd_deg", 0.0, low=0, high=45, prefix=k),
        advance_mm=reader.interval(table, "advance_mm", (0.0, 0.0), -100, 20, prefix=k),
        gauge=reader.integer(table, "gauge", None, low=16, high=27, prefix=k),
    )
    if spec.mode != "several" and "count" in table:
        reader.fail("needles.count", "is for mode = \"several\"")
    return spec


def _imaging(reader: "_Reader", table: dict[str, Any]) -> ImagingSpec:
    k = "imaging"
    return ImagingSpec(
        size=reader.integer(table, "size", 256, low=16, high=2048, prefix=k),
        detector_mm=reader.number(table, "detector_mm", 300.0, low=50, high=500, prefix=k),
        collimator_mm=reader.number(table, "collimator_mm", None, low=10, high=800, prefix=k),
        energy_kev=reader.number(table, "energy_kev", FLUORO_EFFECTIVE_KEV, low=40, high=100, prefix=k),
        photons_per_pixel=reader.number(table, "photons_per_pixel", None, low=1, high=1e9, prefix=k),
        scatter_fraction=reader.number(table, "scatter_fraction", 0.0, low=0, high=5, prefix=k),
        blur_px=reader.number(table, "blur_px", 0.0, low=0, high=20, prefix=k),
        invert=reader.boolean(table, "invert", False, prefix=k),
        gamma=reader.number(table, "gamma", 1.0, low=0.1, high=10, prefix=k),
    )


def _output(reader: "_Reader", table: dict[str, Any]) -> OutputSpec:
    k = "output"
    return OutputSpec(
        image_format=reader.choice(table, "image_format", "png", tuple(IMAGE_FORMATS), prefix=k),
        bits=reader.choice(table, "bits", 8, (8, 16), prefix=k),
        masks=reader.choice(table, "masks", "png", MASK_FORMATS, prefix=k),
        min_mask_path_mm=reader.number(table, "min_mask_path_mm", 1.0, low=0.01, high=100, prefix=k),
        landmarks=reader.boolean(table, "landmarks", True, prefix=k),
    )


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


class _Reader:
    """Typed reads of config values; every failure names the key and says what is expected."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> NoReturn:
        raise NeedleplanError(f"{self.where}: {key} {message}")

    def table(self, value: Any, key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key or "the file", "must be a table")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            where = f"[{key}]" if key else "the top level"
            self.fail(where, f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
        return value

    @staticmethod
    def _key(prefix: str, name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    def integer(self, table: dict, name: str, default: Any, low: int | None = None, high: int | None = None,
                prefix: str = "") -> Any:
        if name not in table:
            return default
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(self._key(prefix, name), f"must be a whole number, got {value!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(self._key(prefix, name), f"must be within {low}..{high if high is not None else ''}, "
                                                f"got {value}")
        return value

    def number(self, table: dict, name: str, default: Any, low: float, high: float, prefix: str = "") -> Any:
        if name not in table:
            return default
        value = table[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            self.fail(self._key(prefix, name), f"must be a number within {low:g}..{high:g}, got {value!r}")
        return float(value)

    def boolean(self, table: dict, name: str, default: bool, prefix: str = "") -> bool:
        value = table.get(name, default)
        if not isinstance(value, bool):
            self.fail(self._key(prefix, name), f"must be true or false, got {value!r}")
        return value

    def choice(self, table: dict, name: str, default: Any, allowed: tuple, prefix: str = "") -> Any:
        value = table.get(name, default)
        if value not in allowed:
            self.fail(self._key(prefix, name), f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value

    def names(self, table: dict, name: str, default: tuple[str, ...], allowed: tuple[str, ...] | None,
              prefix: str = "") -> tuple[str, ...]:
        value = table.get(name, list(default))
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(self._key(prefix, name), f"must be a list of names, got {value!r}")
        if allowed is not None:
            unknown = [v for v in value if v not in allowed]
            if unknown or not value:
                self.fail(self._key(prefix, name), f"must list some of {', '.join(allowed)}, got {value!r}")
        return tuple(value)

    def interval(self, table: dict, name: str, default: tuple[float, float], low: float, high: float,
                 prefix: str = "") -> tuple[float, float]:
        value = table.get(name, list(default))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value, value]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not low <= value[0] <= value[1] <= high):
            self.fail(self._key(prefix, name), f"must be [low, high] within {low:g}..{high:g}, got {value!r}")
        return float(value[0]), float(value[1])

    def vector(self, table: dict, name: str, default: tuple[float, float, float], low: float, high: float,
               prefix: str = "") -> tuple[float, float, float]:
        value = table.get(name, list(default))
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and low <= v <= high
                           for v in value)):
            self.fail(self._key(prefix, name), f"must be [x, y, z] each within {low:g}..{high:g}, got {value!r}")
        return float(value[0]), float(value[1]), float(value[2])
