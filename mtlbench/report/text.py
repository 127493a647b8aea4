"""The words and table cells of the report, shared by ``leaderboard.md`` and ``report.html``:
the budget header, what the numbers can and cannot support, and the formatted tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mtlbench.mtl.tasks import UTKFACE_TASKS, Task, TaskSet
from mtlbench.report import tables as report
from mtlbench.report.verdict_stats import FAMILY_SUM
from mtlbench.report.verdicts import Verdicts
from mtlbench.report.verdicts import table as verdict_table
from mtlbench.tracking import FALLBACK_LIMIT

_SUMMARY_LABELS = {"test/delta_m": "Δm (%) ↓", "test/score": "score ↓"}
_ACRONYMS = {"mae", "mse", "rmse", "auc", "f1", "iou", "map"}
_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def is_percent(task: Task) -> bool:
    """Accuracy-like metrics (fractions in [0, 1]) are shown as percentages."""
    return task.kind != "regression" and task.higher_is_better and not task.unit


def metric_label(col: str, tasks: TaskSet = UTKFACE_TASKS) -> str:
    """``test/age_mae`` -> "age MAE (years) ↓", ``test/left_acc`` -> "left acc (%) ↑"."""
    if col in _SUMMARY_LABELS:
        return _SUMMARY_LABELS[col]
    task = tasks.by_metric(col)
    if task is None:
        return col
    words = " ".join(w.upper() if w in _ACRONYMS else w for w in task.metric.split("_"))
    unit = task.unit or ("%" if is_percent(task) else "")
    return f"{words}{f' ({unit})' if unit else ''} {'↑' if task.higher_is_better else '↓'}"


METRIC_LABELS: dict[str, str] = {
    **{c: metric_label(c) for c in report.TEST_METRICS},
    **_SUMMARY_LABELS,
}


@dataclass(frozen=True)
class Figure:
    path: Path
    title: str
    caption: str


@dataclass
class GroupReport:
    """Everything the report says about one group of comparable trials."""

    label: str
    tidy: pd.DataFrame
    summary: pd.DataFrame
    baselines: pd.DataFrame
    primary: str
    figures: list[Figure] = field(default_factory=list)
    verdicts: Verdicts | None = None

    @property
    def tasks(self) -> TaskSet:
        return report.tasks_of(self.tidy)

    @property
    def constant(self) -> dict[str, float]:
        return constant_predictor(self.tidy, self.tasks)

    @property
    def budget(self) -> list[tuple[str, str]]:
        return budget(self.tidy)

    @property
    def caveats(self) -> list[str]:
        return caveats(self.tidy, self.summary, self.primary)


def _values(tidy: pd.DataFrame, col: str) -> str:
    vals = sorted({str(v) for v in tidy[col].dropna() if str(v) != ""})
    return ", ".join(vals) if vals else "–"


def budget(tidy: pd.DataFrame) -> list[tuple[str, str]]:
    """(name, value) pairs: the data and training budget behind every number of a group."""
    methods = tidy[tidy["strategy"].map(report.strategy_kind) == report.KIND_METHOD]
    grid = methods if not methods.empty else tidy
    data = _values(tidy, "data")
    return [
        ("data", f"{Path(data).name} (sha256 {_values(tidy, 'data_sha256')[:12]})"),
        ("images used", _values(tidy, "max_samples")),
        (
            "train / val / test",
            f"{_values(tidy, 'n_train')} / {_values(tidy, 'n_val')} / {_values(tidy, 'n_test')}",
        ),
        ("image size", f"{_values(tidy, 'image_size')} px"),
        ("backbone", f"{_values(tidy, 'backbone')} (initial weights: {_values(tidy, 'weights')})"),
        ("epochs", _values(tidy, "epochs")),
        ("batch size / optimizer", f"{_values(tidy, 'batch_size')} / {_values(tidy, 'optimizer')}"),
        ("learning-rate grid", ", ".join(f"{lr:g}" for lr in sorted(grid["lr"].dropna().unique()))),
        ("seeds", ", ".join(str(int(s)) for s in sorted(tidy["seed"].dropna().unique()))),
        ("trials", f"{len(tidy)} in {tidy['parent_run_id'].nunique()} MLflow parent run(s)"),
    ]


def _tcrit(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df=n - 1))


def caveats(tidy: pd.DataFrame, summary: pd.DataFrame, primary: str) -> list[str]:
    """What the numbers can and cannot support, computed from this group's trials.

    Long on purpose: a flat list of independent checks, each a few lines that append one
    sentence, in the order the report prints them; splitting it would scatter the wording."""
    out: list[str] = []
    methods = summary[summary["kind"] == report.KIND_METHOD]
    seeds = sorted({int(n) for n in methods["n_seeds"]}) if not methods.empty else []
    if seeds and seeds[0] >= 2:
        n = seeds[0]
        have = f"{n}" if len(seeds) == 1 else f"{n} to {seeds[-1]}"
        out.append(
            f"Each strategy has {have} finished seeds at its chosen learning rate: with {n} the "
            f"95% interval uses Student's t with {n - 1} degree{'s' if n > 2 else ''} of "
            f"freedom (t = {_tcrit(n):.2f}), so intervals are wide. The test against "
            f"{report.REFERENCE} is a two-sided paired t-test, pairs matched by seed (same "
            "initialisation and data order); with this few pairs it has little power: "
            "p > 0.05 does not show two methods are equal."
        )
    elif seeds:
        out.append(
            "Some strategy has a single finished seed at its chosen learning rate: it gets no "
            "confidence interval and no test."
        )
    # The adaptive methods' family (the "best static" row keeps its sweep point's family).
    family = summary[summary["family"] == FAMILY_SUM] if "family" in summary else summary[:0]
    n_tests = int(family["p_vs_ref"].notna().sum())
    if n_tests:
        sig = family[family["p_vs_ref"] < 0.05]["strategy"].tolist()
        holm = family[family["p_vs_ref_holm"] < 0.05]["strategy"].tolist()
        found = f"p < 0.05 (uncorrected) for: {', '.join(sig)}" if sig else "none has p < 0.05"
        after = ", ".join(holm) if holm else "none"
        out.append(
            f"{n_tests} adaptive method{'s' if n_tests > 1 else ''} compared with "
            f"{report.REFERENCE} (family “{FAMILY_SUM}”): "
            f"{found}. About {n_tests / 20:.1f} of them would reach that by chance alone; after "
            f"Holm's adjustment within this family of {n_tests} comparisons (fixed weightings "
            f"form their own families), p < 0.05 for: {after} (adjusted p-values in "
            "leaderboard.csv, column family)."
        )
    n_test = pd.to_numeric(tidy["n_test"], errors="coerce").dropna()
    ref = summary[summary["strategy"] == report.REFERENCE]
    tasks = report.tasks_of(tidy)
    accuracy = next((f"test/{t.metric}" for t in tasks if is_percent(t)), None)
    if accuracy and len(n_test) and len(ref) and pd.notna(ref.get(accuracy, pd.Series()).iloc[0]):
        acc, size = float(ref[accuracy].iloc[0]), int(n_test.min())
        se = 100 * math.sqrt(acc * (1 - acc) / size)
        out.append(
            f"The test split has {size} images: an accuracy near {100 * acc:.0f}% has a sampling "
            f"standard error of about {se:.1f} points per run, so differences of a point or two "
            "are within noise."
        )
    info = dict(budget(tidy))
    out.append(
        f"The numbers hold for this budget only ({info['train / val / test']} images, "
        f"{info['image size']}, {info['backbone']}, {info['epochs']} epochs). Short training "
        "favours whatever speeds up early progress; rankings can change with longer training, "
        "pretrained weights, larger images or the full dataset. One dataset, "
        f"{_NUMBER_WORDS.get(len(tasks), str(len(tasks)))} tasks."
    )
    grids = {str(g) for g in methods["lr_grid"]}
    if len(grids) == 1 and len(next(iter(grids)).split(",")) <= 2:
        out.append(
            f"The learning-rate grid has only {len(next(iter(grids)).split(','))} value(s), so "
            "every chosen rate sits at an edge of it; a finer or wider grid could change the "
            "ranking."
        )
    elif len(grids) > 1:
        out.append(
            "Not every method had the same learning-rate grid: "
            + "; ".join(f"{r.strategy}: {r.lr_grid}" for r in methods.itertuples())
            + ". Compare them with care."
        )
    sweep = summary[summary["kind"] == report.KIND_SWEEP]
    method_lrs = {lr for g in grids for lr in g.split(",")}
    sweep_lrs = {lr for g in sweep["lr_grid"] for lr in str(g).split(",")}
    if not sweep.empty and sweep_lrs < method_lrs:
        out.append(
            f"The fixed-weight sweep points were trained at lr {', '.join(sorted(sweep_lrs))} "
            "only, not on the full grid, so the scalarisation front is a conservative estimate "
            "of what tuned fixed weights can reach."
        )
    if primary == "test/delta_m":
        out.append(
            "Δm is the mean relative difference to single-task models trained on the same "
            "budget and learning-rate grid (negative: better than single-task on average)."
            + _mix_note(tasks)
        )
    else:
        out.append(
            "No complete set of single-task baselines (stl) in this group: strategies are "
            "ranked by the normalised test score (mean over tasks of error / error of a "
            "constant predictor) instead of Δm."
        )
    counts = ["n_diverged", "n_failed", "n_pruned", "n_other"]
    bad = summary[summary[counts].sum(axis=1) > 0]
    if not bad.empty:
        out.append(
            "Trials that did not finish are counted per strategy in the table and excluded from "
            "its means: "
            + "; ".join(
                f"{r.strategy}: {r.n_diverged} diverged, {r.n_failed} failed, {r.n_pruned} pruned"
                + (f", {r.n_other} still running or interrupted" if r.n_other else "")
                for r in bad.itertuples()
            )
            + "."
        )
    else:
        out.append("Every trial finished: none diverged, failed or was pruned.")
    note = fallback_caveat(summary)
    if note is not None:
        out.append(note)
    return out


def _mix_note(tasks: TaskSet) -> str:
    errors = [t for t in tasks if not t.higher_is_better]
    if not errors or len(errors) == len(tasks):
        return " Look at the task columns as well."
    unit = next((t.unit for t in errors if t.unit), "")
    what = f"an error in {unit}" if unit else "errors"
    return f" It mixes {what} with accuracies; look at the task columns as well."


# --- cells ----------------------------------------------------------------------------------


def fmt_number(value: float, col: str, signed: bool = False, tasks: TaskSet = UTKFACE_TASKS) -> str:
    if value is None or not math.isfinite(float(value)):
        return "–"
    task = tasks.by_metric(col) if col not in _SUMMARY_LABELS else None
    percent = task is not None and is_percent(task)
    v = 100 * float(value) if percent else float(value)
    digits = 2 if col == "test/delta_m" or (task is not None and not percent) else 1
    if col == "test/score":
        digits = 3
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_ci(row: pd.Series, col: str, tasks: TaskSet = UTKFACE_TASKS) -> str:
    """``mean ± half-width`` of the 95% interval (mean alone with one seed)."""
    mean = row.get(col, math.nan)
    text = fmt_number(mean, col, signed=col == "test/delta_m", tasks=tasks)
    half = row.get(f"{col}_ci", math.nan)
    if text == "–" or half is None or not math.isfinite(float(half)):
        return text
    return f"{text} ± {fmt_number(half, col, tasks=tasks)}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(float(p)):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


FALLBACK_MARK = " †"


def fallback_caveat(summary: pd.DataFrame) -> str | None:
    """The footnote for rows marked with FALLBACK_MARK, from the trials' tags."""
    flagged = summary[summary.get("n_fallback", pd.Series(0, index=summary.index)) > 0]
    if flagged.empty:
        return None
    parts = [
        f"{r['strategy']} ({int(r['n_fallback'])} of {int(r['n_seeds'])} seeds, up to "
        f"{100 * float(r['max_fallback']):.1f}% of steps)"
        for _, r in flagged.iterrows()
    ]
    return (
        f"†: on more than {100 * FALLBACK_LIMIT:g}% of the steps of some trials at the chosen "
        "learning rate, the method's problem had no solution and its documented fallback was "
        "applied instead (MLflow tag mtlbench.solver_fallback, metric "
        f"strategy/fallback_fraction): {'; '.join(parts)}. These rows are partly another method."
    )


def _lr(row: pd.Series) -> str:
    lr = row.get("best_lr", math.nan)
    return "–" if lr is None or not math.isfinite(float(lr)) else f"{lr:g}"


def _status(row: pd.Series) -> str:
    text = f"{row['n_diverged']} / {row['n_failed']} / {row['n_pruned']}"
    other = int(row.get("n_other", 0) or 0)  # running, interrupted, killed
    return f"{text} (+{other} unfinished)" if other else text


def _vs_ref(row: pd.Series, primary: str) -> str:
    if row["strategy"] == report.REFERENCE:
        return "reference"
    diff = row.get("diff_vs_ref", math.nan)
    if not math.isfinite(float(diff)):
        return "–"
    return f"{fmt_number(diff, primary, signed=True)} (p {fmt_p(row['p_vs_ref'])})"


def _primary_cell(row: pd.Series, primary: str, tasks: TaskSet = UTKFACE_TASKS) -> str:
    """Delta-m with the interval that includes the baselines' seed variance where the verdicts
    computed one (``delta_m_noise*``; see the verdicts section), else the t-interval."""
    half = float(row.get("delta_m_noise_ci", math.nan))
    if primary != "test/delta_m" or not math.isfinite(half):
        return fmt_ci(row, primary, tasks)
    mean = float(row["delta_m_noise"])
    return f"{fmt_number(mean, primary, signed=True)} ± {fmt_number(half, primary)}"


def constant_predictor(tidy: pd.DataFrame, tasks: TaskSet) -> dict[str, float]:
    """Test column -> the constant predictor's value (logged by every finished trial of the
    group as ``reference/test_<metric>``; identical within a group), where logged."""
    out = {}
    for t, col in zip(tasks, report.reference_metrics(tasks), strict=True):
        if col in tidy:
            values = pd.to_numeric(tidy[col], errors="coerce").dropna()
            if len(values):
                out[f"test/{t.metric}"] = float(values.mean())
    return out


def method_table(
    summary: pd.DataFrame,
    primary: str,
    tasks: TaskSet = UTKFACE_TASKS,
    constant: dict[str, float] | None = None,
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the leaderboard proper (methods, ranked), then the constant
    predictor (each task's median or majority class from the training split) when known:
    the floor every model must beat."""
    metrics = report.test_metrics(tasks)
    header = [
        "rank",
        "strategy",
        "lr",
        "seeds",
        *(metric_label(c, tasks) for c in metrics),
        metric_label(primary, tasks),
        f"vs {report.REFERENCE}: Δ, p",
        "diverged / failed / pruned",
        "failed seeds at lr",
        f"step cost (× {report.REFERENCE})",
    ]
    rows = []
    for _, r in summary[summary["kind"] == report.KIND_METHOD].iterrows():
        cost = float(r.get("step_cost", math.nan))
        rank = "–" if not math.isfinite(float(r["rank"])) else str(int(r["rank"]))
        rows.append(
            [
                rank,
                str(r["strategy"]) + (FALLBACK_MARK if r.get("n_fallback", 0) else ""),
                _lr(r),
                f"{r['n_seeds']}/{r['n_run_at_lr']}",
                *(fmt_ci(r, c, tasks) for c in metrics),
                _primary_cell(r, primary, tasks),
                _vs_ref(r, primary),
                _status(r),
                str(r.get("failed_at_lr", "–")),
                f"{cost:.2f}" if math.isfinite(cost) else "–",
            ]
        )
    if constant:
        cells = [fmt_number(constant.get(c, math.nan), c, tasks=tasks) for c in metrics]
        rows.append(["–", CONSTANT_ROW, "–", "–", *cells, *["–"] * (len(header) - 4 - len(cells))])
    return header, rows


CONSTANT_ROW = "constant predictor"


def sweep_table(
    summary: pd.DataFrame, primary: str, tasks: TaskSet = UTKFACE_TASKS
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the fixed-weight (scalarisation) points."""
    metrics = report.test_metrics(tasks)
    header = [
        f"weights ({', '.join(tasks.names)})",
        "lr",
        "seeds",
        *(metric_label(c, tasks) for c in metrics),
        metric_label(primary, tasks),
        f"vs {report.REFERENCE}: Δ, p",
        "diverged / failed / pruned",
    ]
    rows = [
        [
            str(r["strategy"]).removeprefix("static:") or "1",
            _lr(r),
            str(r["n_seeds"]),
            *(fmt_ci(r, c, tasks) for c in metrics),
            fmt_ci(r, primary, tasks),
            _vs_ref(r, primary),
            _status(r),
        ]
        for _, r in summary[summary["kind"] == report.KIND_SWEEP].iterrows()
    ]
    return header, rows


def baseline_table(
    summary: pd.DataFrame, tasks: TaskSet = UTKFACE_TASKS
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the single-task models (the B_t of Δm)."""
    header = ["single-task model", "lr", "seeds", "test metric of its task (95% CI)"]
    rows = []
    single = summary[summary["kind"] == report.KIND_SINGLE]
    order = {f"stl:{t.name}": i for i, t in enumerate(tasks)}
    single = single.assign(_o=single["strategy"].map(order)).sort_values("_o", na_position="last")
    for _, r in single.iterrows():
        cells = [
            f"{metric_label(c, tasks).rsplit(' ', 1)[0]} {fmt_ci(r, c, tasks)}"
            for c in report.test_metrics(tasks)
            if math.isfinite(float(r.get(c, math.nan)))
        ]
        rows.append([str(r["strategy"]), _lr(r), str(r["n_seeds"]), "; ".join(cells) or "–"])
    return header, rows


# --- markdown -------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def group_markdown(g: GroupReport, heading: str = "##") -> str:
    parts = [f"{heading} {g.label}\n"]
    parts.append("\n".join(f"- **{k}**: {v}" for k, v in g.budget) + "\n")
    parts.append(f"{heading}# Leaderboard\n")
    parts.append(
        "Learning rate chosen per strategy on validation (fewest diverged or failed seeds, "
        f"then mean `{report.SELECTION_METRIC}` of the finished seeds); test metrics at that "
        "rate as mean ± half-width of the 95% t-interval over seeds (Δm's interval also "
        "carries the single-task baselines' seed variance; see the verdicts). Ranked by "
        f"{METRIC_LABELS[g.primary]}. `seeds`: finished seeds at the chosen lr / seeds run per "
        "lr; `failed seeds at lr`: diverged or failed / run.\n"
    )
    tasks = g.tasks
    parts.append(markdown_table(*method_table(g.summary, g.primary, tasks, g.constant)))
    if g.verdicts is not None:
        parts.append(
            f"{heading}# Verdicts: against {report.REFERENCE} and the best static weighting\n"
        )
        parts.append("\n".join(f"- {c}" for c in g.verdicts.sentences()) + "\n")
        parts.append(markdown_table(*verdict_table(g.verdicts)))
    _, sweep_rows = sweep_table(g.summary, g.primary, tasks)
    if sweep_rows:
        parts.append(f"{heading}# Fixed weights (scalarisation sweep)\n")
        parts.append(markdown_table(*sweep_table(g.summary, g.primary, tasks)))
    _, base_rows = baseline_table(g.summary, tasks)
    if base_rows:
        parts.append(f"{heading}# Single-task baselines\n")
        parts.append(markdown_table(*baseline_table(g.summary, tasks)))
    parts.append(f"{heading}# What these numbers can and cannot support\n")
    parts.append("\n".join(f"- {c}" for c in g.caveats) + "\n")
    if g.figures:
        parts.append(f"{heading}# Figures\n")
        parts += [f"**{f.title}.** {f.caption}\n\n![{f.title}]({f.path.name})\n" for f in g.figures]
    return "\n".join(parts)


def document_markdown(experiment: str, groups: list[GroupReport], notes: list[str]) -> str:
    intro = [
        f"# mtlbench report: {experiment}\n",
        "Which loss weighting works best for this HydraNet "
        f"({'; '.join(', '.join(g.tasks.names) for g in groups)}) once every "
        "strategy gets the same learning-rate grid and seeds. Generated by `mtlbench report` "
        "from the MLflow runs; `report.html` has the same content with the figures embedded.\n",
    ]
    intro += [f"> {n}\n" for n in notes]
    heading = "##" if len(groups) == 1 else "###"
    body = [group_markdown(g, heading) for g in groups]
    if len(groups) > 1:
        body = [f"## Group {i + 1} of {len(groups)}\n\n" + b for i, b in enumerate(body)]
    return "\n".join(intro + body)
