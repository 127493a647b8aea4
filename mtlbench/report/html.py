"""``report.html``: one self-contained page (inline CSS, figures embedded as base64 PNG, no
scripts, no external assets) with the same content as ``leaderboard.md``."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from mtlbench.report import text
from mtlbench.report.text import GroupReport

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1280px; margin: 0 auto; padding: 1.5em 2em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.3em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; white-space: normal; vertical-align: bottom; }
.table { overflow-x: auto; } td.name, th.name { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
dl.budget { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dl.budget dt { font-weight: 600; } dl.budget dd { margin: 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; max-width: 60em; }
.meta { color: #777; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list[str]], name_col: int = 0) -> str:
    """A table whose ``name_col`` (the strategy or weights) is left-aligned, numbers right."""

    def cell(tag: str, i: int, value: str) -> str:
        cls = ' class="name"' if i == name_col else ""
        return f"<{tag}{cls}>{html.escape(value)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="table">{table}</div>'


def _figure(fig: text.Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(fig.title)}">'
        f"<figcaption><b>{html.escape(fig.title)}.</b> {html.escape(fig.caption)}</figcaption>"
        "</figure>"
    )


def _group(g: GroupReport, h: int) -> str:
    parts = [f"<h{h}>{html.escape(g.label)}</h{h}>"]
    parts.append(
        '<dl class="budget">'
        + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in g.budget)
        + "</dl>"
    )
    parts.append(f"<h{h + 1}>Leaderboard</h{h + 1}>")
    parts.append(
        "<p>Learning rate chosen per strategy on validation (fewest diverged or failed seeds, "
        "then mean best validation score of the finished seeds); test metrics at that rate as "
        "mean ± half-width of the 95% t-interval over seeds (Δm's interval also carries the "
        "single-task baselines' seed variance; see the verdicts). Ranked by "
        f"{html.escape(text.METRIC_LABELS[g.primary])}. <i>seeds</i>: finished seeds at the "
        "chosen lr / seeds run per lr; <i>failed seeds at lr</i>: diverged or failed / run.</p>"
    )
    tasks = g.tasks
    parts.append(_table(*text.method_table(g.summary, g.primary, tasks, g.constant), name_col=1))
    if g.verdicts is not None:
        title = f"Verdicts: against {text.report.REFERENCE} and the best static weighting"
        parts.append(f"<h{h + 1}>{html.escape(title)}</h{h + 1}>")
        items = "".join(f"<li>{html.escape(c)}</li>" for c in g.verdicts.sentences())
        parts.append(f"<ul>{items}</ul>")
        parts.append(_table(*text.verdict_table(g.verdicts)))
    header, rows = text.sweep_table(g.summary, g.primary, tasks)
    if rows:
        parts.append(f"<h{h + 1}>Fixed weights (scalarisation sweep)</h{h + 1}>")
        parts.append(_table(header, rows))
    header, rows = text.baseline_table(g.summary, tasks)
    if rows:
        parts.append(f"<h{h + 1}>Single-task baselines</h{h + 1}>")
        parts.append(_table(header, rows))
    parts.append(f"<h{h + 1}>What these numbers can and cannot support</h{h + 1}>")
    parts.append("<ul>" + "".join(f"<li>{html.escape(c)}</li>" for c in g.caveats) + "</ul>")
    if g.figures:
        parts.append(f"<h{h + 1}>Figures</h{h + 1}>")
        parts += [_figure(f) for f in g.figures]
    return "\n".join(parts)


def render(experiment: str, groups: list[GroupReport], notes: list[str]) -> str:
    """The whole page as one string."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>mtlbench report: {html.escape(experiment)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>mtlbench report: {html.escape(experiment)}</h1>",
        f'<p class="meta">Generated {stamp} by <code>mtlbench report</code> from the MLflow '
        "runs of this experiment.</p>",
        "<p>Which loss weighting works best for this HydraNet "
        f"({html.escape('; '.join(', '.join(g.tasks.names) for g in groups))}) once every "
        "strategy gets the same learning-rate grid and seeds.</p>",
    ]
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for i, g in enumerate(groups):
        if len(groups) > 1:
            parts.append(f"<h2>Group {i + 1} of {len(groups)}</h2>")
        parts.append(_group(g, 2 if len(groups) == 1 else 3))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
