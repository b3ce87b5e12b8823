"""rnnfuse.app.data and windows: the embedded series, CSV errors, windows and splits."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest

from rnnfuse.app.config import ConfigError, DataConfig, RunConfig, validate
from rnnfuse.app.data import DataError, load_csv, load_embedded
from rnnfuse.app.demo_data import demo_data, parse_period
from rnnfuse.app.metrics import seasonal_naive, seasonal_naive_drift
from rnnfuse.app.windows import fit_scale, make_windows, min_length, prepare, split_origins

SMALL = DataConfig(
    local_steps=4,
    global_blocks=3,
    block=2,
    min_global_blocks=2,
    horizon=3,
    period=4,
    val_steps=6,
    test_steps=6,
)


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_embedded_series_matches_the_raw_file():
    raw = resources.files("rnnfuse") / "data" / "co2.csv"
    rows = list(csv.DictReader(raw.read_text().splitlines()))
    series = load_embedded()
    assert len(series) == len(rows) == 2284
    assert series.missing == sum(1 for r in rows if r["co2"] == "") == 59
    assert series.labels[0] == "19580329" and series.labels[-1] == "20011229"
    observed = [float(r["co2"]) for r in rows if r["co2"]]
    np.testing.assert_array_equal(series.values[series.observed], observed)
    assert series.longest_gap == 18  # 1964-01-25 .. 1964-05-23


def test_gaps_are_filled_linearly_and_marked(tmp_path):
    path = _write(tmp_path, "t,v\n1,1.0\n2,\n3,NA\n4,4.0\n5,5\n")
    series = load_csv(path, "v", "t")
    np.testing.assert_allclose(series.values, [1, 2, 3, 4, 5])
    assert series.observed.tolist() == [True, False, False, True, True]
    assert series.time_kind == "number"


def test_missing_values_at_the_ends_are_dropped(tmp_path):
    series = load_csv(_write(tmp_path, "v\n\n2\n3\nNA\n"), "v")
    assert (
        series.values.tolist() == [2.0, 3.0] and series.dropped_edges == 2
    )  # the empty line and NA


def test_missing_column_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, "date,ppm\n20000101,1\n")
    with pytest.raises(
        DataError,
        match=rf"{path}, line 1: no column 'co2' \(--column\); the header has \['date', 'ppm'\]",
    ):
        load_csv(path, "co2", "date")


def test_non_numeric_value_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, "date,co2\n20000101,1.5\n20000108,abc\n")
    with pytest.raises(
        DataError, match=rf"{path}, line 3, column 'co2': expected a number .* got 'abc'"
    ):
        load_csv(path, "co2", "date")


def test_bad_or_decreasing_times_name_the_line(tmp_path):
    path = _write(tmp_path, "date,co2\n2000-01-01,1\n2000-01-08,2\nlater,3\n")
    with pytest.raises(
        DataError, match=rf"{path}, line 4, column 'date': expected a date .* got 'later'"
    ):
        load_csv(path, "co2", "date")
    path = _write(tmp_path, "date,co2\n2000-01-08,1\n2000-01-01,2\n", "dec.csv")
    with pytest.raises(DataError, match=r"line 3, column 'date': times must increase"):
        load_csv(path, "co2", "date")


def test_a_long_format_file_read_as_one_series_points_to_id_column(tmp_path):
    path = _write(tmp_path, "unique_id,ds,y\na,2000-01-01,1\na,2000-01-02,2\nb,2000-01-01,5\n")
    with pytest.raises(
        DataError, match=r"line 4, column 'ds': times must increase.*`rnnfuse train --id-column"
    ):
        load_csv(path, "y", "ds")


def test_short_row_and_missing_file(tmp_path):
    path = _write(tmp_path, "a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(DataError, match=rf"{path}, line 3: expected at least 3 fields"):
        load_csv(path, "c")
    with pytest.raises(DataError, match="nope.csv: file not found"):
        load_csv(tmp_path / "nope.csv", "c")


def test_too_short_for_the_windows_names_file_and_column(tmp_path):
    path = _write(tmp_path, "v\n" + "\n".join(str(i) for i in range(100)) + "\n")
    series = load_csv(path, "v")
    with pytest.raises(
        DataError,
        match=rf"{path}, column 'v': too short for the windows: 100 rows, need at least {min_length(DataConfig())}",
    ):
        prepare(series, DataConfig())


def _seasonal_csv(tmp_path, n=60, gap=None):
    t = np.arange(n)
    values = 10 + 0.1 * t + np.sin(2 * np.pi * t / 4) + 0.01 * (t % 3)
    cells = [f"{v:.6f}" for v in values]
    if gap is not None:
        cells[gap] = ""
    return load_csv(_write(tmp_path, "v\n" + "\n".join(cells) + "\n"), "v"), values


def test_windows_hold_the_normalised_history(tmp_path):
    series, y = _seasonal_csv(tmp_path)
    t, scale = 20, 2.0
    w = make_windows(series, np.array([t]), SMALL, scale)
    np.testing.assert_allclose(
        w.local[0, :, 0], (y[t - 3 : t + 1] - y[t]) / scale, rtol=1e-5, atol=1e-6
    )
    blocks = [(y[t - 5 : t - 3].mean()), y[t - 3 : t - 1].mean(), y[t - 1 : t + 1].mean()]
    np.testing.assert_allclose(
        w.global_[0, :, 0], (np.array(blocks) - y[t]) / scale, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        w.targets[0, :, 0], (y[t + 1 : t + 4] - y[t]) / scale, rtol=1e-5, atol=1e-6
    )
    phase = (np.arange(t + 1, t + 4) % 4) / 4
    np.testing.assert_allclose(w.covariates[0, :, 0], np.sin(2 * np.pi * phase), atol=1e-6)
    np.testing.assert_allclose(w.to_ppm(w.targets)[0].numpy(), y[t + 1 : t + 4], rtol=1e-6)


def test_global_history_is_ragged_near_the_start(tmp_path):
    series, _ = _seasonal_csv(tmp_path)
    w = make_windows(series, np.array([4, 5, 30]), SMALL, 1.0)
    assert w.global_len.tolist() == [2, 3, 3]
    assert w.global_[0, 2].abs().sum() == 0  # padding after the valid blocks


def test_global_rows_are_the_block_means_and_phases_for_every_origin(tmp_path):
    """Every origin, ragged ones included, against a per-origin reference: row j < count is the
    mean of the block ending at t - block * (count - 1 - j), relative to y[t] over the scale,
    with the phase of its last step (dates: the fraction of the year); zeros after count."""
    n = 80
    days = [(dt.date(2000, 1, 1) + dt.timedelta(weeks=i)).strftime("%Y-%m-%d") for i in range(n)]
    y = 5 + 0.2 * np.arange(n) + np.cos(np.arange(n))
    series = load_csv(
        _write(tmp_path, "d,v\n" + "\n".join(f"{d},{v:.6f}" for d, v in zip(days, y)) + "\n"),
        "v",
        "d",
    )
    config = DataConfig(
        local_steps=4,
        global_blocks=5,
        block=3,
        min_global_blocks=1,
        horizon=2,
        period=52,
        val_steps=6,
        test_steps=6,
    )
    origins = np.arange(1, n - 2)
    w = make_windows(series, origins, config, 1.5)
    start = series.times[0]
    for row, t in enumerate(origins):
        count = min(5, (t + 1) // 3)
        assert w.global_len[row] == count
        ends = t - 3 * np.arange(count - 1, -1, -1)
        means = np.array([y[e - 2 : e + 1].mean() for e in ends])
        phase = 2 * np.pi * (((start + 7 * ends) / 365.2425) % 1.0)
        expected = np.stack([(means - y[t]) / 1.5, np.sin(phase), np.cos(phase)], axis=-1)
        np.testing.assert_allclose(w.global_[row, :count].numpy(), expected, rtol=1e-5, atol=1e-5)
        assert w.global_[row, count:].abs().sum() == 0


def test_splits_do_not_leak_and_skip_filled_targets(tmp_path):
    series, _ = _seasonal_csv(tmp_path, gap=30)
    sp = split_origins(series, SMALL)
    h = SMALL.horizon
    assert (sp.train + h < sp.val_start).all()
    assert (sp.val + 1 >= sp.val_start).all() and (sp.val + h < sp.test_start).all()
    assert (sp.test + 1 >= sp.test_start).all() and (sp.test + h < len(series)).all()
    for origins in (sp.train, sp.val, sp.test):
        assert not any(t < 30 <= t + h for t in origins)  # no window forecasts the filled value
    assert len(sp.test) == SMALL.test_steps - h + 1


def test_scale_uses_training_windows_only(tmp_path):
    series, y = _seasonal_csv(tmp_path)
    sp = split_origins(series, SMALL)
    scale = fit_scale(series, sp.train, SMALL.horizon)
    changed = series.values.copy()
    changed[sp.val_start :] *= 3.0
    other = type(series)(**{**series.__dict__, "values": changed})
    assert fit_scale(other, split_origins(other, SMALL).train, SMALL.horizon) == scale


def _windows(series, config, origins):
    return make_windows(series, np.asarray(origins), config, 1.0)


def test_seasonal_naive_past_one_period_repeats_the_last_season(tmp_path):
    """h > P: y[t + h - P * ceil(h / P)], never a value after the origin."""
    series, y = _seasonal_csv(tmp_path)
    config = DataConfig(
        local_steps=4,
        global_blocks=3,
        block=2,
        min_global_blocks=2,
        horizon=9,
        period=4,
        val_steps=9,
        test_steps=9,
    )
    origins = np.array([20, 31])
    w = _windows(series, config, origins)
    steps = np.arange(1, 10)
    source = origins[:, None] + steps - 4 * np.ceil(steps / 4).astype(int)
    assert (source <= origins[:, None]).all()
    np.testing.assert_allclose(seasonal_naive(series, w, 4), y[source])
    growth = np.array([y[t - 3 : t + 1].mean() - y[t - 7 : t - 3].mean() for t in origins])
    np.testing.assert_allclose(
        seasonal_naive_drift(series, w, 4), y[source] + growth[:, None] * np.ceil(steps / 4)
    )


def test_period_one_is_non_seasonal_naive_and_constant_phases(tmp_path):
    series, y = _seasonal_csv(tmp_path)
    config = DataConfig(
        local_steps=4,
        global_blocks=3,
        block=2,
        min_global_blocks=2,
        horizon=5,
        period=1,
        val_steps=6,
        test_steps=6,
    )
    assert not config.seasonal and SMALL.seasonal
    validate(RunConfig(data=config), "test")  # horizon 5 > period 1 is allowed
    w = _windows(series, config, [20, 30])
    np.testing.assert_allclose(
        seasonal_naive(series, w, 1), np.repeat(y[[20, 30], None], 5, axis=1)
    )
    drift = seasonal_naive_drift(series, w, 1)
    np.testing.assert_allclose(drift[0], y[20] + (y[20] - y[19]) * np.arange(1, 6))
    for features in (
        w.local[..., 1:],
        w.global_[..., 1:3],
        w.covariates,
    ):  # sin 0, cos 1 everywhere
        valid = features[..., 1] != 0  # the global rows past a window's count are zeros
        assert (features[..., 0][valid] == 0).all() and (features[..., 1][valid] == 1).all()
    prepared = prepare(series, config)
    assert len(prepared.test) == 6 - 5 + 1


def test_dated_non_seasonal_series_has_constant_phases(tmp_path):
    path = _write(
        tmp_path, "ds,y\n" + "\n".join(f"{1950 + i}-12-31,{i % 3}" for i in range(30)) + "\n"
    )
    series = load_csv(path, "y", "ds")
    config = DataConfig(
        local_steps=4,
        global_blocks=3,
        block=2,
        min_global_blocks=2,
        horizon=3,
        period=1,
        val_steps=6,
        test_steps=6,
    )
    w = _windows(series, config, [10])
    assert (w.covariates[..., 0] == 0).all() and (w.local[..., 1] == 0).all()


def test_too_short_names_the_flags_and_the_rows_needed_and_available(tmp_path):
    series, _ = _seasonal_csv(tmp_path, n=40)
    config = DataConfig(
        local_steps=10,
        global_blocks=3,
        block=2,
        min_global_blocks=2,
        horizon=3,
        period=4,
        val_steps=12,
        test_steps=12,
    )
    assert len(prepare(series, config).test) == 10  # 10 + 3 + 12 + 12 = 37 rows fit in 40
    config = replace(config, val_steps=20)
    with pytest.raises(
        DataError,
        match=r"column 'v': too short for the windows: 40 rows, need at least 45 = history 10 "
        r"\(the largest of --local-steps 10, --block 2 x --min-global-blocks 2, 2 x --period 4\) "
        r"\+ --horizon 3 \+ --val-steps 20 \+ --test-steps 12; lower these flags by 5 rows",
    ):
        prepare(series, config)
    with pytest.raises(DataError, match=r"--test-steps 2 is shorter than --horizon 3"):
        prepare(series, replace(config, val_steps=6, test_steps=2))


def test_demo_needs_a_period_without_dates_and_scales_windows_without_a_season(tmp_path):
    path = _write(
        tmp_path,
        "year,y\n" + "\n".join(f"{1900 + i},{i * 0.5 + (i % 4)}" for i in range(120)) + "\n",
    )
    given = {"csv": str(path), "column": "y", "time_column": "year"}
    with pytest.raises(
        ConfigError,
        match=rf"--period: {path} has numbers in its time column 'year', so the seasonal "
        r"period cannot be read from dates; expected --period N .* or --period 1",
    ):
        demo_data(given, None)
    assert parse_period("none") == parse_period("1") == 1.0 and parse_period("4") == 4.0
    for bad in ("0.5", "1.5", "nan", "x"):
        with pytest.raises(ValueError, match="1 or none"):
            parse_period(bad)
    data, period = demo_data(given, 1.0)
    assert period == 1.0 and not data.seasonal
    assert (data.horizon, data.local_steps, data.val_steps, data.test_steps) == (
        6,
        12,
        18,
        18,
    )  # 120 // 20, 2h, 15 %
    prepared = prepare(load_csv(path, "y", "year"), data)
    assert len(prepared.train) > 50 and len(prepared.test) == 18 - 6 + 1
    data, _ = demo_data({**given, "horizon": 10}, 1.0)
    assert (data.horizon, data.local_steps, data.block) == (10, 20, 5)


def test_demo_windows_take_a_horizon_beyond_the_period(tmp_path):
    rows = [f"{1960 + i // 4}Q{i % 4 + 1},{10 + 0.1 * i + (i % 4)}" for i in range(160)]
    path = _write(tmp_path, "ds,y\n" + "\n".join(rows) + "\n")
    data, period = demo_data(
        {"csv": str(path), "column": "y", "time_column": "ds", "horizon": 10}, None
    )
    assert (
        period == 4.0 and data.horizon == 10 and data.val_steps == data.test_steps == 20
    )  # 2 x horizon > 4 periods
    validate(RunConfig(data=data), "test")
    prepared = prepare(load_csv(path, "y", "ds"), data)
    assert len(prepared.test) == 11
