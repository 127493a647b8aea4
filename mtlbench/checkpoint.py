"""Per-trial checkpoints: everything needed to continue a trial exactly where it stopped.

A trial's folder holds ``last.pt`` (model, optimiser, strategy state, RNG states, the epoch
and the per-epoch metric history with their timestamps) and ``best.pt`` (the weights of the
best validation epoch so far). Both are written atomically (temporary file in the same folder,
then ``os.replace``), so a process killed at any instant leaves either the previous complete
file or the new one. Files are read with ``torch.load(weights_only=True)``: a checkpoint is
data, never code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

LAST = "last.pt"
BEST = "best.pt"


def root_for(checkpoint_dir: str | None, tracking_uri: str) -> Path:
    """Where trial folders go: the user's ``--checkpoint-dir``, else beside a SQLite store."""
    from mtlbench.tracking import default_checkpoint_root

    return Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_root(tracking_uri)


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        # No fsync: a killed process cannot lose page-cache writes, and fsync of ~140 MB per
        # epoch would cost more than the epoch on small data. An OS crash may lose the newest.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(batch_generator: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "batches": batch_generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], batch_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    batch_generator.set_state(state["batches"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def remove(folder: Path) -> None:
    """Delete a finished trial's checkpoints (and the folder if nothing else is in it)."""
    for name in (LAST, BEST):
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)
