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
from .metrics import errors, seasonal_naive, seasonal_naive_drift, truth
from .report import correction_unused, format_table, selection_summary, slim_results, write_outputs
from .windows import Prepared, prepare
from .workers import network_tasks, run_all

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
) -> dict[str, Any]:
    """Train every fusion with ``seeds`` seeds from ``seed`` and fit the classical baselines
    (side by side in ``jobs`` processes); write the table and figures.  ``data``: the series
    and windows (default: the embedded CO2 series); ``period``: the true seasonal period in
    steps, may be fractional (default: from the dates, see :func:`true_period`); ``refit``:
    which networks are refitted before the test stretch (:data:`REFIT_CHOICES`; see the
    module's docstring)."""
    from .baselines import default_baselines

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
    names = default_baselines(period) if baselines is None else tuple(baselines)
    if (
        period <= 2 and "DHR" in names
    ):  # no season for its Fourier terms: left out, with its combinations
        names = tuple(n for n in names if n != "DHR")
        log("DHR left out: a seasonal period of 2 steps or less has no Fourier terms to fit")
    if not names:
        hybrids = ()
    refit_hybrids = refit != "none" and bool(hybrids)
    # every classical model is a candidate for the hybrids' base (chosen on validation once all
    # are fitted): each also forecasts at the hybrids' training (and refit) origins
    classical_tasks = [
        ("baseline", name, data, period, bool(hybrids), refit_hybrids) for name in names
    ]
    nets = network_tasks(fusions, range(seed, seed + seeds), budget, str(out), data, refit == "all")
    later = network_tasks(hybrids, range(seed, seed + seeds), budget, str(out), data, refit_hybrids)
    chosen: dict[str, Any] = {}
    done = run_all(
        [*classical_tasks, *nets],
        jobs,
        log,
        later,
        names,
        truth(prepared.series, prepared.val),
        chosen,
    )
    base_name = chosen.get("name", "")
    runs = apply_refits([r for r in done if "baseline" not in r], prepared.series, prepared.test)
    classical = {r["baseline"]: r for r in done if "baseline" in r}
    for c in classical.values():
        c["forecasts"].pop("train", None)
        c["forecasts"].pop("refit", None)
    labels = [*fusions, *(f"{f} + {base_name}" for f in hybrids)]
    models = [
        _aggregate([r for r in runs if r["name"] == f])
        for f in labels
        if any(r["name"] == f for r in runs)
    ]
    combinations = _combinations(classical)
    classical |= combinations
    shown = [*names, *combinations]
    results = _assemble(
        prepared,
        models,
        budget,
        list(range(seed, seed + seeds)),
        jobs,
        data,
        period,
        [classical[n] for n in shown],
    )
    results["hybrid_base"] = base_name if hybrids else None
    results["refit"] = refit
    results["refit_windows"] = len(prepared.splits.before_test)
    results |= selection_summary(prepared, results, max(1, round(period)))
    table = format_table(results)
    write_outputs(out, prepared, results, table)
    results["wall_seconds"] = time.perf_counter() - began
    (out / "results.json").write_text(json.dumps(slim_results(results), indent=1) + "\n")
    log(format_table(results, protocol=False))
    log(
        f"wall time {results['wall_seconds']:.1f} s with {jobs} worker process(es); the protocol, "
        f"figures and results in {out} (results.md, forecasts.csv, results.json)"
    )
    return results


def _combinations(classical: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The forecast combinations whose parts were fitted (or failed), as classical results."""
    from .baselines import COMBINATIONS, combine

    return {
        name: {"baseline": name, **combine([classical[p] for p in parts])}
        for name, parts in COMBINATIONS.items()
        if all(p in classical for p in parts)
    }


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One fusion's runs (one per seed) → means, spread, and the first seed's curves/forecasts."""
    runs = sorted(runs, key=lambda r: r["seed"])
    mean = lambda key, split: statistics.fmean(r[split][key] for r in runs)  # noqa: E731
    test_maes = [r["test"]["mae"] for r in runs]
    steps = len(runs[0]["test"]["mae_by_step"])
    return (
        {
            "name": runs[0]["name"],
            "decoder": runs[0]["decoder"],
            "params": runs[0]["params"],
            "seconds": statistics.fmean(r["seconds"] + r.get("refit_seconds", 0.0) for r in runs),
            "seeds": [r["seed"] for r in runs],
            "val": {"mae": mean("mae", "val"), "rmse": mean("rmse", "val")},
            "test": {
                "mae": mean("mae", "test"),
                "rmse": mean("rmse", "test"),
                "mae_std": statistics.pstdev(test_maes),
                "mae_per_seed": test_maes,
                "mae_by_step": [
                    statistics.fmean(r["test"]["mae_by_step"][h] for r in runs)
                    for h in range(steps)
                ],
            },
            "history": runs[0]["history"],
            "test_forecast": runs[0]["test_forecast"],
            "refit": "test_without_refit" in runs[0],
            "val_forecast_mean": _mean_forecast(r["val_forecast"] for r in runs),
            "test_forecast_mean": _mean_forecast(r["test_forecast"] for r in runs),
        }
        | (
            {"correction_weights": [r["correction_weight"] for r in runs]}
            if runs[0].get("correction_weight") is not None
            else {}
        )
        | _refit_summary(runs)
    )


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
        "test_without_refit": {
            "mae": statistics.fmean(maes),
            "mae_std": statistics.pstdev(maes),
            "mae_per_seed": maes,
            "rmse": statistics.fmean(r["test_without_refit"]["rmse"] for r in runs),
        },
        "refit_seconds": statistics.fmean(r["refit_seconds"] for r in runs),
        "refit_windows": runs[0]["refit_windows"],
    }


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
    models: list[dict[str, Any]],
    budget: Budget,
    seeds: list[int],
    jobs: int,
    data: DataConfig,
    period: float,
    classical: list[dict[str, Any]],
) -> dict[str, Any]:
    baselines: dict[str, Any] = {}
    for name, fn in (
        ("seasonal naive", seasonal_naive),
        ("seasonal naive + drift", seasonal_naive_drift),
    ):
        baselines[name] = {
            split: errors(
                fn(prepared.series, getattr(prepared, split), data.period),
                truth(prepared.series, getattr(prepared, split)),
            )
            for split in ("val", "test")
        }
        baselines[name].update({"kind": "naive", "seconds": 0.0, "error": None})
    for c in classical:
        entry: dict[str, Any] = {
            "kind": "classical",
            "seconds": c["seconds"],
            "error": c["error"],
            "details": c["details"],
        }
        if c["error"] is None:
            for split in ("val", "test"):
                entry[split] = errors(
                    c["forecasts"][split], truth(prepared.series, getattr(prepared, split))
                )
            entry["test_forecast"] = c["forecasts"]["test"]
            entry["val_forecast"] = c["forecasts"]["val"]
        baselines[_label(c)] = entry
    ranked = sorted(
        models, key=lambda m: (correction_unused(m), m["test"]["mae"])
    )  # a hybrid without correction is no network
    fitted = [n for n, b in baselines.items() if b["kind"] == "classical" and b["error"] is None]
    best_classical = min(fitted, key=lambda n: baselines[n]["test"]["mae"]) if fitted else None
    return {
        "data": _data_summary(prepared),
        "budget": budget.describe(),
        "seeds": seeds,
        "jobs": jobs,
        "threads_per_job": 1,
        "models": models,
        "baselines": baselines,
        "winner": ranked[0]["name"],
        "runner_up": ranked[1]["name"] if len(ranked) > 1 else None,
        "cpu_count": os.cpu_count(),
        "period": period,
        "best_classical": best_classical,
        "covariates": list(data.covariates),
        "stop_steps": data.stop_steps,
    }


def _label(result: dict[str, Any]) -> str:
    name, d = result["baseline"], result["details"]
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
