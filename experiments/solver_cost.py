"""Per-step cost of the T x T solve of the gradient strategies (the part issue 10 changed):
median microseconds of ``combine_gradients`` on a random [T, 64] Jacobian, T = 3.

    PYTHONPATH=<checkout> python experiments/solver_cost.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

from mtlbench import weighting
from mtlbench.mtl.tasks import Task

NAMES = ("mgda", "upgrad", "pcgrad", "gradvac", "cagrad", "nash_mtl", "imtl", "aligned_mtl")


def main(n_tasks: int = 3, calls: int = 200) -> None:
    torch.set_num_threads(1)
    tasks = tuple(Task(f"t{i}", i, "regression", 1, f"m{i}", False) for i in range(n_tasks))
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(n_tasks, 64, generator=gen)
    losses = torch.ones(n_tasks)
    feats = torch.ones(1, 64)
    for name in NAMES:
        strategy = weighting.get(name)(tasks, seed=0)
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i in range(calls + 5):
                start = time.perf_counter()
                strategy.combine_gradients(jac, losses, features=feats)
                if i >= 5:
                    times.append(time.perf_counter() - start)
        print(f"{name} {statistics.median(times) * 1e6:.0f}")


if __name__ == "__main__":
    main()
