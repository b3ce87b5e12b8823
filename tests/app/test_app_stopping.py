"""The early-stopping stretch (``data.stop_steps``): networks stop, and keep their best
weights, on windows before validation, so that the validation errors ``rnnfuse demo`` chooses
its rows on come from data no network has seen."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnfuse.app.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig
from rnnfuse.app.data import DataError, load_csv
from rnnfuse.app.demo_data import with_stop_stretch
from rnnfuse.app.hybrid import hybrid_data
from rnnfuse.app.results import HybridBase
from rnnfuse.app.training import Trainer
from rnnfuse.app.windows import min_length, prepare, split_origins

pytestmark = pytest.mark.slow  # trains forecasters

H = 4
PERIOD = 12
CONFIG = dict(
    local_steps=8,
    global_blocks=12,
    block=2,
    min_global_blocks=3,
    horizon=H,
    period=PERIOD,
    val_steps=40,
    test_steps=40,
    stop_steps=24,
)
TINY = ModelConfig(local_sizes=(4,), global_sizes=(4,))


def _y(n=240, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + 0.1 * rng.standard_normal(n)


def _csv(tmp_path, y, name="s.csv", **changes):
    path = tmp_path / name
    path.write_text("v\n" + "\n".join(f"{v:.6f}" for v in y) + "\n")
    return DataConfig(csv=str(path), column="v", time_column=None, **(CONFIG | changes))


def test_the_stretch_lies_between_training_and_validation(tmp_path):
    config = _csv(tmp_path, _y())
    sp = split_origins(load_csv(config.csv, "v"), config)
    plain = split_origins(load_csv(config.csv, "v"), replace(config, stop_steps=0))
    assert sp.stop_start == sp.val_start - 24
    assert (sp.train + H < sp.stop_start).all() and (sp.stop + 1 >= sp.stop_start).all()
    assert (sp.stop + H < sp.val_start).all()
    assert len(sp.stop) == 24 - H + 1  # one window per origin whose targets fit the stretch
    np.testing.assert_array_equal(sp.val, plain.val)
    np.testing.assert_array_equal(sp.test, plain.test)
    np.testing.assert_array_equal(
        sp.before_test, plain.before_test
    )  # a refit still trains on all of them
    assert set(sp.train) < set(plain.train) and len(plain.stop) == 0 and plain.stop_start is None


def test_prepare_builds_the_stop_windows_only_when_asked(tmp_path):
    config = _csv(tmp_path, _y())
    prepared = prepare(load_csv(config.csv, "v"), config)
    assert prepared.stop is not None and prepared.stop_split == "stop"
    np.testing.assert_array_equal(prepared.stop.origins.numpy(), prepared.splits.stop)
    assert (
        prepare(load_csv(config.csv, "v"), config, refit=True).stop is None
    )  # a refit trains a fixed number of steps
    assert prepare(load_csv(config.csv, "v"), replace(config, stop_steps=0)).stop_split == "val"


def test_the_stretch_counts_in_the_length_a_series_needs(tmp_path):
    config = _csv(tmp_path, _y())
    assert min_length(config) == min_length(replace(config, stop_steps=0)) + 24
    short = _csv(tmp_path, _y(n=min_length(config) - 1), name="short.csv")
    with pytest.raises(DataError, match="--stop-steps 24"):
        split_origins(load_csv(short.csv, "v"), short)
    with pytest.raises(DataError, match="--stop-steps 2 is shorter than --horizon 4"):
        split_origins(load_csv(config.csv, "v"), replace(config, stop_steps=2))
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="data.stop_steps"):
            RunConfig.from_dict({"data": {"stop_steps": bad}})


def _train(config: DataConfig, tmp_path, name: str) -> Trainer:
    run = RunConfig(
        data=config,
        model=TINY,
        optim=OptimConfig(steps=60, batch_size=32, patience=30),
        seed=3,
        threads=1,
    )
    trainer = Trainer(run, tmp_path / name, log=lambda _: None, show_progress=False)
    trainer.start()
    trainer.run()
    return trainer


def test_training_never_reads_the_validation_stretch(tmp_path):
    """Changing every value from the validation stretch on leaves the trained weights, the best
    step and the early-stopping MAE unchanged (while the validation MAE the runs report differs:
    the change did reach validation); the best weights are those of the best early-stopping MAE."""
    y = _y()
    config = _csv(tmp_path, y)
    val_start = split_origins(load_csv(config.csv, "v"), config).val_start
    changed = y.copy()
    changed[val_start:] += np.linspace(0, 5, len(y) - val_start)
    first = _train(config, tmp_path, "a")
    second = _train(_csv(tmp_path, changed, name="changed.csv"), tmp_path, "b")
    for key, value in first.model.state_dict().items():
        torch.testing.assert_close(value, second.model.state_dict()[key], rtol=0, atol=0)
    a, b = first.progress, second.progress
    assert a.best_step == b.best_step and a.best_metric == b.best_metric
    assert a.best_metric == min(h["stop_mae"] for h in a.history)
    assert first.evaluate("stop")["mae"] == pytest.approx(a.best_metric, rel=1e-6)
    assert [h["val_mae"] for h in a.history] != [h["val_mae"] for h in b.history]


def test_without_the_stretch_validation_chooses_the_best_weights(tmp_path):
    trainer = _train(_csv(tmp_path, _y(), stop_steps=0), tmp_path, "plain")
    p = trainer.progress
    assert p.best_metric == min(h["val_mae"] for h in p.history) and "stop_mae" not in p.history[0]
    with pytest.raises(ValueError, match="'stop' has no windows"):
        trainer.evaluate("stop")


def test_the_demo_stretch_is_half_validation_and_shrinks_to_fit(tmp_path):
    long = _csv(tmp_path, _y(n=400), stop_steps=0)
    assert with_stop_stretch(long, {}).stop_steps == 20  # half of val_steps 40
    assert (
        with_stop_stretch(replace(long, val_steps=10), {}).stop_steps == H + 7
    )  # at least 8 windows
    assert with_stop_stretch(long, {"stop_steps": 0}).stop_steps == 0  # given: kept
    room = (
        min_length(long) + 15
    )  # room for 15 steps: fewer than half validation, more than the least
    fitted = with_stop_stretch(_csv(tmp_path, _y(n=room), name="room.csv", stop_steps=0), {})
    assert fitted.stop_steps == 15 and min_length(fitted) == room
    tight = _csv(tmp_path, _y(n=min_length(long) + H + 6), name="tight.csv", stop_steps=0)
    assert with_stop_stretch(tight, {}).stop_steps == 0  # not even 8 windows: stop on validation


def test_the_hybrids_stop_windows_read_the_base_at_their_origins(tmp_path):
    """``base.train`` holds the training origins' rows, then the early-stopping origins'."""
    config = _csv(tmp_path, _y())
    sp = split_origins(load_csv(config.csv, "v"), config)
    rows = len(sp.train) + len(sp.stop)
    train_base = np.arange(rows * H, dtype=float).reshape(rows, H)
    base = HybridBase("fixed", train_base, np.ones((len(sp.val), H)), np.ones((len(sp.test), H)))
    hybrid = hybrid_data(config, base)
    np.testing.assert_array_equal(hybrid.train.origins.numpy(), sp.train)
    np.testing.assert_array_equal(hybrid.stop.origins.numpy(), sp.stop)
    np.testing.assert_allclose(hybrid.train.base.numpy(), train_base[: len(sp.train)])
    np.testing.assert_allclose(hybrid.stop.base.numpy(), train_base[len(sp.train) :])
