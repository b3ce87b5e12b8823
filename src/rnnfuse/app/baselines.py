"""Classical forecasting baselines, scored like the networks: DHR and the fixed ETS/SARIMA
(statsmodels state-space models, here) and the automatic models of statsforecast (AutoETS,
AutoARIMA, AutoTheta, SeasonalNaive: :mod:`rnnfuse.app.classical`, same protocol).

The default set (:func:`default_baselines`, :data:`BASELINE_NAMES`): DHR, for the exact
fractional period, beside the four automatic models; for a season longer than 24 steps, which
AutoETS cannot model (Hyndman's ``ets`` limit: it would fit a non-seasonal model), the seasonal
Holt-Winters ``ETS (A,A,A)`` takes its place.  ``ETS (A,A,A)`` and ``SARIMA airline`` stay
available by name (:data:`FIXED_NAMES`).  A period of at most 2 steps (1: non-seasonal) skips
DHR.  The hybrids' base is chosen on validation among the baselines and their
:data:`COMBINATIONS` (:func:`choose_base`).

Protocol, the same for every baseline here: the parameters are estimated **once**, on the data
before the split's first origin (``fit_end``: the validation or the test stretch's first target),
then the model is run as **one Kalman filter pass with those fixed parameters** over the whole
series.  The forecast at origin ``t`` propagates the filtered state at ``t`` (which has seen
``y[..t]`` only) ``h`` steps through the transition: no forecast sees a value after its origin
(``tests/app/test_app_baselines.py`` truncates the series after an origin and checks that the
forecast does not change).  Unobserved points enter as missing values (the Kalman filter skips
them), not as the interpolated values.

* ``DHR``, dynamic harmonic regression:
  ``y_t = b t + sum_k a_k sin(2 pi k t / P) + c_k cos(...) + u_t``, ``u_t`` ARIMA(1,1,1), ``P`` the
  **true** period (52.18 weeks for weekly data, not 52).  ``K`` is chosen on validation (parameters
  fitted before the validation stretch), then refitted before the test stretch.  The regression
  coefficients are estimated inside the state (``mle_regression=False``: the optimiser sees 3
  parameters instead of 3 + 2K + 1) and then fixed at their GLS values; the likelihood is the same.
* ``ETS (A,A,A)``: Holt-Winters additive trend and season (statsmodels' state-space
  ``ExponentialSmoothing``), season ``round(P)``, fitted on the last 5 periods before the cut with
  a concentrated initial state which is then **fixed** (``initialization_method="known"``); a
  concentrated initial state recomputed over the whole series would look ahead.
* ``SARIMA(0,1,1)(0,1,1)m`` (the airline model), ``m = round(P)``, fitted on the last 6 periods
  before the cut.
* ``DHR + ETS mean``, ``DHR + SARIMA mean``: equal-weight forecast combinations (:func:`combine`),
  the mean of the two baselines' forecasts at each origin.

Covariates (``classical_baselines(..., covariates=)``: columns whose value at row ``r`` is known at
row ``r``'s time, as the networks' encoders read them up to the origin): DHR and SARIMA regress
on each covariate's value and running sum ``horizon`` rows back (:func:`covariate_regressors`),
so that every regressor of a forecast from origin ``t`` is known at ``t``; DHR puts them after
its trend and Fourier terms (``seasonal_part`` is unchanged), SARIMA becomes a regression with
airline errors.  ETS ignores them (statsmodels' ``ExponentialSmoothing`` takes no regressors).

For the demo's hybrids, forecasts at the *training* origins too (``splits["train"]``), with the
parameters fitted before the validation stretch: DHR from its one filter pass; ETS and SARIMA,
whose states adapt too slowly to be run over decades, from a filter started 5 or 6 seasons before
each block of 4 seasons of origins (:func:`_rolling`), as their validation forecasts are made.
DHR's details then also hold the parameters of its fit before validation (``val_params``): the
hybrids' encoders read the series less those fits' seasonal terms (:func:`seasonal_part`).
For hybrids refitted before the test stretch, forecasts at every origin whose targets lie before
it (``splits["refit"]``) are made the same way with the parameters fitted before the test
stretch (DHR's ``params``, ETS's and SARIMA's ``details["test"]``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from .classical import AUTO_NAMES
from .classical import fill_gaps as _fill
from .results import BaseChoice, ClassicalFit

__all__ = [
    "fourier",
    "covariate_regressors",
    "seasonal_part",
    "state_forecasts",
    "fit_dhr",
    "fit_ets",
    "fit_sarima",
    "classical_baselines",
    "combine",
    "choose_base",
    "default_baselines",
    "BASELINE_NAMES",
    "BASELINE_KEYS",
    "DEFAULT_KEYS",
    "FIXED_NAMES",
    "AUTO_NAMES",
    "ALL_NAMES",
    "COMBINATIONS",
]

# the fixed statsmodels models (kept by name) and statsforecast's automatic ones (classical.py)
FIXED_NAMES = ("DHR", "ETS (A,A,A)", "SARIMA airline")
ALL_NAMES = (*FIXED_NAMES, *AUTO_NAMES)
# the default set: DHR (the exact fractional period) beside the models that choose themselves
BASELINE_NAMES = ("DHR", "AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive")
BASELINE_KEYS = {
    "dhr": "DHR",
    "ets": "ETS (A,A,A)",
    "sarima": "SARIMA airline",
    "autoets": "AutoETS",
    "autoarima": "AutoARIMA",
    "autotheta": "AutoTheta",
    "snaive": "SeasonalNaive",
}
# `rnnfuse demo --baselines` for a season of up to 24 steps
DEFAULT_KEYS = "dhr,autoets,autoarima,autotheta,snaive"
AUTOETS_MAX_SEASON = 24  # statsforecast's AutoETS, as R's ets, fits no season longer than this
DHR_ORDERS = (2, 4, 6)
# equal-weight means of baselines' forecasts (classical forecast combinations): name -> parts; each
# is shown when its parts are fitted, and is a candidate for the hybrids' base (choose_base)
COMBINATIONS = {
    "DHR + ETS mean": ("DHR", "ETS (A,A,A)"),
    "DHR + SARIMA mean": ("DHR", "SARIMA airline"),
    "DHR + AutoARIMA mean": ("DHR", "AutoARIMA"),
    "DHR + AutoETS mean": ("DHR", "AutoETS"),
    "DHR + AutoTheta mean": ("DHR", "AutoTheta"),
    "AutoETS + AutoARIMA + AutoTheta mean": ("AutoETS", "AutoARIMA", "AutoTheta"),
}


def fourier(n: int, period: float, harmonics: int) -> np.ndarray:
    """Regressors ``(n, 1 + 2K)``: a linear trend (in periods) and ``K`` sine/cosine pairs."""
    t = np.arange(n, dtype=np.float64)
    cols = [t / period]
    for k in range(1, harmonics + 1):
        angle = 2 * np.pi * k * t / period
        cols += [np.sin(angle), np.cos(angle)]
    return np.column_stack(cols)


def covariate_regressors(
    covariates: np.ndarray, horizon: int, n_rows: int, period: float
) -> np.ndarray:
    """The regression baselines' regressors ``(n_rows, 2k)`` from ``covariates`` ``(n, k)``.

    For each covariate column ``x`` (in order), two columns: at row ``r``, ``x[r - H]`` (a level
    effect) and ``S[r - H]`` with ``S[j] = (x[0] + ... + x[j]) / period`` (an accumulated effect:
    in a model with one difference its running sum acts on the growth), ``H = horizon``; rows
    ``r < H`` take row 0's values.  Row ``r`` reads no covariate after row ``r - H``, so every
    regressor a forecast from origin ``t`` needs (rows ``t+1 .. t+H``) is known at ``t``.
    ``n_rows`` may reach ``n + H`` (the regressors of the last origin's forecasts).
    """
    x = np.asarray(covariates, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"covariate_regressors: expected covariates of shape (n, k), got shape {x.shape}"
        )
    if horizon < 1:
        raise ValueError(
            f"covariate_regressors: expected a horizon >= 1 (the regressors' lag), got {horizon}"
        )
    if n_rows > len(x) + horizon:
        raise ValueError(
            f"covariate_regressors: {n_rows} rows need covariates up to row "
            f"{n_rows - 1 - horizon}, got {len(x)} rows"
        )
    rows = np.maximum(np.arange(n_rows) - horizon, 0)
    level, accumulated = x[rows], (np.cumsum(x, axis=0) / period)[rows]
    return np.stack([level, accumulated], axis=2).reshape(n_rows, 2 * x.shape[1])


def seasonal_part(n: int, period: float, harmonics: int, params: Sequence[float]) -> np.ndarray:
    """DHR's fitted seasonal component ``(n,)``: its Fourier terms times their coefficients
    (``params``: :func:`fit_dhr`'s, regression coefficients first; the trend is left out).
    Deterministic given ``params``: its value at ``t`` reads nothing of the series."""
    coefficients = np.asarray(params, dtype=np.float64)[1 : 1 + 2 * harmonics]
    return fourier(n, period, harmonics)[:, 1:] @ coefficients


def state_forecasts(results: Any, origins: np.ndarray, horizon: int) -> np.ndarray:
    """Forecasts ``(N, H)`` from a statsmodels state-space results object filtered over a series.

    At origin ``t``: ``a = a_{t|t}`` (the filtered state), then ``h`` times ``a <- T a + c``
    and ``y_{t+h} = Z a + d_{t+h}``: what ``get_prediction(start=t+1, end=t+h, dynamic=True)``
    computes, for every origin at once.  ``T``, ``Z``, ``c`` must be time-invariant; the
    observation intercept ``d`` (regression effects) may vary in time.
    """
    fr = results.filter_results
    origins = np.asarray(origins, dtype=np.int64)
    for name in ("transition", "design", "state_intercept"):
        if getattr(fr, name).shape[-1] != 1:
            raise ValueError(
                f"state_forecasts: {name} varies in time; expected a time-invariant model"
            )
    transition, design, intercept = (
        fr.transition[:, :, 0],
        fr.design[0, :, 0],
        fr.state_intercept[:, 0],
    )
    obs = fr.obs_intercept
    if obs.shape[1] > 1 and len(origins) and origins.max() + horizon >= obs.shape[1]:
        raise ValueError(
            f"state_forecasts: origin {origins.max()} + {horizon} steps runs past the regressors "
            f"({obs.shape[1]} rows)"
        )
    state = fr.filtered_state[:, origins]
    out = np.empty((len(origins), horizon))
    for h in range(1, horizon + 1):
        state = transition @ state + intercept[:, None]
        d = obs[0, 0] if obs.shape[1] == 1 else obs[0, origins + h]
        out[:, h - 1] = design @ state + d
    return out


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence and frequency chatter
        return fn()


def fit_dhr(
    y: np.ndarray,
    fit_end: int,
    period: float,
    harmonics: int,
    horizon: int = 0,
    regressors: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit DHR on ``y[:fit_end]``; return the model filtered over all of ``y`` with fixed
    parameters, and ``horizon`` missing values after it (so that the regressors reach the
    forecasts from the last origin; missing values do not change the filtered states before them).
    ``regressors``: further regressors aligned with ``y`` (:func:`covariate_regressors`, at least
    ``len(y) + horizon`` rows), after the trend and Fourier terms; ``details["covariates"]`` then
    counts the covariates (two regressors each)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = np.r_[y, np.full(horizon, np.nan)]
    x = fourier(len(y), period, harmonics)
    if regressors is not None:
        x = np.column_stack([x, _rows(regressors, len(y), "fit_dhr")])
    fitted = _quiet(
        lambda: SARIMAX(y[:fit_end], exog=x[:fit_end], order=(1, 1, 1), mle_regression=False).fit(
            disp=False
        )
    )
    beta = fitted.smoothed_state[-x.shape[1] :, -1]  # the GLS coefficients given all of y[:fit_end]
    params = np.r_[beta, fitted.params]
    full = _quiet(lambda: SARIMAX(y, exog=x, order=(1, 1, 1)).filter(params))
    details = {"K": harmonics, "period": period, "params": params.tolist()}
    if regressors is not None:
        details["covariates"] = regressors.shape[1] // 2
    return full, details


def _rows(regressors: np.ndarray, n: int, caller: str) -> np.ndarray:
    """The first ``n`` rows of ``regressors`` (a ValueError if it has fewer)."""
    if regressors.ndim != 2 or len(regressors) < n:
        raise ValueError(
            f"{caller}: expected regressors of shape (>= {n}, k), got {regressors.shape}"
        )
    return regressors[:n]


def fit_ets(
    y: np.ndarray, fit_end: int, season: int, periods: int = 5
) -> tuple[Any, dict[str, Any], int]:
    """Holt-Winters (A,A,A) fitted on the last ``periods`` seasons before ``fit_end``; returns the
    model filtered from that window's start to the end of ``y`` and the window's start."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

    start = max(0, fit_end - periods * season)
    options = {"trend": True, "seasonal": season}
    fitted = _quiet(
        lambda: ExponentialSmoothing(
            y[start:fit_end], initialization_method="concentrated", **options
        ).fit(disp=False)
    )
    init = np.asarray(fitted.initial_state)
    known = ExponentialSmoothing(
        y[start:],
        initialization_method="known",
        initial_level=init[0],
        initial_trend=init[1],
        initial_seasonal=init[2 : 2 + season],
        **options,
    )
    full = _quiet(lambda: known.filter(fitted.params))
    return (
        full,
        {
            "season": season,
            "window": len(y[start:fit_end]),
            "params": np.asarray(fitted.params).tolist(),
        },
        start,
    )


def fit_sarima(
    y: np.ndarray,
    fit_end: int,
    season: int,
    periods: int = 6,
    regressors: np.ndarray | None = None,
    horizon: int = 0,
) -> tuple[Any, dict[str, Any], int]:
    """SARIMA(0,1,1)(0,1,1)m on the last ``periods`` seasons before ``fit_end`` (estimated on the
    differenced series, a smaller state), filtered from that window's start on.

    ``regressors`` (:func:`covariate_regressors`, at least ``len(y) + horizon`` rows): a
    regression with airline errors, ``y = X b + u``; the series then gets ``horizon`` missing
    values after it, as in :func:`fit_dhr`.  With simple differencing statsmodels differences
    ``X`` as it differences ``y`` (``(1-L)(1-L^m) y = (1-L)(1-L^m) X b + MA``), so the fitted
    ``b`` is the full model's (the test checks that both give the same likelihood)."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    start = max(0, fit_end - periods * season)
    options = {"order": (0, 1, 1), "seasonal_order": (0, 1, 1, season)}
    x = None
    if regressors is not None:
        y = np.r_[y, np.full(horizon, np.nan)]
        x = _rows(regressors, len(y), "fit_sarima")[start:]
    fit_x = None if x is None else x[: fit_end - start]
    fitted = _quiet(
        lambda: SARIMAX(y[start:fit_end], exog=fit_x, simple_differencing=True, **options).fit(
            disp=False
        )
    )
    full = _quiet(lambda: SARIMAX(y[start:], exog=x, **options).filter(fitted.params))
    details = {
        "season": season,
        "window": len(y[start:fit_end]),
        "params": np.asarray(fitted.params).tolist(),
    }
    if regressors is not None:
        details["covariates"] = regressors.shape[1] // 2
    return full, details, start


def _rolling(
    name: str,
    y: np.ndarray,
    origins: np.ndarray,
    params: Any,
    season: int,
    horizon: int,
    block_periods: int = 4,
    regressors: np.ndarray | None = None,
) -> np.ndarray:
    """ETS or SARIMA forecasts at training ``origins`` made as the validation ones are: fixed
    ``params``, a filter started 5 (ETS) or 6 (SARIMA) seasons before a block of ``block_periods``
    seasons of origins (run from the series' start, these models drift: their states adapt too
    slowly over decades).  ETS's initial state is the concentrated one of the seasons before the
    block, given ``params``, estimated on those seasons with gaps filled from inside them (no
    look-ahead); origins with too little history before them are NaN.  ``regressors``: SARIMA's
    (as in :func:`fit_sarima`; at least ``max(origins) + 1 + horizon`` rows); ETS has none."""
    span = (5 if name == "ETS (A,A,A)" else 6) * season
    out = np.full((len(origins), horizon), np.nan)
    ok = origins + 1 - span >= 0
    if not ok.any():
        return out
    first = int(origins[ok].min())
    for lo in range(first, int(origins.max()) + 1, block_periods * season):
        rows = np.flatnonzero(ok & (origins >= lo) & (origins < lo + block_periods * season))
        if not len(rows):
            continue
        start, end = lo + 1 - span, int(origins[rows].max()) + 1
        model = _block_filter(name, y, params, season, horizon, regressors, (start, lo, end))
        out[rows] = state_forecasts(model, origins[rows] - start, horizon)
    return out


def _block_filter(
    name: str,
    y: np.ndarray,
    params: Any,
    season: int,
    horizon: int,
    regressors: np.ndarray | None,
    bounds: tuple[int, int, int],
) -> Any:
    """One block of :func:`_rolling`: the model with fixed ``params`` filtered over
    ``y[start:end]``; ``bounds`` is ``(start, lo, end)``, ``y[start : lo + 1]`` the seasons
    before the block's first origin (ETS estimates its initial state there)."""
    from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    start, lo, end = bounds
    if name == "ETS (A,A,A)":
        window = _fill(y[start : lo + 1])  # the concentrated initial state goes wrong with gaps
        options = {"trend": True, "seasonal": season}
        head = _quiet(
            lambda: ExponentialSmoothing(
                window, initialization_method="concentrated", **options
            ).filter(params)
        )
        init = np.asarray(head.initial_state)
        return _quiet(
            lambda: ExponentialSmoothing(
                y[start:end],
                initialization_method="known",
                initial_level=init[0],
                initial_trend=init[1],
                initial_seasonal=init[2 : 2 + season],
                **options,
            ).filter(params)
        )
    airline = {"order": (0, 1, 1), "seasonal_order": (0, 1, 1, season)}
    if regressors is None:
        return _quiet(lambda: SARIMAX(y[start:end], **airline).filter(params))
    # the block's series and H missing values after it: the regressors reach its last forecasts
    x = _rows(regressors, end + horizon, "_rolling")[start:]
    block = np.r_[y[start:end], np.full(horizon, np.nan)]
    return _quiet(lambda: SARIMAX(block, exog=x, **airline).filter(params))


def combine(parts: Sequence[ClassicalFit], name: str) -> ClassicalFit:
    """The equal-weight mean of the baselines ``parts`` (entries of :func:`classical_baselines`),
    named ``name``: per split, the mean of their forecasts (each made without look-ahead, so the
    mean is too); ``seconds`` their sum; ``error`` set if any part failed (then no forecasts)."""
    failed = [p.error for p in parts if p.error]
    seconds = sum(p.seconds for p in parts)
    if failed:
        return ClassicalFit(name, {}, {}, "a part failed: " + "; ".join(failed), seconds)
    splits = set.intersection(*(set(p.forecasts) for p in parts))
    forecasts = {
        k: np.mean([np.asarray(p.forecasts[k], dtype=np.float64) for p in parts], axis=0)
        for k in sorted(splits)
    }
    return ClassicalFit(name, forecasts, {"parts": [p.details for p in parts]}, None, seconds)


def _score(forecast: np.ndarray, target: np.ndarray) -> float:
    return float(np.abs(forecast - target).mean())


def default_baselines(period: float) -> tuple[str, ...]:
    """The classical models ``rnnfuse demo`` fits by default for a seasonal ``period`` in steps
    (1: none): :data:`BASELINE_NAMES`, without DHR when ``period`` is at most 2 (no season for
    its Fourier terms), and with the Holt-Winters ``ETS (A,A,A)`` in place of AutoETS when the
    rounded season exceeds :data:`AUTOETS_MAX_SEASON` (AutoETS would fit no season at all).

    >>> default_baselines(12)
    ('DHR', 'AutoETS', 'AutoARIMA', 'AutoTheta', 'SeasonalNaive')
    >>> default_baselines(52.18)
    ('DHR', 'ETS (A,A,A)', 'AutoARIMA', 'AutoTheta', 'SeasonalNaive')
    >>> default_baselines(1)
    ('AutoETS', 'AutoARIMA', 'AutoTheta', 'SeasonalNaive')
    """
    names = [n for n in BASELINE_NAMES if n != "DHR" or period > 2]
    if round(period) > AUTOETS_MAX_SEASON:
        names[names.index("AutoETS")] = "ETS (A,A,A)"
    return tuple(names)


def choose_base(
    results: Mapping[str, ClassicalFit],
    val_truth: np.ndarray,
    names: Sequence[str] | None = None,
) -> BaseChoice:
    """The hybrids' classical base, chosen on validation: among the fitted baselines of
    ``results`` (:func:`classical_baselines` entries; ``names``: which and in what order, default
    all) and the :data:`COMBINATIONS` whose parts are all fitted, the one whose validation
    forecasts have the lowest MAE against ``val_truth`` ``(N, H)``; ties go to fewer parts, then
    to the earlier candidate (the baselines in ``names`` order, then the combinations in
    :data:`COMBINATIONS` order).  Returns its name, its parts and every candidate's MAE; the
    name ``""`` and no parts when nothing was fitted.  Only validation forecasts are read: the
    choice exists before any network trains."""
    order = list(results) if names is None else [n for n in names if n in results]
    fitted = [n for n in order if results[n].error is None and "val" in results[n].forecasts]
    candidates: list[tuple[str, tuple[str, ...]]] = [(n, (n,)) for n in fitted]
    candidates += [
        (c, parts) for c, parts in COMBINATIONS.items() if all(p in fitted for p in parts)
    ]
    truth = np.asarray(val_truth, dtype=np.float64)
    maes = {}
    for name, parts in candidates:
        mean = np.mean(
            [np.asarray(results[p].forecasts["val"], dtype=np.float64) for p in parts], axis=0
        )
        maes[name] = _score(mean, truth)
    if not candidates:
        return BaseChoice("", (), {})
    rank = {name: i for i, (name, _) in enumerate(candidates)}
    name, parts = min(candidates, key=lambda c: (maes[c[0]], len(c[1]), rank[c[0]]))
    return BaseChoice(name, parts, maes)


def classical_baselines(
    y: np.ndarray,
    splits: dict[str, tuple[int, np.ndarray, np.ndarray]],
    horizon: int,
    period: float,
    names: Sequence[str] = BASELINE_NAMES,
    log: Callable[[str], None] = lambda _m: None,
    covariates: np.ndarray | None = None,
) -> dict[str, ClassicalFit]:
    """Every classical baseline on ``splits`` = ``{"val": (fit_end, origins, truth), "test": ...}``.

    Optional ``"train"`` and ``"refit"`` entries (``truth`` unused): forecasts at those origins
    with the parameters fitted for ``val`` and for ``test`` respectively (the demo's hybrids;
    NaN where an origin has too little history).  ``y``: the series with NaN at unobserved points.
    ``covariates``: ``(len(y), k)`` finite values aligned with ``y`` (row ``r`` known at row
    ``r``'s time; a 1-D array is refused: pass one column as ``x[:, None]``; ``k = 0`` is none):
    DHR and SARIMA regress on :func:`covariate_regressors` of them, ETS ignores them.  Returns,
    per baseline, a :class:`~rnnfuse.app.results.ClassicalFit`: ``forecasts`` (per split,
    ``(N, H)``), ``seconds``, ``details`` and ``error`` (``None``, or why the fit failed: a
    failed baseline is reported, not dropped).  ``names``:
    from :data:`ALL_NAMES`; AutoARIMA regresses on the covariates too, the other automatic
    models read none (:mod:`rnnfuse.app.classical`).
    """
    season = max(1, int(round(period)))
    checked = _checked_covariates(covariates, len(y))
    regressors = (
        None
        if checked is None
        else covariate_regressors(checked, horizon, len(y) + horizon, period)
    )
    out: dict[str, ClassicalFit] = {}
    for name in names:
        began = time.perf_counter()
        if name == "DHR" and period <= 2:
            why = "skipped: DHR needs a seasonal period > 2 steps (a sine/cosine pair)"
            out[name] = ClassicalFit(name, {}, {}, f"{why}, got {period:g}", 0.0)
            log(f"baseline {name}: {out[name].error}")
            continue
        try:
            forecasts, details = _run_one(name, y, splits, horizon, period, season, regressors)
            error = None
            if any(
                not np.all(np.isfinite(f))
                for k, f in forecasts.items()
                if k not in _FITTED_ELSEWHERE
            ):  # NaN where not forecast
                forecasts, error = {}, "non-finite forecasts"
        except Exception as exc:
            forecasts, details, error = {}, {}, f"{type(exc).__name__}: {exc}"
        out[name] = ClassicalFit(name, forecasts, details, error, time.perf_counter() - began)
        log(f"baseline {name}: " + (f"failed ({error})" if error else f"{out[name].seconds:.1f} s"))
    return out


def _checked_covariates(covariates: np.ndarray | None, n: int) -> np.ndarray | None:
    """``covariates`` as a float64 ``(n, k)`` array (``None`` when absent or ``k = 0``); a
    ValueError names what was expected and what was received."""
    if covariates is None:
        return None
    x = np.asarray(covariates)
    if x.dtype.kind not in "fiub":
        raise ValueError(
            f"classical_baselines: covariates: expected real numbers, got dtype {x.dtype}"
        )
    if x.ndim != 2 or len(x) != n:
        hint = " (one covariate: pass x[:, None])" if x.ndim == 1 else ""
        raise ValueError(
            f"classical_baselines: covariates: expected shape ({n}, k) aligned with "
            f"y{hint}, got {x.shape}"
        )
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        row, col = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"classical_baselines: covariates: expected finite values, got {x[row, col]} at "
            f"row {row}, column {col}"
        )
    return x if x.shape[1] else None


# the hybrids' splits forecast with another split's parameters (never fitted on their own):
# training origins with those fitted before validation, a refit's with those fitted before test
_FITTED_ELSEWHERE = {"train": "val", "refit": "test"}


def _run_one(
    name: str,
    y: np.ndarray,
    splits: dict,
    horizon: int,
    period: float,
    season: int,
    regressors: np.ndarray | None = None,
) -> tuple[dict, dict]:
    if name == "DHR":
        (val_end, val_origins, val_truth), (test_end, test_origins, _) = (
            splits["val"],
            splits["test"],
        )
        orders = [k for k in DHR_ORDERS if k < period / 2] or [1]
        val_maes, val_models = {}, {}
        for k in orders:
            val_models[k], _ = fit_dhr(y, val_end, period, k, horizon, regressors)
            val_maes[k] = _score(state_forecasts(val_models[k], val_origins, horizon), val_truth)
        best = min(orders, key=lambda k: val_maes[k])
        model, details = fit_dhr(y, test_end, period, best, horizon, regressors)
        details["val_mae_by_K"] = val_maes
        details["val_params"] = val_models[
            best
        ].params.tolist()  # the fit before validation (the hybrids' inputs)
        out = {
            "val": state_forecasts(val_models[best], val_origins, horizon),
            "test": state_forecasts(model, test_origins, horizon),
        }
        if (
            "train" in splits
        ):  # for the hybrids: training origins, with the parameters fitted before validation
            out["train"] = state_forecasts(val_models[best], splits["train"][1], horizon)
        if (
            "refit" in splits
        ):  # for refitted hybrids: origins before the test stretch, the fit before it
            out["refit"] = state_forecasts(model, splits["refit"][1], horizon)
        return out, details
    if name in AUTO_NAMES:
        from .classical import run_auto

        return run_auto(name, y, splits, horizon, season, regressors)
    if name == "ETS (A,A,A)":
        regressors = None  # statsmodels' ExponentialSmoothing takes no regressors
    fit: Callable[..., tuple[Any, dict[str, Any], int]] = fit_ets
    if name == "SARIMA airline":
        fit = partial(fit_sarima, regressors=regressors, horizon=horizon)
    elif name != "ETS (A,A,A)":
        raise KeyError(name)
    forecasts, details = {}, {}
    for split, (fit_end, origins, _) in splits.items():
        if split in _FITTED_ELSEWHERE:
            continue
        model, details[split], start = fit(y, fit_end, season)
        forecasts[split] = state_forecasts(model, origins - start, horizon)
    for (
        split,
        fitted,
    ) in _FITTED_ELSEWHERE.items():  # for the hybrids: parameters fitted for another split
        if split in splits:
            params = details[fitted]["params"]
            forecasts[split] = _rolling(
                name,
                y,
                np.asarray(splits[split][1]),
                params,
                season,
                horizon,
                regressors=regressors,
            )
    return forecasts, details
