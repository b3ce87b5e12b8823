"""PNG figures for the demo: forecasts against the truth, training curves, error by step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .windows import Prepared  # noqa: E402

__all__ = ["plot_forecasts", "plot_training_curves", "plot_error_by_step"]


def _years(prepared: Prepared, index: np.ndarray) -> np.ndarray:
    """Decimal years for dated series, else the row index."""
    series = prepared.series
    if series.time_kind != "date" or series.times is None:
        return np.asarray(index, dtype=float)
    return 1970.0 + series.times[np.asarray(index)] / 365.2425


_STYLES = ("--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)))


def plot_forecasts(
    path: Path, prepared: Prepared, runs: list[dict[str, Any]], baseline: np.ndarray, label: str = "seasonal naive + drift",
) -> None:
    """One panel per model: the truth over the test stretch and forecasts from origins one
    horizon apart (so the segments tile the stretch), with a baseline's (the best classical one)."""
    origins = prepared.test.origins.numpy()
    horizon = prepared.test.targets.shape[1]
    chosen = np.arange(0, len(origins), horizon)
    span = np.arange(max(int(origins[0]) - horizon, 0), int(origins[-1]) + horizon + 1)
    cols = 3
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    for ax, run in zip(axes.flat, runs):
        ax.plot(_years(prepared, span), prepared.series.values[span], color="black", lw=1.0, label="observed")
        pred = np.asarray(run["test_forecast"])
        for k, i in enumerate(chosen):
            steps = int(origins[i]) + np.arange(1, horizon + 1)
            x = _years(prepared, steps)
            ax.plot(x, baseline[i], color="tab:gray", lw=0.8, ls="--", label=label if k == 0 else None)
            ax.plot(x, pred[i], color="tab:red", lw=1.2, label="model" if k == 0 else None)
        seed = run.get("seeds", [None])[0]
        shown = f", seed {seed} shown" if seed is not None else ""
        ax.set_title(f"{run['name']}: mean test MAE {run['test']['mae']:.3f}{shown}", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.supylabel(f"{prepared.series.column}")
    fig.suptitle(f"{horizon}-step forecasts on the held-out test stretch ({prepared.series.source})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training_curves(path: Path, runs: list[dict[str, Any]], baselines: dict[str, float]) -> None:
    """Training loss (normalised units) and validation MAE per epoch for every model (its
    first seed)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for run in runs:
        epochs = [h["epoch"] for h in run["history"]]
        left.plot(epochs, [h["train_loss"] for h in run["history"]], marker=".", label=run["name"])
        right.plot(epochs, [h["val_mae"] for h in run["history"]], marker=".", label=run["name"])
    for (name, value), style in zip(baselines.items(), _STYLES):
        right.axhline(value, color="black", ls=style, lw=1, label=name)
    left.set(yscale="log", xlabel="epoch", ylabel="training MSE (normalised, teacher forcing)", title="training loss")
    right.set(yscale="log", xlabel="epoch", ylabel="validation MAE (ppm for CO2, autoregressive)", title="validation error")
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_error_by_step(path: Path, runs: list[dict[str, Any]], baselines: dict[str, list[float]]) -> None:
    """Test MAE at each forecast step for every model and baseline."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in runs:
        steps = np.arange(1, len(run["test"]["mae_by_step"]) + 1)
        ax.plot(steps, run["test"]["mae_by_step"], marker=".", label=run["name"])
    for (name, values), style in zip(baselines.items(), _STYLES):
        ax.plot(np.arange(1, len(values) + 1), values, color="black", ls=style, lw=1.6 if style == "--" else 1.0, label=name)
    ax.set(xlabel="forecast step", ylabel="test MAE (series units: ppm for CO2)", title="error by forecast step (held-out test stretch)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
