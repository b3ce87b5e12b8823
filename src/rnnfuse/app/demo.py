"""``rnnfuse demo``: forecasters with every fusion on the embedded CO2 series, a table and plots.

Every model is a real training run (:class:`~rnnfuse.app.training.Trainer`, one thread);
each fusion is trained with ``seeds`` seeds, because the differences between fusions are of
the size of the differences between seeds, and the table gives the mean and the spread.
``jobs`` runs train side by side in separate processes; results do not depend on ``jobs``.
Each run's checkpoints go to ``out/runs/<fusion>-seed<k>`` (usable with ``rnnfuse predict
--model``), the table to ``out/results.md`` and ``out/results.json``, figures to
``out/*.png``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .config import DataConfig, ModelConfig, OptimConfig, RunConfig
from .data import load_embedded
from .metrics import errors, forecast, seasonal_naive, seasonal_naive_drift, truth
from .model import count_parameters
from .windows import Prepared, prepare

__all__ = ["DEMO_FUSIONS", "DEMO_EPOCHS", "DEMO_SEEDS", "run_demo", "train_one", "format_table", "demo_config"]

DEMO_FUSIONS = ("local", "global", "concat", "sum", "mean", "bridge", "zoph-knight", "child-sum", "gated")
DEMO_EPOCHS = 8
DEMO_SEEDS = 3
_COST = {"concat": 5, "bridge": 4, "child-sum": 4, "gated": 4, "zoph-knight": 4, "sum": 3, "mean": 3, "max": 3, "global": 2, "local": 1}


def demo_config(fusion: str, epochs: int, seed: int) -> RunConfig:
    """The configuration of one demo model (defaults of ``rnnfuse train`` otherwise)."""
    return RunConfig(DataConfig(), ModelConfig(fusion=fusion), OptimConfig(epochs=epochs), seed=seed, threads=1)


def train_one(fusion: str, epochs: int, seed: int, out: str | None) -> dict[str, Any]:
    """Train one demo model; return its history, errors and test forecasts (picklable)."""
    from .training import Trainer  # imported here: runs in a fresh worker process

    run_dir = None if out is None else Path(out) / "runs" / f"{fusion}-seed{seed}"
    if run_dir is not None and run_dir.exists():
        shutil.rmtree(run_dir)
    lines: list[str] = []
    trainer = Trainer(demo_config(fusion, epochs, seed), run_dir, log=lines.append, show_progress=False)
    trainer.start()
    began = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - began
    test_forecast = forecast(trainer.model, trainer.data.test)
    return {
        "name": fusion, "seed": seed,
        "decoder": _describe_decoder(trainer.model),
        "params": count_parameters(trainer.model),
        "seconds": seconds,
        "history": trainer.progress.history,
        "val": trainer.evaluate("val"),
        "test": errors(test_forecast, truth(trainer.data.series, trainer.data.test)),
        "test_forecast": test_forecast.tolist(),
        "log": lines,
    }


def _describe_decoder(model: Any) -> str:
    dec = model.decoder
    sizes = ",".join(str(s) for s in dec.hidden_sizes)
    how = "bridge" if model.bridge is not None else "direct"
    return f"{dec.layers[0].kind.upper()} {sizes} ({how})"


def _star(args: tuple[str, int, int, str | None]) -> dict[str, Any]:
    return train_one(*args)


def run_demo(
    out: Path, *, epochs: int = DEMO_EPOCHS, seed: int = 0, seeds: int = DEMO_SEEDS, jobs: int = 2,
    fusions: Sequence[str] = DEMO_FUSIONS, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every fusion with ``seeds`` seeds from ``seed``; write the table and figures."""
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare(load_embedded(), DataConfig())
    log(_data_summary(prepared))
    tasks = [(f, epochs, s, str(out)) for s in range(seed, seed + seeds) for f in fusions]
    tasks.sort(key=lambda t: -_COST.get(t[0], 3))  # longest first packs the workers best
    runs = _run_all(tasks, jobs, log)
    models = [_aggregate([r for r in runs if r["name"] == f]) for f in fusions]
    results = _assemble(prepared, models, epochs, list(range(seed, seed + seeds)), jobs)
    table = format_table(results)
    _write_outputs(out, prepared, results, table)
    results["wall_seconds"] = time.perf_counter() - began
    (out / "results.json").write_text(json.dumps(_slim(results), indent=1) + "\n")
    log(table)
    log(f"wall time {results['wall_seconds']:.1f} s with {jobs} worker process(es); figures and results in {out}")
    return results


def _run_all(tasks: list[tuple[str, int, int, str | None]], jobs: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    if jobs <= 1:
        for run in map(_star, tasks):
            runs.append(run)
            log(_done_line(run, len(runs), len(tasks)))
        return runs
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for run in pool.imap_unordered(_star, tasks):
            runs.append(run)
            log(_done_line(run, len(runs), len(tasks)))
    return runs


def _done_line(run: dict[str, Any], done: int, total: int) -> str:
    return (
        f"[{done}/{total}] {run['name']:<12} seed {run['seed']}  val MAE {run['val']['mae']:.3f}  "
        f"test MAE {run['test']['mae']:.3f}  ({run['seconds']:.1f} s, {len(run['history'])} epochs)"
    )


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One fusion's runs (one per seed) → means, spread, and the first seed's curves/forecasts."""
    runs = sorted(runs, key=lambda r: r["seed"])
    mean = lambda key, split: statistics.fmean(r[split][key] for r in runs)  # noqa: E731
    test_maes = [r["test"]["mae"] for r in runs]
    steps = len(runs[0]["test"]["mae_by_step"])
    return {
        "name": runs[0]["name"], "decoder": runs[0]["decoder"], "params": runs[0]["params"],
        "seconds": statistics.fmean(r["seconds"] for r in runs), "seeds": [r["seed"] for r in runs],
        "val": {"mae": mean("mae", "val"), "rmse": mean("rmse", "val")},
        "test": {
            "mae": mean("mae", "test"), "rmse": mean("rmse", "test"),
            "mae_std": statistics.pstdev(test_maes), "mae_per_seed": test_maes,
            "mae_by_step": [statistics.fmean(r["test"]["mae_by_step"][h] for r in runs) for h in range(steps)],
        },
        "history": runs[0]["history"], "test_forecast": runs[0]["test_forecast"],
    }


def _data_summary(prepared: Prepared) -> str:
    s, sp = prepared.series, prepared.splits
    return (
        f"data: {s.describe()}\n"
        f"windows: {len(sp.train)} train, {len(sp.val)} validation ({s.labels[sp.val_start]} to "
        f"{s.labels[sp.test_start - 1]}), {len(sp.test)} test ({s.labels[sp.test_start]} to {s.labels[-1]}); "
        f"scale {prepared.scale:.3f} ppm from the training windows"
    )


def _assemble(prepared: Prepared, models: list[dict[str, Any]], epochs: int, seeds: list[int], jobs: int) -> dict[str, Any]:
    period = DataConfig().period
    baselines = {}
    for name, fn in (("seasonal naive", seasonal_naive), ("seasonal naive + drift", seasonal_naive_drift)):
        baselines[name] = {
            split: errors(fn(prepared.series, getattr(prepared, split), period), truth(prepared.series, getattr(prepared, split)))
            for split in ("val", "test")
        }
    ranked = sorted(models, key=lambda m: m["test"]["mae"])
    return {
        "data": _data_summary(prepared), "epochs": epochs, "seeds": seeds, "jobs": jobs, "threads_per_job": 1,
        "models": models, "baselines": baselines, "winner": ranked[0]["name"],
        "runner_up": ranked[1]["name"] if len(ranked) > 1 else None, "cpu_count": os.cpu_count(),
    }


def format_table(results: dict[str, Any]) -> str:
    """The demo's results as a Markdown table, with the winner named below it."""
    n = len(results["seeds"])
    head = f"| model | decoder (init) | params | train s | val MAE | test MAE (± sd over {n} seeds) | test RMSE |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for name, b in results["baselines"].items():
        lines.append(f"| {name} | - | - | - | {b['val']['mae']:.3f} | {b['test']['mae']:.3f} | {b['test']['rmse']:.3f} |")
    for m in results["models"]:
        t = m["test"]
        lines.append(
            f"| {m['name']} | {m['decoder']} | {m['params']:,} | {m['seconds']:.1f} | {m['val']['mae']:.3f} | "
            f"{t['mae']:.3f} ± {t['mae_std']:.3f} | {t['rmse']:.3f} |"
        )
    lines += ["", _verdict(results)]
    return "\n".join(lines)


def _verdict(results: dict[str, Any]) -> str:
    by_name = {m["name"]: m for m in results["models"]}
    best = by_name[results["winner"]]
    drift = results["baselines"]["seasonal naive + drift"]["test"]["mae"]
    text = (
        f"Winner on the held-out test stretch: **{best['name']}** (mean test MAE {best['test']['mae']:.3f} ppm "
        f"against {drift:.3f} for seasonal naive + drift)."
    )
    if results["runner_up"]:
        second = by_name[results["runner_up"]]
        gap = second["test"]["mae"] - best["test"]["mae"]
        spread = max(best["test"]["mae_std"], second["test"]["mae_std"])
        margin = "larger" if gap > spread else "smaller"
        text += f" Its lead over {second['name']} ({gap:.3f}) is {margin} than the spread between seeds ({spread:.3f})."
    seeds = results["seeds"]
    return text + f" Errors in ppm; {results['epochs']} epochs per run; seeds {seeds[0]}..{seeds[-1]}."


def _slim(results: dict[str, Any]) -> dict[str, Any]:
    return {**results, "models": [{k: v for k, v in m.items() if k != "test_forecast"} for m in results["models"]]}


def _write_outputs(out: Path, prepared: Prepared, results: dict[str, Any], table: str) -> None:
    from .plots import plot_error_by_step, plot_forecasts, plot_training_curves

    (out / "results.md").write_text(results["data"] + "\n\n" + table + "\n")
    period = DataConfig().period
    drift = seasonal_naive_drift(prepared.series, prepared.test, period)
    plot_forecasts(out / "forecasts.png", prepared, results["models"], drift)
    val_baselines = {k: v["val"]["mae"] for k, v in results["baselines"].items()}
    plot_training_curves(out / "training_curves.png", results["models"], val_baselines)
    step_baselines = {k: v["test"]["mae_by_step"] for k, v in results["baselines"].items()}
    plot_error_by_step(out / "error_by_step.png", results["models"], step_baselines)
