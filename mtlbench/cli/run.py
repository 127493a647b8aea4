"""``mtlbench run``: options -> a frozen RunConfig -> one study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtlbench.cli.common import (
    TRACKING_URI_HELP,
    _csv,
    _fail,
    _guard,
    _optuna_options,
    _print_summary,
    _resume_command,
    _split_strategies,
    app,
)
from mtlbench.config import (
    BACKBONES,
    DEFAULT_STRATEGIES,
    ConfigError,
    RunConfig,
    config_from_dict,
    override,
    read_toml,
)
from mtlbench.infra import interrupts


def build_config(**opts: Any) -> RunConfig:
    """Defaults, then the dataset plug-in's backbone and image size, then the TOML file, then
    command-line flags (flags win)."""
    raw = read_toml(opts["config"]) if opts.get("config") else {}
    cfg = config_from_dict(raw)
    cfg = override(
        cfg,
        "data",
        dataset=opts.get("dataset"),
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
        patience=opts.get("patience"),
    )
    lrs = _csv(opts.get("lrs"))
    seeds = _csv(opts.get("seeds"))
    auto = lrs == ["auto"]
    try:
        lr_values = tuple(float(x) for x in lrs) if lrs and not auto else None
        seed_values = tuple(int(x) for x in seeds) if seeds else None
    except ValueError as exc:
        raise ConfigError(f"--lrs takes numbers and --seeds integers: {exc}") from None
    strategies = opts.get("strategies")
    cfg = override(
        cfg,
        "search",
        strategies=tuple(_split_strategies(strategies)) if strategies else None,
        lrs="auto" if auto else lr_values,
        lrs_auto=None if auto or lr_values is None else False,
        seeds=seed_values,
        strategy_params=tuple(opts["strategy_param"]) if opts.get("strategy_param") else None,
        scalarization_sweep=opts.get("scalarization_sweep"),
        static_sweep=opts.get("static_sweep"),
        search=opts.get("search"),
        n_trials=opts.get("n_trials"),
        storage=opts.get("storage"),
        study_name=opts.get("study_name"),
        **_optuna_options(opts),
    )
    system_metrics = opts.get("system_metrics")
    cfg = override(
        cfg,
        "tracking",
        experiment=opts.get("experiment"),
        tracking_uri=opts.get("tracking_uri"),
        system_metrics=None if system_metrics is None else ("on" if system_metrics else "off"),
        log_model=opts.get("log_model"),
        register_model=opts.get("register_model"),
    )
    cfg = override(cfg, "root", output=opts.get("output"))
    return _dataset_defaults(cfg, raw, opts)


def _dataset_defaults(cfg: RunConfig, raw: dict[str, Any], opts: dict[str, Any]) -> RunConfig:
    """The plug-in's ``default_backbone`` / ``default_image_size`` where neither the TOML file
    nor a flag chose one (multi-digits' images are made for ``lenet``, not ResNet18). Fails
    before any work on an unknown ``--dataset``: the error lists the registered ones."""
    from mtlbench.data import registry

    plugin = registry.get(cfg.data.dataset)

    def unset(flag: str, table: str, key: str) -> bool:
        return opts.get(flag) is None and key not in raw.get(table, {})

    if unset("backbone", "model", "backbone"):
        cfg = override(cfg, "model", backbone=plugin.default_backbone)
    if unset("image_size", "data", "image_size"):
        cfg = override(cfg, "data", image_size=plugin.default_image_size)
    return cfg


def _expand_all(cfg: RunConfig) -> RunConfig:
    if "all" not in cfg.search.strategies:
        return cfg
    from mtlbench import weighting

    return override(cfg, "search", strategies=tuple(weighting.available()))


@app.command()
def run(
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="A registered dataset: utkface (default), multi-digits, multi-digits-4, or a "
        "plug-in's (see: mtlbench datasets).",
        rich_help_panel="Data",
    ),
    data: str | None = typer.Option(
        None,
        "--data",
        help="UTKFace folder or archive (.tar.gz/.tar/.zip), or 'synthetic' (default: synthetic); "
        "for another dataset, what its plug-in loads.",
        rich_help_panel="Data",
    ),
    max_samples: int | None = typer.Option(
        None,
        "--max-samples",
        help="Use a stratified subset of this many images.",
        rich_help_panel="Data",
    ),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        help="Square side in px (default: the dataset's; 32 for every built-in).",
        rich_help_panel="Data",
    ),
    cache_dir: str | None = typer.Option(
        None,
        "--cache-dir",
        help="Decoded-image cache (default: $MTLBENCH_CACHE or ~/.cache/mtlbench).",
        rich_help_panel="Data",
    ),
    backbone: str | None = typer.Option(
        None,
        "--backbone",
        help=f"One of {', '.join(BACKBONES)} (default: the dataset's, see mtlbench datasets: "
        "resnet18 for utkface, lenet for multi-digits).",
        rich_help_panel="Model",
    ),
    weights: str | None = typer.Option(
        None,
        "--weights",
        help="none | imagenet | PATH to a state_dict (default: none).",
        rich_help_panel="Model",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Epochs per trial (default: 6).", rich_help_panel="Training"
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="(default: 64)", rich_help_panel="Training"
    ),
    optimizer: str | None = typer.Option(
        None, "--optimizer", help="adamw | sgd (default: adamw).", rich_help_panel="Training"
    ),
    patience: int | None = typer.Option(
        None,
        "--patience",
        help="Stop a trial after this many epochs without a better validation score "
        "(0: never; default: 0).",
        rich_help_panel="Training",
    ),
    compile_backbone: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the backbone (pays off on GPUs, long runs).",
        rich_help_panel="Training",
    ),
    strategies: str | None = typer.Option(
        None,
        "--strategies",
        "-s",
        help=f"Comma-separated strategy names, or 'all' (default: {','.join(DEFAULT_STRATEGIES)}). "
        "See `mtlbench strategies`.",
        rich_help_panel="Search",
    ),
    lrs: str | None = typer.Option(
        None,
        "--lrs",
        help="Learning rates, e.g. 1e-3,3e-4 (default: 1e-3), or 'auto': start from "
        "1e-3,3e-4,1e-4 and widen by 3x at the edge where a strategy's chosen lr sits, "
        "at most 3 times within [1e-6, 1].",
        rich_help_panel="Search",
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Seeds, e.g. 0,1,2 (default: 0).", rich_help_panel="Search"
    ),
    strategy_param: list[str] | None = typer.Option(
        None,
        "--strategy-param",
        help="Strategy hyperparameter, e.g. dwa.temperature=2 (repeatable).",
        rich_help_panel="Search",
    ),
    scalarization_sweep: int | None = typer.Option(
        None,
        "--scalarization-sweep",
        help="Also train static weights on the simplex grid with step 1/K (K=3: 6 mixes "
        "plus 1,1,1), the fixed-weight Pareto front adaptive methods are judged against.",
        rich_help_panel="Search",
    ),
    static_sweep: int | None = typer.Option(
        None,
        "--static-sweep",
        help="Also train the interior simplex lattice with step 1/N (every weight > 0; N=5: "
        "6 points for 3 tasks); the best point on validation is the leaderboard's 'best "
        "static' row, which every adaptive method is tested against.",
        rich_help_panel="Search",
    ),
    search: str | None = typer.Option(
        None, "--search", help="grid | optuna (default: grid).", rich_help_panel="Search"
    ),
    n_trials: int | None = typer.Option(
        None, "--n-trials", help="Optuna trials (default: 20).", rich_help_panel="Optuna"
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL.", rich_help_panel="Optuna"
    ),
    study_name: str | None = typer.Option(
        None, "--study-name", help="Optuna study name.", rich_help_panel="Optuna"
    ),
    objective: str | None = typer.Option(
        None,
        "--objective",
        help="Optuna: auto (validation delta-m once single-task baselines exist, else "
        "validation score) | score | delta_m | pareto (NSGA-II over the three validation "
        "metrics) (default: auto).",
        rich_help_panel="Optuna",
    ),
    no_prune: bool = typer.Option(
        False,
        "--no-prune",
        help="Optuna: never prune (default: median pruner).",
        rich_help_panel="Optuna",
    ),
    lr_range: str | None = typer.Option(
        None,
        "--lr-range",
        help="Optuna: log-uniform learning rates LOW,HIGH (default: 1e-4,1e-2).",
        rich_help_panel="Optuna",
    ),
    experiment: str | None = typer.Option(
        None,
        "--experiment",
        help="MLflow experiment (default: mtlbench).",
        rich_help_panel="Tracking",
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help=TRACKING_URI_HELP,
        rich_help_panel="Tracking",
    ),
    output: str | None = typer.Option(
        None,
        "--output",
        help="Results folder (default: results/<experiment>).",
        rich_help_panel="Tracking",
    ),
    system_metrics: bool | None = typer.Option(
        None,
        "--system-metrics/--no-system-metrics",
        help="Log CPU, memory and GPU use of each trial as system/... metrics "
        "(default: on for CUDA runs, off on CPU).",
        show_default=False,
        rich_help_panel="Tracking",
    ),
    log_model: str | None = typer.Option(
        None,
        "--log-model",
        help="Log trained HydraNets as MLflow models: best (each strategy's trial chosen on "
        "validation) | all | none (default: best).",
        rich_help_panel="Tracking",
    ),
    register_model: str | None = typer.Option(
        None,
        "--register-model",
        help="Register the overall winner (chosen on validation) under this model name.",
        rich_help_panel="Tracking",
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="auto | cpu | cuda | cuda:<i> (default: auto).",
        rich_help_panel="Execution",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Local worker processes running trials concurrently: grid trials, or Optuna "
        "workers sharing the study (default: 1).",
        rich_help_panel="Execution",
    ),
    devices: str | None = typer.Option(
        None,
        "--devices",
        help="CUDA devices for --workers, one worker each, e.g. 0,1.",
        rich_help_panel="Execution",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        help="TOML study definition (flags override it).",
        rich_help_panel="Execution",
    ),
    checkpoint_dir: str | None = typer.Option(
        None,
        "--checkpoint-dir",
        help="Per-trial checkpoints, one folder per MLflow run "
        "(default: mtlbench-checkpoints/ beside a SQLite store).",
        rich_help_panel="Execution",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the last interrupted study with the same settings: finished trials are "
        "kept, interrupted ones continue from their last epoch checkpoint.",
        rich_help_panel="Execution",
    ),
) -> None:
    """Train every (strategy, learning rate, seed) combination and compare them."""
    opts = dict(locals())
    cfg = _guard(lambda: build_config(**opts))

    def go() -> Any:
        from mtlbench.infra.progress import RichReporter
        from mtlbench.runs.launch import run_study

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
