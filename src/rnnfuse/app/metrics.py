"""Errors in series units (ppm for CO2), the seasonal baselines, and the model's forecasts.

Baselines at origin ``t`` for step ``h`` (``P`` = the seasonal period, 52 weeks; ``k =
ceil(h / P)``, the seasons ahead: 1 while ``h <= P``):

* ``seasonal naive``: ``y[t+h-kP]``, the value at the same phase in the last observed season
  (one period earlier for ``h <= P``; for ``P = 1``, a non-seasonal series, the last value
  ``y[t]``: the naive forecast);
* ``seasonal naive + drift``: that value plus ``k`` times the growth over the last period,
  estimated as ``mean(y[t-P+1..t]) - mean(y[t-2P+1..t-P])`` (the last year's mean minus the
  year before's; for ``P = 1``, the last step's change ``y[t] - y[t-1]`` per step ahead).

Neither reads past the origin ``t``.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from ..seq2seq import Seq2Seq
from .data import Series
from .windows import Windows

__all__ = ["errors", "truth", "seasonal_naive", "seasonal_naive_drift", "forecast", "model_inputs"]


def errors(prediction: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """MAE and RMSE over all windows and steps, plus the MAE per step (``mae_by_step``)."""
    diff = np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return {
        "mae": float(np.abs(diff).mean()),
        "rmse": float(np.sqrt((diff**2).mean())),
        "mae_by_step": np.abs(diff).mean(axis=0).tolist(),
    }


def truth(series: Series, windows: Windows) -> np.ndarray:
    """The true values ``(N, H)`` in series units."""
    horizon = windows.targets.shape[1]
    index = windows.origins.numpy()[:, None] + np.arange(1, horizon + 1)[None, :]
    return series.values[index]


def _seasons_ahead(horizon: int, period: int) -> np.ndarray:
    """``k = ceil(h / P)`` for ``h = 1..horizon``: how many seasons back a step's last
    observed phase lies."""
    if period < 1:
        raise ValueError(f"seasonal naive: expected a period >= 1 step, got {period}")
    return -(-np.arange(1, horizon + 1) // period)


def seasonal_naive(series: Series, windows: Windows, period: int) -> np.ndarray:
    """``y[t+h-kP]``, ``k = ceil(h / P)``, for every window and step (see the module docstring)."""
    horizon = windows.targets.shape[1]
    steps = np.arange(1, horizon + 1)
    index = (
        windows.origins.numpy()[:, None]
        + (steps - period * _seasons_ahead(horizon, period))[None, :]
    )
    return series.values[index]


def seasonal_naive_drift(series: Series, windows: Windows, period: int) -> np.ndarray:
    """Seasonal naive plus ``k`` times the last period's growth (see the module docstring)."""
    y = series.values
    origins = windows.origins.numpy()
    growth = np.array(
        [
            y[t - period + 1 : t + 1].mean() - y[t - 2 * period + 1 : t - period + 1].mean()
            for t in origins
        ]
    )
    seasons = _seasons_ahead(windows.targets.shape[1], period)
    return seasonal_naive(series, windows, period) + growth.reshape(-1, 1) * seasons[None, :]


def model_inputs(model: Seq2Seq, windows: Windows) -> dict[str, Any]:
    """Keyword arguments for the model's ``forward``/``generate`` from a set of windows."""
    names = model.encoders.names
    inputs = {"local": windows.local, "global": windows.global_}
    lengths = {"local": None, "global": windows.global_len}
    return {
        "inputs": {n: inputs[n] for n in names},
        "lengths": {n: lengths[n] for n in names},
        "start": torch.zeros(len(windows), 1, device=windows.local.device),
        "covariates": windows.covariates,
    }


@torch.no_grad()
def forecast(model: nn.Module, windows: Windows, batch_size: int = 512) -> np.ndarray:
    """Autoregressive forecasts ``(N, H)`` in series units (the model in eval mode)."""
    core = cast(Seq2Seq, getattr(model, "module", model))  # unwrap DistributedDataParallel
    was_training = core.training
    core.eval()
    parts: list[Tensor] = []
    horizon = windows.targets.shape[1]
    for begin in range(0, len(windows), batch_size):
        chunk = windows.subset(torch.arange(begin, min(begin + batch_size, len(windows))))
        parts.append(chunk.to_ppm(core.generate(steps=horizon, **model_inputs(core, chunk))))
    core.train(was_training)
    return torch.cat(parts).numpy() if parts else np.zeros((0, horizon))
