import pytest

from mtlbench.config import (
    ConfigError,
    DataConfig,
    RunConfig,
    SearchConfig,
    TrainConfig,
    load_config,
    override,
)


def test_toml_overrides_defaults_and_keeps_the_rest(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        '[data]\nimage_size = 48\n[search]\nstrategies = ["sum", "dwa"]\nlrs = [1e-3, 3e-4]\n'
        '[train]\nepochs = 5\n[tracking]\nexperiment = "x"\n'
    )
    cfg = load_config(path)
    assert cfg.data.image_size == 48
    assert cfg.search.strategies == ("sum", "dwa")
    assert cfg.search.lrs == (1e-3, 3e-4)
    assert cfg.train.epochs == 5
    assert cfg.train.batch_size == 64  # default kept
    assert cfg.output_dir.as_posix() == "results/x"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[train]\nepoch = 3\n", "unknown key 'epoch' in [train]"),
        ("[trainer]\nepochs = 3\n", "unknown config section 'trainer'"),
        ("[train\nepochs = 3\n", "not valid TOML"),
        ("[train]\nbatch_size = 0\n", "batch_size must be a positive integer"),
        ("[search]\nlrs = [-1.0]\n", "learning rate must be a positive number"),
        ("[train]\noptimizer = 'adam'\n", "unknown optimizer 'adam'; valid choices: adamw, sgd"),
        ("[model]\nbackbone = 'vgg'\n", "unknown backbone 'vgg'"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_config(path)
    assert needle in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_cli_style_override_validates():
    cfg = RunConfig()
    cfg2 = override(cfg, "train", epochs=7, batch_size=None)
    assert cfg2.train.epochs == 7 and cfg2.train.batch_size == cfg.train.batch_size
    with pytest.raises(ConfigError, match="epochs must be a positive integer"):
        override(cfg, "train", epochs=0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"split": (0.5, 0.5, 0.5)}, "sum"),
        ({"image_size": 8}, "image_size"),
        ({"max_samples": 3}, "max_samples"),
    ],
)
def test_data_config_validation(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        DataConfig(**kwargs)


def test_synthetic_source_normalises_to_none():
    assert DataConfig(source="synthetic").source is None


def test_search_config_validation():
    with pytest.raises(ConfigError, match="distinct"):
        SearchConfig(seeds=(0, 0))
    with pytest.raises(ConfigError, match=r"<strategy>\.<name>=<value>"):
        SearchConfig(strategy_params=("temperature=2",))
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        TrainConfig(device="gpu")


def test_simplex_sweep_excludes_vertices_and_sums_to_T():
    from mtlbench.config import simplex_weights, sweep_specs

    assert sweep_specs(0) == [] and sweep_specs(1) == []
    specs = sweep_specs(3)
    assert len(specs) == 7 and "static:1,1,1" in specs and "static:2,1,0" in specs
    for k in (2, 3, 4, 5):
        pts = simplex_weights(k)
        assert len(pts) == (k + 1) * (k + 2) // 2 - 3  # all grid points minus 3 vertices
        assert all(sum(p) == k and max(p) < k for p in pts)
    for spec in sweep_specs(4):
        assert abs(sum(float(v) for v in spec.split(":")[1].split(",")) - 3) < 1e-3
    with pytest.raises(ConfigError, match="scalarization_sweep"):
        SearchConfig(scalarization_sweep=-1)


def test_grid_includes_the_sweep_and_expands_stl():
    from mtlbench.runs.grid import grid_trials

    cfg = override(
        RunConfig(), "search", strategies=("sum", "stl"), scalarization_sweep=3, lrs=(1e-3, 1e-4)
    )
    specs = {t.strategy for t in grid_trials(cfg)}
    assert {"stl:age", "stl:gender", "stl:race", "static:2,1,0"} <= specs
    assert "stl" not in specs
    assert len(grid_trials(cfg)) == 2 * (1 + 3 + 7)


def test_static_sweep_adds_the_interior_lattice_to_the_grid():
    from mtlbench.runs.grid import grid_trials

    cfg = override(RunConfig(), "search", strategies=("sum",), static_sweep=5, lrs=(1e-3,))
    specs = [t.strategy for t in grid_trials(cfg)]
    # C(4, 2) = 6 interior points of the 1/5 lattice, weights k/5 * 3 with every k >= 1.
    assert sorted(specs) == sorted(
        [
            "sum",
            "static:1.8,0.6,0.6",
            "static:0.6,1.8,0.6",
            "static:0.6,0.6,1.8",
            "static:1.2,1.2,0.6",
            "static:1.2,0.6,1.2",
            "static:0.6,1.2,1.2",
        ]
    )
    with pytest.raises(ConfigError, match="static_sweep"):
        SearchConfig(static_sweep=1)


def test_lrs_auto_from_toml_and_cli(tmp_path):
    from mtlbench.cli.run import build_config
    from mtlbench.runs.lr_auto import START

    cfg = SearchConfig(lrs="auto")  # type: ignore[arg-type]
    assert cfg.lrs == START and cfg.lrs_auto
    path = tmp_path / "s.toml"
    path.write_text('[search]\nlrs = "auto"\nstatic_sweep = 4\n')
    loaded = load_config(path)
    assert loaded.search.lrs_auto and loaded.search.static_sweep == 4
    assert build_config(config=str(path), lrs="1e-3,1e-4").search.lrs_auto is False
    assert build_config(lrs="auto").search.lrs == START
    with pytest.raises(ConfigError, match="auto"):
        SearchConfig(lrs="auto", search="optuna")  # type: ignore[arg-type]


def test_new_grid_keys_keep_old_study_signatures():
    from mtlbench.runs.study import study_definition

    data = {"data_sha256": "d", "split_sha256": "s"}
    plain = study_definition(RunConfig(), data)
    assert "static_sweep" not in plain["search"] and "lrs_auto" not in plain["search"]
    swept = study_definition(override(RunConfig(), "search", static_sweep=5), data)
    assert swept["search"]["static_sweep"] == 5
    auto = study_definition(override(RunConfig(), "search", lrs="auto"), data)
    assert auto["search"]["lrs_auto"] is True


def test_the_dataset_plugin_chooses_backbone_and_size_unless_the_toml_or_a_flag_does(tmp_path):
    from mtlbench.cli.run import build_config

    digits = build_config(dataset="multi-digits")
    assert (digits.model.backbone, digits.data.image_size) == ("lenet", 32)
    assert build_config().model.backbone == "resnet18"  # utkface's
    assert build_config(dataset="multi-digits", backbone="tiny").model.backbone == "tiny"
    path = tmp_path / "d.toml"
    path.write_text(
        '[data]\ndataset = "multi-digits"\nimage_size = 48\n[model]\nbackbone = "tiny"\n'
    )
    chosen = build_config(config=str(path))
    assert (chosen.model.backbone, chosen.data.image_size) == ("tiny", 48)
    # A TOML that names only the dataset still gets the plug-in's backbone.
    path.write_text('[data]\ndataset = "multi-digits-4"\n')
    assert build_config(config=str(path)).model.backbone == "lenet"
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        build_config(dataset="nope")
