"""One panel per strategy: trajectories over the contours of the mean loss, with the Pareto set.

The contours are those of ``(scale * f1 + f2) / 2`` (CAGrad's Fig. 1 draws the mean loss), the
grey arc is the Pareto set (:mod:`mtlbench.toy.pareto`), black dots are the starting points and a
cross marks where each trajectory ended. The caption under the panels gives every strategy's final
distance to the Pareto set from each starting point.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtlbench.toy.pareto import pareto_set

if TYPE_CHECKING:
    from mtlbench.toy.results import ToyResult

EXTENT = 11.0  # the papers' plotting window [-11, 11]^2
MAX_POINTS = 1500  # per trajectory drawn (the run keeps every step)
START_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def format_distance(d: float) -> str:
    return "failed" if not math.isfinite(d) else f"{d:.3g}" if d >= 0.01 else f"{d:.0e}"


def caption(result: ToyResult, width: int = 130) -> str:
    """The figure's caption: setting, budget and each strategy's final distances."""
    setting, cfg = result.setting, result.config
    starts = " / ".join(str(s) for s in setting.starts)
    head = (
        f"Toy of {setting.paper} (setting '{setting.name}', f1 scaled by {setting.scale:g}): "
        f"{cfg.steps} Adam steps of size {cfg.lr:g}. Final distance to the Pareto set "
        f"from {starts}:"
    )
    rows = [
        f"{name}: " + " / ".join(format_distance(d) for d in dists)
        for name, dists in result.final_distances().items()
    ]
    return "\n".join([*textwrap.wrap(head, width), *textwrap.wrap(";  ".join(rows), width)])


def _grid(scale: float, n: int = 240) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    from mtlbench.toy.problem import objectives

    axis = np.linspace(-EXTENT, EXTENT, n)
    gx, gy = np.meshgrid(axis, axis)
    pts = torch.from_numpy(np.stack([gx, gy], axis=-1))
    mean = objectives(pts, scale).mean(dim=-1).numpy()
    return gx, gy, mean


def plot_toy(result: ToyResult, path: Path, *, dpi: int = 72) -> Path:
    """Write the figure to ``path`` (PNG) and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.trajectories)
    if not names:
        raise ValueError("nothing to plot: the toy result has no trajectories")
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    gx, gy, mean = _grid(result.setting.scale)
    curve = pareto_set(400)
    # A 7.5 pt monospace character is about 4.5 pt wide; 5.4 leaves the margin.
    text = caption(result, width=max(40, int(2.9 * ncols * 72 / 5.4)))
    caption_in = 0.15 * (text.count("\n") + 1) + 0.15  # 7.5 pt lines, with a margin
    height = 3.0 * nrows + caption_in
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, height), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(axes.flat, names, strict=False):
        ax.contour(gx, gy, mean, levels=14, cmap="viridis", linewidths=0.7)
        ax.plot(curve[:, 0], curve[:, 1], color="0.55", lw=4, zorder=2, solid_capstyle="round")
        dists = []
        for i, traj in enumerate(result.trajectories[name]):
            colour = START_COLOURS[i % len(START_COLOURS)]
            stride = max(1, len(traj.points) // MAX_POINTS)
            pts = traj.points[::stride]
            ax.plot(pts[:, 0], pts[:, 1], color=colour, lw=1.3, zorder=3)
            ax.plot(traj.start.x1, traj.start.x2, "o", color="k", ms=4.5, zorder=4)
            ax.plot(*traj.final, "x", color=colour, ms=7, mew=2, zorder=5)
            dists.append(format_distance(traj.final_distance))
        ax.set_title(f"{name}\nd = {' / '.join(dists)}", fontsize=9)
        ax.set_xlim(-EXTENT, EXTENT)
        ax.set_ylim(-EXTENT, EXTENT)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.text(0.01, 0.005, text, ha="left", va="bottom", fontsize=7.5, family="monospace")
    fig.tight_layout(rect=(0, caption_in / height, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path


def figure_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG in pixels, read from its header (no imaging library)."""
    data = path.read_bytes()[:24]
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
