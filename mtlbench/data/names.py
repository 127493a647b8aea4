"""UTKFace file names: ``<age>_<gender>_<race>_<datetime>.jpg.chip.jpg`` -> labels.

Parsing is strict on purpose: the five irregular names of the real set (a missing race field,
a missing dot, a space before ``.jpg``) would otherwise be read as plausible but wrong labels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")
GENDER_NAMES = ("male", "female")
AGE_RANGE = (0, 120)

PATTERN = "age_gender_race_datetime.jpg.chip.jpg"
# Longest first, so ".jpg.chip.jpg" wins over ".jpg".
NAME_SUFFIXES = (".jpg.chip.jpg", ".jpeg", ".jpg", ".png")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_DIGITS = re.compile(r"[0-9]+")  # not str.isdigit: that accepts superscripts and other scripts


@dataclass(frozen=True)
class Labels:
    age: int
    gender: int
    race: int


def _mismatch(detail: str) -> ValueError:
    return ValueError(f"name does not match {PATTERN} ({detail})")


def _split_suffix(basename: str) -> tuple[str, str]:
    lower = basename.lower()
    for suffix in NAME_SUFFIXES:
        if lower.endswith(suffix):
            return basename[: -len(suffix)], suffix
    raise _mismatch("extension is not .jpg.chip.jpg, .jpg, .jpeg or .png")


def _field(value: str, what: str) -> int:
    if not _DIGITS.fullmatch(value):
        raise _mismatch(f"{what} field {value!r} is not a non-negative integer")
    return int(value)


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{what} {value} out of range {low}-{high}")


def parse_name(basename: str) -> Labels:
    """Labels from a base name; ``ValueError(reason)`` for anything irregular or out of range."""
    if "/" in basename or "\\" in basename:
        raise ValueError(f"expected a base name, got a path: {basename!r}")
    if any(ch.isspace() for ch in basename):
        raise _mismatch("contains whitespace")
    stem, suffix = _split_suffix(basename)
    if suffix == ".jpg" and stem.lower().endswith("jpg.chip"):
        raise _mismatch("missing '.' before 'jpg.chip.jpg'")
    fields = stem.split("_")
    if len(fields) == 3 and len(fields[2]) > 2 and _DIGITS.fullmatch(fields[2]):
        # Three of the real names are "age_gender_datetime": the race field is absent.
        raise _mismatch("3 fields: the race field is missing")
    if len(fields) != 4:
        raise _mismatch(f"{len(fields)} underscore-separated fields, expected 4")
    age = _field(fields[0], "age")
    gender = _field(fields[1], "gender")
    race = _field(fields[2], "race")
    if not _DIGITS.fullmatch(fields[3]):
        raise _mismatch(f"datetime field {fields[3]!r} is not all digits")
    _check_range("age", age, *AGE_RANGE)
    _check_range("gender", gender, 0, len(GENDER_NAMES) - 1)
    _check_range("race", race, 0, len(RACE_NAMES) - 1)
    return Labels(age=age, gender=gender, race=race)
