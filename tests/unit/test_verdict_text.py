"""Generated sentences follow the numbers (each branch is reached by changing a number)."""

import math

from mtlbench.report.verdict_stats import DeltaMInterval
from mtlbench.report.verdict_text import (
    Comparison,
    beats_sentence,
    edge_sentence,
    failed_sentence,
    interval_sentence,
    power_sentence,
    weights_sentence,
)

FAM = "adaptive vs best static"


def test_beats_sentence_follows_sign_and_p() -> None:
    none = [
        Comparison("famo", "best static", FAM, -1.0, 0.2),
        Comparison("dwa", "best static", FAM, 0.5, 0.9),
    ]
    text = beats_sentence(none, "best static")
    assert text.startswith("No adaptive method beats best static beyond noise (0 of 2")
    assert FAM in text
    one = [
        Comparison("famo", "best static", FAM, -3.0, 0.01),
        Comparison("dwa", "best static", FAM, 2.0, 0.04),
    ]
    text = beats_sentence(one, "best static")
    assert "1 of 2 methods beat best static: famo (-3.00 points" in text
    assert "1 are worse beyond noise" in text


def test_interval_sentence_counts_zero_crossings() -> None:
    ivs = {
        "imtl": DeltaMInterval(4.44, 5.20, 2.0, "seed-paired"),
        "famo": DeltaMInterval(4.55, 6.08, 2.0, "seed-paired"),
        "pcgrad": DeltaMInterval(9.0, 2.0, 2.0, "seed-paired"),
    }
    text = interval_sentence(ivs)
    assert "seed-paired" in text and "1 lie above 0, 0 below 0, 2 include 0 (famo, imtl)" in text


def test_power_sentence_numbers() -> None:
    # Median SD 1.0 with 3 seeds: (t(.975;2) + t(.8;2)) / sqrt(3) = 3.10; 2 points needs 5 seeds.
    text = power_sentence([0.5, 1.0, 3.0], 3)
    assert "SD 1.00" in text and "about 3.1 points" in text and "would take 5 seeds" in text
    assert "no power" in power_sentence([math.nan], 3)


def test_flags() -> None:
    text = weights_sentence({"uncertainty": 0.06, "gradnorm": 0.8})
    assert text is not None and "uncertainty (6%)" in text and "gradnorm" not in text
    assert weights_sentence({"gradnorm": 0.8}) is None
    assert edge_sentence({}) is None
    assert "sum (low)" in (edge_sentence({"sum": "low"}) or "")
    assert failed_sentence({"sum": (0, 3)}).startswith("No seed diverged")
    assert "famo (1/3)" in failed_sentence({"famo": (1, 3), "sum": (0, 3)})
