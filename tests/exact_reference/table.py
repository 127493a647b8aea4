"""Every registered gradient-based strategy -> its exact-reference check.

A strategy whose ``needs`` is anything but ``GradientNeed.LOSSES`` must appear here: the test
``test_every_gradient_strategy_has_an_exact_reference`` fails otherwise, so a method added
later comes with its reference.
"""

from __future__ import annotations

from tests.exact_reference import checks
from tests.exact_reference.checks import Check
from tests.exact_reference.wave2 import WAVE2

TABLE: dict[str, Check] = {
    "aligned_mtl": checks.check_aligned_mtl,
    "cagrad": checks.check_cagrad,
    "db_mtl": checks.check_db_mtl,
    "graddrop": checks.check_graddrop,
    "gradnorm": checks.check_gradnorm,
    "gradvac": checks.check_gradvac,
    "imtl": checks.check_imtl,
    "mgda": checks.check_mgda,
    "mgda_ub": checks.check_mgda_ub,
    "nash_mtl": checks.check_nash_mtl,
    "pcgrad": checks.check_pcgrad,
    "upgrad": checks.check_upgrad,
    **WAVE2,
}
