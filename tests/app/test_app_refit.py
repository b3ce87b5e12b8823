"""Refit before test in ``rnnfuse demo``: the refitted model trains on exactly the windows whose
targets lie before the test stretch, never looks ahead, and replaces the test column only."""

import json

import numpy as np
import pytest

pytest.importorskip("statsmodels")

from rnnfuse.app import baselines as B
from rnnfuse.app.config import DataConfig
from rnnfuse.app.data import Series, load_csv
from rnnfuse.app.experiment import Budget, apply_refits, train_one
from rnnfuse.app.hybrid import blend_base, hybrid_data
from rnnfuse.app.results import Errors, HybridBase, NetworkRun, RefitRun
from rnnfuse.app.windows import prepare, split_origins
from rnnfuse.cli import build_parser, main

pytestmark = pytest.mark.slow  # trains and refits forecasters

H = 4
PERIOD = 12
CONFIG = dict(
    local_steps=8,
    global_blocks=12,
    block=2,
    min_global_blocks=3,
    horizon=H,
    period=PERIOD,
    val_steps=40,
    test_steps=40,
)


def _y(n=200, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 10 + 0.05 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + 0.1 * rng.standard_normal(n)


def _csv(tmp_path, y, name="s.csv"):
    """``y`` as a one-column CSV (NaN: a missing cell) and its DataConfig."""
    path = tmp_path / name
    path.write_text("v\n" + "\n".join("" if np.isnan(v) else f"{v:.6f}" for v in y) + "\n")
    return DataConfig(csv=str(path), column="v", time_column=None, **CONFIG)


def _series(y):
    return Series(
        np.asarray(y, float),
        np.ones(len(y), bool),
        None,
        "index",
        [str(i) for i in range(len(y))],
        "synthetic",
        "v",
    )


def test_the_refit_trains_on_exactly_the_windows_before_the_test_stretch(tmp_path):
    """Every origin whose H targets are observed and end before the first test target, from the
    first origin with enough history: the training and validation windows and the few between
    them; no test window, no window whose targets reach into the test stretch or hold a gap."""
    y = _y()
    y[100:103] = np.nan  # a gap: windows whose targets hold it are left out
    config = _csv(tmp_path, y)
    series = load_csv(config.csv, "v")
    sp = split_origins(series, config)
    first = max(config.local_steps, config.block * config.min_global_blocks, 2 * PERIOD) - 1
    expected = [
        t
        for t in range(first, len(y) - H)
        if t + H < sp.test_start and np.isfinite(y[t + 1 : t + H + 1]).all()
    ]
    np.testing.assert_array_equal(sp.before_test, expected)
    assert set(sp.train) | set(sp.val) <= set(sp.before_test) and not set(sp.test) & set(
        sp.before_test
    )
    assert (
        len(sp.before_test) == len(sp.train) + len(sp.val) + H - 1
    )  # + the windows straddling the validation start
    assert (
        sp.before_test + H
    ).max() == sp.test_start - 1  # the last one ends on the first test origin's value

    refit, plain = prepare(series, config, refit=True), prepare(series, config)
    np.testing.assert_array_equal(refit.train.origins.numpy(), sp.before_test)
    values = (
        series.values
    )  # the gap filled: an origin's anchor may be a filled value, its targets never
    deltas = values[sp.before_test[:, None] + np.arange(1, H + 1)] - values[sp.before_test, None]
    assert refit.scale == pytest.approx(deltas.std())  # the scale is fitted on the refit's windows
    np.testing.assert_allclose(refit.train.targets[..., 0].numpy(), deltas / refit.scale, atol=1e-5)
    for split in ("val", "test"):  # the same windows as without the refit
        np.testing.assert_array_equal(
            getattr(refit, split).origins.numpy(), getattr(plain, split).origins.numpy()
        )
    np.testing.assert_array_equal(plain.train.origins.numpy(), sp.train)


def _base(y, config, sp):
    """The demo's hybrid base (DHR + ETS mean) with its training and refit forecasts."""
    steps = np.arange(1, H + 1)
    splits = {
        "val": (sp.val_start, sp.val, y[sp.val[:, None] + steps]),
        "test": (sp.test_start, sp.test, y[sp.test[:, None] + steps]),
        "train": (sp.val_start, sp.train, None),
        "refit": (sp.test_start, sp.before_test, None),
    }
    parts = B.classical_baselines(y, splits, H, float(PERIOD), names=["DHR", "ETS (A,A,A)"])
    assert all(p.error is None for p in parts.values())
    combined = B.combine(list(parts.values()), "DHR + ETS mean").forecasts
    return HybridBase("DHR + ETS mean", **combined, dhr=parts["DHR"].details), parts


def test_the_hybrids_refit_reads_the_classical_fit_before_the_test_stretch(tmp_path):
    """Its training windows are the refit's windows with a base forecast, whose base is the
    forecast made with the parameters fitted before the test stretch (DHR's from the test
    fit's filter; ETS's from the rolling filter with the test fit's parameters)."""
    y = _y()
    config = _csv(tmp_path, y)
    sp = split_origins(load_csv(config.csv, "v"), config)
    base, parts = _base(y, config, sp)
    dhr_test, _ = B.fit_dhr(y, sp.test_start, float(PERIOD), parts["DHR"].details["K"], H)
    np.testing.assert_allclose(
        parts["DHR"].forecasts["refit"],
        B.state_forecasts(dhr_test, sp.before_test, H),
        atol=1e-10,
    )
    ets_params = parts["ETS (A,A,A)"].details["test"]["params"]
    np.testing.assert_allclose(
        parts["ETS (A,A,A)"].forecasts["refit"],
        B._rolling("ETS (A,A,A)", y, sp.before_test, ets_params, PERIOD, H),
    )
    refit = hybrid_data(config, base, refit=True)
    known = np.isfinite(np.asarray(base.refit)).all(axis=1)
    np.testing.assert_array_equal(refit.train.origins.numpy(), sp.before_test[known])
    np.testing.assert_allclose(refit.train.base.numpy(), np.asarray(base.refit)[known])
    np.testing.assert_allclose(refit.test.base.numpy(), np.asarray(base.test))
    plain = hybrid_data(config, base)
    np.testing.assert_array_equal(
        plain.train.origins.numpy(), sp.train[np.isfinite(np.asarray(base.train)).all(axis=1)]
    )
    assert (refit.train.origins.numpy() + H < sp.test_start).all() and len(refit.train) > len(
        plain.train
    )


@pytest.mark.parametrize("hybrid", [False, True])
def test_a_refitted_model_does_not_look_ahead(tmp_path, hybrid):
    """Replacing every value after a test origin (truncating the series there, at the same
    length) leaves the refitted model's forecast at that origin unchanged: its training windows,
    scale, classical base (DHR here; ETS's forecasts at any origin are checked in
    test_app_baselines) and weights depend on data before the test stretch only.  Both origins
    checked, the first test origin included, would change if any test target entered the
    refit's training."""
    y = _y()
    config = _csv(tmp_path, y)
    sp = split_origins(load_csv(config.csv, "v"), config)
    full = _refit_forecast(y, config, sp, hybrid)
    for row in (0, 17):
        t = int(sp.test[row])
        changed = y.copy()
        changed[t + 1 :] = changed[t + 1 :] * 1.5 - 7.0  # another future
        other = _csv(tmp_path, changed, f"cut{t}.csv")
        short = _refit_forecast(changed, other, sp, hybrid)
        np.testing.assert_allclose(short[: row + 1], full[: row + 1], atol=1e-6)
        assert not np.allclose(
            short[row + 1 :], full[row + 1 :], atol=1e-3
        )  # later origins see the other future


def _dhr_base(y, sp, k=2):
    """A hybrid base of DHR alone with K fixed (two fits: before validation, before test), made
    as :func:`rnnfuse.app.baselines.classical_baselines` makes it (tested above)."""
    before_val, val_details = B.fit_dhr(y, sp.val_start, float(PERIOD), k, H)
    before_test, details = B.fit_dhr(y, sp.test_start, float(PERIOD), k, H)
    forecasts = {
        "train": (before_val, sp.train),
        "val": (before_val, sp.val),
        "test": (before_test, sp.test),
        "refit": (before_test, sp.before_test),
    }
    base = {
        split: B.state_forecasts(model, origins, H) for split, (model, origins) in forecasts.items()
    }
    return HybridBase("DHR", **base, dhr=details | {"val_params": val_details["params"]})


def _refit_forecast(y, config, sp, hybrid):
    base = _dhr_base(y, sp) if hybrid else None
    run = train_one(
        "zoph-knight", Budget(steps=None, epochs=1), 0, None, config, base=base, refit=True
    )
    windows = (
        np.isfinite(np.asarray(base.refit)).all(axis=1).sum() if hybrid else len(sp.before_test)
    )
    assert isinstance(run, RefitRun) and run.windows == windows
    prediction = np.asarray(run.test_forecast)
    return blend_base(run.test_base, prediction, 0.7) if hybrid else prediction


def test_apply_refits_replaces_the_test_column_with_the_refits_and_keeps_the_rest():
    """The refit's test forecast replaces the run's (a hybrid's blended with the share its
    training-windows model chose on validation); val, history and the chosen share are the
    training-windows model's; its own test errors move to ``test_without_refit``."""
    y = _y(60)
    series = _series(y)
    test = prepare(
        series,
        DataConfig(
            local_steps=4,
            global_blocks=4,
            block=2,
            min_global_blocks=2,
            horizon=H,
            period=PERIOD,
            val_steps=8,
            test_steps=8,
        ),
    ).test
    target = y[test.origins.numpy()[:, None] + np.arange(1, H + 1)]
    base = target + 0.4
    fit = target - 0.2  # the network's own forecast, before the share

    def run(name, val_mae, test_mae, weight):
        val, test = (Errors(mae, mae, [mae] * H) for mae in (val_mae, test_mae))
        return NetworkRun(name, 3, "LSTM", 10, 1.0, [{"epoch": 1}], 1, 1, val, test, [], [], weight)

    own, plain = run("zk + DHR", 0.1, 9.0, 0.5), run("local", 0.2, 8.0, None)
    refits = [
        RefitRun("zk + DHR", 3, 1.5, 40, 1, fit.tolist(), base.tolist()),
        RefitRun("local", 3, 1.0, 41, 1, target.tolist(), None),
    ]
    hybrid, local = apply_refits([own, refits[0], plain, refits[1]], series, test)
    np.testing.assert_allclose(hybrid.test_forecast, target + 0.1)  # base + 0.5 (fit - base)
    assert hybrid.test.mae == pytest.approx(0.1) and hybrid.refitted is not None
    assert hybrid.refitted.test_without_refit == own.test
    assert (
        hybrid.val == own.val
        and hybrid.correction_weight == 0.5
        and hybrid.refitted.windows == 40
        and hybrid.refitted.seconds == 1.5
    )
    assert local.test.mae == pytest.approx(0.0, abs=1e-12) and local.refitted is not None
    assert local.refitted.test_without_refit == plain.test
    assert apply_refits([plain], series, test) == [plain]  # not refitted: unchanged
    with pytest.raises(
        ValueError,
        match=r"apply_refits: refits without their model trained on the training windows: \[\('local', 3\)\]",
    ):
        apply_refits([refits[1]], series, test)


def test_the_refit_flag(tmp_path, capsys):
    parser = build_parser()
    assert parser.parse_args(["demo"]).refit == "hybrids"
    assert parser.parse_args(["demo", "--refit", "all"]).refit == "all"
    assert parser.parse_args(["demo", "--refit=none"]).refit == "none"
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--refit", "yes", "--out", str(tmp_path / "d")])
    assert exc.value.code == 2
    assert (
        "argument --refit: invalid choice: 'yes' (choose from 'all', 'hybrids', 'none')"
        in capsys.readouterr().err
    )


def test_demo_with_and_without_refit_end_to_end(tmp_path, capsys):
    """``--refit all`` replaces every network's test column by its refit's and keeps its own test
    errors under ``test_without_refit``, which equal a ``--refit none`` run's test errors (the
    same seeded models); val, curves and correction shares do not change; the caption says so."""
    y = _y()
    path = tmp_path / "s.csv"
    path.write_text("step,level\n" + "\n".join(f"{i},{v:.5f}" for i, v in enumerate(y)) + "\n")
    common = [
        "demo",
        "--csv",
        str(path),
        "--column",
        "level",
        "--time-column",
        "step",
        "--period",
        "12",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--fusions",
        "local",
        "--baselines",
        "dhr",
        "--jobs",
        "1",
    ]
    results = {}
    for refit in ("all", "none"):
        assert main([*common, "--refit", refit, "--out", str(tmp_path / refit)]) == 0
        results[refit] = json.loads((tmp_path / refit / "results.json").read_text())
    printed = capsys.readouterr().out
    assert "| local (refit) |" in printed and "| zoph-knight + DHR (refit) |" in printed
    protocols = [(tmp_path / refit / "results.md").read_text() for refit in ("all", "none")]
    assert (
        "rows marked (refit): every network" in protocols[0]
        and "no network refitted before the test stretch" in protocols[1]
    )
    with_refit, without = results["all"], results["none"]
    assert with_refit["refit"] == "all" and without["refit"] == "none"
    for new, old in zip(with_refit["models"], without["models"]):
        assert (
            new["name"] == old["name"]
            and new["refit"]
            and not old["refit"]
            and "test_without_refit" not in old
        )
        assert new["test_without_refit"]["mae_per_seed"] == old["test"]["mae_per_seed"]
        untimed = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]
        assert new["val"] == old["val"] and untimed(new["history"]) == untimed(old["history"])
        if any(new.get("correction_weights") or [1.0]):
            assert (
                new["test"]["mae"] != old["test"]["mae"]
            )  # another model forecast the test stretch
        else:  # a hybrid that keeps none of its correction forecasts its base: no model changes that
            assert new["test"]["mae"] == old["test"]["mae"]
        assert new.get("correction_weights") == old.get("correction_weights")
    local, hybrid = with_refit["models"]
    assert (
        local["refit_windows"] == hybrid["refit_windows"] == with_refit["refit_windows"]
    )  # DHR forecasts at every origin
    drop = lambda b: {k: {f: v for f, v in e.items() if f != "seconds"} for k, e in b.items()}
    assert drop(with_refit["baselines"]) == drop(
        without["baselines"]
    )  # the classical forecasts do not change
    for refit in ("all", "none"):
        assert (tmp_path / refit / "runs" / "local-seed0" / "best.safetensors").exists()
    assert (tmp_path / "all" / "runs" / "local-seed0-refit" / "best.safetensors").exists()
    assert (
        tmp_path / "all" / "runs" / "zoph-knight-hybrid-seed0-refit" / "best.safetensors"
    ).exists()
    assert (tmp_path / "all" / "runs" / "zoph-knight-hybrid-seed0" / "best.safetensors").exists()
    assert not (tmp_path / "none" / "runs" / "local-seed0-refit").exists()
