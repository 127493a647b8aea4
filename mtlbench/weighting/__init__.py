"""Weighting strategies. Each module registers one strategy; importing the package imports
them all explicitly (no discovery magic), so the registry is complete once this is imported."""

from mtlbench.weighting import (  # noqa: F401  (registration side effect)
    aligned_mtl,
    cagrad,
    db_mtl,
    dwa,
    famo,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    mean,
    mgda,
    mgda_ub,
    nash_mtl,
    pcgrad,
    rlw,
    static,
    stl,
    sum,
    uncertainty,
    upgrad,
)
from mtlbench.weighting.base import (
    GradientCombination,
    GradientNeed,
    HyperParam,
    LossCombination,
    RandomStrategy,
    Strategy,
)
from mtlbench.weighting.registry import available, create, get, register, resolve

__all__ = [
    "GradientCombination",
    "GradientNeed",
    "HyperParam",
    "LossCombination",
    "RandomStrategy",
    "Strategy",
    "available",
    "create",
    "get",
    "register",
    "resolve",
]
