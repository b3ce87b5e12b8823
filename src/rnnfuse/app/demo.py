"""``rnnfuse demo``: forecasters with every fusion on the embedded CO2 series, a table and plots.

Every model is a real training run (:class:`~rnnfuse.app.training.Trainer`, one thread);
each fusion is trained with ``seeds`` seeds, because the differences between fusions are of
the size of the differences between seeds, and the table gives the mean and the spread.
``jobs`` runs train side by side in separate processes; results do not depend on ``jobs``.
Each run's checkpoints go to ``out/runs/<fusion>-seed<k>`` (usable with ``rnnfuse predict
--model``), the table to ``out/results.md`` and ``out/results.json``, figures to
``out/*.png``.

Refit before test (``refit``, as the classical baselines' parameters are re-estimated before
the test stretch): the settings are chosen on validation with the model trained on the
training windows (the optimizer steps its best validation took; a hybrid's correction share is
chosen there), then a fresh model with the same seed and settings is trained for that many
steps on every window whose targets lie before the test stretch (:attr:`~rnnfuse.app.windows.Splits.before_test`), and that model
forecasts the test stretch.  Its checkpoints go to ``out/runs/<run>-refit``.

Covariates (``data.covariates``; on the embedded series ``nino12`` by default, see
:func:`demo_data`): the networks' encoders read them up to each origin, and DHR and SARIMA
regress on them (:func:`~rnnfuse.app.baselines.covariate_regressors`), so that the networks
and the classical models forecast from the same information.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from dataclasses import dataclass, replace
from typing import Any

from .config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig
from .data import EMBEDDED_COVARIATES, Series, load_data, load_series
from .metrics import errors, forecast, seasonal_naive, seasonal_naive_drift, truth
from .model import count_parameters
from .report import correction_unused, format_table, selection_summary, slim_results, write_outputs
from .windows import Prepared, prepare
from .worker_lifetime import pool_options

__all__ = ["DEMO_FUSIONS", "DEMO_STEPS", "DEMO_PATIENCE", "Budget", "batch_size_for", "DEMO_SEEDS", "DEMO_REFIT", "REFIT_CHOICES", "run_demo", "train_one", "format_table",
           "demo_config"]

DEMO_FUSIONS = ("local", "global", "concat", "sum", "mean", "bridge", "zoph-knight", "child-sum", "gated")
DEMO_STEPS = 300  # optimizer steps per model: as many for a 100-window series as for a 2,000-window one
DEMO_PATIENCE = 100  # steps without a better validation MAE before a run stops (its best weights kept)
DEMO_SEEDS = 3
DEMO_HYBRIDS = ("zoph-knight",)
# which networks are refitted before the test stretch: every one, the hybrids only (the default:
# refitting all of them would double the demo's training time), or none
REFIT_CHOICES = ("all", "hybrids", "none")
DEMO_REFIT = "hybrids"
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_COST = {"concat": 5, "bridge": 4, "child-sum": 4, "gated": 4, "zoph-knight": 4, "sum": 3, "mean": 3, "max": 3, "global": 2, "local": 1}


@dataclass(frozen=True)
class Budget:
    """How long each demo model trains: ``steps`` optimizer steps (``epochs`` whole epochs
    instead, when given), stopping early after ``patience`` steps without a better validation
    MAE (``None``: never), the best validation weights kept."""

    steps: int | None = DEMO_STEPS
    patience: int | None = DEMO_PATIENCE
    epochs: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "patience", "epochs"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Budget: {name}: expected a positive int or None, got {value!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"Budget: expected steps or epochs (one of them), got steps={self.steps}, epochs={self.epochs}")

    def describe(self) -> str:
        """``"300 optimizer steps (patience 100)"``, for the report."""
        amount = f"{self.epochs} epochs" if self.epochs is not None else f"{self.steps} optimizer steps"
        return amount + (f" at most, stopping after {self.patience} without a better validation MAE" if self.patience else "")


def batch_size_for(windows: int) -> int:
    """The demo's batch size for ``windows`` training windows: 64, smaller for short series
    (about 16 batches per epoch, at least 16 windows per batch)."""
    return min(64, max(16, windows // 16))


def demo_config(fusion: str, budget: Budget, seed: int, data: DataConfig | None = None, windows: int = 1024) -> RunConfig:
    """The configuration of one demo model (defaults of ``rnnfuse train`` otherwise);
    ``windows``: the training windows (they set the batch size, :func:`batch_size_for`)."""
    optim = OptimConfig(epochs=budget.epochs or 1, steps=budget.steps if budget.epochs is None else None,
                        patience=budget.patience, batch_size=batch_size_for(windows))
    return RunConfig(data or DataConfig(), ModelConfig(fusion=fusion), optim, seed=seed, threads=1)


def train_one(
    fusion: str, budget: Budget, seed: int, out: str | None, data: DataConfig | None = None,
    base: dict[str, Any] | None = None, refit: bool = False,
) -> dict[str, Any]:
    """Train one demo model; return its history, errors and test forecasts (picklable).

    ``base``: a hybrid; ``{"train": ..., "val": ..., "test": ...}`` forecasts ``(N, H)`` of a
    classical model at every origin (without look-ahead); the network learns their errors
    (:func:`hybrid_data`), and the share of its correction kept is chosen on validation
    (:func:`correction_weight`, returned as ``correction_weight``).

    ``refit``: train on every window whose targets lie before the test stretch instead, for
    ``budget`` (the steps the training-windows model's best validation took; a
    hybrid's then need ``base["refit"]``), and return only what the test column needs: the
    test forecast (a hybrid's before any correction share: :func:`apply_refits` blends it with
    the share its training-windows model chose on validation), the test windows' ``base``,
    the seconds and the number of training windows.
    """
    from .training import Trainer  # imported here: runs in a fresh worker process

    data = data or DataConfig()
    name = _run_label(fusion, base)
    run_dir = None if out is None else Path(out) / "runs" / _run_name(fusion, seed, base is not None, refit)
    if run_dir is not None and run_dir.exists():
        shutil.rmtree(run_dir)
    lines: list[str] = []
    if base is not None:
        prepared = hybrid_data(data, base, refit)
    else:
        prepared = prepare(load_data(data), data, refit=refit)
    trainer = Trainer(
        demo_config(fusion, budget, seed, data, len(prepared.train)), run_dir, log=lines.append, show_progress=False,
        prepared=prepared, extra_covariates=0 if base is None else 1,
    )
    trainer.start()
    began = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - began
    test_forecast = forecast(trainer.model, trainer.data.test)
    if refit:
        test = trainer.data.test
        return {
            "name": name, "seed": seed, "refit": True, "seconds": seconds, "windows": len(trainer.data.train),
            "epochs": len(trainer.progress.history), "test_forecast": test_forecast.tolist(),
            "test_base": None if test.base is None else test.base.double().numpy().tolist(), "log": lines,
        }
    val = trainer.evaluate("val")
    val_forecast = forecast(trainer.model, trainer.data.val)
    weight = None
    if base is not None:  # the share of the network's correction, chosen on validation
        weight, val = correction_weight(val_forecast, trainer.data.val, trainer.data.series)
        test_forecast = blend(trainer.data.test, test_forecast, weight)
        val_forecast = blend(trainer.data.val, val_forecast, weight)
    return {
        "name": name, "seed": seed,
        "decoder": _describe_decoder(trainer.model),
        "params": count_parameters(trainer.model),
        "seconds": seconds,
        "history": trainer.progress.history,
        "best_step": trainer.progress.best_step, "steps": trainer.progress.step,
        "val": val,
        "test": errors(test_forecast, truth(trainer.data.series, trainer.data.test)),
        "test_forecast": test_forecast.tolist(),
        "val_forecast": val_forecast.tolist(),
        "correction_weight": weight,
        "log": lines,
    }


CORRECTION_WEIGHTS = tuple(k / 10 for k in range(11))


def blend(windows: Any, prediction: Any, weight: float) -> Any:
    """A hybrid's forecast with ``weight`` of its network's correction: ``base + w (f - base)``
    (``windows.base``: the classical forecast)."""
    return _blend_base(windows.base.double().numpy(), prediction, weight)


def _blend_base(base: Any, prediction: Any, weight: float) -> Any:
    import numpy as np

    base = np.asarray(base, dtype=np.float64)
    return base + weight * (np.asarray(prediction, dtype=np.float64) - base)


def _run_name(fusion: str, seed: int, hybrid: bool, refit: bool) -> str:
    """A run's folder under ``out/runs``: ``zoph-knight-seed0``, ``zoph-knight-hybrid-seed0-refit``."""
    return f"{fusion}{'-hybrid' if hybrid else ''}-seed{seed}{'-refit' if refit else ''}"


def apply_refits(runs: list[dict[str, Any]], series: Series, test: Any) -> list[dict[str, Any]]:
    """The network runs with their refitted models' test forecasts in place of their own: each
    refit (``train_one(..., refit=True)``) replaces the ``test`` errors and forecast of the
    run with the same name and seed, a hybrid's blended with the correction share that run
    chose on validation; the run's own test errors move to ``test_without_refit``.  ``test``:
    the test windows (for the truth)."""
    import numpy as np

    refits = {(r["name"], r["seed"]): r for r in runs if r.get("refit")}
    target = truth(series, test)
    out = []
    for run in runs:
        if run.get("refit"):
            continue
        fit = refits.pop((run["name"], run["seed"]), None)
        if fit is None:
            out.append(run)
            continue
        prediction = np.asarray(fit["test_forecast"], dtype=np.float64)
        if run.get("correction_weight") is not None:
            prediction = _blend_base(fit["test_base"], prediction, run["correction_weight"])
        out.append(run | {
            "test": errors(prediction, target), "test_forecast": prediction.tolist(), "test_without_refit": run["test"],
            "refit_seconds": fit["seconds"], "refit_windows": fit["windows"],
        })
    if refits:
        raise ValueError(f"apply_refits: refits without their model trained on the training windows: {sorted(refits)}")
    return out


def correction_weight(prediction: Any, windows: Any, series: Series) -> tuple[float, dict[str, Any]]:
    """The weight in :data:`CORRECTION_WEIGHTS` whose :func:`blend` has the lowest MAE on the
    hybrid's validation ``windows`` (0: the classical forecast alone, 1: the network's), and
    those errors."""
    target = truth(series, windows)
    scored = {w: errors(blend(windows, prediction, w), target) for w in CORRECTION_WEIGHTS}
    best = min(CORRECTION_WEIGHTS, key=lambda w: scored[w]["mae"])
    return best, scored[best]


def hybrid_data(data: DataConfig, base: dict[str, Any], refit: bool = False) -> Prepared:
    """The hybrid's windows: ``base`` holds a classical forecast ``(N, H)`` per split, made at
    each origin without look-ahead; the targets become its errors and the decoder reads it
    (:func:`~rnnfuse.app.windows.with_base`).  With ``base["dhr"]`` (DHR's fitted details) the
    encoders read the series less DHR's fitted seasonal terms and the decoder reads the base
    forecast less them too (:func:`~rnnfuse.app.windows.deseasonalised`,
    :func:`~rnnfuse.app.windows.deseasonalised_forecast`): the fit before validation for the
    training and validation windows, the one before test for the test windows.  Training
    origins where the base has no forecast (too little history) are left out.

    ``refit``: the training windows are every window whose targets lie before the test stretch
    (:func:`~rnnfuse.app.windows.prepare`), their base ``base["refit"]`` and their seasonal
    terms from the classical fit before the test stretch, as the training windows' come from
    the fit before validation; validation (then seen in training: the epoch report only) and
    test windows are built as without ``refit``."""
    import numpy as np
    import torch

    from .windows import with_base

    plain = prepare(load_data(data), data, refit=refit)
    sources = _base_sources(refit)
    windows = {}
    for split, (encoders, decoder_input) in _hybrid_inputs(plain, data, base, refit).items():
        windows[split] = with_base(encoders, base[sources[split]], None if decoder_input is None else [decoder_input])
    known = np.isfinite(np.asarray(base[sources["train"]])).all(axis=1)
    windows["train"] = windows["train"].subset(torch.from_numpy(np.flatnonzero(known)))
    return replace(plain, train=windows["train"], val=windows["val"], test=windows["test"])


def _base_sources(refit: bool) -> dict[str, str]:
    """Which of the base's forecasts each split of the hybrid's windows reads."""
    return {"train": "refit" if refit else "train", "val": "val", "test": "test"}


def _hybrid_inputs(plain: Prepared, data: DataConfig, base: dict[str, Any], refit: bool = False) -> dict[str, tuple[Any, Any]]:
    """Per split, the windows whose encoder inputs the hybrid reads and its decoder's base input
    (``None``: the default, the base relative to the last value); see :func:`hybrid_data`.  The
    deseasonalised inputs are scaled like the plain ones, on the training windows only."""
    import numpy as np

    from .baselines import seasonal_part
    from .windows import deseasonalised, deseasonalised_forecast, fit_scale

    dhr = base.get("dhr")
    if dhr is None:
        return {split: (getattr(plain, split), None) for split in ("train", "val", "test")}
    n = len(plain.series) + data.horizon  # the seasonal terms reach the last target
    before_val = seasonal_part(n, dhr["period"], dhr["K"], dhr["val_params"])
    before_test = seasonal_part(n, dhr["period"], dhr["K"], dhr["params"])
    train_seasonal = before_test if refit else before_val
    series = plain.series
    scale = fit_scale(replace(series, values=series.values - train_seasonal[: len(series)]), plain.train.origins.numpy(), data.horizon)
    sources = _base_sources(refit)
    out = {}
    for split, seasonal in (("train", train_seasonal), ("val", before_val), ("test", before_test)):
        windows = getattr(plain, split)
        forecast = np.nan_to_num(np.asarray(base[sources[split]], dtype=np.float64))  # NaN rows: left out of training
        out[split] = (
            deseasonalised(windows, series, seasonal[: len(series)], data, scale, plain.covariate_norm),
            deseasonalised_forecast(windows, forecast, seasonal, scale),
        )
    return out


def _describe_decoder(model: Any) -> str:
    dec = model.decoder
    sizes = ",".join(str(s) for s in dec.hidden_sizes)
    how = "bridge" if model.bridge is not None else "direct"
    return f"{dec.layers[0].kind.upper()} {sizes} ({how})"


def _star(task: tuple | dict[str, Any]) -> dict[str, Any]:
    """Run one task in a worker: ``("baseline", ...)`` (:func:`_classical_one`), or a network's
    keyword arguments for :func:`train_one`."""
    if isinstance(task, tuple):
        return _classical_one(*task[1:])
    return train_one(**{k: v for k, v in task.items() if k != "then_refit"})


def _classical_one(name: str, data: DataConfig, period: float, train: bool = False, refit: bool = False) -> dict[str, Any]:
    """One classical baseline on the demo's validation and test windows (in a worker);
    ``train``/``refit``: also at the training origins, with the parameters fitted before
    validation, and at every origin before the test stretch, with those fitted before it (a
    part of the hybrids' base)."""
    from .baselines import classical_baselines

    prepared = prepare(load_data(data), data)
    splits = _baseline_splits(prepared)
    if train:
        splits["train"] = (prepared.splits.val_start, prepared.train.origins.numpy(), None)
    if refit:
        splits["refit"] = (prepared.splits.test_start, prepared.splits.before_test, None)
    result = classical_baselines(
        _observed(prepared.series), splits, data.horizon, period, names=[name], covariates=prepared.series.covariates,
    )[name]
    result["forecasts"] = {k: v.tolist() for k, v in result["forecasts"].items()}
    return {"baseline": name, **result}


def _observed(series: Series) -> Any:
    import numpy as np

    return np.where(series.observed, series.values, np.nan)


def _baseline_splits(prepared: Prepared) -> dict[str, tuple[int, Any, Any]]:
    sp = prepared.splits
    return {
        split: (start, getattr(prepared, split).origins.numpy(), truth(prepared.series, getattr(prepared, split)))
        for split, start in (("val", sp.val_start), ("test", sp.test_start))
    }


def true_period(series: Series, data: DataConfig, given: float | None = None) -> float:
    """The seasonal period in steps: ``given`` (``--period``, may be fractional; 1: none), else
    the one the dates' calendar suggests (:meth:`~rnnfuse.app.timegrid.TimeGrid.natural_period`:
    daily 365.2425, weekly 52.18, monthly 12, quarterly 4, yearly 1 = non-seasonal, hourly 24,
    half-hourly 48), else ``data.period``."""
    if given is not None:
        return float(given)
    found = series.grid.natural_period() if series.time_kind == "date" and series.grid is not None else None
    return float(data.period) if found is None else found


def parse_period(text: str | None) -> float | None:
    """``--period``: a finite number >= 2 of steps per season, or ``1`` / ``none`` for a
    non-seasonal series (returned as 1.0); ``None`` when not given; ValueError otherwise."""
    import math

    if text is None:
        return None
    if text.strip().lower() == "none":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of steps such as 52 or 52.18, or 1 or none for a non-seasonal series, "
                         f"got {text!r}") from None
    if not math.isfinite(value) or value < 1 or 1 < value < 2:
        raise ValueError(f"expected a finite number of steps >= 2 such as 52 or 52.18, or 1 or none for a "
                         f"non-seasonal series, got {text!r}")
    return value


def demo_data(given: dict[str, Any], period: float | None) -> tuple[DataConfig, float | None]:
    """The demo's data configuration: the flags in ``given`` (``DataConfig`` field names);
    window sizes not given are derived (:func:`_seasonal_windows`, :func:`_nonseasonal_windows`).
    ``period`` ``None``: found from the dates (:func:`true_period`); a CSV without dates
    (numbers or no time column) then needs ``--period``, which is refused here (``ConfigError``)
    rather than guessed.  The embedded series comes with its covariates (``nino12``) unless
    ``covariates`` is given; a CSV with none unless given."""
    base = DataConfig()
    if "csv" in given:
        given = {"time_column": None, **given}
    else:
        given = {"covariates": EMBEDDED_COVARIATES, **given}
    probe = replace(base, **{k: v for k, v in given.items() if k in ("csv", "column", "time_column")})
    series = None
    if "csv" in given and (period is None or round(period) <= 1):
        series = load_series(probe.csv, probe.column, probe.time_column)
        if period is None:
            period = _period_from_dates(series, probe)
    if period is None:
        return replace(base, **given), None
    p = max(1, round(period))
    if p == 1:
        length = len(series) if series is not None else len(load_series(None, base.column, base.time_column))
        scaled = _nonseasonal_windows(length, given.get("horizon"))
    else:
        scaled = _seasonal_windows(p, given.get("horizon"))
    return replace(base, **{**scaled, **given}), float(period)


def _period_from_dates(series: Series, probe: DataConfig) -> float:
    """The period the dates of ``series`` suggest; ``ConfigError`` naming ``--period`` when it
    has none (numbers or row order: no calendar to read a season from)."""
    if series.time_kind == "date" and series.grid is not None:
        return true_period(series, probe)
    what = f"numbers in its time column {probe.time_column!r}" if series.time_kind == "number" else "no time column"
    raise ConfigError(
        f"--period: {series.source} has {what}, so the seasonal period cannot be read from dates; expected "
        f"--period N (steps per season: 12 for monthly rows, 4 for quarterly, 7 for daily with a weekly cycle, 24 for "
        f"hourly) or --period 1 (none, e.g. yearly rows)"
    )


def _seasonal_windows(p: int, horizon: int | None) -> dict[str, int]:
    """Window sizes for a period of ``p`` > 1 steps (the CO2 defaults at 52): local P/2, blocks
    of P/13, 4 periods of global history, horizon P/4 (unless given), 4 periods each of
    validation and test, and at least twice the horizon."""
    block = max(1, round(p / 13))
    blocks = max(4, round(4 * p / block))
    h = horizon if horizon is not None else max(1, round(p / 4))
    stretch = max(8, round(4 * p), 2 * h)
    return {
        "period": p, "local_steps": max(4, round(p / 2)), "block": block, "global_blocks": blocks,
        "min_global_blocks": max(1, blocks // 4), "horizon": h, "val_steps": stretch, "test_steps": stretch,
    }


def _nonseasonal_windows(length: int, horizon: int | None) -> dict[str, int]:
    """Window sizes for a non-seasonal series (period 1) of ``length`` rows, from its length and
    the horizon: horizon ``length // 20`` between 1 and 12 (unless given), validation and test
    15 % of the rows each (at least the horizon), local ``2 x horizon`` steps (at least 4),
    global history 4 times that in 16 blocks (at least 4 of them)."""
    h = horizon if horizon is not None else min(max(1, length // 20), 12)
    local = max(4, 2 * h)
    block = max(1, round(local / 4))
    stretch = max(h, round(0.15 * length))
    return {
        "period": 1, "local_steps": local, "block": block, "global_blocks": 16, "min_global_blocks": 4,
        "horizon": h, "val_steps": stretch, "test_steps": stretch,
    }


def run_demo(
    out: Path, *, budget: Budget = Budget(), seed: int = 0, seeds: int = DEMO_SEEDS, jobs: int = 2,
    fusions: Sequence[str] = DEMO_FUSIONS, log: Callable[[str], None] = print,
    data: DataConfig | None = None, period: float | None = None, baselines: Sequence[str] | None = None,
    hybrids: Sequence[str] = DEMO_HYBRIDS, refit: str = DEMO_REFIT,
) -> dict[str, Any]:
    """Train every fusion with ``seeds`` seeds from ``seed`` and fit the classical baselines
    (side by side in ``jobs`` processes); write the table and figures.  ``data``: the series
    and windows (default: the embedded CO2 series); ``period``: the true seasonal period in
    steps, may be fractional (default: from the dates, see :func:`true_period`); ``refit``:
    which networks are refitted before the test stretch (:data:`REFIT_CHOICES`; see the
    module's docstring)."""
    from .baselines import BASELINE_NAMES

    if refit not in REFIT_CHOICES:
        raise ValueError(f"run_demo: refit: expected one of {list(REFIT_CHOICES)}, got {refit!r}")
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if data is None:
        data, period = demo_data({}, period)
    prepared = prepare(load_data(data), data)
    period = true_period(prepared.series, data, period)
    log(_data_summary(prepared) + f"; seasonal period {period:.4g} steps")
    names = BASELINE_NAMES if baselines is None else tuple(baselines)
    if period <= 2 and "DHR" in names:  # no season for its Fourier terms: left out, with its combinations
        names = tuple(n for n in names if n != "DHR")
        log("DHR left out: a seasonal period of 2 steps or less has no Fourier terms to fit")
    if not names:
        hybrids = ()
    refit_hybrids = refit != "none" and bool(hybrids)
    # every classical model is a candidate for the hybrids' base (chosen on validation once all
    # are fitted): each also forecasts at the hybrids' training (and refit) origins
    classical_tasks = [("baseline", name, data, period, bool(hybrids), refit_hybrids) for name in names]
    nets = _network_tasks(fusions, range(seed, seed + seeds), budget, str(out), data, refit == "all")
    later = _network_tasks(hybrids, range(seed, seed + seeds), budget, str(out), data, refit_hybrids)
    chosen: dict[str, Any] = {}
    done = _run_all([*classical_tasks, *nets], jobs, log, later, names, truth(prepared.series, prepared.val), chosen)
    base_name = chosen.get("name", "")
    runs = apply_refits([r for r in done if "baseline" not in r], prepared.series, prepared.test)
    classical = {r["baseline"]: r for r in done if "baseline" in r}
    for c in classical.values():
        c["forecasts"].pop("train", None)
        c["forecasts"].pop("refit", None)
    labels = [*fusions, *(f"{f} + {base_name}" for f in hybrids)]
    models = [_aggregate([r for r in runs if r["name"] == f]) for f in labels if any(r["name"] == f for r in runs)]
    combinations = _combinations(classical)
    classical |= combinations
    shown = [*names, *combinations]
    results = _assemble(prepared, models, budget, list(range(seed, seed + seeds)), jobs, data, period, [classical[n] for n in shown])
    results["hybrid_base"] = base_name if hybrids else None
    results["refit"] = refit
    results["refit_windows"] = len(prepared.splits.before_test)
    results |= selection_summary(prepared, results, max(1, round(period)))
    table = format_table(results)
    write_outputs(out, prepared, results, table)
    results["wall_seconds"] = time.perf_counter() - began
    (out / "results.json").write_text(json.dumps(slim_results(results), indent=1) + "\n")
    log(format_table(results, protocol=False))
    log(f"wall time {results['wall_seconds']:.1f} s with {jobs} worker process(es); the protocol, figures and results "
        f"in {out} (results.md, forecasts.csv, results.json)")
    return results


def _network_tasks(
    fusions: Sequence[str], seeds: Sequence[int], budget: Budget, out: str, data: DataConfig, refit: bool,
) -> list[dict[str, Any]]:
    """:func:`train_one`'s arguments for every fusion and seed (``then_refit``: a refit before
    the test stretch follows once the run has found its best step, see :func:`_refit_task`);
    longest first, which packs the workers best."""
    tasks = [
        {"fusion": f, "budget": budget, "seed": s, "out": out, "data": data, "refit": False, "then_refit": refit}
        for s in seeds for f in fusions
    ]
    return sorted(tasks, key=lambda t: -_COST.get(t["fusion"], 3))


def _run_label(fusion: str, base: dict[str, Any] | None) -> str:
    """The name a network run reports: the fusion, ``"<fusion> + <base>"`` for a hybrid."""
    return fusion if base is None else f"{fusion} + {base['name']}"


def _refit_task(task: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The refit of ``task`` whose run on the training windows was ``run``: as many optimizer
    steps as its best validation took (all of them when it never improved), no early stop."""
    steps = max(1, run.get("best_step") or run.get("steps") or 1)
    return task | {"refit": True, "then_refit": False, "budget": Budget(steps=steps, patience=None)}


def hybrid_base(
    classical: dict[str, dict[str, Any]], val_truth: Any, names: Sequence[str] | None = None,
) -> tuple[str, tuple[str, ...], dict[str, Any]]:
    """The classical forecast the hybrids correct, the baselines it is made of, and the choice:
    among the fitted ``classical`` results (``names``' order) and the combinations of them in
    :data:`~rnnfuse.app.baselines.COMBINATIONS`, the one with the lowest validation MAE against
    ``val_truth`` (ties: fewer parts, then the earlier one; see
    :func:`~rnnfuse.app.baselines.choose_base`); ``("", (), ...)`` if none was fitted."""
    from .baselines import choose_base

    return choose_base(classical, val_truth, names)


def _combinations(classical: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The forecast combinations whose parts were fitted (or failed), as classical results."""
    from .baselines import COMBINATIONS, combine

    return {
        name: {"baseline": name, **combine([classical[p] for p in parts])}
        for name, parts in COMBINATIONS.items() if all(p in classical for p in parts)
    }


def _run_all(
    tasks: Sequence[tuple | dict[str, Any]], jobs: int, log: Callable[[str], None], hybrids: Sequence[dict[str, Any]] = (),
    names: Sequence[str] = (), val_truth: Any = None, chosen: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``tasks``; the ``hybrids`` (network tasks) start once every classical baseline of
    ``names`` has arrived: their base, the one among them and their combinations with the lowest
    validation MAE against ``val_truth`` (:func:`hybrid_base`), fitted once and shared by every
    seed, is added to their arguments (no hybrids if none was fitted).  ``chosen`` receives the
    base's ``name``, ``parts`` and ``choice`` (every candidate's validation MAE), which also goes
    into its parts' ``details["hybrid_base"]``.  The hybrids' encoders read the series less
    DHR's seasonal terms whenever DHR was fitted, whatever the base.  A network task with ``then_refit``
    is followed by its refit (:func:`_refit_task`) once it has run."""
    from .baselines import combine

    network = [t for t in [*tasks, *hybrids] if isinstance(t, dict)]
    total = len(tasks) + len(hybrids) + sum(bool(t.get("then_refit")) for t in network)
    runs: list[dict[str, Any]] = []
    parts: dict[str, dict[str, Any]] = {}
    chosen = {} if chosen is None else chosen
    refitted = {(t["fusion"], t["seed"]) for t in tasks if isinstance(t, dict) and t["then_refit"]}
    planned: dict[tuple[str, int], dict[str, Any]] = {}  # the tasks whose refit follows them

    def plan(new: list[tuple | dict[str, Any]]) -> list[tuple | dict[str, Any]]:
        for task in new:
            if isinstance(task, dict) and task.get("then_refit"):
                planned[(_run_label(task["fusion"], task.get("base")), task["seed"])] = task
        return new

    def record(run: dict[str, Any]) -> list[tuple | dict[str, Any]]:
        runs.append(run)
        log(_done_line(run, len(runs), total, refitted))
        task = planned.pop((run.get("name", ""), run.get("seed", -1)), None) if not run.get("refit") else None
        if task is not None:
            return [_refit_task(task, run)]
        if run.get("baseline") not in names or not hybrids:
            return []
        parts[run["baseline"]] = run
        if len(parts) < len(names):
            return []
        name, base_parts, choice = hybrid_base(parts, val_truth, names)
        chosen.update(name=name, parts=base_parts, choice=choice)
        if not base_parts:
            log("no classical baseline was fitted: the hybrids are not trained")
            return []
        log(f"the hybrids' base, chosen on validation: {name} (val MAE {choice['val_mae'][name]:.4g})")
        refitted.update((f"{t['fusion']} + {name}", t["seed"]) for t in hybrids if t["then_refit"])
        for p in base_parts:
            parts[p]["details"]["hybrid_base"] = choice
        base = combine([parts[p] for p in base_parts])["forecasts"]
        base = {k: v.tolist() for k, v in base.items()} | {"name": name}
        if "DHR" in parts and parts["DHR"]["error"] is None:  # its seasonal component: the hybrids' encoders read the series without it
            base["dhr"] = parts["DHR"]["details"]
        return plan([h | {"base": base} for h in hybrids])

    plan(list(tasks))
    if jobs <= 1:
        queue = list(tasks)
        while queue:
            queue += record(_star(queue.pop(0)))
        return runs
    # one BLAS/OpenMP thread per worker (statsmodels' filters otherwise oversubscribe the cores);
    # read by the spawned processes when they load NumPy
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        import queue as queues

        finished: queues.Queue = queues.Queue()
        with multiprocessing.get_context("spawn").Pool(jobs, **pool_options()) as pool:  # workers end with us
            submit = lambda t: pool.apply_async(_star, (t,), callback=finished.put, error_callback=finished.put)  # noqa: E731
            pending = len(tasks)
            for task in tasks:
                submit(task)
            while pending:
                item = finished.get()
                pending -= 1
                if isinstance(item, BaseException):
                    raise item
                for task in record(item):
                    submit(task)
                    pending += 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return runs


def _done_line(run: dict[str, Any], done: int, total: int, refitted: Collection[tuple[str, int]] = ()) -> str:
    """One line of progress; ``refitted``: the (name, seed) of the runs refitted before test."""
    head = f"[{done}/{total}] "
    if "baseline" in run:
        what = f"failed: {run['error']}" if run["error"] else "fitted"
        return f"{head}{run['baseline']:<12} (classical) {what}  ({run['seconds']:.1f} s)"
    if run.get("refit"):
        return (f"{head}{run['name']:<12} seed {run['seed']}  refitted on the {run['windows']} windows before the test "
                f"stretch  ({run['seconds']:.1f} s, {run['epochs']} epochs)")
    later = " (before its refit)" if (run["name"], run["seed"]) in refitted else ""
    return (
        f"{head}{run['name']:<12} seed {run['seed']}  val MAE {run['val']['mae']:.3f}  "
        f"test MAE {run['test']['mae']:.3f}{later}  ({run['seconds']:.1f} s, {run['steps']} steps, best at "
        f"{run['best_step']})"
    )


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One fusion's runs (one per seed) → means, spread, and the first seed's curves/forecasts."""
    runs = sorted(runs, key=lambda r: r["seed"])
    mean = lambda key, split: statistics.fmean(r[split][key] for r in runs)  # noqa: E731
    test_maes = [r["test"]["mae"] for r in runs]
    steps = len(runs[0]["test"]["mae_by_step"])
    return {
        "name": runs[0]["name"], "decoder": runs[0]["decoder"], "params": runs[0]["params"],
        "seconds": statistics.fmean(r["seconds"] + r.get("refit_seconds", 0.0) for r in runs), "seeds": [r["seed"] for r in runs],
        "val": {"mae": mean("mae", "val"), "rmse": mean("rmse", "val")},
        "test": {
            "mae": mean("mae", "test"), "rmse": mean("rmse", "test"),
            "mae_std": statistics.pstdev(test_maes), "mae_per_seed": test_maes,
            "mae_by_step": [statistics.fmean(r["test"]["mae_by_step"][h] for r in runs) for h in range(steps)],
        },
        "history": runs[0]["history"], "test_forecast": runs[0]["test_forecast"], "refit": "test_without_refit" in runs[0],
        "val_forecast_mean": _mean_forecast(r["val_forecast"] for r in runs),
        "test_forecast_mean": _mean_forecast(r["test_forecast"] for r in runs),
    } | ({"correction_weights": [r["correction_weight"] for r in runs]} if runs[0].get("correction_weight") is not None else {}) | _refit_summary(runs)


def _mean_forecast(forecasts: Any) -> list[list[float]]:
    """The mean over seeds of their forecasts ``(N, H)``."""
    import numpy as np

    return np.mean([np.asarray(f, dtype=np.float64) for f in forecasts], axis=0).tolist()


def _refit_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """For refitted runs: the test errors their training-windows models had (mean, sd, per
    seed), and the refits' seconds and training windows; nothing for other runs."""
    if "test_without_refit" not in runs[0]:
        return {}
    maes = [r["test_without_refit"]["mae"] for r in runs]
    return {
        "test_without_refit": {"mae": statistics.fmean(maes), "mae_std": statistics.pstdev(maes), "mae_per_seed": maes,
                               "rmse": statistics.fmean(r["test_without_refit"]["rmse"] for r in runs)},
        "refit_seconds": statistics.fmean(r["refit_seconds"] for r in runs), "refit_windows": runs[0]["refit_windows"],
    }


def _data_summary(prepared: Prepared) -> str:
    s, sp = prepared.series, prepared.splits
    return (
        f"data: {s.describe()}\n"
        f"windows: {len(sp.train)} train, {len(sp.val)} validation ({s.labels[sp.val_start]} to "
        f"{s.labels[sp.test_start - 1]}), {len(sp.test)} test ({s.labels[sp.test_start]} to {s.labels[-1]}); "
        f"scale {prepared.scale:.3f} (series units) from the training windows"
    )


def _assemble(
    prepared: Prepared, models: list[dict[str, Any]], budget: Budget, seeds: list[int], jobs: int,
    data: DataConfig, period: float, classical: list[dict[str, Any]],
) -> dict[str, Any]:
    baselines: dict[str, Any] = {}
    for name, fn in (("seasonal naive", seasonal_naive), ("seasonal naive + drift", seasonal_naive_drift)):
        baselines[name] = {
            split: errors(fn(prepared.series, getattr(prepared, split), data.period), truth(prepared.series, getattr(prepared, split)))
            for split in ("val", "test")
        }
        baselines[name].update({"kind": "naive", "seconds": 0.0, "error": None})
    for c in classical:
        entry: dict[str, Any] = {"kind": "classical", "seconds": c["seconds"], "error": c["error"], "details": c["details"]}
        if c["error"] is None:
            for split in ("val", "test"):
                entry[split] = errors(c["forecasts"][split], truth(prepared.series, getattr(prepared, split)))
            entry["test_forecast"] = c["forecasts"]["test"]
            entry["val_forecast"] = c["forecasts"]["val"]
        baselines[_label(c)] = entry
    ranked = sorted(models, key=lambda m: (correction_unused(m), m["test"]["mae"]))  # a hybrid without correction is no network
    fitted = [n for n, b in baselines.items() if b["kind"] == "classical" and b["error"] is None]
    best_classical = min(fitted, key=lambda n: baselines[n]["test"]["mae"]) if fitted else None
    return {
        "data": _data_summary(prepared), "budget": budget.describe(), "seeds": seeds, "jobs": jobs, "threads_per_job": 1,
        "models": models, "baselines": baselines, "winner": ranked[0]["name"],
        "runner_up": ranked[1]["name"] if len(ranked) > 1 else None, "cpu_count": os.cpu_count(),
        "period": period, "best_classical": best_classical, "covariates": list(data.covariates),
    }


def _label(result: dict[str, Any]) -> str:
    name, d = result["baseline"], result["details"]
    if name == "DHR" and "K" in d:
        regressors = " + covariate regressors" if d.get("covariates") else ""
        return f"DHR (trend + K={d['K']} Fourier of P={d['period']:.2f}{regressors}, ARIMA(1,1,1) errors)"
    if name == "ETS (A,A,A)" and "test" in d:
        return f"ETS (A,A,A) Holt-Winters, m={d['test']['season']}"
    if name == "SARIMA airline" and "test" in d:
        m = d["test"]["season"]
        return f"SARIMA(0,1,1)(0,1,1){m}" + (" + covariate regressors" if d["test"].get("covariates") else "")
    if "parts" in d:
        return f"{name} (classical combination)"
    return name


