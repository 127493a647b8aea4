"""fit / evaluate on tiny generated data: determinism, best-epoch selection, divergence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.training.fit import NullRun, TrialSpec, fit
from mtlbench.training.prepare import Reference, prepare_data, resolve_device


@pytest.fixture(scope="module")
def tiny(faces_dir, session_cache):
    cfg = RunConfig(
        data=DataConfig(source=str(faces_dir), cache_dir=str(session_cache)),
        model=ModelConfig(backbone="tiny", head_hidden=32),
        train=TrainConfig(epochs=3, batch_size=32),
    )
    return cfg, prepare_data(cfg.data, torch.device("cpu"))


def test_same_seed_same_metrics_different_seed_different(tiny):
    cfg, data = tiny
    a = fit(TrialSpec("uncertainty", 1e-3, 0), cfg, data, torch.device("cpu"))
    b = fit(TrialSpec("uncertainty", 1e-3, 0), cfg, data, torch.device("cpu"))
    c = fit(TrialSpec("uncertainty", 1e-3, 1), cfg, data, torch.device("cpu"))

    def timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [
            {k: v for k, v in h.items() if not k.startswith(("time/", "throughput/"))}
            for h in history
        ]

    assert len(a.history) == 3
    assert timeless(a.history) == timeless(b.history)
    assert a.test == b.test
    assert a.test != c.test


def test_best_validation_epoch_is_the_one_evaluated_on_test(tiny):
    cfg, data = tiny
    run = NullRun()
    result = fit(TrialSpec("sum", 1e-3, 0), cfg, data, torch.device("cpu"), run=run)
    scores = [h["val/score"] for h in result.history]
    assert result.best_epoch == scores.index(min(scores))
    assert result.val["score"] == min(scores)
    final_step, final = run.metrics[-1]
    assert final_step == result.best_epoch
    assert {k.split("/")[0] for k in final} == {"test"}
    assert set(final) >= {"test/age_mae", "test/gender_acc", "test/race_acc", "test/score"}
    assert [step for step, _ in run.metrics[:-2]] == [0, 1, 2]
    assert run.tags["mtlbench.status"] == "finished"
    # Just before: the constant predictor fitted on train, measured on test (the row to beat).
    ref_step, ref = run.metrics[-2]
    train_y, test_y = data.train[1].numpy(), data.test[1].numpy()
    age_median = float(np.median(train_y[:, 0]))
    majority = [int(np.bincount(train_y[:, c]).argmax()) for c in (1, 2)]
    assert ref_step == result.best_epoch
    assert ref == pytest.approx(
        {
            "reference/test_age_mae": float(np.mean(np.abs(test_y[:, 0] - age_median))),
            "reference/test_gender_acc": float(np.mean(test_y[:, 1] == majority[0])),
            "reference/test_race_acc": float(np.mean(test_y[:, 2] == majority[1])),
        }
    )
    assert TaskSet.from_json(run.tags["mtlbench.tasks"]) == UTKFACE_TASKS
    # Summary values are params, not one-point metric charts.
    assert run.params["best.epoch"] == str(result.best_epoch)
    assert float(run.params["best.val_score"]) == min(scores)
    assert float(run.params["best.val_age_mae"]) == result.val["age_mae"]


def test_patience_stops_a_trial_on_a_validation_plateau(tiny, monkeypatch):
    cfg, data = tiny
    # Scripted validation scores: best at epoch 1, then two epochs without a better one.
    scores = iter([0.9, 0.8, 0.85, 0.81, 0.5, 0.4, 0.3])
    monkeypatch.setattr(Reference, "score", lambda self, metrics, tasks: next(scores))
    plateau = RunConfig(
        data=cfg.data, model=cfg.model, train=TrainConfig(epochs=6, batch_size=32, patience=2)
    )
    run = NullRun()
    result = fit(TrialSpec("sum", 1e-3, 0), plateau, data, torch.device("cpu"), run=run)
    assert result.status == "finished" and result.best_epoch == 1
    assert [h["epoch"] for h in result.history] == [0.0, 1.0, 2.0, 3.0]
    assert run.tags["mtlbench.stopped_early_epoch"] == 3
    assert run.metrics[-1][0] == 1 and "test/age_mae" in run.metrics[-1][1]
    assert next(scores) == 0.4  # one more call only: the test split's score


def test_without_patience_every_epoch_runs(tiny, monkeypatch):
    cfg, data = tiny
    monkeypatch.setattr(Reference, "score", lambda self, metrics, tasks: 1.0)
    result = fit(TrialSpec("sum", 1e-3, 0), cfg, data, torch.device("cpu"))
    assert len(result.history) == cfg.train.epochs == 3 and result.best_epoch == 0


def test_a_huge_learning_rate_ends_as_diverged_not_as_a_crash(tiny):
    cfg, data = tiny
    run = NullRun()
    result = fit(TrialSpec("sum", 1e12, 0), cfg, data, torch.device("cpu"), run=run)
    assert result.status == "diverged"
    assert run.tags["diverged"] == "true"
    assert run.tags["diverged_task"] in ("age", "gender", "race", "total")
    assert result.test == {}


def test_reference_score_is_one_for_constant_predictors():
    import numpy as np

    labels = np.array([[20, 0, 0], [30, 0, 1], [40, 1, 0], [50, 0, 2]])
    ref = Reference.from_labels(labels)
    assert ref.prediction("age") == 35.0
    assert ref.error("age") == 10.0  # |20-35|, |30-35|, |40-35|, |50-35| -> mean 10
    assert ref.error("gender") == 0.25 and ref.error("race") == 0.5
    assert ref.metrics() == {"age_mae": 10.0, "gender_acc": 0.75, "race_acc": 0.5}
    assert ref.initial_outputs() == {0: 35.0}  # only the regression head starts off zero
    trivial = {"age_mae": 10.0, "gender_acc": 0.75, "race_acc": 0.5}
    assert math.isclose(ref.score(trivial), 1.0)
    assert ref.score({"age_mae": 0.0, "gender_acc": 1.0, "race_acc": 1.0}) == 0.0


def test_device_auto_picks_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    from mtlbench.config import ConfigError

    with pytest.raises(ConfigError, match="no CUDA device is available"):
        resolve_device("cuda")


def test_on_epoch_callback_sees_validation_and_can_stop_the_trial(tiny):
    from mtlbench.training.fit import TrialStopped

    cfg, data = tiny
    seen: list[tuple[int, float]] = []

    def stop_after_first(epoch: int, val: dict[str, float]) -> None:
        seen.append((epoch, val["score"]))
        if epoch == 1:
            raise TrialStopped("median pruner")

    run = NullRun()
    result = fit(
        TrialSpec("sum", 1e-3, 0), cfg, data, torch.device("cpu"), run, None, stop_after_first
    )
    assert [e for e, _ in seen] == [0, 1]
    assert seen[0][1] == result.history[0]["val/score"]
    assert result.status == "pruned" and "median pruner" in result.message
    assert result.test == {} and run.tags["mtlbench.status"] == "pruned"


@pytest.mark.slow
def test_compiled_backbone_trains_and_is_recorded(tiny):
    from dataclasses import replace

    from mtlbench.training.fit import trial_params

    cfg, data = tiny
    compiled = replace(cfg, train=replace(cfg.train, compile=True, epochs=1))
    plain = replace(cfg, train=replace(cfg.train, epochs=1))
    a = fit(TrialSpec("sum", 1e-3, 0), compiled, data, torch.device("cpu"))
    b = fit(TrialSpec("sum", 1e-3, 0), plain, data, torch.device("cpu"))
    assert a.status == "finished"
    assert a.test["age_mae"] == pytest.approx(b.test["age_mae"], rel=1e-3)
    params = trial_params(TrialSpec("sum", 1e-3, 0), compiled, data, torch.device("cpu"))
    assert params["compile"] == "True" and params["amp"] == "off"


def test_bf16_autocast_path_runs_on_cpu_with_float32_metrics(tiny):
    from dataclasses import replace

    from mtlbench.training.fit import trial_params

    cfg, data = tiny
    amp = replace(cfg, train=replace(cfg.train, amp="bf16", epochs=1))
    result = fit(TrialSpec("mgda_ub", 1e-3, 0), amp, data, torch.device("cpu"))
    assert result.status == "finished"
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.test.values())
    assert trial_params(TrialSpec("sum", 1e-3, 0), amp, data, torch.device("cpu"))["amp"] == "bf16"
