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
steps on every window whose targets lie before the test stretch
(:attr:`~rnnfuse.app.windows.Splits.before_test`), and that model forecasts the test stretch.  Its
checkpoints go to ``out/runs/<run>-refit``.

The parts: :mod:`~rnnfuse.app.demo_data` (period and windows), :mod:`~rnnfuse.app.experiment`
(one network or classical run), :mod:`~rnnfuse.app.hybrid` (the network on a classical base),
:mod:`~rnnfuse.app.workers` (the grid in worker processes), :mod:`~rnnfuse.app.report` (table,
selection, figures); this module runs them and gathers the results.

Covariates (``data.covariates``; on the embedded series ``nino12`` by default, see
:func:`~rnnfuse.app.demo_data.demo_data`): the networks' encoders read them up to each origin, and
DHR and SARIMA regress on them (:func:`~rnnfuse.app.baselines.covariate_regressors`), so that the
networks and the classical models forecast from the same information.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import DataConfig
from .data import load_data
from .demo_data import demo_data, true_period
from .experiment import (
    DEMO_PATIENCE,
    DEMO_STEPS,
    Budget,
    apply_refits,
    batch_size_for,
    demo_config,
    train_one,
)
from .metrics import seasonal_naive, seasonal_naive_drift, truth
from .report import correction_unused, format_table, selection_summary, write_outputs
from .results import (
    BaseChoice,
    BaselineRow,
    ClassicalFit,
    DemoResults,
    Errors,
    MeanErrors,
    ModelRow,
    NetworkRun,
    SeedErrors,
    UnrefittedErrors,
)
from .windows import Prepared, prepare
from .workers import network_tasks, run_all, with_choice

__all__ = [
    "DEMO_FUSIONS",
    "DEMO_STEPS",
    "DEMO_PATIENCE",
    "Budget",
    "batch_size_for",
    "DEMO_SEEDS",
    "DEMO_REFIT",
    "REFIT_CHOICES",
    "run_demo",
    "train_one",
    "format_table",
    "demo_config",
]

DEMO_FUSIONS = (
    "local",
    "global",
    "concat",
    "sum",
    "mean",
    "bridge",
    "zoph-knight",
    "child-sum",
    "gated",
)
DEMO_SEEDS = 3
DEMO_HYBRIDS = ("zoph-knight",)
# which networks are refitted before the test stretch: every one, the hybrids only (the default:
# refitting all of them would double the demo's training time), or none
REFIT_CHOICES = ("all", "hybrids", "none")
DEMO_REFIT = "hybrids"
DEMO_BUDGET = Budget()  # frozen, so one instance can be every call's default


def run_demo(
    out: Path,
    *,
    budget: Budget = DEMO_BUDGET,
    seed: int = 0,
    seeds: int = DEMO_SEEDS,
    jobs: int = 2,
    fusions: Sequence[str] = DEMO_FUSIONS,
    log: Callable[[str], None] = print,
    data: DataConfig | None = None,
    period: float | None = None,
    baselines: Sequence[str] | None = None,
    hybrids: Sequence[str] = DEMO_HYBRIDS,
    refit: str = DEMO_REFIT,
    feedback: bool = True,
) -> DemoResults:
    """Train every fusion with ``seeds`` seeds from ``seed`` and fit the classical baselines
    (side by side in ``jobs`` processes); write the table and figures.  ``data``: the series
    and windows (default: the embedded CO2 series); ``period``: the true seasonal period in
    steps, may be fractional (default: from the dates, see :func:`true_period`); ``refit``:
    which networks are refitted before the test stretch (:data:`REFIT_CHOICES`; see the
    module's docstring); ``feedback``: the decoders read their previous forecasts
    (``--no-decoder-feedback``: only the forecast steps' known inputs)."""
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
    names = _baseline_names(period, baselines, log)
    if not names:
        hybrids = ()
    refit_hybrids = refit != "none" and bool(hybrids)
    # every classical model is a candidate for the hybrids' base (chosen on validation once all
    # are fitted): each also forecasts at the hybrids' training (and refit) origins
    classical_tasks = [
        ("baseline", name, data, period, bool(hybrids), refit_hybrids) for name in names
    ]
    seed_range = range(seed, seed + seeds)
    nets = network_tasks(fusions, seed_range, budget, str(out), data, refit == "all", feedback)
    later = network_tasks(hybrids, seed_range, budget, str(out), data, refit_hybrids, feedback)
    chosen: list[BaseChoice] = []
    done = run_all(
        [*classical_tasks, *nets],
        jobs,
        log,
        later,
        names,
        truth(prepared.series, prepared.val),
        chosen,
    )
    choice = chosen[0] if chosen else None
    base_name = "" if choice is None else choice.name
    labels = [*fusions, *(f"{f} + {base_name}" for f in hybrids)]
    models = _network_rows(done, labels, prepared)
    rows = _classical_rows(done, choice, names)
    results = _assemble(prepared, models, budget, list(seed_range), jobs, data, period, rows)
    results = replace(
        results,
        hybrid_base=base_name if hybrids else None,
        refit=refit,
        refit_windows=len(prepared.splits.before_test),
    )
    results = replace(
        results, selection=selection_summary(prepared, results, max(1, round(period)))
    )
    return _write(out, prepared, results, began, log)


def _baseline_names(
    period: float, baselines: Sequence[str] | None, log: Callable[[str], None]
) -> tuple[str, ...]:
    """The classical models to fit: ``baselines``, or the defaults for ``period``; DHR left out
    (with its combinations) where the period leaves no Fourier terms to fit."""
    from .baselines import default_baselines

    names = default_baselines(period) if baselines is None else tuple(baselines)
    if period <= 2 and "DHR" in names:
        names = tuple(n for n in names if n != "DHR")
        log("DHR left out: a seasonal period of 2 steps or less has no Fourier terms to fit")
    return names


def _network_rows(done: Sequence[Any], labels: Sequence[str], prepared: Prepared) -> list[ModelRow]:
    """One row per network label that ran, its seeds aggregated, refits in place."""
    runs = apply_refits(
        [r for r in done if not isinstance(r, ClassicalFit)], prepared.series, prepared.test
    )
    return [
        _aggregate([r for r in runs if r.name == f])
        for f in labels
        if any(r.name == f for r in runs)
    ]


def _classical_rows(
    done: Sequence[Any], choice: BaseChoice | None, names: Sequence[str]
) -> list[ClassicalFit]:
    """The classical fits in the table's order (``names``, then their combinations), with the
    hybrids' base choice in the details of its parts."""
    classical = {
        r.name: _shown_forecasts(with_choice(r, choice))
        for r in done
        if isinstance(r, ClassicalFit)
    }
    combinations = _combinations(classical)
    classical |= combinations
    return [classical[n] for n in [*names, *combinations]]


def _write(
    out: Path,
    prepared: Prepared,
    results: DemoResults,
    began: float,
    log: Callable[[str], None],
) -> DemoResults:
    """Write the table, figures, forecasts and results.json; report the table and the time."""
    write_outputs(out, prepared, results, format_table(results))
    results = replace(results, wall_seconds=time.perf_counter() - began)
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=1) + "\n")
    log(format_table(results, protocol=False))
    log(
        f"wall time {results.wall_seconds:.1f} s with {results.jobs} worker process(es); the "
        f"protocol, figures and results in {out} (results.md, forecasts.csv, results.json)"
    )
    return results


def _shown_forecasts(fit: ClassicalFit) -> ClassicalFit:
    """``fit`` with the forecasts the table reads (validation, test): the hybrids' (training and
    refit origins) left out."""
    kept = {k: v for k, v in fit.forecasts.items() if k not in ("train", "refit")}
    return replace(fit, forecasts=kept)


def _combinations(classical: dict[str, ClassicalFit]) -> dict[str, ClassicalFit]:
    """The forecast combinations whose parts were fitted (or failed), as classical results."""
    from .baselines import COMBINATIONS, combine

    return {
        name: combine([classical[p] for p in parts], name)
        for name, parts in COMBINATIONS.items()
        if all(p in classical for p in parts)
    }


def _aggregate(runs: list[NetworkRun]) -> ModelRow:
    """One fusion's runs (one per seed) → means, spread, and the first seed's curves/forecasts."""
    runs = sorted(runs, key=lambda r: r.seed)
    first = runs[0]
    test_maes = [r.test.mae for r in runs]
    steps = len(first.test.mae_by_step)
    refit = _refit_summary(runs)
    return ModelRow(
        name=first.name,
        decoder=first.decoder,
        params=first.params,
        seconds=statistics.fmean(
            r.seconds + (0.0 if r.refitted is None else r.refitted.seconds) for r in runs
        ),
        seeds=[r.seed for r in runs],
        val=MeanErrors(
            statistics.fmean(r.val.mae for r in runs), statistics.fmean(r.val.rmse for r in runs)
        ),
        test=SeedErrors(
            mae=statistics.fmean(r.test.mae for r in runs),
            rmse=statistics.fmean(r.test.rmse for r in runs),
            mae_std=statistics.pstdev(test_maes),
            mae_per_seed=test_maes,
            mae_by_step=[
                statistics.fmean(r.test.mae_by_step[h] for r in runs) for h in range(steps)
            ],
        ),
        history=first.history,
        test_forecast=first.test_forecast,
        val_forecast_mean=_mean_forecast(r.val_forecast for r in runs),
        test_forecast_mean=_mean_forecast(r.test_forecast for r in runs),
        correction_weights=(
            None
            if first.correction_weight is None
            else [r.correction_weight for r in runs if r.correction_weight is not None]
        ),
        test_without_refit=None if refit is None else refit[0],
        refit_seconds=None if refit is None else refit[1],
        refit_windows=None if refit is None else refit[2],
    )


def _mean_forecast(forecasts: Any) -> list[list[float]]:
    """The mean over seeds of their forecasts ``(N, H)``."""
    import numpy as np

    return np.mean([np.asarray(f, dtype=np.float64) for f in forecasts], axis=0).tolist()


def _refit_summary(runs: list[NetworkRun]) -> tuple[UnrefittedErrors, float, int] | None:
    """For refitted runs: the test errors their training-windows models had (mean, sd, per
    seed), and the refits' mean seconds and training windows; ``None`` for other runs."""
    refits = [r.refitted for r in runs if r.refitted is not None]
    if runs[0].refitted is None or len(refits) != len(runs):
        return None
    maes = [r.test_without_refit.mae for r in refits]
    unrefitted = UnrefittedErrors(
        mae=statistics.fmean(maes),
        mae_std=statistics.pstdev(maes),
        mae_per_seed=maes,
        rmse=statistics.fmean(r.test_without_refit.rmse for r in refits),
    )
    return unrefitted, statistics.fmean(r.seconds for r in refits), refits[0].windows


def _data_summary(prepared: Prepared) -> str:
    s, sp = prepared.series, prepared.splits
    stop = (
        ""
        if sp.stop_start is None
        else (
            f"{len(sp.stop)} early-stopping ({s.labels[sp.stop_start]} to "
            f"{s.labels[sp.val_start - 1]}), "
        )
    )
    return (
        f"data: {s.describe()}\n"
        f"windows: {len(sp.train)} train, {stop}{len(sp.val)} validation ({s.labels[sp.val_start]} "
        f"to {s.labels[sp.test_start - 1]}), {len(sp.test)} test ({s.labels[sp.test_start]} to "
        f"{s.labels[-1]}); scale {prepared.scale:.3f} (series units) from the training windows"
    )


def _assemble(
    prepared: Prepared,
    models: list[ModelRow],
    budget: Budget,
    seeds: list[int],
    jobs: int,
    data: DataConfig,
    period: float,
    classical: list[ClassicalFit],
) -> DemoResults:
    baselines: dict[str, BaselineRow] = {}
    for name, fn in (
        ("seasonal naive", seasonal_naive),
        ("seasonal naive + drift", seasonal_naive_drift),
    ):
        val, test = (
            Errors.of(
                fn(prepared.series, getattr(prepared, split), data.period),
                truth(prepared.series, getattr(prepared, split)),
            )
            for split in ("val", "test")
        )
        baselines[name] = BaselineRow("naive", 0.0, None, val, test)
    for c in classical:
        baselines[_label(c)] = _classical_row(prepared, c)
    ranked = sorted(
        models, key=lambda m: (correction_unused(m), m.test.mae)
    )  # a hybrid without correction is no network
    fitted = {
        n: b.test.mae
        for n, b in baselines.items()
        if b.kind == "classical" and b.error is None and b.test is not None
    }
    best_classical = min(fitted, key=fitted.__getitem__) if fitted else None
    return DemoResults(
        data=_data_summary(prepared),
        budget=budget.describe(),
        seeds=seeds,
        jobs=jobs,
        threads_per_job=1,
        models=models,
        baselines=baselines,
        winner=ranked[0].name,
        runner_up=ranked[1].name if len(ranked) > 1 else None,
        cpu_count=os.cpu_count(),
        period=period,
        best_classical=best_classical,
        covariates=list(data.covariates),
        stop_steps=data.stop_steps,
    )


def _classical_row(prepared: Prepared, fit: ClassicalFit) -> BaselineRow:
    """A classical fit's row: its errors and forecasts on validation and test (none if failed)."""
    if fit.error is not None:
        return BaselineRow("classical", fit.seconds, fit.error, details=fit.details)
    val, test = (
        Errors.of(fit.forecasts[split], truth(prepared.series, getattr(prepared, split)))
        for split in ("val", "test")
    )
    return BaselineRow(
        "classical",
        fit.seconds,
        None,
        val,
        test,
        fit.details,
        val_forecast=fit.forecasts["val"].tolist(),
        test_forecast=fit.forecasts["test"].tolist(),
    )


def _label(result: ClassicalFit) -> str:
    name, d = result.name, result.details
    if name == "DHR" and "K" in d:
        regressors = " + covariate regressors" if d.get("covariates") else ""
        return (
            f"DHR (trend + K={d['K']} Fourier of P={d['period']:.2f}{regressors}, "
            "ARIMA(1,1,1) errors)"
        )
    if name == "ETS (A,A,A)" and "test" in d:
        return f"ETS (A,A,A) Holt-Winters, m={d['test']['season']}"
    if name == "SARIMA airline" and "test" in d:
        m = d["test"]["season"]
        return f"SARIMA(0,1,1)(0,1,1){m}" + (
            " + covariate regressors" if d["test"].get("covariates") else ""
        )
    if "parts" in d:
        return f"{name} (classical combination)"
    return name
