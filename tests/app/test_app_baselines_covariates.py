"""Classical baselines with covariates: the regressors' definition, statsmodels' own answers
computed independently, no look-ahead through the series or the covariates, a real gain, and
clear errors for bad covariates."""

import warnings

import numpy as np
import pytest

pytest.importorskip("statsmodels")

from statsmodels.tsa.statespace.sarimax import SARIMAX

from rnnfuse.app import baselines as B

pytestmark = pytest.mark.slow  # statsmodels fits with covariates

PERIOD = 12.5  # a non-integer period, as a year of weeks (52.18)
SEASON = 12
H = 4
BETA = 2.0  # the true effect of the covariate's running sum (lagged H steps) on the series


def _synthetic(n=300, seed=0):
    """``y = trend + season + BETA * S[t - H] + noise``, ``S`` the running sum of an AR(1)
    covariate ``x`` over the period; returns ``y``, ``x`` and the season."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal(n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.8 * x[i - 1] + shocks[i]
    t = np.arange(n)
    lagged = np.array([x[max(i - H, 0)] for i in range(n)])
    season = 2 * np.sin(2 * np.pi * t / PERIOD) + 0.5 * np.cos(4 * np.pi * t / PERIOD)
    y = 10 + 0.05 * t + season + BETA * np.cumsum(lagged) / PERIOD + 0.05 * rng.standard_normal(n)
    return y, x, season


def _regressors_by_loop(x, n_rows):
    """The covariate regressors written out row by row: ``x[j]`` and ``sum(x[:j + 1]) / PERIOD``
    with ``j = max(r - H, 0)``."""
    out = np.empty((n_rows, 2))
    for r in range(n_rows):
        j = max(r - H, 0)
        out[r] = x[j], x[: j + 1].sum() / PERIOD
    return out


def _dhr_exog(x, n_rows, harmonics):
    t = np.arange(n_rows)
    cols = [t / PERIOD]
    for k in range(1, harmonics + 1):
        cols += [np.sin(2 * np.pi * k * t / PERIOD), np.cos(2 * np.pi * k * t / PERIOD)]
    return np.column_stack(cols + [_regressors_by_loop(x, n_rows)])


def _splits(y):
    steps = np.arange(1, H + 1)
    out = {
        k: (end, o, y[o[:, None] + steps])
        for k, end, o in (("val", 200, np.arange(200, 240)), ("test", 250, np.arange(250, 296)))
    }
    out["train"] = (200, np.arange(60, 196), None)
    out["refit"] = (250, np.arange(60, 246), None)
    return out


def _quiet(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def test_the_regressors_are_the_lagged_values_and_running_sums_and_read_nothing_later():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    got = B.covariate_regressors(x, H, 40 + H, PERIOD)
    assert got.shape == (44, 4)
    for c in range(2):  # per covariate: its level, then its running sum
        np.testing.assert_allclose(
            got[:, 2 * c : 2 * c + 2], _regressors_by_loop(x[:, c], 44), atol=1e-12
        )
    for j in (1, 17, 39):  # a change at row j reaches row j + H first
        changed = x.copy()
        changed[j] += 1.0
        other = B.covariate_regressors(changed, H, 40 + H, PERIOD)
        np.testing.assert_array_equal(other[: j + H], got[: j + H])
        assert (other[j + H] != got[j + H]).all()
    with pytest.raises(ValueError, match=r"45 rows need covariates up to row 40, got 40 rows"):
        B.covariate_regressors(x, H, 45, PERIOD)
    with pytest.raises(ValueError, match=r"expected a horizon >= 1 \(the regressors' lag\), got 0"):
        B.covariate_regressors(x, 0, 40, PERIOD)


def test_dhr_with_a_covariate_matches_statsmodels_and_recovers_its_effect():
    """The fitted coefficients: the running sum's near BETA, the level's near 0, the seasonal
    terms (read by ``seasonal_part``, ahead of the covariates') the known season; the forecasts:
    statsmodels' own from the truncated series with regressors built here."""
    y, x, season = _synthetic()
    regressors = B.covariate_regressors(x[:, None], H, len(y) + H, PERIOD)
    model, details = B.fit_dhr(y, 200, PERIOD, 2, H, regressors)
    params = np.asarray(details["params"])
    assert details["covariates"] == 1 and len(params) == 1 + 4 + 2 + 3
    assert abs(params[6] - BETA) < 0.05 and abs(params[5]) < 0.05
    np.testing.assert_allclose(B.seasonal_part(len(y), PERIOD, 2, params), season, atol=0.03)
    exog = _dhr_exog(x, len(y) + H, 2)
    for t in (199, 231, 295):
        ours = B.state_forecasts(model, np.array([t]), H)[0]
        short = _quiet(
            lambda: SARIMAX(y[: t + 1], exog=exog[: t + 1], order=(1, 1, 1)).filter(params)
        )
        np.testing.assert_allclose(
            ours, short.forecast(H, exog=exog[t + 1 : t + 1 + H]), rtol=0, atol=1e-8
        )


def test_sarima_with_a_covariate_matches_statsmodels_and_recovers_its_effect():
    y, x, _ = _synthetic()
    regressors = B.covariate_regressors(x[:, None], H, len(y) + H, PERIOD)
    model, details, start = B.fit_sarima(y, 200, SEASON, regressors=regressors, horizon=H)
    params = np.asarray(details["params"])
    assert details["covariates"] == 1 and start == 200 - 6 * SEASON and len(params) == 2 + 3
    assert abs(params[1] - BETA) < 0.2
    exog = _regressors_by_loop(x, len(y) + H)
    for t in (199, 231, 295):
        ours = B.state_forecasts(model, np.array([t - start]), H)[0]
        options = {"order": (0, 1, 1), "seasonal_order": (0, 1, 1, SEASON)}
        short = _quiet(
            lambda: SARIMAX(y[start : t + 1], exog=exog[start : t + 1], **options).filter(params)
        )
        np.testing.assert_allclose(
            ours, short.forecast(H, exog=exog[t + 1 : t + 1 + H]), rtol=0, atol=1e-8
        )


def test_sarimas_coefficients_fitted_on_the_differenced_series_are_the_full_models():
    """statsmodels' simple differencing differences the regressors as it differences the series,
    so the fitted parameters mean the same in the undifferenced model the forecasts filter with:
    both give the same likelihood at them, and a fit of the undifferenced model finds them."""
    y, x, _ = _synthetic()
    model, details, start = B.fit_sarima(
        y,
        200,
        SEASON,
        regressors=B.covariate_regressors(x[:, None], H, len(y) + H, PERIOD),
        horizon=H,
    )
    exog = _regressors_by_loop(x, 200)[start:]
    options = {"order": (0, 1, 1), "seasonal_order": (0, 1, 1, SEASON)}
    params = np.asarray(details["params"])
    differenced = _quiet(
        lambda: SARIMAX(y[start:200], exog=exog, simple_differencing=True, **options).filter(params)
    )
    full = _quiet(lambda: SARIMAX(y[start:200], exog=exog, **options).filter(params))
    assert full.loglikelihood_burn == 1 + SEASON  # the diffuse differencing states
    np.testing.assert_allclose(full.llf, differenced.llf, rtol=0, atol=1e-5)
    refitted = _quiet(lambda: SARIMAX(y[start:200], exog=exog, **options).fit(disp=False))
    np.testing.assert_allclose(refitted.params, params, rtol=0.01, atol=2e-3)


def test_sarimas_training_forecasts_read_the_regressors():
    """``_rolling`` with regressors: in the first block (filter from the series' start), each
    origin's forecast is statsmodels' from the series truncated there."""
    y, x, _ = _synthetic()
    regressors = B.covariate_regressors(x[:, None], H, len(y) + H, PERIOD)
    params = B.fit_sarima(y, 200, SEASON, regressors=regressors, horizon=H)[1]["params"]
    origins = np.arange(6 * SEASON - 1, 196)
    ours = B._rolling("SARIMA airline", y, origins, params, SEASON, H, regressors=regressors)
    exog = _regressors_by_loop(x, len(y) + H)
    options = {"order": (0, 1, 1), "seasonal_order": (0, 1, 1, SEASON)}
    for t in (6 * SEASON - 1, 100, 6 * SEASON - 1 + 4 * SEASON - 1):
        short = _quiet(lambda: SARIMAX(y[: t + 1], exog=exog[: t + 1], **options).filter(params))
        np.testing.assert_allclose(
            ours[origins == t][0],
            short.forecast(H, exog=exog[t + 1 : t + 1 + H]),
            rtol=0,
            atol=1e-8,
        )


@pytest.mark.parametrize("name", B.ALL_NAMES)
def test_no_baseline_with_covariates_looks_ahead(name, monkeypatch):
    """Changing the series and the covariates after an origin leaves every forecast at that
    origin or before unchanged, for every split whose parameters were fitted before it (all of
    them for an origin in the test stretch; validation and training for one in validation),
    while later forecasts do change."""
    y, x, _ = _synthetic()
    splits = _splits(y)  # the validation truth that picks DHR's K stays that of y
    # K is picked on every validation forecast, some after an origin inside validation: one K
    monkeypatch.setattr(B, "DHR_ORDERS", (2,))
    full = B.classical_baselines(y, splits, H, PERIOD, names=[name], covariates=x[:, None])[name]
    assert full.error is None
    rng = np.random.default_rng(1)
    for t, compared in ((210, ("val", "train")), (259, tuple(splits)), (295, tuple(splits))):
        y2, x2 = y.copy(), x.copy()
        y2[t + 1 :] += rng.standard_normal(len(y) - t - 1)
        x2[t + 1 :] += 3 * rng.standard_normal(len(x) - t - 1)
        out = B.classical_baselines(y2, splits, H, PERIOD, names=[name], covariates=x2[:, None])[
            name
        ]
        assert out.error is None
        for split in compared:
            before = splits[split][1] <= t
            np.testing.assert_allclose(
                out.forecasts[split][before], full.forecasts[split][before], rtol=0, atol=1e-8
            )
        if t < 290:  # the change is seen by the later forecasts
            later = splits["test"][1] > t + 1
            assert np.abs(out.forecasts["test"][later] - full.forecasts["test"][later]).max() > 1e-3


def test_a_covariate_that_drives_the_series_lowers_the_regression_baselines_errors():
    """The covariate's running sum moves the series: DHR and SARIMA forecast it better with
    the covariate than without, on validation and test; ETS ignores it (the same forecasts)."""
    y, x, _ = _synthetic()
    splits = _splits(y)
    with_x = B.classical_baselines(y, splits, H, PERIOD, names=B.FIXED_NAMES, covariates=x[:, None])
    without = B.classical_baselines(y, splits, H, PERIOD, names=B.FIXED_NAMES)
    for name in ("DHR", "SARIMA airline"):
        for split in ("val", "test"):
            truth = splits[split][2]
            mae = [
                float(np.abs(r[name].forecasts[split] - truth).mean()) for r in (with_x, without)
            ]
            assert mae[0] < mae[1], (name, split, mae)
    assert (
        with_x["DHR"].details["covariates"] == 1
        and with_x["SARIMA airline"].details["test"]["covariates"] == 1
    )
    assert "covariates" not in without["DHR"].details
    for split, f in with_x["ETS (A,A,A)"].forecasts.items():
        np.testing.assert_array_equal(f, without["ETS (A,A,A)"].forecasts[split])


def test_no_covariate_columns_is_no_covariates():
    y, _, _ = _synthetic()
    splits = _splits(y)
    plain = B.classical_baselines(y, splits, H, PERIOD, names=["DHR", "SARIMA airline"])
    empty = B.classical_baselines(
        y, splits, H, PERIOD, names=["DHR", "SARIMA airline"], covariates=np.zeros((len(y), 0))
    )
    for name in plain:
        assert plain[name].details == empty[name].details
        for split, f in plain[name].forecasts.items():
            np.testing.assert_array_equal(f, empty[name].forecasts[split])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((299, 1)), r"expected shape \(300, k\) aligned with y, got \(299, 1\)"),
        (
            np.zeros(300),
            r"expected shape \(300, k\) aligned with y \(one covariate: pass x\[:, None\]\), got \(300,\)",
        ),
        (np.zeros((300, 1, 1)), r"expected shape \(300, k\) aligned with y, got \(300, 1, 1\)"),
        (
            np.where(np.arange(300)[:, None] == 7, np.nan, 0.0),
            r"expected finite values, got nan at row 7, column 0",
        ),
        (np.full((300, 2), np.inf), r"expected finite values, got inf at row 0, column 0"),
        (np.full((300, 1), "a"), r"expected real numbers, got dtype <U1"),
    ],
)
def test_bad_covariates_are_a_clear_error(bad, message):
    y, _, _ = _synthetic()
    with pytest.raises(ValueError, match=r"classical_baselines: covariates: " + message):
        B.classical_baselines(y, _splits(y), H, PERIOD, covariates=bad)
