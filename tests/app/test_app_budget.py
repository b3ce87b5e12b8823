"""rnnfuse.app: training in optimizer steps, early stopping on the validation MAE, the best
weights kept; the demo's budget and its refits."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rnnfuse.app.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    planned_epochs,
)
from rnnfuse.app.experiment import Budget, batch_size_for, demo_config
from rnnfuse.app.results import Errors, NetworkRun
from rnnfuse.app.training import Trainer
from rnnfuse.app.workers import refit_task

pytestmark = pytest.mark.slow  # trains forecasters

TINY = ModelConfig(local_sizes=(4,), global_sizes=(4,))
DATA = DataConfig(val_steps=60, test_steps=60)


def _trainer(tmp_path, **optim) -> Trainer:
    config = RunConfig(data=DATA, model=TINY, optim=OptimConfig(**optim))
    trainer = Trainer(config, tmp_path / "run", log=lambda _: None, show_progress=False)
    trainer.start()
    return trainer


def test_planned_epochs_follow_the_step_budget():
    assert planned_epochs(OptimConfig(epochs=7), 1000) == 7  # no budget: the epochs
    assert planned_epochs(OptimConfig(steps=300, batch_size=64), 1800) == math.ceil(300 / 29)
    assert planned_epochs(OptimConfig(steps=300, batch_size=16), 100) == 43  # 7 batches an epoch
    assert planned_epochs(OptimConfig(steps=5, batch_size=64), 10_000) == 1  # the last epoch whole


def test_a_step_budget_trains_at_least_that_many_steps(tmp_path):
    trainer = _trainer(tmp_path, steps=40, batch_size=256)
    batches = math.ceil(len(trainer.sampler) / 256)
    result = trainer.run()
    assert result.progress.epoch == trainer.epochs == math.ceil(40 / batches)
    assert 40 <= result.progress.step < 40 + batches


def test_patience_stops_and_the_best_weights_are_kept(tmp_path):
    trainer = _trainer(
        tmp_path, steps=2000, batch_size=512, patience=1, lr=0.3
    )  # a rate that stops improving
    result = trainer.run()
    p = result.progress
    assert p.stopped_early and p.epoch < trainer.epochs
    assert p.step - p.best_step >= 1 and p.best_metric == min(h["val_mae"] for h in p.history)
    assert trainer.evaluate("val")["mae"] == pytest.approx(
        p.best_metric, rel=1e-6
    )  # the best epoch's weights


def test_without_patience_every_planned_epoch_runs_and_the_best_weights_end_it(tmp_path):
    trainer = _trainer(tmp_path, epochs=3, batch_size=512)
    result = trainer.run()
    assert result.progress.epoch == 3 and not result.progress.stopped_early
    assert trainer.evaluate("val")["mae"] == pytest.approx(result.progress.best_metric, rel=1e-6)


def test_step_and_patience_settings_are_checked():
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="optim.steps"):
            RunConfig.from_dict({"optim": {"steps": bad}})
    with pytest.raises(ConfigError, match="optim.patience"):
        RunConfig.from_dict({"optim": {"patience": 0}})
    assert RunConfig.from_dict({"optim": {"steps": None, "patience": None}}).optim.steps is None


def test_the_demo_budget_and_batch_size():
    assert batch_size_for(1800) == 64 and batch_size_for(100) == 16 and batch_size_for(500) == 31
    config = demo_config("concat", Budget(), 0, DATA, windows=100)
    assert (config.optim.steps, config.optim.patience, config.optim.batch_size) == (300, 100, 16)
    fixed = demo_config("concat", Budget(steps=None, epochs=2, patience=None), 0, DATA)
    assert (fixed.optim.epochs, fixed.optim.steps) == (2, None)
    with pytest.raises(ValueError, match="steps or epochs"):
        Budget(steps=None)
    with pytest.raises(ValueError, match="patience"):
        Budget(patience=0)


def test_a_refit_trains_as_many_steps_as_the_best_validation_took():
    task = {"fusion": "concat", "budget": Budget(), "seed": 0, "refit": False, "then_refit": True}
    errors = Errors(1.0, 1.0, [1.0])
    run = NetworkRun("concat", 0, "LSTM", 10, 1.0, [], 120, 300, errors, errors, [], [])
    refit = refit_task(task, run)
    assert (
        refit["refit"]
        and not refit["then_refit"]
        and refit["budget"] == Budget(steps=120, patience=None)
    )
    assert refit_task(task, replace(run, best_step=None))["budget"].steps == 300
