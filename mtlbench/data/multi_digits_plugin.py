"""The built-in multi-digits plug-ins: ``multi-digits`` (T = 2: left and right digit) and
``multi-digits-4`` (T = 4: one digit per quadrant), built offline from scikit-learn's
handwritten digits (:mod:`mtlbench.data.multi_digits`). Ten-class tasks, accuracy, with the
construction's own split (no source digit shared between splits)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from mtlbench.data.errors import DataError
from mtlbench.data.multi_digits import N_CLASSES, TASK_NAMES, MultiDigitsSpec, load_multi_digits
from mtlbench.data.plugin import DatasetPlugin, LoadedData
from mtlbench.infra.progress import Reporter
from mtlbench.mtl.tasks import Task, TaskSet


def digit_tasks(n_digits: int) -> TaskSet:
    return TaskSet(
        tuple(
            Task(name, i, "multiclass", N_CLASSES, f"{name}_acc", higher_is_better=True)
            for i, name in enumerate(TASK_NAMES[n_digits])
        )
    )


def _loader(n_digits: int):  # type: ignore[no-untyped-def]
    def load(
        source: str | Path | None,
        image_size: int,
        *,
        cache_dir: Path,
        reporter: Reporter | None = None,
    ) -> LoadedData:
        if source not in (None, "synthetic"):
            raise DataError(
                f"--data {source!r}: multi-digits builds its images from the digits that ship "
                "inside scikit-learn and takes no path; leave --data out"
            )
        spec = MultiDigitsSpec(n_digits=n_digits, image_size=image_size)
        data = load_multi_digits(spec, Path(cache_dir))
        text = json.dumps({"spec": asdict(spec), "src": data.source_sha256}, sort_keys=True)
        n = len(data)
        return LoadedData(
            images=data.images,
            labels=data.labels,
            strata=data.strata,
            source=f"scikit-learn digits, {n_digits}-digit composites",
            sha256=hashlib.sha256(text.encode()).hexdigest(),
            summary=f"{n:,} {n_digits}-digit composites ({image_size} px) from scikit-learn's "
            "1,797 handwritten digits",
            split=data.split,
        )

    return load


MULTI_DIGITS = DatasetPlugin(
    name="multi-digits",
    description="MultiMNIST (Sener & Koltun 2018) from scikit-learn's digits: two overlapping "
    "digits, tasks left and right",
    tasks=digit_tasks(2),
    load=_loader(2),
    default_image_size=32,
    default_backbone="lenet",
    flip_preserves_labels=False,
    channels=1,
)
MULTI_DIGITS_4 = DatasetPlugin(
    name="multi-digits-4",
    description="four digits in the quadrants (T = 4): top_left, top_right, bottom_left, "
    "bottom_right",
    tasks=digit_tasks(4),
    load=_loader(4),
    default_image_size=32,
    default_backbone="lenet",
    flip_preserves_labels=False,
    channels=1,
)
