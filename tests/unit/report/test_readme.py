"""The README's generated Results block (mtlbench/report/readme.py) and the repository's own
README against its committed results."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtlbench.report import readme

ROOT = Path(__file__).resolve().parents[3]


def test_paste_replaces_only_the_experiments_block():
    a_begin, a_end = readme.markers("a")
    b_begin, b_end = readme.markers("b")
    doc = f"intro\n{a_begin}\nold a\n{a_end}\nmiddle\n{b_begin}\nold b\n{b_end}\nend\n"
    out = readme.paste(doc, "a", "new a\n\n")
    assert out == f"intro\n{a_begin}\nnew a\n{a_end}\nmiddle\n{b_begin}\nold b\n{b_end}\nend\n"
    # pasting again is idempotent, and a body with regex specials is taken literally
    assert readme.paste(out, "a", "new a") == out
    assert r"\1 $& (x|y)" in readme.paste(doc, "b", r"\1 $& (x|y)")


def test_paste_without_markers_names_the_lines_to_add():
    with pytest.raises(ValueError) as err:
        readme.paste("# a README\n", "utkface-cpu", "body")
    assert "results:utkface-cpu:begin" in str(err.value)
    assert "results:utkface-cpu:end" in str(err.value)


def test_links_point_into_the_report_folder(tmp_path: Path):
    body = "see [`x`](./leaderboard.md) and ![f](./delta_m.png); not (./here)"
    assert readme.relink(body, "results/e") == (
        "see [`x`](results/e/leaderboard.md) and ![f](results/e/delta_m.png); not (./here)"
    )
    assert readme.link_folder(tmp_path / "README.md", tmp_path / "results" / "e") == "results/e"


def test_the_readme_shows_the_committed_results_unchanged():
    """Every results/<experiment>/summary.md is pasted verbatim into the README, and a README
    block without its summary.md is empty (a study not yet run): Results cannot drift from the
    numbers."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = set(re.findall(r"<!-- results:([\w.-]+):begin", text))
    summaries = {p.parent.name: p for p in (ROOT / "results").glob("*/summary.md")}
    assert set(summaries) <= blocks, f"no README block for {set(summaries) - blocks}"
    for experiment in blocks - set(summaries):
        assert readme.paste(text, experiment, "") == text, f"{experiment}: block without results"
    for experiment, path in summaries.items():
        body = readme.relink(path.read_text(encoding="utf-8"), f"results/{experiment}")
        assert readme.paste(text, experiment, body) == text, (
            f"README's {experiment} block differs from {path}: run `mtlbench report "
            f"{experiment} --readme README.md`"
        )
