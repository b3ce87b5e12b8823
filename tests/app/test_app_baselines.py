"""Classical baselines (statsmodels) and the demo on any series: known answers, no look-ahead,
the CLI end to end."""

import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("statsmodels")

from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing
from statsmodels.tsa.statespace.sarimax import SARIMAX

from rnnfuse.app import baselines as B
from rnnfuse.app.config import (
    DataConfig,
    ModelConfig,
)
from rnnfuse.app.data import load_csv
from rnnfuse.app.metrics import forecast
from rnnfuse.app.model import build_model
from rnnfuse.app.results import ClassicalFit
from rnnfuse.app.windows import make_windows, prepare
from rnnfuse.cli import main

pytestmark = pytest.mark.slow  # statsmodels fits and the demo end to end

PERIOD = 12.5  # a non-integer period, as a year of weeks (52.18)
H = 4


def _seasonal(n, noise=0.05, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    clean = (
        10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + 0.5 * np.cos(4 * np.pi * t / PERIOD)
    )
    return clean + noise * rng.standard_normal(n), clean


def test_dhr_recovers_a_known_trend_and_fractional_season():
    y, clean = _seasonal(240, noise=0.01)
    model, details = B.fit_dhr(y, 200, PERIOD, 2, H)
    origins = np.arange(200, 236)
    pred = B.state_forecasts(model, origins, H)
    truth = clean[origins[:, None] + np.arange(1, H + 1)]
    assert (
        details["K"] == 2 and np.abs(pred - truth).max() < 0.05
    )  # noise 0.01: the answer is known


@pytest.mark.parametrize("t", [200, 217, 235])
def test_state_forecasts_equal_statsmodels_forecasts_from_the_truncated_series(t):
    """An independent computation: statsmodels' own forecast from a model that never saw y[t+1:]."""
    y, _ = _seasonal(240)
    model, details = B.fit_dhr(y, 200, PERIOD, 2, H)
    ours = B.state_forecasts(model, np.array([t]), H)[0]
    x = B.fourier(t + 1 + H, PERIOD, 2)
    params = np.asarray(details["params"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = SARIMAX(y[: t + 1], exog=x[: t + 1], order=(1, 1, 1)).filter(params)
        theirs = short.forecast(H, exog=x[t + 1 :])
        dynamic = model.get_prediction(start=t + 1, end=t + H, dynamic=True).predicted_mean
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours, dynamic, rtol=0, atol=1e-8)


def test_ets_and_sarima_match_statsmodels_on_the_fitting_window():
    """At the last fitted point our filter with the fitted parameters forecasts what the fitted
    statsmodels model forecasts."""
    y, _ = _seasonal(240)
    season, end = 12, 200
    model, details, start = B.fit_ets(y, end, season)
    ours = B.state_forecasts(model, np.array([end - 1 - start]), H)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ExponentialSmoothing(
            y[start:end], trend=True, seasonal=season, initialization_method="concentrated"
        ).fit(disp=False)
    np.testing.assert_allclose(ours, ref.forecast(H), atol=1e-6)
    model, details, start = B.fit_sarima(y, end, season)
    ours = B.state_forecasts(model, np.array([end - 1 - start]), H)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SARIMAX(y[start:end], order=(0, 1, 1), seasonal_order=(0, 1, 1, season)).filter(
            details["params"]
        )
    np.testing.assert_allclose(ours, ref.forecast(H), atol=1e-6)


@pytest.mark.parametrize("name", B.FIXED_NAMES)
def test_no_baseline_looks_ahead(name):
    """Truncating the series right after an origin leaves that origin's forecast unchanged."""
    y, _ = _seasonal(240)
    fit = {
        "DHR": lambda z: (B.fit_dhr(z, 150, PERIOD, 2, H)[0], 0),
        "ETS (A,A,A)": lambda z: B.fit_ets(z, 150, 12)[::2],
        "SARIMA airline": lambda z: B.fit_sarima(z, 150, 12)[::2],
    }[name]
    model, start = fit(y)
    for t in (149, 180, 230):
        full = B.state_forecasts(model, np.array([t - start]), H)[0]
        short_model, short_start = fit(y[: t + 1])
        if name == "DHR":
            short = B.state_forecasts(short_model, np.array([t]), H)[0]
        else:  # ETS/SARIMA: nothing past the end to read; statsmodels' forecast from the end
            short = short_model.forecast(H)
            assert short_start == start
        np.testing.assert_allclose(full, short, atol=1e-8)


def test_the_network_does_not_look_ahead(tmp_path):
    y, _ = _seasonal(300)
    path = tmp_path / "s.csv"
    path.write_text("v\n" + "\n".join(f"{v:.6f}" for v in y) + "\n")
    config = DataConfig(
        csv=str(path),
        column="v",
        time_column=None,
        local_steps=8,
        global_blocks=12,
        block=2,
        min_global_blocks=3,
        horizon=H,
        period=12,
        val_steps=40,
        test_steps=40,
    )
    series = load_csv(path, "v")
    prepared = prepare(series, config)
    torch.manual_seed(0)
    model = build_model(ModelConfig(fusion="zoph-knight", local_sizes=(8,), global_sizes=(8,)))
    full = forecast(model, prepared.test)
    for row in (0, 17, len(prepared.test) - 1):
        t = int(prepared.test.origins[row])
        short_path = tmp_path / f"short{t}.csv"
        short_path.write_text("v\n" + "\n".join(f"{v:.6f}" for v in y[: t + 1]) + "\n")
        short = load_csv(short_path, "v")
        windows = make_windows(short, np.array([t]), config, prepared.scale, targets=False)
        np.testing.assert_allclose(forecast(model, windows)[0], full[row], atol=1e-5)


def test_a_failing_baseline_is_reported_not_dropped(monkeypatch):
    y, _ = _seasonal(240)

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(B, "fit_ets", broken)
    splits = {"val": (150, np.arange(150, 190), None), "test": (200, np.arange(200, 236), None)}
    out = B.classical_baselines(y, splits, H, PERIOD, names=["ETS (A,A,A)"])
    assert (
        out["ETS (A,A,A)"].error == "LinAlgError: singular matrix"
        and out["ETS (A,A,A)"].forecasts == {}
    )


def test_demo_on_a_user_csv_end_to_end(tmp_path, capsys):
    y, _ = _seasonal(200)
    path = tmp_path / "seasonal.csv"
    path.write_text("step,level\n" + "\n".join(f"{i},{v:.5f}" for i, v in enumerate(y)) + "\n")
    out = tmp_path / "demo"
    argv = [
        "demo",
        "--csv",
        str(path),
        "--column",
        "level",
        "--time-column",
        "step",
        "--period",
        "12.5",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--fusions",
        "local,sum",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "seasonal period 12.5 steps" in printed
    assert "| DHR (trend + K=" in printed and "Fourier of P=12.50" in printed
    for name in (
        "AutoETS",
        "AutoARIMA",
        "AutoTheta",
        "SeasonalNaive",
        "DHR + AutoARIMA mean (classical combination)",
    ):
        assert f"| {name} |" in printed, name
    assert (
        "with 1 seed there is no spread" in printed
        and "Best row on the held-out test stretch: **" in printed
    )
    results = json.loads((out / "results.json").read_text())
    assert {
        "models",
        "baselines",
        "winner",
        "runner_up",
        "seeds",
        "budget",
        "data",
        "wall_seconds",
    } <= set(results)
    assert results["period"] == 12.5 and results["best_classical"] in results["baselines"]
    for name, b in results["baselines"].items():
        assert b["error"] is None, name
        assert (
            len(b["test"]["mae_by_step"]) == 3
        )  # horizon round(12.5 / 4) = 3 (scaled with the period)
    base = results["hybrid_base"]  # the classical row with the lowest validation MAE
    hybrid = next(m for m in results["models"] if m["name"] == f"zoph-knight + {base}")
    assert len(hybrid["correction_weights"]) == 1 and 0.0 <= hybrid["correction_weights"][0] <= 1.0
    classical = {
        n: b
        for n, b in results["baselines"].items()
        if b["kind"] == "classical" and b["error"] is None
    }
    assert len(classical) == 9  # DHR, the four automatic models, four combinations
    row = next(n for n in classical if n == base or n.startswith(f"{base} ("))
    assert classical[row]["val"]["mae"] == min(b["val"]["mae"] for b in classical.values())
    protocol = (out / "results.md").read_text()
    assert (
        "its encoders read the series, and its decoder that forecast, less DHR's fitted seasonal terms"
        in protocol
    )
    # a seasonal series with little noise: the classical models beat seasonal naive
    assert (
        results["baselines"][results["best_classical"]]["test"]["mae"]
        < results["baselines"]["seasonal naive"]["test"]["mae"]
    )
    for name in ("forecasts.png", "training_curves.png", "error_by_step.png"):
        assert (out / name).stat().st_size > 1000


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "x"])
def test_bad_period_is_a_one_line_error(value, tmp_path, capsys):
    assert main(["demo", f"--period={value}", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("rnnfuse demo: error: --period: ") and "\n" not in err and repr(value) in err
    )


def test_a_combination_is_the_mean_of_its_parts_and_does_not_look_ahead():
    """'DHR + ETS mean' equals the mean of the two forecasts, and truncating the series right after
    an origin leaves that origin's combined forecast unchanged."""
    y, _ = _seasonal(240)
    season = 12

    def combined(z, t):
        dhr = B.state_forecasts(B.fit_dhr(z, 150, PERIOD, 2, H)[0], np.array([t]), H)[0]
        model, _, start = B.fit_ets(z, 150, season)
        ets = B.state_forecasts(model, np.array([t - start]), H)[0]
        out = B.combine(
            [
                ClassicalFit("DHR", {"test": dhr[None]}, {}, None, 1.0),
                ClassicalFit("ETS (A,A,A)", {"test": ets[None]}, {}, None, 1.0),
            ],
            "DHR + ETS mean",
        )
        return out, dhr, ets

    for t in (160, 230):
        out, dhr, ets = combined(y, t)
        assert out.error is None and out.seconds == 2.0 and out.name == "DHR + ETS mean"
        np.testing.assert_allclose(out.forecasts["test"][0], (dhr + ets) / 2, atol=1e-12)
        short, _, _ = combined(y[: t + 1], t)
        np.testing.assert_allclose(short.forecasts["test"], out.forecasts["test"], atol=1e-8)
    failed = B.combine([ClassicalFit("DHR", {}, {}, "boom", 1.0), combined(y, 160)[0]], "both")
    assert failed.forecasts == {} and "boom" in failed.error


def test_combination_rows_in_classical_baselines_via_the_demo_helper():
    from rnnfuse.app.demo import _combinations
    from rnnfuse.app.hybrid import hybrid_base

    y, _ = _seasonal(240)
    steps = np.arange(1, H + 1)
    splits = {
        k: (end, o, y[o[:, None] + steps])
        for k, end, o in (("val", 150, np.arange(150, 190)), ("test", 200, np.arange(200, 236)))
    }
    out = B.classical_baselines(y, splits, H, PERIOD, names=B.FIXED_NAMES)
    assert all(v.error is None for v in out.values())
    combos = _combinations(out)
    assert set(combos) == {"DHR + ETS mean", "DHR + SARIMA mean"}  # those whose parts were fitted
    for name in combos:
        a, b = B.COMBINATIONS[name]
        for split in ("val", "test"):
            np.testing.assert_allclose(
                combos[name].forecasts[split],
                (out[a].forecasts[split] + out[b].forecasts[split]) / 2,
            )
    # the hybrids' base: the candidate (a baseline or a combination) with the lowest validation MAE
    choice = hybrid_base(out, splits["val"][2], B.FIXED_NAMES)
    name, parts = choice.name, choice.parts
    rows = {**out, **combos}
    maes = {
        n: float(np.abs(rows[n].forecasts["val"] - splits["val"][2]).mean())
        for n in [*B.FIXED_NAMES, *combos]
    }
    assert choice.val_mae == pytest.approx(maes) and name == min(maes, key=maes.get)
    assert choice.to_json() == {"val_mae": choice.val_mae, "chosen": name}
    assert parts == B.COMBINATIONS.get(name, (name,))


@pytest.mark.parametrize("name", ["ETS (A,A,A)", "SARIMA airline"])
def test_training_forecasts_for_the_hybrids_do_not_look_ahead(name):
    """ETS/SARIMA forecasts at training origins (a filter started some seasons before each block
    of origins, gaps filled inside the window only): truncating the series after an origin
    leaves that origin's forecast unchanged; origins with too little history are NaN."""
    y, _ = _seasonal(300)
    y[70:74] = np.nan  # a gap
    season = 12
    params = (B.fit_ets if name.startswith("ETS") else B.fit_sarima)(y, 250, season)[1]["params"]
    origins = np.arange(40, 240)
    full = B._rolling(name, y, origins, params, season, H)
    span = (5 if name.startswith("ETS") else 6) * season
    assert np.isnan(full[origins < span - 1]).all() and np.isfinite(full[origins >= span - 1]).all()
    for t in (span - 1, 131, 200, 239):
        short = B._rolling(name, y[: t + 1], origins[origins <= t], params, season, H)
        np.testing.assert_allclose(short[-1], full[origins == t][0], atol=1e-8)


def test_dhr_seasonal_part_recovers_the_known_season():
    """The fitted Fourier terms times their coefficients are the series' seasonal component
    (2 sin + 0.5 cos of the second harmonic here), without the trend."""
    y, _ = _seasonal(240, noise=0.01)
    _, details = B.fit_dhr(y, 200, PERIOD, 2, H)
    t = np.arange(240)
    known = 2 * np.sin(2 * np.pi * t / PERIOD) + 0.5 * np.cos(4 * np.pi * t / PERIOD)
    np.testing.assert_allclose(B.seasonal_part(240, PERIOD, 2, details["params"]), known, atol=0.02)


def _hybrid_forecast(y, origins, config, scale, model):
    """A hybrid's forecasts at ``origins`` made as the demo makes them: the DHR forecast as base
    (parameters fitted on ``y[:150]``), encoders reading ``y`` less DHR's seasonal part."""
    from rnnfuse.app.windows import deseasonalised, deseasonalised_forecast, with_base

    fitted, details = B.fit_dhr(y, 150, PERIOD, 2, H)
    base = B.state_forecasts(fitted, origins, H)
    series = _series(y)
    seasonal = B.seasonal_part(len(y) + H, PERIOD, 2, details["params"])
    windows = make_windows(series, origins, config, scale, targets=False)
    decoder_input = deseasonalised_forecast(windows, base, seasonal, scale)
    return forecast(
        model,
        with_base(
            deseasonalised(windows, series, seasonal[: len(y)], config, scale),
            base,
            [decoder_input],
        ),
    )


def test_the_hybrid_with_deseasonalised_inputs_does_not_look_ahead():
    """Truncating the series right after an origin leaves the hybrid's forecast there unchanged
    (its base, its deseasonalised encoder and decoder inputs and its network's output)."""
    y, _ = _seasonal(240)
    config = DataConfig(
        local_steps=8, global_blocks=12, block=2, min_global_blocks=3, horizon=H, period=12
    )
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(fusion="zoph-knight", local_sizes=(8,), global_sizes=(8,)), extra_covariates=1
    )
    origins = np.arange(160, 236)
    full = _hybrid_forecast(y, origins, config, 1.5, model)
    for row in (0, 30, len(origins) - 1):
        t = int(origins[row])
        short = _hybrid_forecast(y[: t + 1], np.array([t]), config, 1.5, model)
        np.testing.assert_allclose(short[0], full[row], atol=1e-5)


def test_deseasonalised_windows_read_the_adjusted_values_and_keep_the_rest():
    from rnnfuse.app.windows import deseasonalised

    y, _ = _seasonal(200)
    series = _series(y)
    config = DataConfig(
        local_steps=8, global_blocks=12, block=2, min_global_blocks=3, horizon=H, period=12
    )
    origins = np.arange(30, 190)
    plain = make_windows(series, origins, config, 2.0)
    seasonal = np.sin(np.arange(200))
    out = deseasonalised(plain, series, seasonal, config, 0.5)
    adjusted = y - seasonal
    t = origins[:, None] + np.arange(-7, 1)[None, :]
    np.testing.assert_allclose(
        out.local[..., 0].numpy(), (adjusted[t] - adjusted[origins, None]) / 0.5, atol=1e-5
    )
    for name in ("targets", "covariates", "anchor", "origins", "global_len"):
        assert torch.equal(getattr(out, name), getattr(plain, name)), name
    assert torch.equal(out.local[..., 1:], plain.local[..., 1:])  # the phase features
    with pytest.raises(
        ValueError,
        match=r"deseasonalised: expected a seasonal component of shape \(200,\), got \(3,\)",
    ):
        deseasonalised(plain, series, np.zeros(3), config, 0.5)


def _series(y):
    """``y`` as a fully observed series without a time column."""
    from rnnfuse.app.data import Series

    return Series(
        np.asarray(y, float),
        np.ones(len(y), bool),
        None,
        "index",
        [str(i) for i in range(len(y))],
        "synthetic",
        "v",
    )


def test_the_correction_weight_is_chosen_on_validation():
    """``blend`` adds ``w`` of the network's correction to the base; ``correction_weight`` picks the
    ``w`` with the lowest validation MAE: 1 for a network that is right, 0 for one that is off."""
    from rnnfuse.app.hybrid import blend, correction_weight
    from rnnfuse.app.metrics import truth
    from rnnfuse.app.windows import with_base

    y, _ = _seasonal(200)
    series = _series(y)
    config = DataConfig(
        local_steps=8, global_blocks=12, block=2, min_global_blocks=3, horizon=H, period=12
    )
    plain = make_windows(series, np.arange(30, 190), config, 2.0)
    target = truth(series, plain)
    base = target + 0.3  # a biased classical forecast
    windows = with_base(plain, base)
    np.testing.assert_allclose(blend(windows, target, 0.25), target + 0.225)
    weight, val = correction_weight(target, windows, series)
    assert weight == 1.0 and val.mae < 1e-6
    weight, val = correction_weight(target + 5.0, windows, series)  # a correction far off
    assert weight == 0.0 and val.mae == pytest.approx(0.3)
    weight, _ = correction_weight(
        target - 0.3, windows, series
    )  # over-corrects twice: half of it is right
    assert weight == 0.5


def test_the_deseasonalised_forecast_and_the_decoder_inputs():
    """A forecast less the seasonal terms at its targets, relative to the deseasonalised anchor:
    a forecast equal to the known series gives its deseasonalised changes; ``with_base`` puts it
    as the decoder's last covariate and checks its shape."""
    from rnnfuse.app.metrics import truth
    from rnnfuse.app.windows import deseasonalised_forecast, with_base

    y, _ = _seasonal(200)
    series = _series(y)
    config = DataConfig(
        local_steps=8, global_blocks=12, block=2, min_global_blocks=3, horizon=H, period=12
    )
    origins = np.arange(30, 190)
    windows = make_windows(series, origins, config, 2.0)
    seasonal = np.cos(np.arange(200 + H))
    target = truth(series, windows)
    got = deseasonalised_forecast(windows, target, seasonal, 0.5)
    steps = origins[:, None] + np.arange(1, H + 1)
    adjusted = y - seasonal[:200]
    np.testing.assert_allclose(
        got, (adjusted[steps] - adjusted[origins, None]) / 0.5, atol=1e-4
    )  # float32 anchor
    hybrid = with_base(windows, target, [got])
    np.testing.assert_allclose(hybrid.covariates[..., -1].numpy(), got, atol=1e-5)
    assert hybrid.covariates.shape[-1] == windows.covariates.shape[-1] + 1
    with pytest.raises(ValueError, match="does not reach step 193"):
        deseasonalised_forecast(windows, target, seasonal[:193], 0.5)
    with pytest.raises(
        ValueError,
        match=r"with_base: expected decoder inputs of shape \(160, 4\), got \[\(160, 3\)\]",
    ):
        with_base(windows, target, [got[:, :3]])
