"""The built-in UTKFace plug-in: age (regression, years), gender (binary), race (5 classes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtlbench.data.dataset import load_dataset
from mtlbench.data.plugin import DatasetPlugin, LoadedData
from mtlbench.infra.progress import Reporter
from mtlbench.mtl.tasks import TASKS, TaskSet

SYNTHETIC_BANNER = (
    "Using the built-in SYNTHETIC faces (procedurally drawn, not real data). "
    "For real UTKFace: --data path/to/UTKFace.tar.gz (or a folder of *.jpg.chip.jpg)."
)


def load_utkface(
    source: str | Path | None,
    image_size: int,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
) -> LoadedData:
    """A folder or archive of ``age_gender_race_*.jpg``, or None / "synthetic" faces."""
    ds = load_dataset(source, image_size, cache_dir=cache_dir, reporter=reporter)
    # Split strata as before: gender x race (age is continuous).
    strata = ds.labels[:, 1].astype(np.int64) * 5 + ds.labels[:, 2].astype(np.int64)
    return LoadedData(
        images=np.transpose(ds.images, (0, 3, 1, 2)),  # a view: NHWC cache -> NCHW
        labels=ds.labels,
        strata=strata,
        source=ds.source,
        sha256=ds.content_sha256,
        summary=ds.summary(),
        n_skipped=len(ds.skipped),
        synthetic=ds.synthetic,
        note=SYNTHETIC_BANNER if ds.synthetic else "",
    )


def inspect_utkface(
    source: str | None, *, cache_dir: Path, reporter: Reporter | None = None
) -> str:
    """File-level inspection: every skipped file with its reason, and the files digest."""
    from mtlbench.data.inspection import inspect_dataset

    return inspect_dataset(source, cache_dir=cache_dir, reporter=reporter).to_text()


UTKFACE = DatasetPlugin(
    name="utkface",
    description="UTKFace faces (Zhang et al. 2017): age, gender and race from one face image",
    tasks=TaskSet(TASKS),
    load=load_utkface,
    default_image_size=32,
    default_backbone="resnet18",
    flip_preserves_labels=True,
    inspector=inspect_utkface,
)
