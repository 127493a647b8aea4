"""Table entries for the wave-2 gradient methods (dualproj, config, fairgrad, modo, sdmgrad,
moco, excess_mtl): their 60-digit references live with their tests in
``tests/unit/weighting/test_wave2_gradient.py`` (exact integer Jacobians in the same nine
regimes). Each entry runs that check for the case's regime, T and seed."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis.errors import UnsatisfiedAssumption

from tests.exact_reference.regimes import Case

_PATH = Path(__file__).resolve().parents[1] / "unit" / "weighting" / "test_wave2_gradient.py"


@functools.cache
def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exact_reference_wave2_tests", _PATH)
    assert spec is not None and spec.loader is not None, f"cannot load {_PATH}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _entry(test: str, *extra: Any) -> Callable[[Case], None]:
    def check(case: Case) -> None:
        width = 8 if case.rows.shape[1] < 64 else (64 if case.rows.shape[1] < 10_000 else 10_000)
        inner = getattr(_module(), test).hypothesis.inner_test
        try:
            inner((case.regime, case.n_tasks, width, case.seed % 10_001), *extra)
        except UnsatisfiedAssumption:  # the check's own assume(): a case it does not cover
            return

    check.__name__ = f"check_{test}"
    return check


WAVE2: dict[str, Callable[[Case], None]] = {
    "config": _entry("test_config_matches_its_definition_and_has_equal_unit_projections"),
    "dualproj": _entry("test_dualproj_is_the_exact_projection_and_conflicts_with_no_task"),
    "excess_mtl": _entry("test_excess_mtl_steps_match_a_60_digit_recursion", 0.1),
    "fairgrad": _entry("test_fairgrad_solves_its_equations_or_reports_failure", 1.0),
    "moco": _entry("test_moco_three_steps_match_a_60_digit_recursion", "loss"),
    "modo": _entry("test_modo_weight_steps_match_a_60_digit_recursion", 1e-3, 0.1),
    "sdmgrad": _entry("test_sdmgrad_steps_match_a_60_digit_recursion", 0.3),
}
