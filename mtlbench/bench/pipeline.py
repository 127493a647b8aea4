"""The whole-pipeline benchmark: the original tutorial's pipeline against mtlbench's, measured
in one process on the same images, batch size and image size.

The tutorial (kept here as a faithful re-implementation, the reference to measure against):
per item ``PIL.Image.open(path).convert('RGB')``, ``Resize((S, S))``, ``ToTensor()``,
``Normalize(ImageNet)``, labels from ``path[8:].split("_")``, a ``DataLoader(shuffle=True)``
with the default single process, and a model that runs the backbone once per head
(:class:`mtlbench.bench.throughput.TutorialHydraNet`) with ``BCELoss(sigmoid)`` and
``SGD(1e-4, 0.09)``.

mtlbench: images decoded once into the uint8 cache, batches cut from a tensor with flip and
shift augmentation as tensor ops, one backbone pass, fused AdamW, the real ``train_one_epoch``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mtlbench import weighting
from mtlbench.bench.throughput import model_throughput, tutorial_trainer
from mtlbench.config import ModelConfig, TrainConfig
from mtlbench.data import IMAGENET_MEAN, IMAGENET_STD, load_dataset, subsample
from mtlbench.data.batches import BatchIterator, to_tensors
from mtlbench.data.dataset import DecodedDataset, is_synthetic
from mtlbench.data.sources import FolderSource, open_source
from mtlbench.data.synthetic import make_synthetic_folder
from mtlbench.infra.progress import NullReporter
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import TASKS
from mtlbench.training.loop import make_optimizer, train_one_epoch


class TutorialDataset(Dataset[tuple[torch.Tensor, tuple[int, int, int]]]):
    """The article's Dataset: decode and resize every item, every epoch."""

    def __init__(self, root: Path, paths: list[str], image_size: int) -> None:
        import torchvision.transforms as T

        self.root = root
        self.paths = paths  # "UTKFace/<name>", as the article's glob returned them
        self.transform = T.Compose(
            [
                T.Resize((image_size, image_size)),
                T.ToTensor(),
                T.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
        from PIL import Image

        path = self.paths[i]
        image = Image.open(self.root / path).convert("RGB")
        age, gender, race = path[8:].split("_")[:3]  # the article's label parsing, verbatim
        return self.transform(image), (int(age), int(gender), int(race))


@dataclass(frozen=True)
class PipelineReport:
    source: str
    n_images: int
    image_size: int
    batch_size: int
    device: str
    first_decode_s: float  # decoding the WHOLE source into a fresh cache
    load_img_s: tuple[float, float]  # (tutorial, mtlbench): data loading alone
    step_img_s: tuple[float, float]  # training step alone, one fixed batch
    epoch_img_s: tuple[float, float]  # whole epoch: loading + steps
    mtl_load_share: float  # mtlbench loading time / its epoch time

    def table(self) -> str:
        rows = [
            ("data loading alone", self.load_img_s),
            ("training step alone", self.step_img_s),
            ("whole epoch", self.epoch_img_s),
        ]
        lines = [
            f"{self.n_images:,} images of {self.source} at {self.image_size} px, batch "
            f"{self.batch_size}, {self.device}",
            "",
            "| measure (img/s) | tutorial | mtlbench | ratio |",
            "|---|---|---|---|",
        ]
        for name, (tut, mtl) in rows:
            lines.append(f"| {name} | {tut:,.0f} | {mtl:,.0f} | {mtl / tut:.1f}x |")
        lines += [
            "",
            f"mtlbench data loading: {100 * self.mtl_load_share:.2f}% of its epoch time "
            "(target < 5%)",
            f"first decode of the whole source into a fresh cache: {self.first_decode_s:.1f} s "
            "(target < 30 s for real UTKFace)",
        ]
        return "\n".join(lines)


def _materialise(ds: DecodedDataset, indices: np.ndarray, source: Path, root: Path) -> list[str]:
    """Write the chosen images as files under ``root/UTKFace/`` (the tutorial reads files)."""
    wanted = {ds.names[i] for i in indices}
    target = root / "UTKFace"
    target.mkdir(parents=True)
    src = FolderSource(source) if source.is_dir() else open_source(source)
    paths = []
    for entry in src.entries():
        if getattr(entry, "read", None) is None or entry.name not in wanted:
            continue
        base = Path(entry.name).name
        (target / base).write_bytes(entry.read())  # type: ignore[union-attr]
        paths.append(f"UTKFace/{base}")
    return sorted(paths)


def _labels(y: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.stack(list(y), dim=1)


def _iterate(batches: Iterator[tuple[torch.Tensor, Any]]) -> int:
    n = 0
    for x, _ in batches:
        n += int(x.shape[0])
    return n


def pipeline_benchmark(
    source: str | None,
    *,
    image_size: int = 32,
    batch_size: int = 64,
    max_samples: int = 3000,
    backbone: str = "resnet18",
    device: torch.device | None = None,
    cache_dir: Path,
    step_repeats: int = 20,
) -> PipelineReport:
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="mtlbench-bench-") as tmp:
        tmp_path = Path(tmp)
        start = time.perf_counter()
        load_dataset(source, image_size, cache_dir=tmp_path / "fresh-cache")
        first_decode = time.perf_counter() - start
        ds = load_dataset(source, image_size, cache_dir=cache_dir)
        indices = subsample(ds.labels, max_samples, seed=0)
        path = make_synthetic_folder(cache_dir) if is_synthetic(source) else Path(str(source))
        files = _materialise(ds, indices, path, tmp_path / "files")

        # --- data loading alone -------------------------------------------------------------
        loader = DataLoader(
            TutorialDataset(tmp_path / "files", files, image_size),
            batch_size=batch_size,
            shuffle=True,
        )
        start = time.perf_counter()
        n = _iterate(iter(loader))
        tut_load = n / (time.perf_counter() - start)
        images, labels = to_tensors(ds, indices, device)
        gen = torch.Generator(device=device).manual_seed(0)
        batches = BatchIterator(
            images, labels, batch_size, shuffle=True, augment=True, generator=gen, drop_last=True
        )
        start = time.perf_counter()
        n = _iterate(iter(batches))
        mtl_load_s = time.perf_counter() - start
        mtl_load = n / mtl_load_s

        # --- training step alone ------------------------------------------------------------
        rows = model_throughput(
            backbone=backbone,
            batch_size=batch_size,
            image_size=image_size,
            device=device,
            steps=step_repeats,
        )
        step = (rows[0].img_s, rows[1].img_s)

        # --- whole epoch --------------------------------------------------------------------
        tutorial_step = tutorial_trainer(backbone, device)
        start, n = time.perf_counter(), 0
        for x, y in loader:
            tutorial_step(x.to(device), _labels(y).to(device))
            n += x.shape[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        tut_epoch = n / (time.perf_counter() - start)

        model = build_model(ModelConfig(backbone=backbone), TASKS).to(device)
        strategy = weighting.create("sum", TASKS)
        optimizer = make_optimizer(TrainConfig(), 1e-3, model, strategy)
        stats = train_one_epoch(
            model,
            strategy,
            optimizer,
            batches,
            amp_dtype=None,
            reporter=NullReporter(),
            description="bench",
        )
        mtl_epoch = stats.images / stats.seconds
    return PipelineReport(
        source="synthetic" if is_synthetic(source) else str(source),
        n_images=len(indices),
        image_size=image_size,
        batch_size=batch_size,
        device=str(device),
        first_decode_s=first_decode,
        load_img_s=(tut_load, mtl_load),
        step_img_s=step,
        epoch_img_s=(tut_epoch, mtl_epoch),
        mtl_load_share=mtl_load_s / stats.seconds,
    )
