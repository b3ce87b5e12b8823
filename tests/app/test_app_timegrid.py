"""rnnfuse.app.timegrid through load_csv: calendar grids (months, quarters, years), fixed steps
(daily to half-hourly), absent steps, labels past the end, and the period the calendar suggests."""

from __future__ import annotations

import pytest

from rnnfuse.app.config import DataConfig
from rnnfuse.app.data import DataError, load_csv
from rnnfuse.app.demo_data import true_period
from rnnfuse.app.predict import _future_labels


def _series(tmp_path, stamps, name="data.csv"):
    """A CSV ``ds,y`` with one row per stamp (``None``: the row is left out)."""
    rows = [f"{s},{i + 0.5}" for i, s in enumerate(stamps) if s is not None]
    path = tmp_path / name
    path.write_text("ds,y\n" + "\n".join(rows) + "\n")
    return load_csv(path, "y", "ds")


def test_quarter_ends_are_a_calendar_grid_with_absent_quarters_inserted(tmp_path):
    stamps = [
        "1990-03-31",
        "1990-06-30",
        "1990-09-30",
        "1990-12-31",
        "1991-03-31",
        None,
        "1991-09-30",
        "1991-12-31",
    ]
    series = _series(tmp_path, stamps)
    assert len(series) == 8 and series.inserted == 1 and series.step == "3 months"
    assert series.labels[5] == "1991-06-30" and not series.observed[5]
    assert _future_labels(series, 3) == ["1992-03-31", "1992-06-30", "1992-09-30"]
    assert true_period(series, DataConfig()) == 4.0


@pytest.mark.parametrize(
    "stamps, future",
    [
        (
            ["1990-01-01", "1990-04-01", "1990-07-01", "1990-10-01", "1991-01-01"],
            ["1991-04-01", "1991-07-01"],
        ),
        (["1990Q1", "1990Q2", "1990-Q3", "1990 Q4", "1991Q1"], ["1991-04-01", "1991-07-01"]),
        (["1990-02-15", "1990-05-15", "1990-08-15", "1990-11-15"], ["1991-02-15", "1991-05-15"]),
    ],
)
def test_quarter_starts_middles_and_quarter_names(tmp_path, stamps, future):
    series = _series(tmp_path, stamps)
    assert series.step == "3 months" and series.inserted == 0
    assert _future_labels(series, 2) == future
    assert true_period(series, DataConfig()) == 4.0


@pytest.mark.parametrize(
    "stamps, future",
    [
        (
            ["1990-01-01", "1991-01-01", None, "1993-01-01", "1994-01-01"],
            ["1995-01-01", "1996-01-01"],
        ),
        (["1990-12-31", "1991-12-31", "1992-12-31", "1993-12-31"], ["1994-12-31", "1995-12-31"]),
        (
            ["1991-02-28", "1992-02-29", "1993-02-28", "1994-02-28"],
            ["1995-02-28", "1996-02-29"],
        ),  # February's last day
    ],
)
def test_yearly_dates_are_twelve_months_apart_and_non_seasonal(tmp_path, stamps, future):
    series = _series(tmp_path, stamps)
    assert series.step == "12 months"
    assert series.inserted == stamps.count(None)
    assert _future_labels(series, 2) == future
    assert true_period(series, DataConfig()) == 1.0  # a year holds one step: no season


def test_plain_years_are_numbers_with_next_years_as_labels(tmp_path):
    series = _series(tmp_path, ["1990", "1991", None, "1993"])
    assert series.time_kind == "number" and series.inserted == 1 and series.labels[2] == "1992"
    assert _future_labels(series, 2) == ["1994", "1995"]


def test_months_anchored_on_the_30th_and_on_month_ends(tmp_path):
    series = _series(
        tmp_path, ["1990-01-30", "1990-02-28", "1990-03-30", "1990-04-30", None, "1990-06-30"]
    )
    assert series.labels[4] == "1990-05-30" and _future_labels(series, 2) == [
        "1990-07-30",
        "1990-08-30",
    ]
    ends = _series(
        tmp_path, ["1990-01-31", "1990-02-28", "1990-03-31", None, "1990-05-31"], "ends.csv"
    )
    assert ends.labels[3] == "1990-04-30" and _future_labels(ends, 2) == [
        "1990-06-30",
        "1990-07-31",
    ]
    assert true_period(ends, DataConfig()) == 12.0


def test_half_hourly_datetimes_keep_their_time_of_day(tmp_path):
    stamps = [
        "2014-01-01 22:30:00",
        "2014-01-01 23:00:00",
        None,
        "2014-01-02 00:00:00",
        "2014-01-02 00:30:00",
    ]
    series = _series(tmp_path, stamps)
    assert series.step == "30 minutes" and series.inserted == 1
    assert series.labels[2] == "2014-01-01 23:30:00"
    assert _future_labels(series, 2) == ["2014-01-02 01:00:00", "2014-01-02 01:30:00"]
    assert true_period(series, DataConfig()) == 48.0


def test_hourly_iso_times_and_many_steps_do_not_drift(tmp_path):
    stamps = [f"2014-01-{1 + h // 24:02d}T{h % 24:02d}:00" for h in range(24 * 20)]
    series = _series(tmp_path, stamps)
    assert series.step == "1 hour" and true_period(series, DataConfig()) == 24.0
    assert series.grid is not None and series.grid.labels([24 * 1000]) == [
        "2016-09-27 00:00:00"
    ]  # 1000 days on


@pytest.mark.parametrize(
    "stamps, days, period",
    [
        (["2000-01-01", "2000-01-02", "2000-01-03", None, "2000-01-05"], "1 day", 365.2425),
        (["2000-01-01", "2000-01-08", "2000-01-15", "2000-01-22"], "7 days", 365.2425 / 7),
        (
            ["2000-01-01", "2000-01-29", "2000-02-26", "2000-03-25"],
            "28 days",
            365.2425 / 28,
        ),  # four-weekly: not months
    ],
)
def test_fixed_steps_of_days(tmp_path, stamps, days, period):
    series = _series(tmp_path, stamps)
    assert series.step == days and true_period(series, DataConfig()) == pytest.approx(period)


def test_dates_off_the_calendar_grid_name_the_line(tmp_path):
    path = tmp_path / "off.csv"
    path.write_text("ds,y\n1990-01-01,1\n1990-04-01,2\n1990-08-01,3\n1990-10-01,4\n1991-01-01,5\n")
    with pytest.raises(
        DataError,
        match=rf"{path}, line 4, column 'ds': the dates are not on one calendar grid: "
        r"'1990-08-01' is 4 months after '1990-04-01' \(line 3\), not a multiple of the step 3 months",
    ):
        load_csv(path, "y", "ds")
    path.write_text("ds,y\n1990-01-01,1\n1990-02-01,2\n1990-03-15,3\n1990-04-01,4\n")
    with pytest.raises(
        DataError,
        match=rf"{path}, line 4, column 'ds': .*'1990-03-15' is not on day 1 of its month",
    ):
        load_csv(path, "y", "ds")
    times = ["00:00", "00:30", "01:00", "01:30", "01:45", "02:30"]
    path.write_text("ds,y\n" + "".join(f"2014-01-01 {t},{i}\n" for i, t in enumerate(times)))
    with pytest.raises(
        DataError,
        match=rf"{path}, line 6, column 'ds': the times are not on one grid: "
        r"'2014-01-01 01:45' is 15 minutes after .* not a multiple of the step 30 minutes",
    ):
        load_csv(path, "y", "ds")
