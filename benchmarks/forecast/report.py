"""The forecasting panel's table: rnnfuse's rows and the peers' on the same test windows.

    python benchmarks/forecast/report.py OUT [--write FILE.md] [--panel holdout] [--reselect]

For each series it reads ``OUT/rnnfuse/<name>/forecasts.csv`` and ``OUT/peers/<name>.csv``,
checks that both hold the same test origins and steps, and that the peers' SeasonalNaive equals
rnnfuse's seasonal naive (the protocol is the same or nothing here means anything), then
scores every model by its test MAE relative to seasonal naive's, and by its MASE (the MAE over
the in-sample seasonal-naive MAE of the rows before the test stretch; lag 1 without a season).
Across the panel: the geometric mean of the relative MAE, and the number of series where each
model beats seasonal naive.  NeuralForecast's seeds are averaged per series (the mean of their
MAEs, as rnnfuse's table averages its seeds').
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from panel import PANEL, PANELS, PanelSeries

PEERS = ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive", "Naive", "NHITS", "LSTM")


def _read_test(
    path: Path, model_column: str
) -> dict[str, dict[tuple[int, int], tuple[float, float]]]:
    """The test rows of a long forecasts file:
    ``{model: {(origin_row, step): (forecast, actual)}}``."""
    table: dict[str, dict[tuple[int, int], tuple[float, float]]] = defaultdict(dict)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            if row.get("split", "test") != "test":
                continue
            origin = int(row.get("origin_row", row.get("origin")))
            table[row[model_column]][(origin, int(row["step"]))] = (
                float(row["forecast"]),
                float(row["actual"]),
            )
    return table


def _mae(cells: dict[tuple[int, int], tuple[float, float]]) -> float:
    return float(np.mean([abs(f - a) for f, a in cells.values()]))


def _scale(series: PanelSeries, data: Path, test_start: int) -> float:
    with data.open() as handle:
        y = np.array([float(r["y"]) for r in csv.DictReader(handle)])[:test_start]
    lag = max(1, round(series.period))
    return float(np.abs(y[lag:] - y[:-lag]).mean())


def series_scores(
    series: PanelSeries, out: Path, reselect: bool = False
) -> dict[str, float] | None:
    """Test MAE per model for one series, or ``None`` when a side is missing.  ``reselect``: the
    selected row is chosen again from the saved candidates with today's
    :func:`rnnfuse.app.selection.select` (for runs made under an earlier rule), not read from
    ``results.json``."""
    mine_path = out / "rnnfuse" / series.name / "forecasts.csv"
    theirs_paths = sorted((out / "peers").glob(f"{series.name}.csv")) + sorted(
        (out / "peers").glob(f"{series.name}-*.csv")
    )
    if not mine_path.exists() or not theirs_paths:
        return None
    mine, theirs = _read_test(mine_path, "row"), {}
    for path in theirs_paths:  # the whole set, then parts run apart; a model's first file counts
        theirs = _read_test(path, "model") | theirs
    if "SeasonalNaive" not in theirs:
        return None
    results = json.loads((out / "rnnfuse" / series.name / "results.json").read_text())
    keys = set(mine["seasonal naive"])
    for model, cells in theirs.items():
        if set(cells) != keys:
            raise ValueError(
                f"{series.name}: {model}'s test origins and steps differ from rnnfuse's"
            )
    gap = max(abs(theirs["SeasonalNaive"][k][0] - mine["seasonal naive"][k][0]) for k in keys)
    if gap > 1e-6 * max(1.0, max(abs(v[1]) for v in mine["seasonal naive"].values())):
        raise ValueError(
            f"{series.name}: statsforecast's SeasonalNaive and rnnfuse's seasonal "
            f"naive differ by {gap}"
        )
    selected = _select_again(mine_path) if reselect else results["selected"]
    scores = {
        "seasonal naive": _mae(mine["seasonal naive"]),
        "rnnfuse selected": _mae(mine[selected]),
    }
    for name, cells in mine.items():
        kind = results["rows"].get(name, {}).get("kind")
        if kind == "network":
            scores[f"rnnfuse {name}"] = _mae(cells)
        elif kind == "hybrid":  # its base is chosen per series on validation: one row for all
            scores["rnnfuse hybrid (zoph-knight + base chosen on validation)"] = _mae(cells)
        elif kind == "ensemble":
            scores["rnnfuse ensemble of the best 3 on validation"] = _mae(cells)
    for peer in PEERS:
        seeds = [m for m in theirs if m == peer or m.startswith(peer + "-seed")]
        if seeds:
            scores[peer] = float(np.mean([_mae(theirs[m]) for m in seeds]))
    scores["_selected"] = selected  # type: ignore[assignment]
    scores["_scale"] = _scale(
        series, out / "data" / f"{series.name}.csv", min(k[0] for k in keys) + 1
    )
    return scores


def _select_again(forecasts: Path) -> str:
    from selection_check import read

    from rnnfuse.app.selection import select

    candidates, val_target, _ = read(forecasts)
    return select(candidates, val_target).name


def table(out: Path, panel: tuple[PanelSeries, ...] = PANEL, reselect: bool = False) -> str:
    """The Markdown report: per-series relative MAE and MASE, the panel's geometric means."""
    per_series = {s.name: r for s in panel if (r := series_scores(s, out, reselect)) is not None}
    models = sorted(
        {m for r in per_series.values() for m in r if not m.startswith("_")} - {"seasonal naive"},
        key=lambda m: (not m.startswith("rnnfuse"), m),
    )
    lines = [
        "| model | "
        + " | ".join(per_series)
        + " | geometric mean of relative MAE | beats seasonal naive |",
        "|---|" + "---:|" * (len(per_series) + 2),
    ]
    for model in models:
        ratios = [r[model] / r["seasonal naive"] for r in per_series.values() if model in r]
        cells = [
            f"{r[model] / r['seasonal naive']:.3f}" if model in r else "-"
            for r in per_series.values()
        ]
        geo = math.exp(np.mean(np.log(ratios)))
        partial = f" ({len(ratios)} series)" if len(ratios) < len(per_series) else ""
        wins = sum(x < 1 for x in ratios)
        lines.append(
            f"| {model} | " + " | ".join(cells) + f" | {geo:.3f}{partial} | {wins}/{len(ratios)} |"
        )
    mase = [
        "",
        "MASE (test MAE / in-sample seasonal-naive MAE before the test stretch):",
        "",
        "| model | " + " | ".join(per_series) + " |",
        "|---|" + "---:|" * len(per_series),
    ]
    for model in ["seasonal naive", *models]:
        cells = [
            f"{r[model] / r['_scale']:.3f}" if model in r else "-" for r in per_series.values()
        ]
        mase.append(f"| {model} | " + " | ".join(cells) + " |")
    chosen = [
        "",
        "Row selected on validation, per series: "
        + "; ".join(f"{n}: {r['_selected']}" for n, r in per_series.items()),
    ]
    return "\n".join(lines + mase + chosen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--write", type=Path, default=None, help="also write the table to this Markdown file"
    )
    parser.add_argument("--panel", choices=sorted(PANELS), default="benchmark")
    parser.add_argument(
        "--reselect",
        action="store_true",
        help="choose the selected row again from the saved candidates with the current rule "
        "(rnnfuse.app.selection.select) instead of reading it from results.json",
    )
    args = parser.parse_args()
    text = table(args.out, PANELS[args.panel], args.reselect)
    print(text)
    if args.write is not None:
        args.write.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
