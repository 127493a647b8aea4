"""Procedural UTKFace-format faces: the offline default dataset and the tests' image factory.

Each attribute has a cue a small CNN can learn at 32 px: race -> one of five well-separated
skin tones; gender -> hair shape (long hair framing the face vs. a short cap) and lip colour;
age -> grey hair fraction, forehead wrinkles, eye size and face proportions, all monotone.
Background, clothing, position, scale, lighting and noise vary as nuisances. Everything comes
from numpy generators seeded by (seed, index), so two builds give identical bytes.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mtlbench.data.cache import build_once
from mtlbench.infra.progress import NullReporter, Reporter

SYNTHETIC_VERSION = 1
DEFAULT_N = 4000
DEFAULT_SIZE = 64
RACE_SHARES = (0.42, 0.19, 0.15, 0.17, 0.07)  # roughly the real set's imbalance
AGE_SPAN = (1, 90)
SKIN_TONES = (  # White, Black, Asian, Indian, Others: far apart so race is learnable
    (238, 200, 180),
    (82, 54, 40),
    (228, 198, 122),
    (168, 112, 72),
    (140, 152, 92),
)
HAIR_BASES = ((30, 25, 20), (72, 46, 30), (122, 82, 46), (210, 180, 112), (150, 72, 36))
GREY = np.array([228.0, 228.0, 228.0])
_SUPERSAMPLE = 2  # draw at 2x and downsample: smooth edges without per-shape antialiasing
_JPEG_QUALITY = 92
_EPOCH = dt.datetime(2017, 1, 1)

# Irregular files every synthetic folder carries so each run shows skip reporting working.
IRREGULAR_FACE_NAMES = (
    "39_1_20161231174525125.jpg.chip.jpg",  # no race field
    "24_0_1_20161231220224657 .jpg.chip.jpg",  # a space before .jpg
)
EMPTY_FILE_NAME = "30_0_0_20161231235959001.jpg.chip.jpg"
TEXT_FILE_NAME = "31_1_2_20161231235959002.jpg.chip.jpg"

Colour = tuple[int, int, int]


def _colour(values: np.ndarray) -> Colour:
    r, g, b = (int(v) for v in np.clip(np.rint(values), 0, 255))
    return r, g, b


def face_name(age: int, gender: int, race: int, index: int) -> str:
    """A UTKFace-format name; the 17-digit datetime field is unique per index."""
    stamp = _EPOCH + dt.timedelta(seconds=7919 * index)
    return f"{age}_{gender}_{race}_{stamp:%Y%m%d%H%M%S}{index % 1000:03d}.jpg.chip.jpg"


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    top = rng.uniform(30, 225, 3)
    bottom = rng.uniform(30, 225, 3)
    ramp = np.linspace(0.0, 1.0, side)[:, None, None]
    return np.broadcast_to(top + (bottom - top) * ramp, (side, side, 3)).copy()


def draw_face(age: int, gender: int, race: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One RGB face of ``size`` x ``size`` px with the given labels."""
    side = size * _SUPERSAMPLE
    youth = 1.0 - (min(max(age, 1), 90) - 1) / 89.0  # 1 for a baby, 0 at 90
    scale = rng.uniform(0.88, 1.08) * side
    cx = side / 2 + rng.uniform(-0.06, 0.06) * side
    cy = side * 0.52 + rng.uniform(-0.05, 0.05) * side
    half_w = scale * (0.24 + 0.03 * (1 - youth))  # faces widen with age
    half_h = scale * (0.30 - 0.04 * youth)  # children's faces are rounder
    skin = np.array(SKIN_TONES[race], float) + rng.normal(0, 10, 3)
    grey = float(np.clip((age - 25) / 50 + rng.normal(0, 0.07), 0.0, 1.0))
    hair_base = np.array(HAIR_BASES[int(rng.integers(len(HAIR_BASES)))], float)
    hair = _colour((1 - grey) * hair_base + grey * GREY)
    skin_c = _colour(skin)

    img = Image.fromarray(_background(rng, side).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    shirt = _colour(rng.uniform(20, 235, 3))
    draw.ellipse(
        (cx - half_w * 2.2, cy + half_h * 1.05, cx + half_w * 2.2, cy + half_h * 3.2), shirt
    )
    if gender == 1:  # long hair framing the face, down past the chin
        length = rng.uniform(1.1, 1.7)
        draw.rounded_rectangle(
            (cx - half_w * 1.4, cy - half_h * 1.18, cx + half_w * 1.4, cy + half_h * length),
            radius=int(half_w * 0.9),
            fill=hair,
        )
    else:  # a short cap on top
        draw.ellipse(
            (cx - half_w * 1.06, cy - half_h * 1.16, cx + half_w * 1.06, cy + half_h * 0.2), hair
        )
    draw.ellipse((cx - half_w, cy - half_h * 0.86, cx + half_w, cy + half_h), skin_c)
    if gender == 1:  # fringe
        draw.chord(
            (cx - half_w * 1.02, cy - half_h * 1.12, cx + half_w * 1.02, cy - half_h * 0.3),
            180,
            360,
            fill=hair,
        )
    _features(draw, rng, cx, cy, half_w, half_h, youth, age, gender, skin, hair)
    out = img.resize((size, size), Image.Resampling.LANCZOS)
    lit = np.asarray(out, float) * rng.uniform(0.78, 1.22) + rng.normal(0, 3, (size, size, 3))
    return Image.fromarray(np.clip(np.rint(lit), 0, 255).astype(np.uint8), "RGB")


def _features(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    half_w: float,
    half_h: float,
    youth: float,
    age: int,
    gender: int,
    skin: np.ndarray,
    hair: Colour,
) -> None:
    line = max(1, round(half_w / 14))
    eye_r = half_w * (0.12 + 0.10 * youth)  # big eyes for children
    eye_y = cy - half_h * 0.08
    iris = _colour(rng.uniform(20, 110, 3))
    for sx in (-1, 1):
        ex = cx + sx * half_w * 0.42
        draw.ellipse((ex - eye_r, eye_y - eye_r * 0.7, ex + eye_r, eye_y + eye_r * 0.7), "white")
        draw.ellipse(
            (ex - eye_r * 0.5, eye_y - eye_r * 0.5, ex + eye_r * 0.5, eye_y + eye_r * 0.5), iris
        )
    shade = _colour(skin * 0.55)
    # Forehead wrinkles: one more line every 15 years from 25 on.
    for k in range(max(0, (age - 10) // 15)):
        y = cy - half_h * (0.40 + 0.09 * k)
        draw.line((cx - half_w * 0.5, y, cx + half_w * 0.5, y), shade, width=line)
    if age >= 40:  # cheek folds
        for sx in (-1, 1):
            x0 = cx + sx * half_w * 0.3
            draw.line(
                (x0, cy + half_h * 0.15, x0 + sx * half_w * 0.12, cy + half_h * 0.55), shade, line
            )
    draw.line((cx, eye_y + half_h * 0.1, cx, cy + half_h * 0.3), shade, width=line)  # nose
    mouth_y = cy + half_h * 0.55
    lips = (170, 40, 60) if gender == 1 else _colour(skin * 0.5)
    draw.ellipse(
        (cx - half_w * 0.3, mouth_y - half_h * 0.06, cx + half_w * 0.3, mouth_y + half_h * 0.06),
        lips,
    )
    if gender == 0 and age >= 18 and rng.random() < 0.3:  # some adult men have a beard
        draw.chord((cx - half_w, cy - half_h * 0.2, cx + half_w, cy + half_h), 20, 160, fill=hair)


# 2000-01-01T00:00:00Z: every drawn file gets this mtime (see make_synthetic_folder).
_PINNED_MTIME_NS = 946_684_800 * 10**9


def write_faces(
    folder: Path,
    labels: Sequence[tuple[int, int, int]],
    size: int,
    seed: int = 0,
    *,
    first_index: int = 0,
) -> list[Path]:
    """Write one UTKFace-named JPEG per (age, gender, race); returns the paths in order.

    Image ``i`` depends only on (seed, first_index + i) and its labels.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, (age, gender, race) in enumerate(labels, start=first_index):
        rng = np.random.default_rng((seed, index))
        path = folder / face_name(age, gender, race, index)
        draw_face(age, gender, race, size, rng).save(path, "JPEG", quality=_JPEG_QUALITY)
        paths.append(path)
    return paths


def synthetic_labels(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Ages uniform over 1..90, balanced genders, races imbalanced like the real set."""
    rng = np.random.default_rng((seed, 0x5EED))
    ages = rng.integers(AGE_SPAN[0], AGE_SPAN[1] + 1, n)
    genders = rng.permutation(np.arange(n) % 2)
    races = rng.choice(len(RACE_SHARES), size=n, p=np.array(RACE_SHARES))
    return [(int(a), int(g), int(r)) for a, g, r in zip(ages, genders, races, strict=True)]


def _write_irregular(folder: Path, size: int, seed: int) -> None:
    rng = np.random.default_rng((seed, 0xBAD))
    for name, labels in zip(IRREGULAR_FACE_NAMES, ((39, 1, 0), (24, 0, 1)), strict=True):
        draw_face(*labels, size, rng).save(folder / name, "JPEG", quality=_JPEG_QUALITY)
    (folder / EMPTY_FILE_NAME).write_bytes(b"")
    (folder / TEXT_FILE_NAME).write_text("this is not an image\n", encoding="utf-8")


def synthetic_key(n: int, size: int, seed: int) -> str:
    key = f"synthetic-v{SYNTHETIC_VERSION}-n{n}-{size}"
    return key if seed == 0 else f"{key}-seed{seed}"


def make_synthetic_folder(
    cache_dir: Path,
    n: int = DEFAULT_N,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    *,
    reporter: Reporter | None = None,
) -> Path:
    """The ``UTKFace/`` folder of ``n`` synthetic faces (plus 4 irregular files), built once."""
    if n < 1:
        raise ValueError(f"a synthetic dataset needs at least one image, got n={n}")
    report = reporter if reporter is not None else NullReporter()

    def build(tmp: Path) -> None:
        folder = tmp / "UTKFace"
        labels = synthetic_labels(n, seed)
        with report.progress("drawing synthetic faces", total=n) as task:
            for start in range(0, n, 200):
                batch = labels[start : start + 200]
                write_faces(folder, batch, size, seed, first_index=start)
                task.advance(len(batch))
        _write_irregular(folder, size, seed)
        # A folder source is keyed by (path, size, mtime) of its files, so a set redrawn into
        # a fresh cache would get a new data hash and `--resume` would not find its study.
        for path in folder.iterdir():
            os.utime(path, ns=(_PINNED_MTIME_NS, _PINNED_MTIME_NS))

    def load(entry: Path) -> Path | None:
        folder = entry / "UTKFace"
        return folder if folder.is_dir() else None

    return build_once(Path(cache_dir), synthetic_key(n, size, seed), build, load)
