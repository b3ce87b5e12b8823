"""PNG figures for the demo: forecasts against the truth, training curves, error by step.

Each figure names the series (its column, and the file it came from) and its units where
known (``Series.units``: ppm for the embedded CO2; a CSV's values are unitless unless told);
the time axis shows dates for a dated series, else whole steps (or the time column's
numbers); legends sit outside the panels, clear of the lines.  The ``*_figure`` functions
return the figure (for tests); the ``plot_*`` functions write it and close it.
"""

from __future__ import annotations

from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import Series
from .results import ModelRow
from .windows import Prepared

__all__ = [
    "plot_forecasts",
    "plot_training_curves",
    "plot_error_by_step",
    "forecasts_figure",
    "training_curves_figure",
    "error_by_step_figure",
    "quantity",
]

_STYLES = ("--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)))
_EPOCH = np.datetime64("1970-01-01T00:00:00", "s")


def quantity(series: Series | None = None, units: str | None = None) -> str:
    """What the values are, for an axis: ``co2 (ppm)``, ``sst`` (a CSV column without units),
    or ``series units`` without a series; ``units`` overrides the series' own."""
    shown = units if units is not None else (series.units if series is not None else "")
    if series is None:
        return shown or "series units"
    return f"{series.column} ({shown})" if shown else series.column


def _where(series: Series) -> str:
    """The file a series came from, without its directory (``co2.csv``, ``sales.csv``)."""
    return (
        series.source.split(" ", 1)[1]
        if series.source.startswith("embedded ")
        else Path(series.source).name
    )


def _x(series: Series, index: np.ndarray) -> np.ndarray:
    """The time axis at rows ``index`` (may run past the end): dates (``datetime64``) for a
    dated series, the time column's numbers for a numbered one, else the row index."""
    index = np.asarray(index, dtype=np.int64)
    if series.grid is not None:
        times = series.grid.times(index)
    elif series.times is not None:
        times = series.times[np.clip(index, 0, len(series) - 1)]
    else:
        return index.astype(float)
    if series.time_kind != "date":
        return times
    return _EPOCH + np.rint(times * 86400.0).astype(np.int64).astype("timedelta64[s]")


def _time_axis(ax: Any, series: Series) -> None:
    """Whole-step ticks (and a label) where the time is not a date."""
    if series.time_kind != "date":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step" if series.time_kind == "index" else "time")


def forecasts_figure(
    prepared: Prepared,
    runs: list[ModelRow],
    baseline: np.ndarray,
    label: str = "seasonal naive + drift",
) -> Figure:
    """One panel per model: the truth over the test stretch and forecasts from origins one
    horizon apart (so the segments tile the stretch), with a baseline's (the best classical one)."""
    series = prepared.series
    origins = prepared.test.origins.numpy()
    horizon = prepared.test.targets.shape[1]
    chosen = np.arange(0, len(origins), horizon)
    span = np.arange(max(int(origins[0]) - horizon, 0), int(origins[-1]) + horizon + 1)
    cols = min(3, max(len(runs), 1))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(5 * cols, 3.2 * rows + 0.8),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    # the grid may have more panels than runs: the spare ones are switched off below
    for ax, run in zip(axes.flat, runs, strict=False):
        ax.plot(_x(series, span), series.values[span], color="black", lw=1.0, label="observed")
        pred = np.asarray(run.test_forecast)
        for k, i in enumerate(chosen):
            x = _x(series, int(origins[i]) + np.arange(1, horizon + 1))
            ax.plot(
                x, baseline[i], color="tab:gray", lw=0.8, ls="--", label=label if k == 0 else None
            )
            ax.plot(x, pred[i], color="tab:red", lw=1.2, label="model" if k == 0 else None)
        shown = f", seed {run.seeds[0]} shown" if run.seeds else ""
        ax.set_title(f"{run.name}: mean test MAE {run.test.mae:.3f}{shown}", fontsize=10)
        ax.grid(alpha=0.3)
        _time_axis(ax, series)
    for k, ax in enumerate(axes.flat):
        if k >= len(runs):
            ax.axis("off")
        elif k + cols >= len(runs):  # no panel below: this one shows the time axis
            ax.xaxis.set_tick_params(labelbottom=True)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=8)
    fig.supylabel(quantity(series))
    fig.suptitle(
        f"{series.column}: {horizon}-step forecasts on the held-out test stretch ({_where(series)})"
    )
    return fig


def training_curves_figure(
    runs: list[ModelRow], baselines: dict[str, float], units: str | None = None
) -> Figure:
    """Training loss (normalised units) and validation MAE per epoch for every model (its
    first seed); ``units``: the series' (default: "series units")."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), layout="constrained")
    for run in runs:
        epochs = [h["epoch"] for h in run.history]
        left.plot(epochs, [h["train_loss"] for h in run.history], marker=".", label=run.name)
        right.plot(epochs, [h["val_mae"] for h in run.history], marker=".", label=run.name)
    for (name, value), style in zip(baselines.items(), cycle(_STYLES)):  # styles repeat past 6
        right.axhline(value, color="black", ls=style, lw=1, label=name)
    left.set(
        yscale="log",
        xlabel="epoch",
        ylabel="training MSE (normalised, teacher forcing)",
        title="training loss",
    )
    right.set(
        yscale="log",
        xlabel="epoch",
        ylabel=f"validation MAE ({quantity(None, units)}, autoregressive)",
        title="validation error",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*right.get_legend_handles_labels(), loc="outside right upper", fontsize=7)
    return fig


def error_by_step_figure(
    runs: list[ModelRow], baselines: dict[str, list[float]], units: str | None = None
) -> Figure:
    """Test MAE at each forecast step for every model and baseline; ``units``: the series'."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    for run in runs:
        steps = np.arange(1, len(run.test.mae_by_step) + 1)
        ax.plot(steps, run.test.mae_by_step, marker=".", label=run.name)
    for (name, values), style in zip(baselines.items(), cycle(_STYLES)):  # styles repeat past 6
        ax.plot(
            np.arange(1, len(values) + 1),
            values,
            color="black",
            ls=style,
            lw=1.6 if style == "--" else 1.0,
            label=name,
        )
    ax.set(
        xlabel="forecast step",
        ylabel=f"test MAE ({quantity(None, units)})",
        title="error by forecast step (held-out test stretch)",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_forecasts(
    path: Path,
    prepared: Prepared,
    runs: list[ModelRow],
    baseline: np.ndarray,
    label: str = "seasonal naive + drift",
) -> None:
    """Write :func:`forecasts_figure` to ``path``."""
    _save(forecasts_figure(prepared, runs, baseline, label), path)


def plot_training_curves(
    path: Path, runs: list[ModelRow], baselines: dict[str, float], units: str | None = None
) -> None:
    """Write :func:`training_curves_figure` to ``path``."""
    _save(training_curves_figure(runs, baselines, units), path)


def plot_error_by_step(
    path: Path,
    runs: list[ModelRow],
    baselines: dict[str, list[float]],
    units: str | None = None,
) -> None:
    """Write :func:`error_by_step_figure` to ``path``."""
    _save(error_by_step_figure(runs, baselines, units), path)
