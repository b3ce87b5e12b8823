"""Automatic classical models (statsforecast): AutoETS, AutoARIMA, AutoTheta and SeasonalNaive,
scored with the protocol of :mod:`rnnfuse.app.baselines`.

Each model chooses itself (its components, orders or variant, by an information criterion or
in-sample MSE) **once** per split, on the data before the split's ``fit_end``; then, with that
fit fixed, it forecasts ``horizon`` steps at every origin ``t`` of the split from ``y[..t]``
only (no refit, no look-ahead):

* ``AutoETS``, ``AutoTheta``: statsforecast's own ``forward(y=y[..t], h=H)``, which applies the
  fitted model (parameters and initial states fixed) to the series up to ``t``; the fit reads
  the whole history before ``fit_end``, so every origin after the series' start has a
  forecast.  AutoTheta's ``forward`` re-runs the classical seasonal decomposition on
  ``y[..t]`` (its smoothing parameters, theta and initial level stay fixed).  AutoETS, as
  Hyndman's ``ets``, allows no season longer than 24 steps: on weekly (52.18) or half-hourly
  (48) data it picks a non-seasonal model (its details say which).
* ``AutoARIMA``: the chosen ARIMA, fitted on at most the last :func:`arima_window` points
  before ``fit_end``, is filtered **once** over the whole series with its coefficients fixed,
  with statsforecast's own Kalman filter (``arima_like``, the one ``forward`` runs), in chunks
  from one origin to the next; the forecast at ``t`` propagates the filtered state at ``t``.
  This equals ``forward(y=y[..t], h=H)`` at every origin (tested) at the cost of one pass
  instead of one pass per origin (``forward`` takes ~1 s on CO2: 200 origins would take
  minutes).  Unobserved points enter the filter as missing values (it skips them).
* ``SeasonalNaive``: statsforecast's ``forecast(y=y[..t], h=H)``, ``y[t+h-m]`` (equal to
  :func:`rnnfuse.app.metrics.seasonal_naive`, tested).

``m = round(P)`` (statsforecast needs an integer season; DHR keeps the exact fraction);
``P = 1`` (or a rounded ``m`` of 1) means non-seasonal.  Missing values (NaN) in the series:
AutoETS, AutoTheta and SeasonalNaive read ``y[..t]`` with its gaps filled by linear
interpolation between the observed values up to ``t`` (held flat after the last one;
:func:`fill_gaps`), as the statsmodels ETS does.

**Cost bound.**  AutoARIMA's search is the expensive part (a seasonal ARIMA with ``m = 52`` has
a state of ~110 elements): on CO2 (1,868 points, ``m = 52``) the library's defaults took over
3 minutes for one fit.  Bounded here: the fit reads at most ``max(ARIMA_MIN_POINTS,
ARIMA_SEASONS * m)`` points (:func:`arima_window`: 520 for ``m = 52``, 500 for ``m = 48``), the
stepwise search uses the conditional-sum-of-squares approximation (``approximation=True``,
R's own default above 150 points or ``m > 12``), and for ``m > 12`` the seasonal orders are at
most ``P = Q = 1``: about 8-11 s per fit on one core of an AMD EPYC (the machine of
docs/forecasting.md's figures; ``max_P = 2`` took 107 s).  The filter over the whole series
costs ~0.1 s.  statsforecast 2.x is compiled C++ (no numba): nothing is compiled at run time,
and the first fit costs what later ones do (importing statsforecast takes ~2.5 s).

Covariates: AutoARIMA regresses on :func:`~rnnfuse.app.baselines.covariate_regressors` (a
regression with ARIMA errors, the regressors lagged by the horizon so that every one a
forecast needs is known at its origin); AutoETS, AutoTheta and SeasonalNaive read none.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

__all__ = [
    "AUTO_NAMES",
    "ARIMA_SEASONS",
    "ARIMA_MIN_POINTS",
    "fill_gaps",
    "arima_window",
    "make_model",
    "fit_auto",
    "auto_forecasts",
    "arima_forecasts",
    "run_auto",
]

AUTO_NAMES = ("AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive")
ARIMA_SEASONS = 10  # AutoARIMA fits on at most the last 10 seasons ...
ARIMA_MIN_POINTS = 500  # ... or the last 500 points, whichever is more
_FITTED_ELSEWHERE = {
    "train": "val",
    "refit": "test",
}  # as in baselines.py: forecasts with another split's fit


def fill_gaps(window: np.ndarray) -> np.ndarray:
    """``window`` with NaN replaced by linear interpolation between its own observed values
    (constant beyond the first/last one): nothing after the window's end is used."""
    ok = np.isfinite(window)
    if ok.all() or not ok.any():
        return window
    index = np.arange(len(window))
    return np.interp(index, index[ok], window[ok])


def arima_window(season: int) -> int:
    """How many points before ``fit_end`` AutoARIMA's fit reads at most (the cost bound)."""
    return max(ARIMA_MIN_POINTS, ARIMA_SEASONS * season)


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsforecast's convergence chatter
        with np.errstate(all="ignore"):
            return fn()


def make_model(name: str, season: int) -> Any:
    """The statsforecast model ``name`` with season ``m = season`` (1: non-seasonal), bounded as
    the module's docstring says."""
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    if season < 1:
        raise ValueError(f"make_model: expected a season of at least 1 step, got {season}")
    if name == "AutoETS":
        return AutoETS(season_length=season)
    if name == "AutoTheta":
        return AutoTheta(season_length=season)
    if name == "SeasonalNaive":
        return SeasonalNaive(season_length=season)
    if name == "AutoARIMA":
        seasonal_orders = 1 if season > 12 else 2  # 2: the library's default
        return AutoARIMA(
            season_length=season, approximation=True, max_P=seasonal_orders, max_Q=seasonal_orders
        )
    raise KeyError(name)


def fit_auto(
    name: str,
    y: np.ndarray,
    fit_end: int,
    season: int,
    regressors: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit ``name`` on the data before ``fit_end`` (gaps filled from inside it; AutoARIMA: on
    its last :func:`arima_window` points, with ``regressors`` rows if given); return the
    fitted statsforecast model and what it chose."""
    if fit_end < 2:
        raise ValueError(f"fit_auto: {name} needs data before fit_end, got fit_end={fit_end}")
    start = max(0, fit_end - arima_window(season)) if name == "AutoARIMA" else 0
    window = fill_gaps(np.asarray(y[start:fit_end], dtype=np.float64))
    model = make_model(name, season)
    x = None if regressors is None or name != "AutoARIMA" else regressors[start:fit_end]
    if name != "SeasonalNaive":  # nothing to fit: a function of the data
        _quiet(lambda: model.fit(window, X=x))
    return model, {"season": season, "window": len(window), **_describe(name, model)}


def _describe(name: str, model: Any) -> dict[str, Any]:
    """What the fit chose, as JSON-friendly values."""
    fitted = getattr(model, "model_", None)
    if fitted is None:
        return {}
    if name == "AutoARIMA":
        p, q, P, Q, m, d, D = fitted["arma"]
        return {
            "order": f"ARIMA({p},{d},{q})({P},{D},{Q}){m}",
            "coef": {k: float(v) for k, v in fitted["coef"].items()},
        }
    if name == "AutoETS":
        return {
            "components": str(fitted["components"]),
            "par": [float(v) for v in fitted["par"][:4]],
        }
    return {"model": str(fitted["modeltype"])}


def auto_forecasts(
    name: str,
    model: Any,
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    regressors: np.ndarray | None = None,
) -> np.ndarray:
    """Forecasts ``(N, H)`` of a fitted ``model`` at ``origins``, each from ``y[..t]`` only (see
    the module's docstring); NaN where an origin has too little history."""
    origins = np.asarray(origins, dtype=np.int64)
    if name == "AutoARIMA":
        return arima_forecasts(model.model_, y, origins, horizon, regressors)
    y = np.asarray(y, dtype=np.float64)
    filled = fill_gaps(y)  # equals fill_gaps(y[..t]) up to t wherever y[t] is observed
    out = np.full((len(origins), horizon), np.nan)
    for row, t in enumerate(origins):
        history = filled[: t + 1] if np.isfinite(y[t]) else fill_gaps(y[: t + 1])
        try:
            if name == "SeasonalNaive":
                mean = model.forecast(y=history, h=horizon)["mean"]
            else:
                mean = _quiet(partial(model.forward, y=history, h=horizon))["mean"]
        except Exception:
            continue
        out[row] = mean
    return out


def arima_forecasts(
    fitted: dict[str, Any],
    y: np.ndarray,
    origins: np.ndarray,
    horizon: int,
    regressors: np.ndarray | None = None,
) -> np.ndarray:
    """A fitted statsforecast ARIMA (``AutoARIMA().fit(...).model_``) filtered over ``y`` (from
    its first row, NaN: missing) with its coefficients fixed; forecasts ``(N, H)`` at
    ``origins``: what ``forward(y=y[..t], X=regressors[..t], h=H)`` forecasts at each, in one
    pass of statsforecast's Kalman filter.  ``regressors``: the fit's regressors, at least
    ``max(origins) + 1 + H`` rows.  NaN where ``y[..t]`` has no more observed values than the
    differencing consumes (``forward`` refuses those)."""
    from statsforecast.arima import arima_like, make_arima

    y = np.asarray(y, dtype=np.float64)
    origins = np.asarray(origins, dtype=np.int64)
    out = np.full((len(origins), horizon), np.nan)
    if not len(origins):
        return out
    n = int(origins.max()) + 1 + horizon
    effect = _regression_effect(fitted, n, regressors)
    state = fitted["model"]
    phi, theta, delta = state["phi"], state["theta"], state["delta"]
    transition, design, noise = state["T"], state["Z"], state["V"]
    fresh = make_arima(phi, theta, delta)  # the initial state, as statsforecast's arima() makes it
    a, P, Pn = fresh["a"], fresh["P"], fresh["Pn"]
    x = y[: n - horizon] - effect[: n - horizon]
    observed = np.cumsum(np.isfinite(y[: n - horizon]))
    done = 0
    for row in np.argsort(origins, kind="stable"):
        t = int(origins[row])
        if t + 1 > done:
            if (
                done
            ):  # continue the filter: the next step's predicted covariance from the current one
                Pn[:] = transition @ P @ transition.T + noise
            arima_like(np.ascontiguousarray(x[done : t + 1]), phi, theta, delta, a, P, Pn, 0, False)
            done = t + 1
        if observed[t] <= len(delta):
            continue
        s = a.copy()
        for h in range(horizon):
            s = transition @ s
            out[row, h] = design @ s + effect[t + 1 + h]
    return out


def _regression_effect(fitted: dict[str, Any], n: int, regressors: np.ndarray | None) -> np.ndarray:
    """The regression part ``(n,)`` of a fitted ARIMA over rows ``0 .. n-1`` counted from the
    filter's first row: intercept, drift (``1, 2, ...`` as ``forward`` counts it) and the
    regressors, times their coefficients (those after the ARMA ones, in that order)."""
    names = list(fitted["coef"])
    coefs = np.array(list(fitted["coef"].values()), dtype=np.float64)[sum(fitted["arma"][:4]) :]
    names = names[len(names) - len(coefs) :]
    columns = []
    if "intercept" in names:
        columns.append(np.ones(n))
    if "drift" in names:
        columns.append(np.arange(1, n + 1, dtype=np.float64))
    if len(coefs) > len(columns):
        if regressors is None or len(regressors) < n:
            got = None if regressors is None else regressors.shape
            raise ValueError(
                f"arima_forecasts: the model has regressors: expected at least {n} "
                f"rows of them, got {got}"
            )
        columns += list(np.asarray(regressors, dtype=np.float64)[:n].T)
    if not columns:
        return np.zeros(n)
    return np.column_stack(columns) @ coefs


def run_auto(
    name: str,
    y: np.ndarray,
    splits: dict,
    horizon: int,
    season: int,
    regressors: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``name`` on ``splits`` as :func:`~rnnfuse.app.baselines.classical_baselines` runs every
    baseline: a fit per ``val``/``test`` split, its forecasts there, and with it the
    ``train``/``refit`` origins' forecasts; details per split (``details["val"]``,
    ``details["test"]``)."""
    if name != "AutoARIMA":
        regressors = None  # the others read no covariates
    forecasts: dict[str, np.ndarray] = {}
    details: dict[str, Any] = {}
    models = {}
    for split in ("val", "test"):
        fit_end, origins, _ = splits[split]
        models[split], details[split] = fit_auto(name, y, fit_end, season, regressors)
        forecasts[split] = auto_forecasts(name, models[split], y, origins, horizon, regressors)
    for split, fitted in _FITTED_ELSEWHERE.items():
        if split in splits:
            forecasts[split] = auto_forecasts(
                name, models[fitted], y, np.asarray(splits[split][1]), horizon, regressors
            )
    if regressors is not None:
        details["covariates"] = regressors.shape[1] // 2
    return forecasts, details
