"""The ``mtlbench`` command line. Thin: options -> config -> one library call.

Importing this module must stay cheap (no torch, torchvision or mlflow), so ``mtlbench
--help`` answers at once; every command imports what it needs when it runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from mtlbench import __version__, interrupts
from mtlbench.config import (
    BACKBONES,
    DEFAULT_STRATEGIES,
    ConfigError,
    RunConfig,
    load_config,
    override,
)

app = typer.Typer(
    help="Benchmark multi-task loss-weighting strategies on a UTKFace HydraNet, tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Look at a dataset before training on it.", no_args_is_help=True)
app.add_typer(data_app, name="data")

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _guard(fn: Callable[[], T], interrupted: str = "interrupted") -> T:
    """Turn user errors (bad data, bad config, missing weights) into one line and exit code 2;
    Ctrl-C / SIGTERM into the ``interrupted`` message and exit code 130."""
    from mtlbench.errors import UserError

    try:
        return fn()
    except (UserError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail(interrupted, code=130) from None


def _resume_command() -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    return " ".join(shlex.quote(a) for a in ["mtlbench", *args, "--resume"])


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise _fail(f"empty item in comma-separated list {text!r}")
    return items


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtlbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """mtlbench: which loss weighting is best once every method gets a fair lr search?"""


def _split_strategies(text: str) -> list[str]:
    """Split ``--strategies`` on commas, keeping ``static:1,0.5,2`` arguments together."""
    items: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise _fail(f"empty item in --strategies {text!r}")
        if items and ":" in items[-1] and _is_number(part):
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def build_config(**opts: Any) -> RunConfig:
    """Defaults, then the TOML file, then command-line flags (flags win)."""
    cfg = load_config(opts["config"]) if opts.get("config") else RunConfig()
    cfg = override(
        cfg,
        "data",
        source=opts.get("data"),
        image_size=opts.get("image_size"),
        max_samples=opts.get("max_samples"),
        cache_dir=opts.get("cache_dir"),
    )
    cfg = override(cfg, "model", backbone=opts.get("backbone"), weights=opts.get("weights"))
    cfg = override(
        cfg,
        "train",
        epochs=opts.get("epochs"),
        batch_size=opts.get("batch_size"),
        optimizer=opts.get("optimizer"),
        device=opts.get("device"),
        checkpoint_dir=opts.get("checkpoint_dir"),
        compile=opts.get("compile_backbone") or None,
    )
    lrs = _csv(opts.get("lrs"))
    seeds = _csv(opts.get("seeds"))
    try:
        lr_values = tuple(float(x) for x in lrs) if lrs else None
        seed_values = tuple(int(x) for x in seeds) if seeds else None
    except ValueError as exc:
        raise ConfigError(f"--lrs takes numbers and --seeds integers: {exc}") from None
    strategies = opts.get("strategies")
    cfg = override(
        cfg,
        "search",
        strategies=tuple(_split_strategies(strategies)) if strategies else None,
        lrs=lr_values,
        seeds=seed_values,
        strategy_params=tuple(opts["strategy_param"]) if opts.get("strategy_param") else None,
        scalarization_sweep=opts.get("scalarization_sweep"),
        search=opts.get("search"),
        n_trials=opts.get("n_trials"),
        storage=opts.get("storage"),
        study_name=opts.get("study_name"),
        **_optuna_options(opts),
    )
    cfg = override(
        cfg, "tracking", experiment=opts.get("experiment"), tracking_uri=opts.get("tracking_uri")
    )
    return override(cfg, "root", output=opts.get("output"))


def _expand_all(cfg: RunConfig) -> RunConfig:
    if "all" not in cfg.search.strategies:
        return cfg
    from mtlbench import weighting

    return override(cfg, "search", strategies=tuple(weighting.available()))


@app.command()
def run(
    strategies: str | None = typer.Option(
        None,
        "--strategies",
        "-s",
        help=f"Comma-separated strategy names, or 'all' (default: {','.join(DEFAULT_STRATEGIES)}). "
        "See `mtlbench strategies`.",
    ),
    lrs: str | None = typer.Option(
        None, "--lrs", help="Learning rates, e.g. 1e-3,3e-4 (default: 1e-3)."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Seeds, e.g. 0,1,2 (default: 0)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per trial (default: 15)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="(default: 64)"),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Square side in px (default: 32)."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help=f"One of {', '.join(BACKBONES)} (default: resnet18)."
    ),
    weights: str | None = typer.Option(
        None, "--weights", help="none | imagenet | PATH to a state_dict (default: none)."
    ),
    optimizer: str | None = typer.Option(None, "--optimizer", help="adamw | sgd (default: adamw)."),
    data: str | None = typer.Option(
        None,
        "--data",
        help="UTKFace folder or archive (.tar.gz/.tar/.zip), or 'synthetic' (default: synthetic).",
    ),
    max_samples: int | None = typer.Option(
        None, "--max-samples", help="Use a stratified subset of this many images."
    ),
    cache_dir: str | None = typer.Option(
        None,
        "--cache-dir",
        help="Decoded-image cache (default: $MTLBENCH_CACHE or ~/.cache/mtlbench).",
    ),
    device: str | None = typer.Option(
        None, "--device", help="auto | cpu | cuda | cuda:<i> (default: auto)."
    ),
    strategy_param: list[str] | None = typer.Option(
        None,
        "--strategy-param",
        help="Strategy hyperparameter, e.g. dwa.temperature=2 (repeatable).",
    ),
    scalarization_sweep: int | None = typer.Option(
        None,
        "--scalarization-sweep",
        help="Also train static weights on the simplex grid with step 1/K (K=3: 6 mixes "
        "plus 1,1,1), the fixed-weight Pareto front adaptive methods are judged against.",
    ),
    experiment: str | None = typer.Option(
        None, "--experiment", help="MLflow experiment (default: mtlbench)."
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db).",
    ),
    search: str | None = typer.Option(None, "--search", help="grid | optuna (default: grid)."),
    n_trials: int | None = typer.Option(None, "--n-trials", help="Optuna trials (default: 20)."),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL."),
    study_name: str | None = typer.Option(None, "--study-name", help="Optuna study name."),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="Optuna: auto (validation delta-m once single-task baselines exist, else "
        "validation score) | score | delta_m | pareto (NSGA-II over the three validation "
        "metrics) (default: auto).",
    ),
    no_prune: bool = typer.Option(
        False, "--no-prune", help="Optuna: never prune (default: median pruner)."
    ),
    lr_range: str | None = typer.Option(
        None, "--lr-range", help="Optuna: log-uniform learning rates LOW,HIGH (default: 1e-4,1e-2)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Local worker processes running trials concurrently: grid trials, or Optuna "
        "workers sharing the study (default: 1).",
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="CUDA devices for --workers, one worker each, e.g. 0,1."
    ),
    output: str | None = typer.Option(
        None, "--output", help="Results folder (default: results/<experiment>)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML study definition (flags override it)."
    ),
    checkpoint_dir: str | None = typer.Option(
        None,
        "--checkpoint-dir",
        help="Per-trial checkpoints, one folder per MLflow run "
        "(default: mtlbench-checkpoints/ beside a SQLite store).",
    ),
    compile_backbone: bool = typer.Option(
        False, "--compile", help="torch.compile the backbone (pays off on GPUs, long runs)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the last interrupted study with the same settings: finished trials are "
        "kept, interrupted ones continue from their last epoch checkpoint.",
    ),
) -> None:
    """Train every (strategy, learning rate, seed) combination and compare them."""
    opts = dict(locals())
    cfg = _guard(lambda: build_config(**opts))

    def go() -> Any:
        from mtlbench.progress import RichReporter
        from mtlbench.search import run_study

        interrupts.install()
        reporter = RichReporter()
        return reporter, run_study(_expand_all(cfg), reporter, resume=resume)

    message = (
        "interrupted: finished trials and each trial's last epoch checkpoint are kept; "
        f"continue with: {_resume_command()}"
    )
    reporter, outcome = _guard(go, interrupted=message)
    _print_summary(reporter, outcome.summary)
    reporter.info(
        f"done in {outcome.seconds:.0f} s; outputs: {', '.join(str(f) for f in outcome.files)}"
    )
    reporter.info("browse the runs with: mtlbench ui" + _ui_hint(cfg))
    if outcome.failed:
        raise _fail(
            f"{len(outcome.failed)} trial(s) failed with an error: {', '.join(outcome.failed)} "
            "(tracebacks are in their MLflow runs as error.txt; --resume retries them)",
            code=1,
        )


def _ui_hint(cfg: RunConfig) -> str:
    return (
        "" if cfg.tracking.tracking_uri is None else f" --tracking-uri {cfg.tracking.tracking_uri}"
    )


def _print_summary(reporter: Any, summary: Any) -> None:
    from rich.table import Table

    table = Table(title="Per strategy, learning rate chosen on validation (test metrics)")
    for col in (
        "strategy",
        "best lr",
        "seeds",
        "age MAE (y)",
        "gender acc",
        "race acc",
        "diverged",
    ):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)

    def cell(row: Any, col: str, fmt: str) -> str:
        value = row.get(col)
        if value is None or value != value:
            return "–"
        std = row.get(f"{col}_std")
        text = format(value, fmt)
        return text if std is None or std != std else f"{text} ± {format(std, fmt)}"

    for _, row in summary.iterrows():
        lr = row.get("best_lr")
        table.add_row(
            str(row["strategy"]),
            "–" if lr is None or lr != lr else f"{lr:g}",
            str(int(row.get("n_seeds", 0) or 0)),
            cell(row, "test/age_mae", ".2f"),
            cell(row, "test/gender_acc", ".3f"),
            cell(row, "test/race_acc", ".3f"),
            str(int(row.get("n_diverged", 0))),
        )
    reporter.console.print(table)


@app.command("strategies")
def strategies_cmd() -> None:
    """List every registered weighting strategy."""
    from rich.console import Console
    from rich.table import Table

    from mtlbench import weighting

    table = Table(title="Registered strategies")
    for col in ("name", "needs", "paper", "hyperparameters (default)"):
        table.add_column(col)
    for name in weighting.available():
        cls = weighting.get(name)
        hps = ", ".join(f"{h.name}={h.format(h.default)}" for h in cls.hparams) or "–"
        table.add_row(name, cls.needs.value, cls.paper, hps)
    Console().print(table)


@app.command()
def report(
    experiment: str = typer.Argument("mtlbench", help="MLflow experiment to report on."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    output: str | None = typer.Option(None, "--output", help="(default: results/<experiment>)"),
) -> None:
    """Rebuild the leaderboard, figures and report.html of an experiment from what MLflow
    stored (every study of it), and log them to a new run of the experiment named 'report'."""

    def go() -> Any:
        from mtlbench.config import TrackingConfig
        from mtlbench.progress import RichReporter
        from mtlbench.report_files import build_report, log_report_run

        tr = TrackingConfig(experiment=experiment, tracking_uri=tracking_uri)
        out = Path(output) if output else Path("results") / experiment
        outcome = build_report(tr.resolved_uri, experiment, None, out)
        run_id = log_report_run(tr.resolved_uri, experiment, outcome)
        return RichReporter(), outcome, run_id

    reporter, outcome, run_id = _guard(go)
    _print_summary(reporter, outcome.summary)
    reporter.info(f"wrote {', '.join(str(f) for f in outcome.files)}")
    reporter.info(
        f"{outcome.n_trials} trials of {len(outcome.parent_run_ids)} parent run(s); files logged "
        f"as artifacts of run {run_id} ('report') in experiment {experiment!r}"
    )


@app.command()
def ui(
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (default: local only)."
    ),
    port: int = typer.Option(5000, "--port"),
) -> None:
    """Open the MLflow UI for the tracking store (binds 127.0.0.1 by default)."""
    from mtlbench.config import TrackingConfig
    from mtlbench.tracking import tracking_uri_for_ui

    uri = tracking_uri_for_ui(TrackingConfig(tracking_uri=tracking_uri).resolved_uri)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: binding {host}: anyone who can reach this machine can read and delete runs",
            err=True,
            fg=typer.colors.YELLOW,
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    typer.echo(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        raise typer.Exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="UTKFace folder or archive, or 'synthetic'."),
    cache_dir: str | None = typer.Option(None, "--cache-dir"),
) -> None:
    """Counts, label distributions and skipped files (with reasons) of a dataset."""

    def go() -> str:
        from mtlbench.config import DataConfig
        from mtlbench.data import inspect_dataset

        cfg = DataConfig(source=path, cache_dir=cache_dir)
        return inspect_dataset(cfg.source, cache_dir=cfg.cache_path).to_text()

    typer.echo(_guard(go))


@app.command()
def bench(
    batch_size: int = typer.Option(64, "--batch-size"),
    image_size: int = typer.Option(32, "--image-size"),
    backbone: str = typer.Option("resnet18", "--backbone"),
    steps: int | None = typer.Option(
        None,
        "--steps",
        help="Timed training steps per variant (default 20; with --strategies, per round: 3).",
    ),
    device: str = typer.Option("cpu", "--device"),
    strategies: str | None = typer.Option(
        None,
        "--strategies",
        "-s",
        help="Instead of the model table: time and peak memory of these strategies (a,b|all) "
        "relative to sum, plus the batched/sequential Jacobian baselines.",
    ),
    rounds: int = typer.Option(
        3, "--rounds", help="With --strategies: interleaved rounds over all variants."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="With --strategies: a Markdown table."),
    data: str | None = typer.Option(
        None, "--data", help="Images for the pipeline benchmark (default: synthetic)."
    ),
    max_samples: int = typer.Option(
        3000, "--max-samples", help="Pipeline benchmark: images per epoch (stratified subset)."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
    model_only: bool = typer.Option(
        False, "--model-only", help="Only the training-step table (random tensors, no data)."
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        help="Study throughput: a small grid run sequentially, then with this many workers.",
    ),
) -> None:
    """Measure speed. Default: the original tutorial's whole pipeline (per-item PIL decoding,
    three backbone passes) against mtlbench's, on the same images: data loading alone, the
    training step alone and a whole epoch. --model-only: just the step. --strategies: each
    weighting strategy's step time and peak memory relative to sum (docs/strategies.md).
    --concurrency K: trials/hour of a small grid, sequential against K worker processes."""

    def go() -> str:
        from mtlbench.config import DataConfig
        from mtlbench.prepare import resolve_device

        if concurrency is not None:
            from mtlbench.bench_study import study_throughput

            dc = DataConfig(source=data, image_size=image_size, cache_dir=cache_dir)
            result = study_throughput(
                dc.source,
                workers=concurrency,
                cache_dir=dc.cache_path,
                image_size=image_size,
                backbone=backbone,
                max_samples=max_samples,
                device=device,
            )
            return result.table()
        if strategies is None and not model_only:
            from mtlbench.bench_pipeline import pipeline_benchmark

            dc = DataConfig(source=data, image_size=image_size, cache_dir=cache_dir)
            report = pipeline_benchmark(
                dc.source,
                image_size=image_size,
                batch_size=batch_size,
                max_samples=max_samples,
                backbone=backbone,
                device=resolve_device(device),
                cache_dir=dc.cache_path,
            )
            return report.table()

        if strategies is not None:
            from mtlbench import weighting
            from mtlbench.bench_strategies import bench_strategies, strategies_table

            names = _split_strategies(strategies)
            if "all" in names:
                names = weighting.available()
            for name in names:
                weighting.resolve(name)
            rows = bench_strategies(
                names,
                backbone=backbone,
                batch_size=batch_size,
                image_size=image_size,
                steps=steps or 3,
                rounds=rounds,
                device=resolve_device(device),
                progress=lambda msg: typer.echo(msg, err=True),
            )
            return strategies_table(rows, markdown=markdown)

        from mtlbench.bench import model_throughput, throughput_table

        rows_model = model_throughput(
            backbone=backbone,
            batch_size=batch_size,
            image_size=image_size,
            steps=steps or 20,
            device=resolve_device(device),
        )
        return throughput_table(rows_model)

    typer.echo(_guard(go))


def _optuna_options(opts: dict[str, Any]) -> dict[str, Any]:
    """SearchConfig fields of the Optuna flags of ``run`` (None: keep the TOML/default)."""
    lr_range = _csv(opts.get("lr_range"))
    try:
        low_high = tuple(float(x) for x in lr_range) if lr_range else None
    except ValueError:
        raise ConfigError(
            f"--lr-range takes two numbers LOW,HIGH, got {opts['lr_range']!r}"
        ) from None
    devices = _csv(opts.get("devices"))
    return {
        "objective": opts.get("objective"),
        "pruner": "none" if opts.get("no_prune") else None,
        "lr_range": low_high,
        "workers": opts.get("workers"),
        "devices": tuple(devices) if devices else None,
    }


@app.command()
def worker(
    study_name: str = typer.Option(..., "--study-name", help="The study to join."),
    storage: str = typer.Option(
        ...,
        "--storage",
        envvar="MTLBENCH_OPTUNA_STORAGE",
        help="Its Optuna storage URL, e.g. postgresql://user:password@host:5432/optuna.",
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | cuda:<i> (default: the study's device setting)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    worker_index: int | None = typer.Option(
        None, "--worker-index", help="Seeds this worker's sampler (default: random)."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: the study's)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="The study's images at another path on this machine."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Join an existing Optuna study and run its trials until it holds --n-trials finished."""

    def go() -> int:
        from mtlbench.progress import RichReporter
        from mtlbench.workers import WorkerOptions, join_study

        interrupts.install()
        opts = WorkerOptions(device, threads, worker_index, tracking_uri, data, cache_dir)
        return len(join_study(study_name, storage, opts, RichReporter(quiet=quiet)))

    n = _guard(go, interrupted="interrupted; the study keeps its finished trials")
    if not quiet:
        typer.echo(f"worker done: ran {n} trial(s)", err=True)


@app.command()
def toy(
    strategies: str = typer.Option(
        "all-gradient",
        "--strategies",
        "-s",
        help="Comma-separated strategy names, 'all-gradient' (every strategy that combines "
        "gradients) or 'all' (also the loss-weighting ones).",
    ),
    steps: int = typer.Option(
        30_000, "--steps", help="Adam steps per trajectory (the papers: 35,000-100,000)."
    ),
    setting: str = typer.Option(
        "cagrad",
        "--setting",
        help="cagrad (3 starting points, f1 unscaled) | nash-mtl (5 points, f1 x 0.1; FAMO's too).",
    ),
    out: Path = typer.Option(Path("toy.png"), "--out", help="The figure (PNG)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the strategies' own random numbers."),
    workers: int = typer.Option(1, "--workers", help="Processes running trajectories at once."),
    strategy_param: list[str] | None = typer.Option(
        None, "--strategy-param", help="e.g. cagrad.c=0.5 (repeatable)."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Log params, distances and the figure to this MLflow store."
    ),
    experiment: str = typer.Option("mtlbench-toy", "--experiment", help="MLflow experiment."),
) -> None:
    """Run gradient-combining strategies on the two-objective toy of CAGrad (Liu et al. 2021,
    Fig. 1) from the papers' starting points and draw their trajectories, one panel each."""

    def go() -> Any:
        from mtlbench.progress import RichReporter
        from mtlbench.toy.run import ToyConfig, toy_study

        interrupts.install()
        cfg = ToyConfig(
            strategies=tuple(_split_strategies(strategies)),
            setting=setting,
            steps=steps,
            seed=seed,
            overrides=tuple(strategy_param or ()),
            workers=workers,
        )
        reporter = RichReporter()
        return reporter, *toy_study(
            cfg, out, tracking_uri=tracking_uri, experiment=experiment, reporter=reporter
        )

    reporter, result, run_id = _guard(go)
    from mtlbench.toy.plot import caption

    reporter.info(caption(result))
    reporter.info(f"wrote {out}" + (f"; MLflow run {run_id} in {experiment!r}" if run_id else ""))


def main() -> None:
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    app()


if __name__ == "__main__":
    main()
