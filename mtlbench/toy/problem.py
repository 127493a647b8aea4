"""The analytic losses of the toy and the papers' starting points.

On the plane ``x = (x1, x2)`` two smooth gates split the problem: ``up = max(tanh(x2/2), 0)`` and
``down = max(tanh(-x2/2), 0)``. Above the x1 axis each loss is a log-valley,

    u1 = log(max(|-(x1 + 7)/2 + tanh(x2)|, 5e-6)) + 6
    u2 = log(max(|(7 - x1)/2 - tanh(x2)|, 5e-6)) + 6

(two narrow valleys near x1 = -5 and x1 = +5 whose floors the clamp at 5e-6 makes flat), below it
a wide bowl,

    q1 = ((x1 - 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20
    q2 = ((x1 + 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20

and ``f_i = up * u_i + down * q_i``. Nash-MTL and FAMO multiply ``f1`` by a scale of 0.1 to make
the two losses unbalanced; CAGrad uses 1. The clamps are ``torch.clamp``, as in the papers, so
the gradients (zero on a valley floor, one-sided at ``x2 = 0``) are the papers' too.

The strategies see ``f_i + 21 * scale_i`` instead of ``f_i`` (FAMO's official toy sets the same
lower bound, -21 per unscaled loss): every loss is then positive, so strategies that take logs or
ratios of losses (FAMO, DWA, DB-MTL) are defined, and the gradients, hence the Pareto set and the
trajectories of the purely gradient-based methods, are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

LOG_FLOOR = 5e-6  # the clamp inside the logs (the papers' LOWER)
LOSS_SHIFT = 21.0  # added to each unscaled loss before a strategy sees it (FAMO's toy bound)


@dataclass(frozen=True)
class Start:
    """A starting point of the trajectories."""

    x1: float
    x2: float

    @property
    def label(self) -> str:
        """The point in MLflow-safe form: ``-8.5_7.5`` (used in ``distance_<label>``)."""
        return f"{self.x1:g}_{self.x2:g}"

    def __str__(self) -> str:
        return f"({self.x1:g}, {self.x2:g})"


@dataclass(frozen=True)
class Setting:
    """One paper's version of the toy: its starting points, the scale of ``f1`` and its budget
    (Adam with step size 1e-3 in all three papers)."""

    name: str
    paper: str
    starts: tuple[Start, ...]
    scale: float  # multiplier of f1
    paper_steps: int


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "cagrad",
            "Liu, Liu, Jin, Stone & Liu, NeurIPS 2021 (CAGrad), Fig. 1",
            (Start(-8.5, 7.5), Start(-8.5, -5.0), Start(9.0, 9.0)),
            1.0,
            100_000,
        ),
        Setting(
            "nash-mtl",
            "Navon et al., ICML 2022 (Nash-MTL), Fig. 1; FAMO (NeurIPS 2023) uses the same",
            (
                Start(-8.5, 7.5),
                Start(0.0, 0.0),
                Start(9.0, 9.0),
                Start(-7.5, -0.5),
                Start(9.0, -1.0),
            ),
            0.1,
            35_000,
        ),
    )
}
LEARNING_RATE = 1e-3  # Adam, all three papers


def get_setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise ValueError(
            f"unknown toy setting {name!r}; valid settings: {', '.join(SETTINGS)}"
        ) from None


def objectives(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``[..., 2]`` points -> ``[..., 2]`` losses ``(scale * f1, f2)``, differentiable."""
    import torch

    x1, x2 = x[..., 0], x[..., 1]
    t = torch.tanh(x2)
    u1 = torch.clamp((-(x1 + 7.0) / 2.0 + t).abs(), LOG_FLOOR).log() + 6.0
    u2 = torch.clamp(((7.0 - x1) / 2.0 - t).abs(), LOG_FLOOR).log() + 6.0
    up = torch.clamp(torch.tanh(x2 / 2.0), 0.0)
    bowl = 0.1 * (x2 + 8.0) ** 2
    q1 = ((x1 - 7.0) ** 2 + bowl) / 10.0 - 20.0
    q2 = ((x1 + 7.0) ** 2 + bowl) / 10.0 - 20.0
    down = torch.clamp(torch.tanh(-x2 / 2.0), 0.0)
    f1 = up * u1 + down * q1
    f2 = up * u2 + down * q2
    return torch.stack([scale * f1, f2], dim=-1)


def strategy_losses(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The losses a strategy sees: :func:`objectives` shifted to be positive (same gradients)."""
    import torch

    shift = torch.tensor([LOSS_SHIFT * scale, LOSS_SHIFT], dtype=x.dtype, device=x.device)
    return objectives(x, scale) + shift
