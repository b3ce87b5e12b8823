"""The automatic classical models (statsforecast): each origin's forecast is the library's own
``forward`` from the data up to that origin, nothing after an origin changes it, SeasonalNaive
is rnnfuse's seasonal naive, AutoARIMA's fit reads at most its window, the hybrids' base is the
one with the lowest validation MAE."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("statsforecast")
pytest.importorskip("statsmodels")

from rnnfuse.app import baselines as B
from rnnfuse.app import classical as C
from rnnfuse.app.results import ClassicalFit

pytestmark = pytest.mark.slow  # statsforecast fits at every origin

PERIOD = 12.5  # fractional: statsforecast gets m = round(12.5) = 12, DHR the exact 12.5
SEASON = 12
H = 4


def _series(n=240, seed=0, gap=True):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.6 * noise[i - 1] + 0.2 * rng.standard_normal()
    y = (
        10
        + 0.05 * t
        + 2 * np.sin(2 * np.pi * t / PERIOD)
        + 0.5 * np.cos(4 * np.pi * t / PERIOD)
        + noise
    )
    if gap:
        y[150:153] = np.nan  # a gap before the origins below (and origins inside it)
    return y


def _reference(name, model, y, t, regressors=None):
    """The library's own forecast from the data up to ``t`` only (gaps filled from inside it
    for the models that need a complete series; AutoARIMA's Kalman filter skips them)."""
    history = y[: t + 1]
    if name == "AutoARIMA":
        x = None if regressors is None else regressors[: t + 1]
        future = None if regressors is None else regressors[t + 1 : t + 1 + H]
        return model.forward(y=history, h=H, X=x, X_future=future)["mean"]
    history = B._fill(history)
    if name == "SeasonalNaive":
        return model.forecast(y=history, h=H)["mean"]
    return model.forward(y=history, h=H)["mean"]


ORIGINS = np.array([40, 120, 150, 151, 152, 153, 190, 235])  # 150-152: inside the gap


@pytest.mark.parametrize("name", C.AUTO_NAMES)
def test_each_origin_forecasts_what_forward_does_from_the_data_up_to_it(name):
    y = _series()
    model, details = C.fit_auto(name, y, 170, SEASON)
    assert details["season"] == SEASON
    got = C.auto_forecasts(name, model, y, ORIGINS, H)
    for row, t in enumerate(ORIGINS):
        np.testing.assert_allclose(
            got[row], _reference(name, model, y, int(t)), rtol=0, atol=1e-8, err_msg=f"origin {t}"
        )


@pytest.mark.parametrize("name", C.AUTO_NAMES)
def test_changing_the_data_after_an_origin_leaves_its_forecast_unchanged(name):
    """Through the whole protocol (a fit before each split, forecasts at its origins): values
    after an origin, changed or cut off, change nothing at that origin."""
    y = _series()
    val, test = np.arange(169, 200), np.arange(199, 236)
    splits = {"val": (170, val, None), "test": (200, test, None)}
    full, _ = C.run_auto(name, y, splits, H, SEASON)
    for split, row in (("val", 0), ("val", 20), ("test", 0), ("test", 30)):
        t = int(splits[split][1][row])
        changed = y.copy()
        changed[t + 1 :] += np.random.default_rng(t).normal(0, 5, len(y) - t - 1)
        other, _ = C.run_auto(name, changed, splits, H, SEASON)
        np.testing.assert_allclose(other[split][row], full[split][row], atol=1e-8)
        if splits[split][1].max() > t + SEASON:  # later origins did see the change
            assert not np.allclose(other[split], full[split])
        if split == "test":  # the series cut right after the origin
            short, _ = C.run_auto(
                name,
                y[: t + 1],
                {"val": (170, val, None), "test": (200, test[test <= t], None)},
                H,
                SEASON,
            )
            np.testing.assert_allclose(short["test"][-1], full["test"][row], atol=1e-8)


def test_arima_with_covariate_regressors_equals_forward_with_them():
    y = _series(gap=False)
    rng = np.random.default_rng(3)
    x = np.cumsum(rng.standard_normal(len(y)))[:, None]
    y = y + 0.3 * np.r_[np.zeros(H), x[:-H, 0]]  # the covariate moves the series H steps later
    regressors = B.covariate_regressors(x, H, len(y) + H, PERIOD)
    model, details = C.fit_auto("AutoARIMA", y, 170, SEASON, regressors)
    assert sum(k.startswith("ex_") for k in details["coef"]) == 2  # a level and a running sum
    got = C.auto_forecasts("AutoARIMA", model, y, ORIGINS, H, regressors)
    for row, t in enumerate(ORIGINS):
        np.testing.assert_allclose(
            got[row], _reference("AutoARIMA", model, y, int(t), regressors), atol=1e-8
        )


def test_seasonal_naive_equals_rnnfuses_seasonal_naive():
    from rnnfuse.app.data import Series
    from rnnfuse.app.metrics import seasonal_naive

    y = _series(gap=False)
    origins = np.arange(30, 236)
    model, _ = C.fit_auto("SeasonalNaive", y, 170, SEASON)
    ours = C.auto_forecasts("SeasonalNaive", model, y, origins, H)
    series = Series(
        y, np.ones(len(y), bool), None, "index", [str(i) for i in range(len(y))], "synthetic", "v"
    )
    windows = SimpleNamespace(
        origins=torch.from_numpy(origins), targets=torch.zeros(len(origins), H)
    )  # what it reads
    np.testing.assert_array_equal(ours, seasonal_naive(series, windows, SEASON))


def test_arima_fit_reads_at_most_its_window(monkeypatch):
    """The cost bound: AutoARIMA's fit receives the last arima_window(m) points before fit_end,
    however long the series; the forecasts still filter the whole series."""
    from statsforecast.models import AutoARIMA

    seen = []
    fit = AutoARIMA.fit

    def spy(self, y, X=None):
        seen.append((len(y), float(y[-1]), self.approximation, self.max_P, self.max_Q))
        return fit(self, y, X)

    monkeypatch.setattr(AutoARIMA, "fit", spy)
    monkeypatch.setattr(C, "ARIMA_MIN_POINTS", 60)
    y = _series(400, gap=False)
    assert C.arima_window(SEASON) == 120
    model, details = C.fit_auto("AutoARIMA", y, 350, SEASON)
    assert seen == [(120, y[349], True, 2, 2)] and details["window"] == 120
    assert np.isfinite(C.auto_forecasts("AutoARIMA", model, y, np.array([100, 399 - H]), H)).all()
    monkeypatch.setattr(C, "ARIMA_MIN_POINTS", 500)
    assert C.arima_window(52) == 520 and C.arima_window(48) == 500 and C.arima_window(1) == 500
    long = C.make_model("AutoARIMA", 52)
    assert (long.approximation, long.max_P, long.max_Q) == (True, 1, 1)


def test_non_seasonal_series_skip_dhr_with_a_reason():
    y = _series(gap=False) - 2 * np.sin(2 * np.pi * np.arange(240) / PERIOD)
    steps = np.arange(1, H + 1)
    splits = {
        k: (end, o, y[o[:, None] + steps])
        for k, end, o in (("val", 170, np.arange(169, 200)), ("test", 200, np.arange(199, 236)))
    }
    out = B.classical_baselines(
        y, splits, H, 1.0, names=["DHR", "AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"]
    )
    assert out["DHR"].error.startswith("skipped: DHR needs a seasonal period > 2")
    for name in C.AUTO_NAMES:
        assert out[name].error is None, (name, out[name].error)
        assert out[name].details["val"].get("season", 1) == 1
    np.testing.assert_allclose(
        out["SeasonalNaive"].forecasts["val"], np.repeat(y[splits["val"][1], None], H, axis=1)
    )
    assert out["AutoARIMA"].details["val"]["order"].endswith("1")  # ARIMA(p,d,q)(0,0,0)1


def test_the_base_chosen_on_validation_has_the_lowest_validation_mae():
    truth = np.zeros((5, H))

    def result(offset, error=None):
        return ClassicalFit("any", {} if error else {"val": truth + offset}, {}, error, 0.0)

    # DHR +1, AutoARIMA -1: their mean is exact; AutoETS 0.5 alone; the failed one is no candidate
    results = {
        "DHR": result(1.0),
        "AutoARIMA": result(-1.0),
        "AutoETS": result(0.5),
        "AutoTheta": result(0.0, "boom"),
    }
    choice = B.choose_base(results, truth)
    assert (choice.name, choice.parts) == ("DHR + AutoARIMA mean", ("DHR", "AutoARIMA"))
    assert choice.to_json()["chosen"] == choice.name
    assert choice.val_mae == {
        "DHR": 1.0,
        "AutoARIMA": 1.0,
        "AutoETS": 0.5,
        "DHR + AutoARIMA mean": 0.0,
        "DHR + AutoETS mean": 0.75,
    }
    results["AutoARIMA"], results["AutoETS"] = (
        result(-0.5),
        result(0.1),
    )  # DHR + AutoARIMA mean: 0.25
    assert _named(B.choose_base(results, truth)) == ("AutoETS", ("AutoETS",))
    # ties (DHR, AutoETS and their mean all 0.5): the fewer parts win, then the earlier candidate
    tie = {"DHR": result(0.5), "AutoETS": result(0.5)}
    assert _named(B.choose_base(tie, truth)) == ("DHR", ("DHR",))
    assert _named(B.choose_base(tie, truth, names=["AutoETS", "DHR"])) == ("AutoETS", ("AutoETS",))
    nothing = B.choose_base({"DHR": result(0.0, "boom")}, truth)
    assert _named(nothing) == ("", ()) and nothing.to_json() == {"val_mae": {}, "chosen": None}


def _named(choice):
    return choice.name, choice.parts
