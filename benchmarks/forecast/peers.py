"""The forecasting peers on the panel's test windows: statsforecast (AutoETS, AutoARIMA,
AutoTheta, SeasonalNaive, Naive) and NeuralForecast (NHITS, LSTM).

Runs in the peers' venv (``benchmarks/forecast/requirements-peers.txt``), not rnnfuse's:

    .peers/bin/python benchmarks/forecast/peers.py OUT [--series a,b] [--nf-seeds 1]

reads ``OUT/data/<name>.csv`` (written by ``benchmarks/forecast/panel.py``) and writes
``OUT/peers/<name>.csv``: one row per model, origin and step (``model, origin, step, forecast,
actual``; ``origin``: the 0-based row of the last observed value), the same long format as
rnnfuse's ``forecasts.csv``, and ``OUT/peers/<name>.json`` with each model's seconds.

Protocol, the same as rnnfuse's: the test origins are every row ``t`` with
``n - test_steps - 1 <= t <= n - horizon - 1``; each model is fitted once on the rows up to
the first test origin (statsforecast's and NeuralForecast's ``cross_validation(refit=False)``:
later origins reuse the fitted model on the data up to them, no look-ahead).  NeuralForecast's
models take their defaults (1,000 steps at most) but for ``input_size = max(2 * horizon, 2 *
period)``, a robust scaler and early stopping (5 checks of 50 steps without a better loss on
the last ``horizon`` windows before the test stretch); one torch thread, as rnnfuse's models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from panel import PANELS, PanelSeries

FREQ: dict[str, str | int] = {
    "M": "MS",
    "Q": "QS",
    "Y": "YS",
    "W": "7D",
    "30min": "30min",
    "int": 1,
}


def _frame(series: PanelSeries, path: Path):  # -> pandas.DataFrame
    import pandas as pd

    frame = pd.read_csv(path)
    ds = frame["ds"].astype(int) if series.frequency == "int" else pd.to_datetime(frame["ds"])
    return pd.DataFrame({"unique_id": series.name, "ds": ds, "y": frame["y"].astype(float)})


def _long(cv, models: list[str], first_origin: int):  # -> pandas.DataFrame
    """Cross-validation output → ``model, origin, step, forecast, actual`` rows."""
    import pandas as pd

    cutoffs = sorted(cv["cutoff"].unique())
    origin_of = {c: first_origin + k for k, c in enumerate(cutoffs)}
    cv = cv.sort_values(["cutoff", "ds"]).copy()
    cv["origin"] = cv["cutoff"].map(origin_of)
    cv["step"] = cv.groupby("cutoff").cumcount() + 1
    parts = [
        pd.DataFrame(
            {
                "model": m,
                "origin": cv["origin"],
                "step": cv["step"],
                "forecast": cv[m],
                "actual": cv["y"],
            }
        )
        for m in models
    ]
    return pd.concat(parts, ignore_index=True)


STATS = ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive", "Naive")
NEURAL = ("NHITS", "LSTM")


def run_stats(
    series: PanelSeries, frame, windows: int, chosen: tuple[str, ...] = STATS
) -> tuple[object, dict[str, float]]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, Naive, SeasonalNaive

    m = max(1, round(series.period))
    models = [
        AutoETS(season_length=m),
        AutoARIMA(season_length=m),
        AutoTheta(season_length=m),
        SeasonalNaive(season_length=m),
        Naive(),
    ]
    models = [model for model in models if str(model) in chosen]
    seconds: dict[str, float] = {}
    outputs = []
    for model in models:
        began = time.perf_counter()
        sf = StatsForecast(models=[model], freq=FREQ[series.frequency], n_jobs=1)
        cv = sf.cross_validation(
            df=frame, h=series.horizon, n_windows=windows, step_size=1, refit=False
        )
        seconds[str(model)] = time.perf_counter() - began
        outputs.append(cv.reset_index() if "unique_id" not in cv.columns else cv)
    merged = outputs[0]
    for other in outputs[1:]:
        merged = merged.merge(other.drop(columns=["y"]), on=["unique_id", "ds", "cutoff"])
    return merged, seconds


def run_neural(
    series: PanelSeries, frame, windows: int, seeds: int, chosen: tuple[str, ...] = NEURAL
) -> tuple[object, dict[str, float], list[str]]:
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    from neuralforecast import NeuralForecast
    from neuralforecast.models import LSTM, NHITS

    h = series.horizon
    size = max(2 * h, 2 * round(series.period))
    common = {
        "h": h,
        "input_size": size,
        "scaler_type": "robust",
        "early_stop_patience_steps": 5,
        "val_check_steps": 50,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
    }
    names: list[str] = []
    seconds: dict[str, float] = {}
    merged = None
    for kind, cls in [(k, c) for k, c in (("NHITS", NHITS), ("LSTM", LSTM)) if k in chosen]:
        for seed in range(seeds):
            alias = f"{kind}-seed{seed}"
            began = time.perf_counter()
            nf = NeuralForecast(
                models=[cls(**common, random_seed=seed, alias=alias)], freq=FREQ[series.frequency]
            )
            cv = nf.cross_validation(
                df=frame, n_windows=windows, step_size=1, val_size=h, refit=False
            )
            seconds[alias] = time.perf_counter() - began
            cv = cv.reset_index() if "unique_id" not in cv.columns else cv
            merged = (
                cv
                if merged is None
                else merged.merge(cv.drop(columns=["y"]), on=["unique_id", "ds", "cutoff"])
            )
            names.append(alias)
    return merged, seconds, names


def run_series(series: PanelSeries, out: Path, seeds: int, models: tuple[str, ...]) -> None:
    """Every model of ``models`` on one series: ``OUT/peers/<name>.csv`` for the whole set, or
    ``OUT/peers/<name>-<models>.csv`` for a part of it (``report.py`` reads both), so that a
    slow model can run in a process of its own beside the others."""
    import pandas as pd

    frame = _frame(series, out / "data" / f"{series.name}.csv")
    n = len(frame)
    test = series.stretch(n)
    windows = test - series.horizon + 1
    first_origin = n - test - 1
    parts, seconds = [], {}
    if any(m in STATS for m in models):
        stats, seconds = run_stats(series, frame, windows, models)
        stat_models = [c for c in stats.columns if c not in ("unique_id", "ds", "cutoff", "y")]
        parts.append(_long(stats, stat_models, first_origin))
    if any(m in NEURAL for m in models):
        cv, nf_seconds, names = run_neural(series, frame, windows, seeds, models)
        parts.append(_long(cv, names, first_origin))
        seconds |= nf_seconds
    folder = out / "peers"
    folder.mkdir(parents=True, exist_ok=True)
    stem = (
        series.name
        if set(models) == set(STATS + NEURAL)
        else f"{series.name}-{'-'.join(models).lower()}"
    )
    pd.concat(parts, ignore_index=True).to_csv(folder / f"{stem}.csv", index=False)
    (folder / f"{stem}.json").write_text(
        json.dumps({"seconds": seconds, "origins": windows, "rows": n}, indent=1)
    )
    print(
        f"{series.name}: {windows} test origins; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--series", default="", help="comma-separated names (default: the whole panel)"
    )
    parser.add_argument("--nf-seeds", type=int, default=1)
    parser.add_argument("--no-neural", action="store_true")
    parser.add_argument(
        "--models",
        default="",
        help=f"comma-separated, from {','.join(STATS + NEURAL)} (default: all)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1, as rnnfuse's models)"
    )
    parser.add_argument("--panel", choices=sorted(PANELS), default="benchmark")
    args = parser.parse_args()
    os.environ.setdefault("NIXTLA_ID_AS_COL", "1")
    import torch

    torch.set_num_threads(args.threads)  # as rnnfuse's demo trains each model on one thread
    chosen = set(filter(None, args.series.split(",")))
    models = tuple(m for m in STATS + NEURAL if not args.models or m in args.models.split(","))
    models = tuple(m for m in models if not (args.no_neural and m in NEURAL))
    if not models or (args.models and set(args.models.split(",")) - set(STATS + NEURAL)):
        parser.error(
            f"--models: expected names from {','.join(STATS + NEURAL)}, got {args.models!r}"
        )
    for series in PANELS[args.panel]:
        if not chosen or series.name in chosen:
            run_series(series, args.out, args.nf_seeds, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
